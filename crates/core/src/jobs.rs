//! Jobs: commands carried by the `JOBS` stream, one subject per kind
//! (`<prefix>.jobs.agent.<priority>`, `<prefix>.jobs.tool`, `<prefix>.jobs.workflow`). Every
//! job is a versioned envelope (`v`), so a worker refuses (dead-letters) what it does not
//! understand instead of guessing. Each job's `Nats-Msg-Id` is derived from its content, so a
//! second publish of the same job is dropped by JetStream's dedupe window.

use serde::{Deserialize, Serialize};

use crate::run::Priority;
use crate::{ExecutionId, InvocationId, RunId};

/// The envelope version every job is written with.
pub const VERSION: u32 = 1;

/// Run one model turn (`step`) of a run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentStep {
    /// Envelope version; 1.
    pub v: u32,
    /// The run to advance.
    pub run_id: RunId,
    /// The model turn, from 0. A job whose step is not the run's current step is stale.
    pub step: u32,
    /// The run's priority (which subject the job goes to).
    #[serde(default)]
    pub priority: Priority,
}

/// Run one tool call. A call that waited for a human is enqueued again (`round` + 1) once it
/// was answered; the round keeps the message ids of the two apart.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ToolCall {
    pub v: u32,
    pub invocation_id: InvocationId,
    pub run_id: RunId,
    #[serde(default)]
    pub round: u32,
}

/// Advance a workflow execution (the orchestrator's job): look at its steps' runs, start what
/// is ready, end it when nothing is left. Advancing is idempotent, so the cause only keeps the
/// message ids of distinct reasons apart (`start`, `run:<id>`, `answer:<step>:<n>`, ...).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkflowAdvance {
    pub v: u32,
    pub execution_id: ExecutionId,
    pub cause: String,
}

impl WorkflowAdvance {
    /// A job advancing `execution_id` because of `cause`.
    pub fn new(execution_id: ExecutionId, cause: impl Into<String>) -> Self {
        Self { v: VERSION, execution_id, cause: cause.into() }
    }
}

/// Any job, tagged by its kind (the form the outbox stores).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Job {
    AgentStep(AgentStep),
    ToolCall(ToolCall),
    WorkflowAdvance(WorkflowAdvance),
}

impl AgentStep {
    /// A step-`step` job for `run_id`.
    pub fn new(run_id: RunId, step: u32, priority: Priority) -> Self {
        Self { v: VERSION, run_id, step, priority }
    }
}

impl ToolCall {
    /// The first dispatch of a call.
    pub fn new(invocation_id: InvocationId, run_id: RunId) -> Self {
        Self { v: VERSION, invocation_id, run_id, round: 0 }
    }
}

impl Job {
    /// The JetStream dedupe id.
    pub fn msg_id(&self) -> String {
        match self {
            Self::AgentStep(j) => format!("run:{}:step:{}", j.run_id, j.step),
            Self::ToolCall(j) if j.round == 0 => format!("tool:{}", j.invocation_id),
            Self::ToolCall(j) => format!("tool:{}:{}", j.invocation_id, j.round),
            Self::WorkflowAdvance(j) => format!("wf:{}:{}", j.execution_id, j.cause),
        }
    }

    /// The kind's name (`agent_step`, `tool_call`, `workflow_advance`); also the dead-letter
    /// subject's last token.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::AgentStep(_) => "agent_step",
            Self::ToolCall(_) => "tool_call",
            Self::WorkflowAdvance(_) => "workflow_advance",
        }
    }

    /// The payload as published (without the kind tag: the subject says it).
    ///
    /// # Errors
    /// Never in practice (the types serialize); kept for honesty.
    pub fn payload(&self) -> serde_json::Result<Vec<u8>> {
        match self {
            Self::AgentStep(j) => serde_json::to_vec(j),
            Self::ToolCall(j) => serde_json::to_vec(j),
            Self::WorkflowAdvance(j) => serde_json::to_vec(j),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_ids_tell_rounds_and_steps_apart() {
        let run = RunId::new();
        let inv = InvocationId::new();
        let a = Job::AgentStep(AgentStep::new(run, 2, Priority::High));
        assert_eq!(a.msg_id(), format!("run:{run}:step:2"));
        let t0 = Job::ToolCall(ToolCall::new(inv, run));
        let t1 = Job::ToolCall(ToolCall { round: 1, ..ToolCall::new(inv, run) });
        assert_ne!(t0.msg_id(), t1.msg_id());
        let tagged = serde_json::to_value(&a).unwrap();
        assert_eq!(tagged["kind"], "agent_step");
        assert_eq!(serde_json::from_value::<Job>(tagged).unwrap(), a);
    }
}
