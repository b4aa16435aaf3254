//! The agent worker: consumes `AgentStep` jobs, calls the model with streaming, publishes
//! `message.delta` events as tokens arrive and completes the run in one transaction. When the
//! model calls tools, it stores the calls; it runs the built-in ones itself, as a tool worker
//! would (`agentyard_tool_worker::InlineCalls`), and sends the others to the tool workers.
//!
//! Stateless: any number of processes share the durable `agent` consumer, and each handles up
//! to `AY_AGENT_CONCURRENCY` jobs at once (model calls are I/O-bound).
//!
//! Exactly once: a job is acked only after the run's final write. A redelivered job whose run
//! has moved on is skipped; two workers racing on one run (a redelivery after a stall) both may
//! generate, but only the first final write applies, because it is conditional on the run still
//! being `in_progress` at that step. A cancelled run therefore never turns `completed`.

mod handler;
mod prompt;
mod tools;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agentyard_agents::Catalog;
use agentyard_bus::{Bus, BusError, Outbox};
use agentyard_core::RunId;
use agentyard_llm::Llm;
use agentyard_runtime::Settings;
use agentyard_store::Store;
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

/// Why the worker stopped.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("bus failure")]
    Bus(#[from] BusError),
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The built-in calls cannot be set up (their configuration, the tool token key).
    #[error(transparent)]
    Tools(#[from] agentyard_tool_worker::WorkerError),
}

/// Cancel tokens by run: those of this process's generations, and those of signals that came
/// for runs this process is not generating (yet: a signal may overtake the job it cancels;
/// they are forgotten after [`SIGNAL_MEMORY`]).
type Cancels = Arc<Mutex<HashMap<RunId, (CancellationToken, Instant)>>>;

/// How long a cancel signal for a run not generating here is remembered.
const SIGNAL_MEMORY: Duration = Duration::from_secs(60);

/// The token a generation of `run` watches (already cancelled if a signal came first).
pub(crate) fn cancel_token(cancels: &Cancels, run: RunId) -> CancellationToken {
    let mut map = cancels.lock().expect("cancel map poisoned");
    map.entry(run).or_insert_with(|| (CancellationToken::new(), Instant::now())).0.clone()
}

/// What a job handler needs; shared by all jobs of the process.
#[derive(Clone)]
pub(crate) struct Ctx {
    store: Store,
    bus: Bus,
    outbox: Outbox,
    llm: Llm,
    settings: Arc<Settings>,
    cancels: Cancels,
    catalog: Arc<Catalog>,
    tools: Arc<tools::ToolCache>,
    /// Runs the built-in calls of this worker's model turns (as a tool worker would).
    builtin: Arc<agentyard_tool_worker::InlineCalls>,
}

/// Runs the agent worker until `shutdown`, then finishes the jobs in flight.
///
/// # Errors
/// When the bus cannot be provisioned or read.
pub async fn run(
    settings: Settings,
    store: Store,
    bus: Bus,
    llm: Llm,
    shutdown: CancellationToken,
) -> Result<(), WorkerError> {
    let catalog =
        Arc::new(Catalog::load(settings.config_dir.as_deref()).map_err(WorkerError::Config)?);
    let settings = Arc::new(settings);
    let outbox = Outbox::start(bus.clone(), store.clone(), shutdown.clone());
    let cancels: Cancels = Arc::default();
    tokio::spawn(listen_for_cancels(bus.clone(), cancels.clone(), shutdown.clone()));
    tokio::spawn(answer_status(bus.clone(), llm.clone(), shutdown.clone()));
    use agentyard_services::sweeper::{Sweeper, runner_settings};
    Sweeper::spawn(store.clone(), outbox.clone(), settings.clone(), &catalog, shutdown.clone());
    let consumers = bus.agent_consumers().await?;
    let runner = runner_settings(&settings, settings.agent_concurrency);
    let capacity = u64::try_from(settings.agent_concurrency).ok();
    let (every, jobs) = (settings.heartbeat_every, Some(runner.in_flight.clone()));
    agentyard_bus::heartbeat::spawn(bus.clone(), "agent", capacity, jobs, every, shutdown.clone());
    let tools = Arc::new(tools::ToolCache::default());
    let builtin = agentyard_tool_worker::InlineCalls::new(
        settings.clone(),
        store.clone(),
        bus.clone(),
        outbox.clone(),
        catalog.clone(),
        Some(llm.clone()),
    )
    .await?;
    let builtin = Arc::new(builtin);
    let ctx =
        Ctx { store, bus: bus.clone(), outbox, llm, settings, cancels, catalog, tools, builtin };
    tracing::info!(
        concurrency = runner.concurrency,
        model = ctx.llm.model(),
        "agent worker started"
    );
    let handler = Arc::new(handler::AgentSteps(ctx));
    agentyard_bus::runner::run(bus, consumers, runner, shutdown, handler).await?;
    tracing::info!("agent worker stopped");
    Ok(())
}

/// Answers the API's status requests (`GET /v1/agents/{id}/status`): this worker's model and
/// whether its server answers.
async fn answer_status(bus: Bus, llm: Llm, shutdown: CancellationToken) {
    let mut sub = match bus.client().subscribe(bus.subjects().agent_worker_status()).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot subscribe to status requests");
            return;
        }
    };
    loop {
        let msg = tokio::select! {
            _ = shutdown.cancelled() => return,
            m = sub.next() => match m { Some(m) => m, None => return },
        };
        let Some(reply) = msg.reply else { continue };
        // The API names the model of the agent it asks about (None: this worker's default).
        let asked: Option<String> = serde_json::from_slice::<serde_json::Value>(&msg.payload)
            .ok()
            .and_then(|v| v["model"].as_str().map(str::to_owned));
        let check = llm.check(asked.as_deref(), Duration::from_millis(800)).await;
        let body = serde_json::json!({
            "model": asked.as_deref().unwrap_or(llm.model()),
            "model_reachable": check.reachable,
            "model_available": check.available,
            "model_problem": check.problem,
        });
        let _ = bus.client().publish(reply, body.to_string().into()).await;
    }
}

async fn listen_for_cancels(bus: Bus, cancels: Cancels, shutdown: CancellationToken) {
    let subject = bus.subjects().all_run_cancels();
    let mut sub = match bus.client().subscribe(subject).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot subscribe to cancel signals");
            return;
        }
    };
    loop {
        let msg = tokio::select! {
            _ = shutdown.cancelled() => return,
            m = sub.next() => match m { Some(m) => m, None => return },
        };
        let id = msg.subject.split('.').rev().nth(1).and_then(|s| s.parse::<RunId>().ok());
        if let Some(id) = id {
            let mut map = cancels.lock().expect("cancel map poisoned");
            map.retain(|_, (t, at)| !t.is_cancelled() || at.elapsed() < SIGNAL_MEMORY);
            let (token, _) =
                map.entry(id).or_insert_with(|| (CancellationToken::new(), Instant::now()));
            tracing::debug!(run_id = %id, "cancel signal");
            token.cancel();
        }
    }
}
