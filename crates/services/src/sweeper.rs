//! The sweeper ends what nothing else would, in every worker process (its transitions are
//! conditional, so several sweepers at once do no harm):
//! - a call whose wait for a human passed `AY_INPUT_TIMEOUT` is answered as a human who said
//!   no (decline / deny) and enqueued again, so the run goes on;
//! - a live run that made no progress for longer than its agent allows is moved to `expired`
//!   with an error saying why (a lost job, a dead-lettered job whose failure was not recorded,
//!   an outbox fact set aside, a bug: whatever it was, the run ends);
//! - after a Postgres crash, the (unlogged) table of live runs is refilled.
//!
//! A run's allowance: its agent's `timeout_seconds` for each of `AY_MAX_ATTEMPTS` model calls,
//! plus as many retry waits (`AY_RETRY_MAX`) and tool calls (`AY_TOOL_TIMEOUT`), plus two ack
//! waits for a crashed worker's job to come back. Workers say that a long call is alive every
//! third of the ack wait, so a slow model is never mistaken for a stuck one.

use std::sync::Arc;
use std::time::Duration;

use agentyard_agents::Catalog;
use agentyard_bus::Outbox;
use agentyard_core::run::{RunError, RunStatus, error_codes};
use agentyard_runtime::Settings;
use agentyard_store::Store;
use agentyard_store::runs::Finish;
use agentyard_store::tools::AnswerOutcome;
use tokio_util::sync::CancellationToken;

const EVERY: Duration = Duration::from_secs(2);
const BATCH: i64 = 200;

/// What one sweep did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Swept {
    /// Input waits answered for want of a human.
    pub inputs_timed_out: usize,
    /// Runs moved to `expired`.
    pub runs_expired: usize,
}

/// The sweeper of one process.
#[derive(Clone, Debug)]
pub struct Sweeper {
    store: Store,
    outbox: Outbox,
    settings: Arc<Settings>,
    /// `{agent type: timeout_seconds}` of the catalog.
    type_timeouts: serde_json::Value,
}

impl Sweeper {
    /// A sweeper of the runs in `store`.
    pub fn new(store: Store, outbox: Outbox, settings: Arc<Settings>, catalog: &Catalog) -> Self {
        let type_timeouts = catalog
            .agent_types()
            .iter()
            .map(|(name, t)| (name.clone(), serde_json::json!(t.timeout_seconds)))
            .collect::<serde_json::Map<_, _>>()
            .into();
        Self { store, outbox, settings, type_timeouts }
    }

    /// Starts sweeping in the background (every worker process does).
    pub fn spawn(
        store: Store,
        outbox: Outbox,
        settings: Arc<Settings>,
        catalog: &Catalog,
        shutdown: CancellationToken,
    ) {
        tokio::spawn(Self::new(store, outbox, settings, catalog).run(shutdown));
    }

    /// Sweeps every few seconds until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            match self.sweep().await {
                Ok(s) if s != Swept::default() => tracing::info!(
                    inputs_timed_out = s.inputs_timed_out,
                    runs_expired = s.runs_expired,
                    "sweeper"
                ),
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, cause = %crate::error::cause_chain(&e), "the sweeper cannot read Postgres")
                }
            }
        }
    }

    /// The time a run may go without progress besides its model calls.
    fn slack(&self) -> Duration {
        let s = &self.settings;
        let attempts = u32::try_from(s.max_attempts).unwrap_or(1);
        s.retry_max * attempts + s.tool_timeout * attempts + s.ack_wait * 2
    }

    /// One sweep.
    ///
    /// # Errors
    /// When Postgres cannot be read.
    pub async fn sweep(&self) -> Result<Swept, agentyard_store::StoreError> {
        let refilled = self.store.refill_live_runs().await?;
        if refilled > 0 {
            tracing::warn!(
                runs = refilled,
                "refilled the table of live runs (Postgres restarted?)"
            );
        }
        let mut swept = Swept::default();
        for due in self.store.due_inputs(BATCH).await? {
            let answer = due.input_request.timeout_answer();
            match self.store.answer_input(due.org_id, due.run_id, Some(due.id), &answer).await? {
                AnswerOutcome::Answered { outbox, .. } => {
                    tracing::info!(run_id = %due.run_id, invocation_id = %due.id,
                        kind = due.input_request.kind(), "no answer in time: {}", answer.action.as_str());
                    let _ = self.outbox.dispatch(&outbox).await;
                    swept.inputs_timed_out += 1;
                }
                AnswerOutcome::NotFound | AnswerOutcome::NotWaiting => {}
            }
        }
        let attempts = u32::try_from(self.settings.max_attempts).unwrap_or(1);
        let overdue =
            self.store.overdue_runs(&self.type_timeouts, attempts, self.slack(), BATCH).await?;
        for run in overdue {
            let message = format!(
                "the run made no progress for {:.0} s; its agent allows {:.0} s (each of {attempts} \
                 model calls, retries, tool calls and a crashed worker's redelivery)",
                run.silent_secs, run.allowed_secs,
            );
            let finish = Finish {
                run: run.run_id,
                step: None,
                from: &[RunStatus::Queued, RunStatus::InProgress],
                status: RunStatus::Expired,
                output: None,
                usage: None,
                error: Some(RunError { code: error_codes::RUN_EXPIRED.into(), message }),
                message: None,
            };
            let done = self.store.finish_run(&finish).await?;
            if done.applied {
                tracing::warn!(run_id = %run.run_id, org_id = %run.org_id, "run expired");
                let _ = self.outbox.dispatch(&done.outbox).await;
                swept.runs_expired += 1;
            }
        }
        Ok(swept)
    }
}

/// How a worker's job runner reads and retries, from the settings.
pub fn runner_settings(
    settings: &Settings,
    concurrency: usize,
) -> agentyard_bus::runner::RunnerSettings {
    agentyard_bus::runner::RunnerSettings {
        concurrency,
        ack_wait: settings.ack_wait,
        max_deliveries: settings.max_deliveries,
        retry_base: settings.retry_base,
        retry_max: settings.retry_max,
        in_flight: std::sync::Arc::default(),
    }
}
