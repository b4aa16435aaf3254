//! Threads and their messages as clients see them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{MessageId, RunId, ThreadId, UserId};

/// A conversation.
#[derive(
    Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema, utoipa::ToSchema,
)]
#[cfg_attr(feature = "sqlx", derive(sqlx::FromRow))]
pub struct Thread {
    pub id: ThreadId,
    /// The user who created the thread; null for a token bound to no user. A user-bound token
    /// without `org:admin` sees only its user's threads.
    #[serde(default)]
    pub user_id: Option<UserId>,
    pub created_at: DateTime<Utc>,
    #[schema(value_type = Object)]
    pub metadata: serde_json::Value,
}

/// Who wrote a message.
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
#[cfg_attr(
    feature = "sqlx",
    derive(sqlx::Type),
    sqlx(type_name = "text", rename_all = "snake_case")
)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    System,
    User,
    Assistant,
    Tool,
}

/// A message of a thread. Postgres hands one over as `to_jsonb(row)`; columns that are not part
/// of the API are ignored.
#[derive(
    Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema, utoipa::ToSchema,
)]
#[cfg_attr(feature = "sqlx", derive(sqlx::FromRow))]
pub struct Message {
    pub id: MessageId,
    pub thread_id: ThreadId,
    pub run_id: Option<RunId>,
    /// Its position in the thread, from 1.
    pub seq: i64,
    pub role: Role,
    pub content: String,
    pub created_at: DateTime<Utc>,
}
