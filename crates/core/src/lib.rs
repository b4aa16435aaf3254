//! The shared vocabulary of agentyard and its wire contract: typed ids, run states, scopes, the
//! built-in tools, the jobs and events on the bus with their payloads, the outbox facts Postgres
//! writes, and the JSON objects clients see. No I/O lives here, so every other crate can depend
//! on it.
//!
//! Layout:
//! - [`ids`]: uuid-v7 newtypes (`RunId`, `ThreadId`, `InvocationId`, ...).
//! - [`run`]: run statuses, strategies, priorities, the public run object, what a run waiting
//!   for a human asks and is answered.
//! - [`thread`]: threads and messages.
//! - [`scope`]: what a token may do.
//! - [`tools`]: the registry of built-in tools.
//! - [`jobs`]: the versioned job envelopes published on `<prefix>.jobs.*`.
//! - [`events`]: the events published on `<prefix>.events.<org>.run.<id>` and sent over SSE.
//! - [`heartbeat`]: what every process publishes to say it is alive.
//! - [`outbox`]: the facts transitions write for `bus` to publish.
//! - [`subjects`]: subject and stream names under a configurable prefix.
//! - [`storable`]: what Postgres can store and give back unchanged.
//! - [`sse`]: an incremental Server-Sent Events parser for clients (CLI, tests, bench).

pub mod events;
pub mod heartbeat;
pub mod ids;
pub mod jobs;
pub mod outbox;
pub mod run;
pub mod scope;
pub mod sse;
pub mod storable;
pub mod subjects;
pub mod thread;
pub mod tools;

pub use ids::{
    AgentId, ExecutionId, IntegrationId, InvocationId, McpServerId, MessageId, OrgId, RunId,
    TaskId, ThreadId, TicketId, TokenId, UserId, WorkflowId,
};
pub use scope::Scope;

/// One field's problem in a configuration or a definition (`steps[2].depends_on[0]: unknown
/// step "triage"`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    /// A problem of `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { field: field.into(), message: message.into() }
    }
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}
