//! Run statuses, multitask strategies and the run object as clients see it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{AgentId, RunId, ThreadId};

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
}

/// What happens when a run is posted to a thread that already has an active run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
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
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
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
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RunOutput {
    pub content: String,
}

/// Token usage of a run (summed over its model turns).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Usage {
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
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
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RunError {
    /// Stable machine-readable code, e.g. `llm_unavailable`.
    pub code: String,
    pub message: String,
}

/// The run object of the public API.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Run {
    pub id: RunId,
    pub thread_id: ThreadId,
    pub agent_id: AgentId,
    pub status: RunStatus,
    pub input: String,
    pub output: Option<RunOutput>,
    pub tools_used: Vec<String>,
    pub usage: Option<Usage>,
    pub error: Option<RunError>,
    pub multitask_strategy: MultitaskStrategy,
    #[serde(default)]
    pub priority: Priority,
    /// While `requires_input`: what the run waits for (`{kind: "elicitation" | "tool_approval",
    /// invocation_id, ...}`); answer with `POST /v1/runs/{id}/input`.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub required_input: Option<serde_json::Value>,
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
}
