//! The `agentyard` binary. See `agentyard --help`.

fn main() -> std::process::ExitCode {
    agentyard_cli::main()
}
