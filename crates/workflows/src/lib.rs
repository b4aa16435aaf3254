//! Workflows as data: definitions (YAML templates in `config/workflows/`, JSON through the
//! API), their validation, conditions and templates, cron schedules, and the execution state
//! machine. No I/O: the orchestrator (`workers/orchestrator`) stores the state and carries out
//! the effects.
//!
//! Layout:
//! - [`def`]: the definition types (`schemas/workflow.v1.json`), parsing with the path of each
//!   problem, and every check a definition must pass.
//! - [`expr`]: CEL conditions and `{{ }}` templates over `inputs` and `steps`.
//! - [`inputs`]: the inputs JSON Schema.
//! - [`schedule`]: cron expressions in a time zone.
//! - [`engine`]: what is ready, skipped, retried, timed out; when an execution ends.
//! - [`templates`]: the built-in templates (`config/workflows/`).
//! - [`duration`]: `30s`, `5m`, ...

pub mod def;
pub mod duration;
pub mod engine;
pub mod expr;
pub mod inputs;
pub mod schedule;
pub mod templates;

#[cfg(test)]
mod tests;

pub use def::{Definition, Known, Workflow};
pub use engine::{Effect, ExecState, ExecStatus, Launch, StepError, StepState, StepStatus};
pub use templates::Templates;
