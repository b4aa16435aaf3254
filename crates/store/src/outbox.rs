//! Outbox rows: the jobs and durable events of one state transition, written in its
//! transaction, published after commit, deleted once JetStream acked them.

use serde::Deserialize;
use sqlx::FromRow;

use crate::{Result, Store, StoreError};

/// One message to publish.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct OutboxMessage {
    pub subject: String,
    /// JetStream `Nats-Msg-Id`, so a re-publish is dropped as a duplicate.
    pub msg_id: String,
    pub payload: serde_json::Value,
}

/// The messages of one transition, in publish order.
#[derive(Clone, Debug, PartialEq, Deserialize, FromRow)]
pub struct OutboxRow {
    pub id: i64,
    #[sqlx(json)]
    pub messages: Vec<OutboxMessage>,
}

pub(crate) fn decode_rows(op: &'static str, v: &serde_json::Value) -> Result<Vec<OutboxRow>> {
    match v {
        serde_json::Value::Null => Ok(Vec::new()),
        v => serde_json::from_value(v.clone())
            .map_err(|e| StoreError::Decode { op, detail: e.to_string() }),
    }
}

impl Store {
    /// Rows older than `min_age_ms` that nobody deleted: their publisher crashed or failed.
    /// Two relays may read the same rows; JetStream drops the second publish by its msg id.
    ///
    /// # Errors
    /// Database failures.
    pub async fn outbox_stale(&self, min_age_ms: i64, limit: i64) -> Result<Vec<OutboxRow>> {
        sqlx::query_as(
            "SELECT id, messages FROM outbox \
             WHERE created_at < clock_timestamp() - make_interval(secs => $1::float8 / 1000) \
             ORDER BY id LIMIT $2",
        )
        .bind(min_age_ms)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| StoreError::db("outbox_stale", e))
    }

    /// Deletes published rows.
    ///
    /// # Errors
    /// Database failures.
    pub async fn outbox_delete(&self, ids: &[i64]) -> Result<u64> {
        if ids.is_empty() {
            return Ok(0);
        }
        // A lost delete only means one more (deduplicated) publish by the relay, so this
        // commit need not wait for the WAL flush.
        sqlx::query(
            "DELETE FROM outbox WHERE id = ANY($1) \
             AND (SELECT set_config('synchronous_commit', 'off', true)) IS NOT NULL",
        )
        .bind(ids)
        .execute(&self.pool)
        .await
        .map(|r| r.rows_affected())
        .map_err(|e| StoreError::db("outbox_delete", e))
    }

    /// How many rows wait (for tests and health).
    ///
    /// # Errors
    /// Database failures.
    pub async fn outbox_len(&self) -> Result<i64> {
        sqlx::query_scalar("SELECT count(*) FROM outbox")
            .fetch_one(&self.pool)
            .await
            .map_err(|e| StoreError::db("outbox_len", e))
    }
}
