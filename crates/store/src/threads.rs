//! Threads and their messages.

use agentyard_core::{MessageId, OrgId, RunId, ThreadId};
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::FromRow;

use crate::{Result, Store, StoreError};

/// A thread as clients see it.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Thread {
    pub id: ThreadId,
    pub created_at: DateTime<Utc>,
    #[schema(value_type = Object)]
    pub metadata: serde_json::Value,
}

/// A message as clients see it.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Message {
    pub id: MessageId,
    pub thread_id: ThreadId,
    pub run_id: Option<RunId>,
    pub seq: i64,
    pub role: String,
    pub content: String,
    pub created_at: DateTime<Utc>,
}

#[derive(FromRow)]
struct ThreadRow {
    id: uuid::Uuid,
    created_at: DateTime<Utc>,
    metadata: serde_json::Value,
}

#[derive(FromRow)]
struct MessageRow {
    id: uuid::Uuid,
    thread_id: uuid::Uuid,
    run_id: Option<uuid::Uuid>,
    seq: i64,
    role: String,
    content: String,
    created_at: DateTime<Utc>,
}

impl From<ThreadRow> for Thread {
    fn from(r: ThreadRow) -> Self {
        Self { id: ThreadId(r.id), created_at: r.created_at, metadata: r.metadata }
    }
}

impl From<MessageRow> for Message {
    fn from(r: MessageRow) -> Self {
        Self {
            id: MessageId(r.id),
            thread_id: ThreadId(r.thread_id),
            run_id: r.run_id.map(RunId),
            seq: r.seq,
            role: r.role,
            content: r.content,
            created_at: r.created_at,
        }
    }
}

impl Store {
    /// Creates an empty thread.
    ///
    /// # Errors
    /// Database failures.
    pub async fn create_thread(&self, org: OrgId, metadata: &serde_json::Value) -> Result<Thread> {
        sqlx::query_as::<_, ThreadRow>(
            "INSERT INTO threads(id, org_id, metadata) VALUES ($1, $2, $3) \
             RETURNING id, created_at, metadata",
        )
        .bind(ThreadId::new().0)
        .bind(org.0)
        .bind(metadata)
        .fetch_one(&self.pool)
        .await
        .map(Thread::from)
        .map_err(|e| StoreError::db("create_thread", e))
    }

    /// A thread of `org`, or None (also for another org's thread).
    ///
    /// # Errors
    /// Database failures.
    pub async fn get_thread(&self, org: OrgId, id: ThreadId) -> Result<Option<Thread>> {
        sqlx::query_as::<_, ThreadRow>(
            "SELECT id, created_at, metadata FROM threads WHERE id = $1 AND org_id = $2",
        )
        .bind(id.0)
        .bind(org.0)
        .fetch_optional(&self.pool)
        .await
        .map(|r| r.map(Thread::from))
        .map_err(|e| StoreError::db("get_thread", e))
    }

    /// Up to `limit` messages of a thread with `seq > after`, oldest first.
    ///
    /// # Errors
    /// Database failures.
    pub async fn list_messages(
        &self,
        org: OrgId,
        thread: ThreadId,
        after: i64,
        limit: i64,
    ) -> Result<Vec<Message>> {
        sqlx::query_as::<_, MessageRow>(
            "SELECT id, thread_id, run_id, seq, role, content, created_at FROM messages \
             WHERE thread_id = $1 AND org_id = $2 AND seq > $3 ORDER BY seq LIMIT $4",
        )
        .bind(thread.0)
        .bind(org.0)
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map(|rows| rows.into_iter().map(Message::from).collect())
        .map_err(|e| StoreError::db("list_messages", e))
    }
}
