//! Run events, published on `<prefix>.events.run.<run_id>` and streamed to clients over SSE.
//! The SSE `id:` of an event is its sequence number in the `EVENTS` stream.

use serde::{Deserialize, Serialize};

use crate::run::Run;

/// Event type names (the SSE `event:` field and the `type` of the envelope).
pub mod kinds {
    pub const RUN_QUEUED: &str = "run.queued";
    pub const RUN_STARTED: &str = "run.started";
    pub const MESSAGE_DELTA: &str = "message.delta";
    /// A worker retrying a step after a crash or a transient error: drop the deltas received
    /// since the last `message.completed` (or since the start), they will be sent again.
    pub const MESSAGE_RESET: &str = "message.reset";
    pub const MESSAGE_COMPLETED: &str = "message.completed";
    pub const RUN_COMPLETED: &str = "run.completed";
    pub const RUN_FAILED: &str = "run.failed";
    pub const RUN_CANCELLED: &str = "run.cancelled";
    pub const RUN_EXPIRED: &str = "run.expired";
}

/// One event: its type and its data (the SSE `data:` field).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RunEvent {
    /// One of [`kinds`].
    #[serde(rename = "type")]
    pub kind: String,
    /// The event's data: `{run}`, `{content}`, `{message}` or `{}`.
    pub data: serde_json::Value,
}

impl RunEvent {
    /// An event carrying the whole run (`run.*`).
    pub fn with_run(kind: &str, run: &Run) -> Self {
        Self { kind: kind.to_owned(), data: serde_json::json!({ "run": run }) }
    }

    /// A `message.delta` with a piece of the answer.
    pub fn delta(content: &str) -> Self {
        Self {
            kind: kinds::MESSAGE_DELTA.to_owned(),
            data: serde_json::json!({ "content": content }),
        }
    }

    /// True for the event that ends a run's stream.
    pub fn is_terminal(&self) -> bool {
        is_terminal_kind(&self.kind)
    }
}

/// True for `run.completed`, `run.failed`, `run.cancelled` and `run.expired`.
pub fn is_terminal_kind(kind: &str) -> bool {
    matches!(
        kind,
        kinds::RUN_COMPLETED | kinds::RUN_FAILED | kinds::RUN_CANCELLED | kinds::RUN_EXPIRED
    )
}
