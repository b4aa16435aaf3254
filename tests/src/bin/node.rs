//! The `agentyard` binary under another name, so the end-to-end tests can start real processes.

fn main() -> std::process::ExitCode {
    agentyard_cli::main()
}
