//! The shared vocabulary of agentyard: typed ids, run states, bus envelopes and the JSON views
//! clients see. No I/O lives here, so every other crate can depend on it.
//!
//! Layout:
//! - [`ids`]: uuid-v7 newtypes (`RunId`, `ThreadId`, ...).
//! - [`run`]: run statuses, multitask strategies and the public run object.
//! - [`jobs`]: the versioned job envelopes published on `<prefix>.jobs.*`.
//! - [`events`]: the run events published on `<prefix>.events.run.<id>` and sent over SSE.
//! - [`sse`]: an incremental Server-Sent Events parser for clients (CLI, tests, bench).
//! - [`subjects`]: subject and stream names under a configurable prefix.

pub mod events;
pub mod ids;
pub mod jobs;
pub mod run;
pub mod sse;
pub mod subjects;

pub use ids::{AgentId, MessageId, OrgId, RunId, ThreadId, TokenId, UserId};
