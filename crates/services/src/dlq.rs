//! Dead letters for operators: the jobs given up (what, why, how often, when), read from the
//! dead-letter stream, replayed (an agent step runs again as a new attempt of its run), and
//! dropped once dealt with. Callers check `platform:admin`: dead letters
//! belong to every organization.

use agentyard_bus::dlq::{DeadLetter, DeadLetters};
use agentyard_core::jobs::{AgentStep, Job};
use agentyard_core::run::Run;
use agentyard_store::runs::ReplayOutcome;

use crate::{Entity, Error, Result, Services};

/// The most dead letters one listing shows.
pub const MAX_LIMIT: usize = 500;

impl Services {
    /// The newest `limit` dead letters (at most [`MAX_LIMIT`]) and counts of all by kind and
    /// reason code.
    ///
    /// # Errors
    /// `unavailable` when NATS cannot be read.
    pub async fn dead_letters(&self, limit: usize) -> Result<DeadLetters> {
        Ok(self.bus.dead_letters(limit.clamp(1, MAX_LIMIT)).await?)
    }

    /// One dead letter.
    ///
    /// # Errors
    /// `dead_letter_not_found`; `unavailable`.
    pub async fn dead_letter(&self, id: u64) -> Result<DeadLetter> {
        self.bus.dead_letter_by_id(id).await?.ok_or(Error::NotFound(Entity::DeadLetter))
    }

    /// Removes a dead letter.
    ///
    /// # Errors
    /// `dead_letter_not_found`; `unavailable`.
    pub async fn drop_dead_letter(&self, id: u64) -> Result<()> {
        if self.bus.drop_dead_letter(id).await? {
            Ok(())
        } else {
            Err(Error::NotFound(Entity::DeadLetter))
        }
    }
}

/// What a replay did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReplayResult {
    /// The run is queued again at the step that was given up and its job published.
    Replayed,
    /// The run had finished or moved on (or is gone): nothing runs again.
    Skipped,
}

/// The answer to a replay: what it did and the run as it is now.
#[derive(Clone, Debug, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct Replay {
    pub outcome: ReplayResult,
    pub run: Option<Run>,
}

impl Services {
    /// Runs a dead-lettered agent step again as a new attempt of its run: the failed run goes
    /// back to `queued` at that step with its attempts counted from zero, the job is published
    /// again, and the dead letter is removed. Idempotent: a run that is no longer failed at that
    /// step (it finished, or a replay already brought it back) is not run again.
    ///
    /// # Errors
    /// `dead_letter_not_found`; `not_replayable` (only agent steps are replayed: tool calls
    /// were answered with an error result and the run moved on; workflow jobs are retried with
    /// `POST /v1/workflows/executions/{id}/retry`); `thread_busy`; `unavailable`.
    pub async fn replay_dead_letter(&self, id: u64) -> Result<Replay> {
        let d = self.dead_letter(id).await?;
        // The stream holds the job's payload (the kind is the subject's last token).
        let step = (d.kind == "agent_step")
            .then(|| serde_json::from_value::<AgentStep>(d.job.clone()).ok())
            .flatten();
        let Some(step) = step.as_ref() else {
            return Err(Error::conflict(
                "not_replayable",
                format!("only agent steps are replayed; dead letter {id} is a {} job", d.kind),
            ));
        };
        let number = i32::try_from(step.step).unwrap_or(i32::MAX);
        let publish = |replays: i32| {
            let msg_id = format!("replay:{}:{}:{replays}", step.run_id, step.step);
            async move { self.bus.republish_job(&Job::AgentStep(step.clone()), &msg_id).await }
        };
        let replay = match self.store.replay_run(step.run_id, number).await? {
            ReplayOutcome::ThreadBusy => {
                return Err(Error::conflict(
                    "thread_busy",
                    "another run holds the run's thread: replay once it has ended",
                ));
            }
            ReplayOutcome::NotFound => Replay { outcome: ReplayResult::Skipped, run: None },
            ReplayOutcome::NotFailed { run, stranded } => {
                if let Some(replays) = stranded {
                    publish(replays).await?;
                }
                Replay { outcome: ReplayResult::Skipped, run }
            }
            ReplayOutcome::Replayed { run, replays, outbox } => {
                // The relay publishes the event later if this fails; the job must go now.
                if let Err(e) = self.outbox.dispatch(&outbox).await {
                    tracing::warn!(error = %e, "the replayed run's event waits for the relay");
                }
                publish(replays).await?;
                Replay { outcome: ReplayResult::Replayed, run: Some(run) }
            }
        };
        self.bus.drop_dead_letter(id).await?;
        Ok(replay)
    }
}
