//! Events: what happened to a run, published on `<prefix>.events.<org>.run.<run_id>` and sent to
//! clients over SSE (`event:` is the type, `data:` the payload, `id:` the event's sequence number
//! in the `EVENTS` stream). On the wire an event is `{"type": "<kind>", "data": {...}}`.

use serde::{Deserialize, Serialize};

use crate::InvocationId;
use crate::run::{InputAction, Run};
use crate::thread::Message;

/// Every kind of event, by the name clients see.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventKind {
    RunQueued,
    RunStarted,
    MessageDelta,
    MessageReset,
    MessageCompleted,
    ToolCallCreated,
    ToolCallCompleted,
    RunRequiresInput,
    RunInputReceived,
    RunCompleted,
    RunFailed,
    RunCancelled,
    RunExpired,
}

impl EventKind {
    /// Every kind, in the order a run usually produces them.
    pub const ALL: [EventKind; 13] = [
        Self::RunQueued,
        Self::RunStarted,
        Self::MessageDelta,
        Self::MessageReset,
        Self::MessageCompleted,
        Self::ToolCallCreated,
        Self::ToolCallCompleted,
        Self::RunRequiresInput,
        Self::RunInputReceived,
        Self::RunCompleted,
        Self::RunFailed,
        Self::RunCancelled,
        Self::RunExpired,
    ];

    /// The name (SSE `event:`, the envelope's `type`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::RunQueued => "run.queued",
            Self::RunStarted => "run.started",
            Self::MessageDelta => "message.delta",
            Self::MessageReset => "message.reset",
            Self::MessageCompleted => "message.completed",
            Self::ToolCallCreated => "tool_call.created",
            Self::ToolCallCompleted => "tool_call.completed",
            Self::RunRequiresInput => "run.requires_input",
            Self::RunInputReceived => "run.input_received",
            Self::RunCompleted => "run.completed",
            Self::RunFailed => "run.failed",
            Self::RunCancelled => "run.cancelled",
            Self::RunExpired => "run.expired",
        }
    }

    /// The kind of a name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == name)
    }

    /// The last event of a run: `run.completed`, `run.failed`, `run.cancelled`, `run.expired`.
    pub const fn is_terminal(self) -> bool {
        matches!(self, Self::RunCompleted | Self::RunFailed | Self::RunCancelled | Self::RunExpired)
    }
}

impl std::fmt::Display for EventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One event with its typed payload.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "type", content = "data")]
pub enum Event {
    /// The run was accepted (it may wait for its thread).
    #[serde(rename = "run.queued")]
    RunQueued { run: Run },
    /// A worker took the run for the first time.
    #[serde(rename = "run.started")]
    RunStarted { run: Run },
    /// A piece of the answer, as the model streams it.
    #[serde(rename = "message.delta")]
    MessageDelta { content: String },
    /// A worker retries a model call: drop the deltas received since the last
    /// `message.completed` (or the start); they are sent again.
    #[serde(rename = "message.reset")]
    MessageReset {},
    /// The assistant's message, stored.
    #[serde(rename = "message.completed")]
    MessageCompleted { message: Message },
    /// The model called a tool.
    #[serde(rename = "tool_call.created")]
    ToolCallCreated(ToolCallCreated),
    /// A tool call ended (its result is stored on the invocation).
    #[serde(rename = "tool_call.completed")]
    ToolCallCompleted(ToolCallCompleted),
    /// The run waits for a human: `run.required_input` says for what.
    #[serde(rename = "run.requires_input")]
    RunRequiresInput { run: Run },
    /// The human answered (or the input timeout did).
    #[serde(rename = "run.input_received")]
    RunInputReceived { run: Run, action: InputAction },
    #[serde(rename = "run.completed")]
    RunCompleted { run: Run },
    #[serde(rename = "run.failed")]
    RunFailed { run: Run },
    #[serde(rename = "run.cancelled")]
    RunCancelled { run: Run },
    /// The run made no progress for longer than its agent allows.
    #[serde(rename = "run.expired")]
    RunExpired { run: Run },
}

/// `tool_call.created`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ToolCallCreated {
    /// The invocation (`GET /v1/runs/{id}/tool-invocations`).
    pub id: InvocationId,
    /// The model's id of the call.
    pub call_id: String,
    /// The tool as the model named it.
    pub name: String,
    pub arguments: serde_json::Value,
}

/// `tool_call.completed`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ToolCallCompleted {
    pub id: InvocationId,
    pub call_id: String,
    pub name: String,
    pub is_error: bool,
    pub duration_ms: Option<i64>,
}

impl Event {
    /// A `message.delta`.
    pub fn delta(content: impl Into<String>) -> Self {
        Self::MessageDelta { content: content.into() }
    }

    /// The event of a run's end in `status` (None for a status that is not terminal).
    pub fn terminal(run: Run) -> Option<Self> {
        use crate::run::RunStatus as S;
        Some(match run.status {
            S::Completed => Self::RunCompleted { run },
            S::Failed => Self::RunFailed { run },
            S::Cancelled => Self::RunCancelled { run },
            S::Expired => Self::RunExpired { run },
            S::Queued | S::InProgress | S::RequiresInput => return None,
        })
    }

    /// Its kind.
    pub fn kind(&self) -> EventKind {
        match self {
            Self::RunQueued { .. } => EventKind::RunQueued,
            Self::RunStarted { .. } => EventKind::RunStarted,
            Self::MessageDelta { .. } => EventKind::MessageDelta,
            Self::MessageReset {} => EventKind::MessageReset,
            Self::MessageCompleted { .. } => EventKind::MessageCompleted,
            Self::ToolCallCreated(_) => EventKind::ToolCallCreated,
            Self::ToolCallCompleted(_) => EventKind::ToolCallCompleted,
            Self::RunRequiresInput { .. } => EventKind::RunRequiresInput,
            Self::RunInputReceived { .. } => EventKind::RunInputReceived,
            Self::RunCompleted { .. } => EventKind::RunCompleted,
            Self::RunFailed { .. } => EventKind::RunFailed,
            Self::RunCancelled { .. } => EventKind::RunCancelled,
            Self::RunExpired { .. } => EventKind::RunExpired,
        }
    }

    /// The run it carries, for the events that carry one.
    pub fn run(&self) -> Option<&Run> {
        match self {
            Self::RunQueued { run }
            | Self::RunStarted { run }
            | Self::RunRequiresInput { run }
            | Self::RunInputReceived { run, .. }
            | Self::RunCompleted { run }
            | Self::RunFailed { run }
            | Self::RunCancelled { run }
            | Self::RunExpired { run } => Some(run),
            _ => None,
        }
    }

    /// True for the event that ends a run's stream.
    pub fn is_terminal(&self) -> bool {
        self.kind().is_terminal()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_the_wire_names_agree() {
        for k in EventKind::ALL {
            assert_eq!(EventKind::parse(k.as_str()), Some(k));
        }
        let wire = serde_json::to_value(Event::delta("hi")).unwrap();
        assert_eq!(wire, serde_json::json!({"type": "message.delta", "data": {"content": "hi"}}));
        let reset: Event =
            serde_json::from_value(serde_json::json!({"type": "message.reset", "data": {}}))
                .unwrap();
        assert_eq!(reset.kind(), EventKind::MessageReset);
        assert_eq!(reset.kind().as_str(), "message.reset");
    }
}

/// An event of a workflow execution, published on `<p>.events.<org>.workflow.<execution>` and
/// sent over `GET /v1/workflows/executions/{id}/events`:
/// - `workflow.execution.<status>` (`queued`, `running`, `completed`, `failed`, `cancelled`):
///   `{execution_id, workflow_id, status, output, error}`;
/// - `workflow.step.<status>` (`running`, `waiting`, `retrying`, `completed`, `failed`,
///   `skipped`, `cancelled`): `{execution_id, step: {id, status, attempt, output, error,
///   skip_reason, run_id, started_at, completed_at, ...}}`.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct WorkflowEvent {
    #[serde(rename = "type")]
    pub kind: String,
    pub data: serde_json::Value,
}

impl WorkflowEvent {
    /// Whether it is an execution's last event (completed, failed or cancelled).
    pub fn is_terminal(kind: &str) -> bool {
        matches!(
            kind,
            "workflow.execution.completed"
                | "workflow.execution.failed"
                | "workflow.execution.cancelled"
        )
    }
}
