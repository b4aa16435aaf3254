//! Domain errors: what went wrong, in the platform's terms, with a stable code. The API maps
//! each kind to an HTTP status; other callers (the orchestrator, the CLI) match on the kind.

use agentyard_agents::FieldError;

/// The kind of thing that was not found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Entity {
    Run,
    Thread,
    Agent,
    McpServer,
    Organization,
    User,
    Token,
    Integration,
    Workflow,
    Execution,
    Hook,
    Alert,
    DeadLetter,
}

impl Entity {
    /// The error code of "not found" (`run_not_found`, ...).
    pub const fn not_found_code(self) -> &'static str {
        match self {
            Self::Run => "run_not_found",
            Self::Thread => "thread_not_found",
            Self::Agent => "agent_not_found",
            Self::McpServer => "server_not_found",
            Self::Organization => "organization_not_found",
            Self::User => "user_not_found",
            Self::Token => "token_not_found",
            Self::Integration => "integration_not_found",
            Self::Workflow => "workflow_not_found",
            Self::Execution => "execution_not_found",
            Self::Hook => "hook_not_found",
            Self::Alert => "alert_not_found",
            Self::DeadLetter => "dead_letter_not_found",
        }
    }

    /// Its name in messages.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Run => "run",
            Self::Thread => "thread",
            Self::Agent => "agent",
            Self::McpServer => "MCP server",
            Self::Organization => "organization",
            Self::User => "user",
            Self::Token => "token",
            Self::Integration => "integration",
            Self::Workflow => "workflow",
            Self::Execution => "workflow execution",
            Self::Hook => "webhook",
            Self::Alert => "alert",
            Self::DeadLetter => "dead letter",
        }
    }
}

/// What went wrong.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No such thing in the caller's organization (or one of another organization).
    #[error("{} not found", .0.name())]
    NotFound(Entity),
    /// The request is well-formed but a value is wrong; `fields` names every bad field when
    /// there are several.
    #[error("{message}")]
    Invalid { code: &'static str, message: String, fields: Vec<FieldError> },
    /// A value is larger than allowed.
    #[error("{0}")]
    TooLarge(String),
    /// A query parameter is not a number or outside its range (`limit`, `after`); the message
    /// names it.
    #[error("{0}")]
    BadQuery(String),
    /// The request conflicts with the current state (`thread_busy`, `agent_inactive`, ...).
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    /// The request is not authenticated (a webhook's bad or stale signature).
    #[error("{0}")]
    Unauthorized(String),
    /// The caller may not do this (a scope it lacks or cannot grant).
    #[error("{0}")]
    Forbidden(String),
    /// A limit was reached; try again after `retry_after_secs`.
    #[error("{message}")]
    Limited { code: &'static str, message: String, retry_after_secs: u64 },
    /// A dependency (Postgres, NATS) is unavailable for now.
    #[error("{0} unavailable")]
    Unavailable(&'static str),
    /// A bug or an unexpected failure; the cause is logged by whoever reports it.
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl Error {
    /// A 422-like error on one value.
    pub fn invalid(code: &'static str, message: impl Into<String>) -> Self {
        Self::Invalid { code, message: message.into(), fields: Vec::new() }
    }

    /// A rejected configuration naming every bad field.
    pub fn fields(code: &'static str, fields: Vec<FieldError>) -> Self {
        let message = fields.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ");
        Self::Invalid { code, message, fields }
    }

    /// A conflict with the current state.
    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::Conflict { code, message: message.into() }
    }

    /// The stable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotFound(e) => e.not_found_code(),
            Self::Invalid { code, .. }
            | Self::Conflict { code, .. }
            | Self::Limited { code, .. } => code,
            Self::TooLarge(_) => "input_too_large",
            Self::BadQuery(_) => "invalid_query",
            Self::Forbidden(_) => "insufficient_scope",
            Self::Unauthorized(_) => "invalid_signature",
            Self::Unavailable(_) => "unavailable",
            Self::Internal(_) => "internal_error",
        }
    }
}

impl From<agentyard_store::StoreError> for Error {
    fn from(e: agentyard_store::StoreError) -> Self {
        if e.is_transient() {
            tracing::warn!(error = %e, cause = %cause_chain(&e), "database unavailable");
            return Self::Unavailable("database");
        }
        Self::Internal(Box::new(e))
    }
}

impl From<agentyard_bus::BusError> for Error {
    fn from(e: agentyard_bus::BusError) -> Self {
        tracing::warn!(error = %e, cause = %cause_chain(&e), "message bus unavailable");
        Self::Unavailable("message bus")
    }
}

impl From<agentyard_core::storable::NotStorable> for Error {
    fn from(e: agentyard_core::storable::NotStorable) -> Self {
        Self::invalid("invalid_value", e.to_string())
    }
}

/// `err` and its sources, joined by `: ` (what a log line needs to say what failed).
pub fn cause_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut chain = err.to_string();
    let mut src = err.source();
    while let Some(s) = src {
        chain.push_str(": ");
        chain.push_str(&s.to_string());
        src = s.source();
    }
    chain
}

/// Shorthand.
pub type Result<T, E = Error> = std::result::Result<T, E>;
