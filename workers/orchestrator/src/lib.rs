//! The workflow orchestrator: a consumer of `workflow_advance` jobs on the bus (published when
//! an execution starts, when a run one of its steps started ends, when an approval is answered
//! or a retry asked for) plus a timer loop for waits, retries and timeouts. Stateless: the
//! executions' state lives in Postgres, each advance holds the execution's row lock, so any
//! number of orchestrators share the durable `workflow` consumer and a kill -9 at any moment
//! loses nothing (the job is delivered again; advancing twice changes nothing the second
//! time).
//!
//! It also fires triggers: cron schedules (every [`CRON_EVERY`]) and bus events (`on:`, read
//! with a durable consumer of the events stream that exists only while some definition has
//! such a trigger). Each fire is keyed by what fired it, so replicas never double-start.
//!
//! The decisions are [`agentyard_workflows::engine`]'s (pure); the transitions are
//! [`agentyard_services::workflows`]' and [`agentyard_services::triggers`]'; this crate only
//! wires them to the bus and the clock.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use agentyard_bus::runner::{GiveUpFailed, Handler, Verdict};
use agentyard_bus::{Bus, BusError, Outbox};
use agentyard_core::jobs::WorkflowAdvance;
use agentyard_runtime::Settings;
use agentyard_services::Services;
use agentyard_services::error::cause_chain;
use agentyard_services::triggers::Trigger;
use agentyard_store::Store;
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

/// How often due timers are looked for.
const TIMER_EVERY: Duration = Duration::from_millis(200);
/// Executions advanced per timer scan.
const TIMER_BATCH: i64 = 200;
/// How often cron schedules are looked at (a schedule may have a seconds field).
pub const CRON_EVERY: Duration = Duration::from_millis(250);
/// How often the definitions with triggers are read again: a new or changed trigger takes
/// effect within this long.
pub const TRIGGERS_EVERY: Duration = Duration::from_secs(2);

/// The definitions with triggers, as last read.
type Triggers = Arc<RwLock<Arc<Vec<Trigger>>>>;

/// Why the orchestrator stopped.
#[derive(Debug, thiserror::Error)]
pub enum OrchestratorError {
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error("{0}")]
    Config(String),
}

/// The handler of `workflow_advance` jobs.
struct Advance(Services);

impl Handler for Advance {
    type Job = WorkflowAdvance;
    const KIND: &'static str = "workflow_advance";

    fn span(&self, job: &WorkflowAdvance, delivered: i64) -> tracing::Span {
        tracing::info_span!("workflow_advance", execution_id = %job.execution_id,
            cause = %job.cause, delivered)
    }

    async fn handle(&self, job: &WorkflowAdvance, delivered: i64) -> Verdict {
        match self.0.advance_execution(job.execution_id).await {
            Ok(()) => Verdict::Ack,
            Err(agentyard_services::Error::Unavailable(what)) => {
                let settings = &self.0.settings;
                let delay = agentyard_bus::runner::backoff(
                    settings.retry_base,
                    settings.retry_max,
                    delivered,
                );
                tracing::warn!(what, ?delay, "cannot advance now; retrying");
                Verdict::Retry(delay)
            }
            Err(e) => Verdict::GiveUp {
                code: agentyard_core::run::error_codes::INTERNAL,
                reason: cause_chain(&e),
            },
        }
    }

    /// The execution fails with the reason, so nobody waits for it forever.
    async fn give_up(
        &self,
        job: &WorkflowAdvance,
        code: &'static str,
        reason: &str,
    ) -> Result<(), GiveUpFailed> {
        self.0
            .fail_execution(job.execution_id, code, reason)
            .await
            .map_err(|e| GiveUpFailed(cause_chain(&e)))
    }
}

/// Runs the orchestrator until `shutdown`, then finishes the advances in flight.
///
/// # Errors
/// When the configuration is broken or the bus cannot be read.
pub async fn run(
    settings: Settings,
    store: Store,
    bus: Bus,
    shutdown: CancellationToken,
) -> Result<(), OrchestratorError> {
    let outbox = Outbox::start(bus.clone(), store.clone(), shutdown.clone());
    // Each advance holds one pooled connection (its transaction) from start to end: more at
    // once than the pool has would only queue for connections.
    let concurrency = usize::try_from(settings.db_pool_size).unwrap_or(8).max(2);
    let runner = agentyard_services::sweeper::runner_settings(&settings, concurrency);
    let (every, jobs) = (settings.heartbeat_every, Some(runner.in_flight.clone()));
    let capacity = u64::try_from(concurrency).ok();
    let role = "orchestrator";
    agentyard_bus::heartbeat::spawn(bus.clone(), role, capacity, jobs, every, shutdown.clone());
    let services =
        Services::new(settings, store, bus.clone(), outbox).map_err(OrchestratorError::Config)?;
    tokio::spawn(timers(services.clone(), shutdown.clone()));
    let triggers: Triggers = Arc::default();
    tokio::spawn(cron(services.clone(), triggers.clone(), shutdown.clone()));
    tokio::spawn(events(services.clone(), triggers, shutdown.clone()));
    let consumer = bus.workflow_consumer().await?;
    tracing::info!(concurrency, "orchestrator started");
    let handler = Arc::new(Advance(services));
    agentyard_bus::runner::run(bus, vec![consumer], runner, shutdown, handler).await?;
    tracing::info!("orchestrator stopped");
    Ok(())
}

/// Advances the executions whose timers are due (waits, retries, timeouts, approval
/// deadlines), until `shutdown`.
async fn timers(services: Services, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(TIMER_EVERY) => {}
        }
        match services.wake_due_executions(TIMER_BATCH).await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(executions = n, "timers fired"),
            Err(e) => tracing::warn!(error = %cause_chain(&e), "cannot fire workflow timers"),
        }
    }
}

/// Reads the triggers every [`TRIGGERS_EVERY`] and fires the due cron ticks every
/// [`CRON_EVERY`], until `shutdown`.
async fn cron(services: Services, triggers: Triggers, shutdown: CancellationToken) {
    let mut read_at: Option<tokio::time::Instant> = None;
    loop {
        if read_at.is_none_or(|t| t.elapsed() >= TRIGGERS_EVERY) {
            match services.load_triggers().await {
                Ok(t) => {
                    *triggers.write().expect("triggers poisoned") = Arc::new(t);
                    read_at = Some(tokio::time::Instant::now());
                }
                Err(e) => tracing::warn!(error = %cause_chain(&e), "cannot read workflow triggers"),
            }
        }
        let now = chrono::Utc::now();
        let current = triggers.read().expect("triggers poisoned").clone();
        for t in current.iter().filter(|t| t.cron.is_some()) {
            match services.fire_cron(t, now).await {
                Ok(Some(e)) => tracing::info!(workflow = t.row.id, execution_id = %e.id,
                    scheduled_at = %e.trigger["scheduled_at"], "cron fired"),
                Ok(None) => {}
                Err(e) => tracing::warn!(workflow = t.row.id, error = %cause_chain(&e),
                    "cannot fire the schedule"),
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(CRON_EVERY) => {}
        }
    }
}

/// Hands bus events to event waits and `on:` triggers, while any exists: the shared consumer
/// is dropped when none does, and made again (from the oldest wait's start) when one appears.
async fn events(services: Services, triggers: Triggers, shutdown: CancellationToken) {
    loop {
        if shutdown.is_cancelled() {
            return;
        }
        match wanted(&services, &triggers).await {
            None => {
                if let Err(e) = services.bus.drop_trigger_consumer().await {
                    tracing::debug!(error = %e, "cannot drop the trigger consumer");
                }
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(CRON_EVERY) => {}
                }
            }
            Some(since) => {
                if let Err(e) = read_events(&services, &triggers, since, &shutdown).await {
                    tracing::warn!(error = %e, "the event reader stopped; restarting it");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }
}

/// None when nothing reads events; else from when to read them (None: from now on).
async fn wanted(services: &Services, triggers: &Triggers) -> Option<Option<time::OffsetDateTime>> {
    let on = triggers.read().expect("triggers poisoned").iter().any(|t| t.wf.def.on.is_some());
    let oldest = match services.store.oldest_event_wait().await {
        Ok(o) => o,
        // Cannot tell: keep reading if a reader runs.
        Err(_) => return Some(None),
    };
    let since = oldest.and_then(|t| {
        let nanos = t.timestamp_nanos_opt()? - 1_000_000_000;
        time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(nanos)).ok()
    });
    (on || oldest.is_some()).then_some(since)
}

async fn read_events(
    services: &Services,
    triggers: &Triggers,
    since: Option<time::OffsetDateTime>,
    shutdown: &CancellationToken,
) -> Result<(), BusError> {
    let consumer = services.bus.trigger_consumer(services.settings.ack_wait, since).await?;
    let mut messages = consumer
        .messages()
        .await
        .map_err(|e| BusError::Read { what: "trigger events".into(), source: e.into() })?;
    loop {
        let next = tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            () = tokio::time::sleep(TRIGGERS_EVERY) => {
                if wanted(services, triggers).await.is_some() { continue } else { return Ok(()) }
            }
            next = messages.next() => next,
        };
        let Some(message) = next else { return Ok(()) };
        let message = message
            .map_err(|e| BusError::Read { what: "trigger events".into(), source: e.into() })?;
        let (seq, published) = match message.info() {
            Ok(i) => (i.stream_sequence, i.published),
            Err(_) => (0, time::OffsetDateTime::now_utc()),
        };
        let published = chrono::DateTime::from_timestamp_nanos(
            i64::try_from(published.unix_timestamp_nanos()).unwrap_or(i64::MAX),
        );
        let current = triggers.read().expect("triggers poisoned").clone();
        let res =
            services.on_event(&current, &message.subject, seq, published, &message.payload).await;
        match res {
            Ok(n) => {
                if n > 0 {
                    tracing::info!(seq, moved = n, "an event moved workflows");
                }
                let _ = message.ack().await;
            }
            Err(e) => {
                tracing::warn!(seq, error = %cause_chain(&e), "cannot handle an event; retrying");
                let delay = Some(Duration::from_secs(1));
                let _ = message.ack_with(async_nats::jetstream::AckKind::Nak(delay)).await;
            }
        }
    }
}
