//! `agentyard-bench`: starts a complete agentyard stack from the release binary, drives one load
//! scenario against it and prints what it measured.
//!
//! Layout:
//! - `stack`: the child processes, the bench database and streams; their cleanup.
//! - `client`: the HTTP client (post a run, read its SSE stream).
//! - `scenarios`: closed loop, open loop and the concurrency burst.
//! - `bench`: one benchmark from start to [`report::Report`]; `report`: Markdown and JSON.
//! - `workflow`: the workflow scenario (a 5-step DAG, open then closed loop).
//! - `streams`: many concurrent org event streams kept live by runs.
//! - `stats`: percentiles; `procfs`: peak RSS and CPU from `/proc`.

mod bench;
mod client;
mod history;
mod procfs;
mod report;
mod scenarios;
mod stack;
mod stats;
mod streams;
mod workflow;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

/// Benchmarks agentyard on this machine (needs Postgres and NATS running locally).
#[derive(Debug, Parser)]
#[command(name = "agentyard-bench", about)]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
    #[command(flatten)]
    common: Common,
}

/// Options of every scenario.
#[derive(Debug, Args)]
pub(crate) struct Common {
    /// The `agentyard` binary [default: next to this executable].
    #[arg(long, global = true)]
    pub(crate) bin: Option<PathBuf>,
    /// API port [default: a free one].
    #[arg(long, global = true)]
    pub(crate) api_port: Option<u16>,
    /// Keep the database and streams afterwards.
    #[arg(long, global = true)]
    pub(crate) keep: bool,
    /// Print JSON instead of Markdown.
    #[arg(long, global = true)]
    pub(crate) json: bool,
    /// Seconds of warm-up before measuring.
    #[arg(long, global = true, default_value_t = 2)]
    pub(crate) warmup: u64,
    /// The Postgres server (the bench creates and drops its own database on it).
    #[arg(long, global = true, default_value = "postgres://postgres@127.0.0.1:5432")]
    pub(crate) postgres_url: String,
    #[arg(long, global = true, default_value = "nats://127.0.0.1:4222")]
    pub(crate) nats_url: String,
    /// AY_DB_POOL_SIZE of the API and the workers [default: theirs].
    #[arg(long, global = true)]
    pub(crate) db_pool_size: Option<u32>,
    /// Open a new TCP connection per request instead of reusing pooled ones (a diagnostic: a
    /// fresh connection starts in quick-ACK mode, which hides Nagle/delayed-ACK stalls).
    #[arg(long, global = true)]
    pub(crate) fresh_connections: bool,
    /// AY_AGENT_CONCURRENCY of the workers [default: theirs; `concurrent`: at least --runs].
    #[arg(long, global = true)]
    pub(crate) agent_concurrency: Option<usize>,
    /// Also run the monitor (`agentyard worker monitor`), to measure what it costs.
    #[arg(long, global = true)]
    pub(crate) monitor: bool,
    /// `KEY=VALUE` for every process of the stack (e.g. `AY_METRICS=off`, or
    /// `OTEL_EXPORTER_OTLP_ENDPOINT=...`); repeatable.
    #[arg(long = "env", global = true, value_parser = parse_env)]
    pub(crate) env: Vec<(String, String)>,
}

fn parse_env(v: &str) -> Result<(String, String), String> {
    v.split_once('=')
        .filter(|(k, _)| !k.is_empty())
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("`{v}` is not KEY=VALUE"))
}

/// The load to apply.
#[derive(Debug, Clone, Subcommand)]
pub(crate) enum Scenario {
    /// Closed loop: each client posts a streamed run and reads it to the end, repeatedly.
    Throughput {
        #[arg(long, default_value_t = 64)]
        clients: usize,
        /// Seconds.
        #[arg(long, default_value_t = 20)]
        duration: u64,
        #[arg(long, default_value_t = 2)]
        workers: usize,
    },
    /// Closed loop twice on one stack, side by side: `stream: true` runs read over SSE, then
    /// runs posted (202) and long-polled with `GET /v1/runs/{id}?wait=`.
    Poll {
        #[arg(long, default_value_t = 64)]
        clients: usize,
        /// Seconds of each mode.
        #[arg(long, default_value_t = 20)]
        duration: u64,
        #[arg(long, default_value_t = 2)]
        workers: usize,
        /// The long-poll's `?wait=` in seconds.
        #[arg(long, default_value_t = 30)]
        wait: u64,
    },
    /// Open loop: streamed runs posted at a fixed arrival rate, however slow the answers.
    Rate {
        /// Runs per second.
        #[arg(long, default_value_t = 300.0)]
        rate: f64,
        /// Seconds.
        #[arg(long, default_value_t = 20)]
        duration: u64,
        #[arg(long, default_value_t = 2)]
        workers: usize,
    },
    /// Many slow runs at once: how many does a worker keep in flight?
    Concurrent {
        #[arg(long, default_value_t = 2000)]
        runs: usize,
        /// The scripted model's delay before answering.
        #[arg(long, default_value_t = 2000)]
        answer_ms: u64,
        #[arg(long, default_value_t = 1)]
        workers: usize,
        /// POSTs in flight at once.
        #[arg(long, default_value_t = 256)]
        post_concurrency: usize,
        /// Seconds to wait for all runs to end.
        #[arg(long, default_value_t = 300)]
        timeout: u64,
        /// Post every run while the agent workers are paused (`SIGSTOP`), then resume them
        /// (`SIGCONT`): the runs meet the workers as a backlog, as after an outage, so the
        /// in-flight peak is bounded by the worker, not by how fast the API creates runs.
        #[arg(long)]
        backlog: bool,
    },
    /// Closed loop of runs that each make one tool call (`get_ticket_stats` on the built-in
    /// server): runs/s and the tool round trip (dispatch → result stored).
    Tools {
        #[arg(long, default_value_t = 32)]
        clients: usize,
        /// Seconds.
        #[arg(long, default_value_t = 20)]
        duration: u64,
        #[arg(long, default_value_t = 2)]
        workers: usize,
        /// Post each run (202) and long-poll it to its end with `?wait=<POLL>` seconds, instead
        /// of streaming it.
        #[arg(long, value_name = "WAIT")]
        poll: Option<u64>,
    },
    /// Executions of a 5-step DAG with two parallel branches (tool and agent steps), started
    /// at `rate` per second, then by `clients` in a closed loop; the step transition overhead
    /// (a dependency's result stored → its dependent dispatched) from Postgres.
    Workflow {
        /// Executions per second of the open loop.
        #[arg(long, default_value_t = 50.0)]
        rate: f64,
        /// Clients of the closed loop.
        #[arg(long, default_value_t = 16)]
        clients: usize,
        /// Seconds of each phase.
        #[arg(long, default_value_t = 20)]
        duration: u64,
        #[arg(long, default_value_t = 2)]
        workers: usize,
        /// Make fetch, stats and store tool steps (built-in tools over MCP) instead of agent
        /// steps.
        #[arg(long)]
        tool_steps: bool,
    },
    /// In this process, no stack: what one trace span costs when traces are on (recorded by
    /// the exporter's layer, against the bare `tracing` registry, and encoded as OTLP).
    Spans {
        /// Iterations of a job span with a model-call span inside it.
        #[arg(long, default_value_t = 100_000)]
        iterations: usize,
    },
    /// Many concurrent `GET /v1/events` streams on the API, spread over `users` users (each
    /// with a token limited to it), kept live by runs posted (202) at `rate` from random users:
    /// the API's RSS (before, idle with the streams open, peak) and the delay from each POST to
    /// its `run.completed` on every stream of its user.
    Streams {
        #[arg(long, default_value_t = 10_000)]
        streams: usize,
        #[arg(long, default_value_t = 100)]
        users: usize,
        /// Runs per second.
        #[arg(long, default_value_t = 20.0)]
        rate: f64,
        /// Seconds of posting runs.
        #[arg(long, default_value_t = 30)]
        duration: u64,
        #[arg(long, default_value_t = 2)]
        workers: usize,
        /// Streams being opened at once.
        #[arg(long, default_value_t = 64)]
        connect_concurrency: usize,
        /// Seconds after the last POST for every expected `run.completed` to arrive.
        #[arg(long, default_value_t = 30)]
        grace: u64,
    },
    /// One thread grown run by run: at each size (messages in the thread), `runs` runs one
    /// after another, with their latency and CPU per run.
    History {
        /// Thread sizes to measure at, in messages, ascending.
        #[arg(long, value_delimiter = ',', default_value = "10,100,1000,10000")]
        sizes: Vec<usize>,
        /// Measured runs at each size.
        #[arg(long, default_value_t = 50)]
        runs: usize,
        #[arg(long, default_value_t = 1)]
        workers: usize,
        /// Every run makes one tool call (`get_ticket_stats`, as in `tools`): four messages a
        /// run instead of two.
        #[arg(long)]
        tools: bool,
    },
    /// Saturated workers: `runs` low-priority runs are posted, then `runs` high-priority ones;
    /// how long does each priority wait for a worker?
    Priority {
        /// Runs of each priority.
        #[arg(long, default_value_t = 200)]
        runs: usize,
        /// The scripted model's delay before answering.
        #[arg(long, default_value_t = 50)]
        answer_ms: u64,
        #[arg(long, default_value_t = 1)]
        workers: usize,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(bench::run(cli.scenario, cli.common)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
