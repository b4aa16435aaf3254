//! Outbox rows: the facts of one state transition, written in its transaction, published by
//! `bus` after commit and deleted once JetStream acked them. The relay reads rows a crash left
//! behind fact by fact, so one fact it cannot read is set aside (`outbox_rejects`) instead of
//! stopping the relay for everyone.

use agentyard_core::outbox::Fact;
use serde::Deserialize;

use crate::{Result, Store, StoreError};

/// The facts of one transition, in publish order.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct OutboxRow {
    pub id: i64,
    pub facts: Vec<Fact>,
}

/// A row as the relay reads it: each fact decoded on its own.
#[derive(Debug)]
pub struct StaleRow {
    pub id: i64,
    pub facts: Vec<Fact>,
    /// Facts that could not be read: (their text, why).
    pub unreadable: Vec<(String, String)>,
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
    pub async fn outbox_stale(&self, min_age_ms: i64, limit: i64) -> Result<Vec<StaleRow>> {
        // Each fact comes as its own text, so one that cannot be read spoils nothing else.
        let rows: Vec<(i64, String)> = sqlx::query_as(
            "SELECT o.id, f.fact::text FROM \
               (SELECT id, facts FROM outbox \
                WHERE created_at < clock_timestamp() - make_interval(secs => $1::float8 / 1000) \
                ORDER BY id LIMIT $2) o, \
               jsonb_array_elements(o.facts) WITH ORDINALITY f(fact, n) \
             ORDER BY o.id, f.n",
        )
        .bind(min_age_ms)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| StoreError::db("outbox_stale", e))?;
        let mut out: Vec<StaleRow> = Vec::new();
        for (id, text) in rows {
            if out.last().is_none_or(|r| r.id != id) {
                out.push(StaleRow { id, facts: Vec::new(), unreadable: Vec::new() });
            }
            let row = out.last_mut().expect("pushed above");
            match serde_json::from_str::<Fact>(&text) {
                Ok(f) => row.facts.push(f),
                Err(e) => row.unreadable.push((text, e.to_string())),
            }
        }
        Ok(out)
    }

    /// Sets aside facts of row `id` that cannot be read, with why.
    ///
    /// # Errors
    /// Database failures.
    pub async fn outbox_reject(&self, id: i64, unreadable: &[(String, String)]) -> Result<()> {
        for (fact, error) in unreadable {
            sqlx::query("INSERT INTO outbox_rejects(outbox_id, fact, error) VALUES ($1, $2, $3)")
                .bind(id)
                .bind(fact)
                .bind(error)
                .execute(&self.pool)
                .await
                .map_err(|e| StoreError::db("outbox_reject", e))?;
        }
        Ok(())
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
        // commit need not wait for the WAL flush. The ids come as an array: planned once
        // (`Store::generic_pool`).
        sqlx::query(
            "DELETE FROM outbox WHERE id = ANY($1) \
             AND (SELECT set_config('synchronous_commit', 'off', true)) IS NOT NULL",
        )
        .bind(ids)
        .execute(&self.generic)
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
