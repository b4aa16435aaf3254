//! Run statuses, multitask strategies, the run object as clients see it, and what a run waiting
//! for a human asks (`RequiredInput`) and is answered (`InputAnswer`).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{AgentId, InvocationId, RunId, ThreadId, UserId};

/// Where a run is in its life. `queued -> in_progress -> (requires_input) -> terminal`.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
    utoipa::ToSchema,
)]
#[cfg_attr(
    feature = "sqlx",
    derive(sqlx::Type),
    sqlx(type_name = "text", rename_all = "snake_case")
)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Queued,
    InProgress,
    RequiresInput,
    Completed,
    Failed,
    Cancelled,
    Expired,
}

impl RunStatus {
    /// All statuses, in lifecycle order.
    pub const ALL: [RunStatus; 7] = [
        Self::Queued,
        Self::InProgress,
        Self::RequiresInput,
        Self::Completed,
        Self::Failed,
        Self::Cancelled,
        Self::Expired,
    ];

    /// The name stored in Postgres and shown in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::InProgress => "in_progress",
            Self::RequiresInput => "requires_input",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
            Self::Expired => "expired",
        }
    }

    /// Parses the stored name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// A terminal run never changes again.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Cancelled | Self::Expired)
    }

    /// The statuses a run can still leave.
    pub const LIVE: [RunStatus; 3] = [Self::Queued, Self::InProgress, Self::RequiresInput];
}

impl std::fmt::Display for RunStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What happens when a run is posted to a thread that already has an active run.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
    utoipa::ToSchema,
)]
#[cfg_attr(
    feature = "sqlx",
    derive(sqlx::Type),
    sqlx(type_name = "text", rename_all = "snake_case")
)]
#[serde(rename_all = "snake_case")]
pub enum MultitaskStrategy {
    /// Wait for the active run (and any earlier queued ones) to finish.
    #[default]
    Enqueue,
    /// Answer 409.
    Reject,
    /// Cancel the active run and start this one.
    Interrupt,
}

impl MultitaskStrategy {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Enqueue => "enqueue",
            Self::Reject => "reject",
            Self::Interrupt => "interrupt",
        }
    }
}

/// How urgently a run's jobs are taken: workers pull `high` before `normal` before `low`.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
    utoipa::ToSchema,
)]
#[cfg_attr(
    feature = "sqlx",
    derive(sqlx::Type),
    sqlx(type_name = "text", rename_all = "snake_case")
)]
#[serde(rename_all = "snake_case")]
// Named apart from a ticket's priority (`TicketPriority`): a client generated from the OpenAPI
// document must not mistake one for the other.
#[schema(as = RunPriority)]
pub enum Priority {
    High,
    #[default]
    Normal,
    Low,
}

impl Priority {
    /// In the order workers take them.
    pub const ALL: [Priority; 3] = [Self::High, Self::Normal, Self::Low];

    /// The stored name (also the last token of the job subject).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::High => "high",
            Self::Normal => "normal",
            Self::Low => "low",
        }
    }
}

/// The final answer of a completed run.
#[derive(
    Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema, utoipa::ToSchema,
)]
pub struct RunOutput {
    pub content: String,
}

/// Token usage of a run (summed over its model turns).
#[derive(
    Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema, utoipa::ToSchema,
)]
pub struct Usage {
    #[serde(default)]
    pub prompt_tokens: u32,
    #[serde(default)]
    pub completion_tokens: u32,
    #[serde(default)]
    pub total_tokens: u32,
    /// True when the model server reported no usage and agentyard estimated it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub estimated: bool,
    /// The model alias the agent used (`primary`, `fast`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Estimated cost in USD, from the alias's price in `config/agents.yaml`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
}

/// Why a run failed.
#[derive(
    Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema, utoipa::ToSchema,
)]
pub struct RunError {
    /// Stable machine-readable code, e.g. `llm_unavailable`.
    pub code: String,
    pub message: String,
}

/// The run object of the public API. Postgres hands a run over as `to_jsonb(row)`: the fields
/// here are named like the columns, and the columns that are not part of the API (org,
/// step, scopes, ...) are ignored.
#[derive(
    Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema, utoipa::ToSchema,
)]
#[cfg_attr(feature = "sqlx", derive(sqlx::FromRow))]
pub struct Run {
    pub id: RunId,
    pub thread_id: ThreadId,
    pub agent_id: AgentId,
    /// The user the run was started for (the token's user); null for a token bound to no user.
    #[serde(default)]
    pub user_id: Option<UserId>,
    pub status: RunStatus,
    pub input: String,
    #[cfg_attr(feature = "sqlx", sqlx(json(nullable)))]
    pub output: Option<RunOutput>,
    #[cfg_attr(feature = "sqlx", sqlx(json))]
    pub tools_used: Vec<String>,
    #[cfg_attr(feature = "sqlx", sqlx(json(nullable)))]
    pub usage: Option<Usage>,
    #[cfg_attr(feature = "sqlx", sqlx(json(nullable)))]
    pub error: Option<RunError>,
    pub multitask_strategy: MultitaskStrategy,
    #[serde(default)]
    pub priority: Priority,
    /// While `requires_input`: what the run waits for; answer with `POST /v1/runs/{id}/input`.
    #[serde(default)]
    #[cfg_attr(feature = "sqlx", sqlx(json(nullable)))]
    pub required_input: Option<RequiredInput>,
    #[schema(value_type = Object)]
    pub metadata: serde_json::Value,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
}

/// Stable error codes a run can end with.
pub mod error_codes {
    /// The model server kept failing with transient errors until attempts ran out.
    pub const LLM_UNAVAILABLE: &str = "llm_unavailable";
    /// The model server rejected the request (a 4xx other than 429).
    pub const LLM_BAD_REQUEST: &str = "llm_bad_request";
    /// The job could not be processed within its delivery budget.
    pub const MAX_DELIVERIES: &str = "max_deliveries_exceeded";
    /// The run needed more model turns than its agent's `max_steps`.
    pub const MAX_STEPS: &str = "max_steps_exceeded";
    /// Cancelled by the API or by a newer run with `interrupt`.
    pub const CANCELLED: &str = "cancelled";
    /// The model's streamed answer ended without a finish reason (cut off, or an empty stream
    /// from an overflowing context), on every attempt.
    pub const LLM_INCOMPLETE: &str = "llm_incomplete_response";
    /// The run made no progress for longer than its agent allows (a lost job, a stuck worker).
    pub const RUN_EXPIRED: &str = "run_expired";
    /// Something of ours failed on every attempt (the log says what).
    pub const INTERNAL: &str = "internal_error";
}

/// What a run in `requires_input` waits for.
#[derive(
    Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema, utoipa::ToSchema,
)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RequiredInput {
    /// A tool's server asks the user for values (MCP elicitation): answer `accept` with
    /// `content` valid against `requested_schema`, `decline` or `cancel`.
    Elicitation {
        invocation_id: InvocationId,
        tool: String,
        message: String,
        #[schema(value_type = Object)]
        requested_schema: serde_json::Value,
    },
    /// A tool that needs a human's approval before it runs: answer `approve` or `deny`.
    ToolApproval {
        invocation_id: InvocationId,
        tool: String,
        #[schema(value_type = Object)]
        arguments: serde_json::Value,
        message: String,
    },
}

impl RequiredInput {
    /// The call that waits.
    pub fn invocation_id(&self) -> InvocationId {
        match self {
            Self::Elicitation { invocation_id, .. } | Self::ToolApproval { invocation_id, .. } => {
                *invocation_id
            }
        }
    }

    /// The actions an answer may take.
    pub fn actions(&self) -> &'static [InputAction] {
        match self {
            Self::Elicitation { .. } => {
                &[InputAction::Accept, InputAction::Decline, InputAction::Cancel]
            }
            Self::ToolApproval { .. } => &[InputAction::Approve, InputAction::Deny],
        }
    }

    /// `elicitation` or `tool_approval`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Elicitation { .. } => "elicitation",
            Self::ToolApproval { .. } => "tool_approval",
        }
    }

    /// The answer given when nobody answered in time: decline, or deny.
    pub fn timeout_answer(&self) -> InputAnswer {
        let action = match self {
            Self::Elicitation { .. } => InputAction::Decline,
            Self::ToolApproval { .. } => InputAction::Deny,
        };
        InputAnswer { action, content: None, timed_out: true }
    }
}

/// What a human (or the input timeout) answered.
#[derive(
    Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema, utoipa::ToSchema,
)]
pub struct InputAnswer {
    pub action: InputAction,
    /// With `accept`: the requested values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub content: Option<serde_json::Value>,
    /// True when nobody answered within `AY_INPUT_TIMEOUT`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub timed_out: bool,
}

/// An answer's action.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum InputAction {
    Accept,
    Decline,
    Cancel,
    Approve,
    Deny,
}

impl InputAction {
    /// The name in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Accept => "accept",
            Self::Decline => "decline",
            Self::Cancel => "cancel",
            Self::Approve => "approve",
            Self::Deny => "deny",
        }
    }
}
