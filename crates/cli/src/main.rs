//! The `agentyard` binary. See `agentyard --help`.

/// mimalloc: the services allocate many small, short-lived buffers (JSON, HTTP, NATS frames);
/// glibc's malloc showed up at ~5 % of all CPU under load (see BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    agentyard_cli::main()
}
