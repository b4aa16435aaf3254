//! The `agentyard` command: `dev | api | worker agent|tool | mcp-server | migrate | admin | dlq
//! | chat | scripted-llm`.
//!
//! Layout:
//! - [`roles`]: connecting and running the API and the agent worker (shared by `dev`).
//! - [`dev`]: everything in one process, starting private NATS/Postgres when none answer.
//! - [`admin`]: organizations and tokens.
//! - [`dlq`]: dead letters (jobs given up): list, show, drop.
//! - [`chat`]: a terminal client that streams a reply.

pub mod admin;
pub mod chat;
pub mod dev;
pub mod dlq;
pub mod roles;

use std::path::PathBuf;
use std::process::ExitCode;

use agentyard_runtime::Settings;
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

/// Run AI agents behind a message queue.
#[derive(Debug, Parser)]
#[command(name = "agentyard", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// What to run.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// API + agent worker (+ the scripted model when no real one is configured) in one process;
    /// starts private NATS and Postgres when none answer.
    Dev,
    /// The ingress API.
    Api,
    /// The built-in MCP tool server, at `http://AY_MCP_ADDR/mcp`.
    McpServer,
    /// A worker.
    Worker {
        #[command(subcommand)]
        kind: WorkerKind,
    },
    /// Apply database migrations (creating the database when missing).
    Migrate,
    /// Organizations and tokens.
    Admin {
        #[command(subcommand)]
        command: admin::AdminCommand,
    },
    /// Dead letters: the jobs given up (list, show, drop).
    Dlq {
        #[command(subcommand)]
        command: dlq::DlqCommand,
    },
    /// Post a message and print the reply as it streams.
    Chat(chat::ChatArgs),
    /// The scripted OpenAI-compatible model server (tests, demos, benchmarks).
    ScriptedLlm {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8090")]
        addr: String,
        /// Delay before the first token.
        #[arg(long, default_value_t = 0)]
        first_token_ms: u64,
        /// Delay between tokens.
        #[arg(long, default_value_t = 0)]
        token_delay_ms: u64,
        /// A YAML script of rules (see crates/scripted-llm/examples/script.yaml).
        #[arg(long)]
        script: Option<PathBuf>,
    },
}

/// Worker kinds.
#[derive(Debug, Subcommand)]
pub enum WorkerKind {
    /// Consumes agent steps: calls the model, streams deltas, completes runs.
    Agent,
    /// Consumes tool calls: runs them on MCP servers (the built-in tools in this process).
    Tool,
    /// Advances workflow executions: starts their steps, fires their timers and schedules.
    Orchestrator,
    /// Keeps every process's heartbeats; notices the silent ones.
    Monitor,
}

/// Parses the command line and runs it.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build();
    let runtime = match runtime {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(cli));
    // Tasks still running (a listener, a blocking DNS lookup) must not keep a failed process
    // alive: give them a moment, then exit.
    runtime.shutdown_timeout(std::time::Duration::from_secs(3));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs one command.
///
/// # Errors
/// Whatever stopped the command, with context.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    // One rustls crypto provider for the whole process (HTTPS model servers).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let settings = Settings::from_env()?;
    let service = service_name(&cli.command);
    let traces = agentyard_runtime::telemetry::init(settings.log.as_deref(), service.as_deref());
    for warning in settings.unknown_var_warnings() {
        tracing::warn!("{warning}");
    }
    agentyard_metrics::set_enabled(settings.metrics);
    let shutdown = CancellationToken::new();
    tokio::spawn(agentyard_runtime::signal::cancel_on_signal(shutdown.clone()));
    let result = run_command(cli.command, settings, shutdown).await;
    traces.flush(std::time::Duration::from_secs(2)).await;
    result
}

/// The process's `service.name` in traces: `agentyard-<role>` for the commands that serve;
/// None (no traces) for the others.
fn service_name(command: &Command) -> Option<String> {
    let role = match command {
        Command::Dev => "dev",
        Command::Api => "api",
        Command::McpServer => "mcp-server",
        Command::Worker { kind: WorkerKind::Agent } => "worker-agent",
        Command::Worker { kind: WorkerKind::Tool } => "worker-tool",
        Command::Worker { kind: WorkerKind::Orchestrator } => "worker-orchestrator",
        Command::Worker { kind: WorkerKind::Monitor } => "worker-monitor",
        Command::Migrate
        | Command::Admin { .. }
        | Command::Dlq { .. }
        | Command::Chat(_)
        | Command::ScriptedLlm { .. } => return None,
    };
    Some(format!("agentyard-{role}"))
}

async fn run_command(
    command: Command,
    settings: Settings,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    match command {
        Command::Dev => dev::run(settings, shutdown).await,
        Command::Api => roles::api(settings, shutdown).await,
        Command::McpServer => roles::mcp_server(settings, shutdown).await,
        Command::Worker { kind: WorkerKind::Tool } => roles::tool_worker(settings, shutdown).await,
        Command::Worker { kind: WorkerKind::Agent } => {
            roles::agent_worker(settings, shutdown).await
        }
        Command::Worker { kind: WorkerKind::Orchestrator } => {
            roles::orchestrator(settings, shutdown).await
        }
        Command::Worker { kind: WorkerKind::Monitor } => roles::monitor(settings, shutdown).await,
        Command::Migrate => {
            roles::connect_store(&settings, true).await?;
            println!("migrations applied");
            Ok(())
        }
        Command::Admin { command } => admin::run(&settings, command).await,
        Command::Dlq { command } => dlq::run(&settings, command).await,
        Command::Chat(args) => chat::run(&settings, args).await,
        Command::ScriptedLlm { addr, first_token_ms, token_delay_ms, script } => {
            roles::scripted_llm(&addr, first_token_ms, token_delay_ms, script, shutdown).await
        }
    }
}
