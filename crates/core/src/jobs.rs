//! Jobs: commands carried by the `JOBS` stream. Every job is a versioned envelope so a worker
//! can refuse (dead-letter) what it does not understand instead of guessing.

use serde::{Deserialize, Serialize};

use crate::RunId;

/// Run one model turn (`step`) of a run. Published with msg-id `run:{run_id}:step:{step}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentStep {
    /// Envelope version; always 1 for now.
    pub v: u32,
    /// The run to advance.
    pub run_id: RunId,
    /// The model turn, from 0. A job whose step is not the run's current step is stale.
    pub step: u32,
}

impl AgentStep {
    /// A step-`step` job for `run_id`.
    pub fn new(run_id: RunId, step: u32) -> Self {
        Self { v: 1, run_id, step }
    }

    /// The JetStream dedupe id of this job.
    pub fn msg_id(&self) -> String {
        format!("run:{}:step:{}", self.run_id, self.step)
    }
}
