//! Threads and their messages.

use agentyard_core::thread::{Message, Thread};
use agentyard_core::{OrgId, ThreadId, UserId};

use crate::{Result, Store, StoreError};

impl Store {
    /// Creates an empty thread of `user`.
    ///
    /// # Errors
    /// Database failures.
    pub async fn create_thread(
        &self,
        org: OrgId,
        user: Option<UserId>,
        metadata: &serde_json::Value,
    ) -> Result<Thread> {
        sqlx::query_as(
            "INSERT INTO threads(id, org_id, user_id, metadata) VALUES ($1, $2, $3, $4) \
             RETURNING id, user_id, created_at, metadata",
        )
        .bind(ThreadId::new())
        .bind(org)
        .bind(user)
        .bind(metadata)
        .fetch_one(&self.pool)
        .await
        .map_err(|e| StoreError::db("create_thread", e))
    }

    /// A thread of `org`, or None (also for another org's thread).
    ///
    /// # Errors
    /// Database failures.
    pub async fn get_thread(&self, org: OrgId, id: ThreadId) -> Result<Option<Thread>> {
        sqlx::query_as(
            "SELECT id, user_id, created_at, metadata FROM threads WHERE id = $1 AND org_id = $2",
        )
        .bind(id)
        .bind(org)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| StoreError::db("get_thread", e))
    }

    /// Up to `limit` threads of `org` (only `user`'s when given), newest first, older than
    /// `before` when given (ids are uuid v7: they sort by creation).
    ///
    /// # Errors
    /// Database failures.
    pub async fn list_threads(
        &self,
        org: OrgId,
        user: Option<UserId>,
        before: Option<ThreadId>,
        limit: i64,
    ) -> Result<Vec<Thread>> {
        sqlx::query_as(
            "SELECT id, user_id, created_at, metadata FROM threads WHERE org_id = $1 \
             AND ($2::uuid IS NULL OR id < $2) AND ($4::uuid IS NULL OR user_id = $4) \
             ORDER BY id DESC LIMIT $3",
        )
        .bind(org)
        .bind(before)
        .bind(limit)
        .bind(user)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| StoreError::db("list_threads", e))
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
        sqlx::query_as(
            "SELECT id, thread_id, run_id, seq, role, content, created_at FROM messages \
             WHERE thread_id = $1 AND org_id = $2 AND seq > $3 ORDER BY seq LIMIT $4",
        )
        .bind(thread)
        .bind(org)
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| StoreError::db("list_messages", e))
    }
}
