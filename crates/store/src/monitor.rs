//! What the monitor keeps (migrations/0006_monitor.sql): instances by their heartbeats, and
//! each time one came up or went down. Every write is a conditional transition, so several
//! monitors recording the same heartbeats count each change once.

use agentyard_core::heartbeat::Heartbeat;
use chrono::{DateTime, Utc};
use sqlx::FromRow;

use crate::{Result, Store, StoreError};

/// An instance as the monitor last saw it.
#[derive(Clone, Debug, FromRow, serde::Serialize, utoipa::ToSchema)]
pub struct InstanceRow {
    pub id: String,
    pub role: String,
    pub version: String,
    pub host: String,
    pub pid: i32,
    pub started_at: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
    pub every_ms: i32,
    pub capacity: Option<i64>,
    /// Jobs it ran at its last heartbeat.
    pub in_flight: Option<i64>,
    /// `up` or `down`.
    pub status: String,
    pub status_since: DateTime<Utc>,
    /// Where it serves `GET /metrics`.
    pub metrics_addr: Option<String>,
}

impl Store {
    /// Records a heartbeat: a new instance, or one heard from again, is up (an `up` event is
    /// written when it was not up before).
    ///
    /// # Errors
    /// Database failures.
    pub async fn record_heartbeat(&self, hb: &Heartbeat) -> Result<()> {
        let every = i32::try_from(hb.every_ms).unwrap_or(i32::MAX);
        let capacity = hb.capacity.and_then(|c| i64::try_from(c).ok());
        let in_flight = hb.in_flight.and_then(|c| i64::try_from(c).ok());
        sqlx::query(
            "WITH prev AS (SELECT status FROM instances WHERE id = $1), \
             up AS (INSERT INTO instances(id, role, version, host, pid, started_at, last_seen, \
                        every_ms, capacity, in_flight, status, status_since, metrics_addr) \
                    VALUES ($1, $2, $3, $4, $5, $6, clock_timestamp(), $7, $8, $9, 'up', \
                        clock_timestamp(), $10) \
                    ON CONFLICT (id) DO UPDATE SET last_seen = clock_timestamp(), \
                        capacity = EXCLUDED.capacity, in_flight = EXCLUDED.in_flight, status = 'up', \
                        metrics_addr = EXCLUDED.metrics_addr, \
                        status_since = CASE WHEN instances.status = 'up' \
                            THEN instances.status_since ELSE clock_timestamp() END \
                    RETURNING id, role) \
             INSERT INTO instance_events(instance_id, role, status, at) \
             SELECT id, role, 'up', clock_timestamp() FROM up \
             WHERE NOT EXISTS (SELECT 1 FROM prev WHERE status = 'up')",
        )
        .bind(&hb.instance_id)
        .bind(&hb.role)
        .bind(&hb.version)
        .bind(&hb.host)
        .bind(i32::try_from(hb.pid).unwrap_or(i32::MAX))
        .bind(hb.started_at)
        .bind(every)
        .bind(capacity)
        .bind(in_flight)
        .bind(&hb.metrics_addr)
        .execute(&self.pool)
        .await
        .map_err(|e| StoreError::db("record_heartbeat", e))?;
        Ok(())
    }

    /// Marks down the instances silent for three of their heartbeats; returns them.
    ///
    /// # Errors
    /// Database failures.
    pub async fn mark_silent_down(&self) -> Result<Vec<InstanceRow>> {
        sqlx::query_as(
            "WITH down AS (UPDATE instances SET status = 'down', status_since = clock_timestamp() \
                WHERE status = 'up' \
                  AND last_seen < clock_timestamp() - make_interval(secs => every_ms * 3 / 1000.0) \
                RETURNING *), \
             ev AS (INSERT INTO instance_events(instance_id, role, status, at) \
                SELECT id, role, 'down', status_since FROM down) \
             SELECT * FROM down",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(|e| StoreError::db("mark_silent_down", e))
    }

    /// Every instance seen since `since` (up ones, and those down since then), newest first.
    ///
    /// # Errors
    /// Database failures.
    pub async fn instances(&self, since: DateTime<Utc>) -> Result<Vec<InstanceRow>> {
        sqlx::query_as(
            "SELECT * FROM instances WHERE status = 'up' OR status_since >= $1 \
             ORDER BY role, started_at DESC",
        )
        .bind(since)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| StoreError::db("instances", e))
    }

    /// Every up and down up to now, oldest first: (instance, role, status, at).
    ///
    /// # Errors
    /// Database failures.
    pub async fn instance_events(&self) -> Result<Vec<(String, String, String, DateTime<Utc>)>> {
        sqlx::query_as("SELECT instance_id, role, status, at FROM instance_events ORDER BY at, id")
            .fetch_all(&self.pool)
            .await
            .map_err(|e| StoreError::db("instance_events", e))
    }
}
