//! What the monitor measures (migrations/0007_monitor_series.sql): its lease, its place in the
//! event stream, time-bucketed series and the probes of dependencies.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::FromRow;
use uuid::Uuid;

use crate::{Result, Store, StoreError};

/// Observations of one series in one bucket, summed.
#[derive(Clone, Debug, PartialEq)]
pub struct BucketAdd {
    pub metric: String,
    pub step_secs: i32,
    pub bucket: DateTime<Utc>,
    /// The nil uuid for platform-wide series.
    pub org_id: Uuid,
    pub key: String,
    pub count: i64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
    pub hist: Option<Vec<i64>>,
}

/// A stored bucket of a series.
#[derive(Clone, Debug, PartialEq, FromRow)]
pub struct BucketRow {
    pub bucket: DateTime<Utc>,
    pub org_id: Uuid,
    pub key: String,
    pub count: i64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
    pub hist: Option<Vec<i64>>,
}

/// A probe's outcome.
#[derive(Clone, Debug, PartialEq)]
pub struct ProbeResult {
    /// `postgres`, `nats`, `model:<alias>`, `mcp:<server>`.
    pub name: String,
    /// `postgres`, `nats`, `model`, `mcp`.
    pub kind: String,
    /// The organization whose server it is.
    pub org_id: Option<Uuid>,
    /// What people call it (a server's name, a model alias).
    pub label: String,
    pub up: bool,
    pub at: DateTime<Utc>,
    pub latency_ms: Option<f64>,
    pub error: Option<String>,
}

/// A probe as last seen.
#[derive(Clone, Debug, PartialEq, FromRow, serde::Serialize, utoipa::ToSchema)]
pub struct ProbeRow {
    pub name: String,
    pub kind: String,
    pub org_id: Option<Uuid>,
    pub label: String,
    /// `up` or `down`.
    pub status: String,
    pub status_since: DateTime<Utc>,
    pub checked_at: DateTime<Utc>,
    pub latency_ms: Option<f64>,
    pub error: Option<String>,
}

fn db(op: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |e| StoreError::db(op, e)
}

impl Store {
    /// Takes or renews the lease `name` for `holder` for `ttl`; false while another holds it.
    ///
    /// # Errors
    /// Database failures.
    pub async fn claim_lease(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool> {
        let row: Option<(String,)> = sqlx::query_as(
            "INSERT INTO monitor_leases(name, holder, until) \
             VALUES ($1, $2, clock_timestamp() + make_interval(secs => $3)) \
             ON CONFLICT (name) DO UPDATE SET holder = EXCLUDED.holder, until = EXCLUDED.until \
             WHERE monitor_leases.holder = EXCLUDED.holder \
                OR monitor_leases.until < clock_timestamp() \
             RETURNING holder",
        )
        .bind(name)
        .bind(holder)
        .bind(ttl.as_secs_f64())
        .fetch_optional(&self.pool)
        .await
        .map_err(db("claim_lease"))?;
        Ok(row.is_some())
    }

    /// Gives the lease up, so a standby takes over at once.
    ///
    /// # Errors
    /// Database failures.
    pub async fn release_lease(&self, name: &str, holder: &str) -> Result<()> {
        sqlx::query("DELETE FROM monitor_leases WHERE name = $1 AND holder = $2")
            .bind(name)
            .bind(holder)
            .execute(&self.pool)
            .await
            .map_err(db("release_lease"))?;
        Ok(())
    }

    /// The position under `name`: (the last event sequence counted, the sequence to read
    /// again from after a restart).
    ///
    /// # Errors
    /// Database failures.
    pub async fn monitor_position(&self, name: &str) -> Result<Option<(u64, u64)>> {
        let row: Option<(i64, i64)> =
            sqlx::query_as("SELECT seq, rewind FROM monitor_positions WHERE name = $1")
                .bind(name)
                .fetch_optional(&self.pool)
                .await
                .map_err(db("monitor_position"))?;
        let u = |v: i64| u64::try_from(v).unwrap_or(0);
        Ok(row.map(|(s, r)| (u(s), u(r))))
    }

    /// Adds `rows` to the series and, in the same transaction, moves the position `(seq,
    /// rewind)` of the lease `name` held by `holder`. False (nothing written) when `holder` no longer
    /// holds the lease: a monitor that lost it never counts what its successor counts.
    ///
    /// # Errors
    /// Database failures.
    pub async fn add_buckets(
        &self,
        lease: (&str, &str),
        position: Option<(u64, u64)>,
        rows: &[BucketAdd],
    ) -> Result<bool> {
        let mut tx = self.pool.begin().await.map_err(db("add_buckets.begin"))?;
        let held: Option<(bool,)> = sqlx::query_as(
            "SELECT until > clock_timestamp() FROM monitor_leases \
             WHERE name = $1 AND holder = $2 FOR SHARE",
        )
        .bind(lease.0)
        .bind(lease.1)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db("add_buckets.lease"))?;
        if held != Some((true,)) {
            return Ok(false);
        }
        if !rows.is_empty() {
            let hist: Vec<Option<String>> = rows
                .iter()
                .map(|r| {
                    r.hist.as_ref().map(|h| {
                        let parts: Vec<String> = h.iter().map(i64::to_string).collect();
                        format!("{{{}}}", parts.join(","))
                    })
                })
                .collect();
            sqlx::query("SELECT ay_add_buckets($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)")
                .bind(rows.iter().map(|r| r.metric.as_str()).collect::<Vec<_>>())
                .bind(rows.iter().map(|r| r.step_secs).collect::<Vec<_>>())
                .bind(rows.iter().map(|r| r.bucket).collect::<Vec<_>>())
                .bind(rows.iter().map(|r| r.org_id).collect::<Vec<_>>())
                .bind(rows.iter().map(|r| r.key.as_str()).collect::<Vec<_>>())
                .bind(rows.iter().map(|r| r.count).collect::<Vec<_>>())
                .bind(rows.iter().map(|r| r.sum).collect::<Vec<_>>())
                .bind(rows.iter().map(|r| r.min).collect::<Vec<_>>())
                .bind(rows.iter().map(|r| r.max).collect::<Vec<_>>())
                .bind(hist)
                .execute(&mut *tx)
                .await
                .map_err(db("add_buckets"))?;
        }
        if let Some((seq, rewind)) = position {
            sqlx::query(
                "INSERT INTO monitor_positions(name, seq, rewind) VALUES ($1, $2, $3) \
                 ON CONFLICT (name) DO UPDATE SET seq = EXCLUDED.seq, rewind = EXCLUDED.rewind",
            )
            .bind(lease.0)
            .bind(i64::try_from(seq).unwrap_or(i64::MAX))
            .bind(i64::try_from(rewind).unwrap_or(i64::MAX))
            .execute(&mut *tx)
            .await
            .map_err(db("add_buckets.position"))?;
        }
        tx.commit().await.map_err(db("add_buckets.commit"))?;
        Ok(true)
    }

    /// The buckets of `metric` at `step_secs` in `[since, until)`, of one organization or (None)
    /// of all, oldest first.
    ///
    /// # Errors
    /// Database failures.
    pub async fn buckets(
        &self,
        metric: &str,
        step_secs: i32,
        org: Option<Uuid>,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Vec<BucketRow>> {
        sqlx::query_as(
            "SELECT bucket, org_id, key, count, sum, min, max, hist FROM metric_buckets \
             WHERE metric = $1 AND step_secs = $2 AND bucket >= $3 AND bucket < $4 \
               AND ($5::uuid IS NULL OR org_id = $5) \
             ORDER BY bucket",
        )
        .bind(metric)
        .bind(step_secs)
        .bind(since)
        .bind(until)
        .bind(org)
        .fetch_all(&self.pool)
        .await
        .map_err(db("buckets"))
    }

    /// Drops minute buckets older than a day, hour buckets and ups and downs older than a week
    /// (and a margin), and resolved alerts older than 30 days; returns the rows dropped.
    ///
    /// # Errors
    /// Database failures.
    pub async fn prune_monitoring(&self) -> Result<u64> {
        let mut dropped = 0;
        for sql in [
            "DELETE FROM metric_buckets WHERE step_secs = 60 \
                AND bucket < clock_timestamp() - interval '25 hours'",
            "DELETE FROM metric_buckets WHERE step_secs = 3600 \
                AND bucket < clock_timestamp() - interval '8 days'",
            "DELETE FROM probe_events WHERE at < clock_timestamp() - interval '8 days'",
            "DELETE FROM instance_events WHERE at < clock_timestamp() - interval '8 days'",
            "DELETE FROM instances WHERE status = 'down' \
                AND status_since < clock_timestamp() - interval '8 days'",
            "DELETE FROM alerts WHERE status = 'resolved' \
                AND resolved_at < clock_timestamp() - interval '30 days'",
        ] {
            dropped +=
                sqlx::query(sql).execute(&self.pool).await.map_err(db("prune"))?.rows_affected();
        }
        Ok(dropped)
    }

    /// Records a probe's outcome; a change of state is written as an event once, whichever
    /// monitor saw it. Returns the new status when it changed.
    ///
    /// # Errors
    /// Database failures.
    pub async fn record_probe(&self, p: &ProbeResult) -> Result<Option<String>> {
        let status = if p.up { "up" } else { "down" };
        let changed: Option<(String,)> = sqlx::query_as(
            "WITH prev AS (SELECT status FROM probes WHERE name = $1), \
             cur AS (INSERT INTO probes(name, kind, org_id, label, status, status_since, \
                        checked_at, latency_ms, error) \
                    VALUES ($1, $2, $3, $4, $5, $6, $6, $7, $8) \
                    ON CONFLICT (name) DO UPDATE SET label = EXCLUDED.label, \
                        checked_at = EXCLUDED.checked_at, latency_ms = EXCLUDED.latency_ms, \
                        error = EXCLUDED.error, status = EXCLUDED.status, \
                        status_since = CASE WHEN probes.status = EXCLUDED.status \
                            THEN probes.status_since ELSE EXCLUDED.status_since END \
                    RETURNING name), \
             ev AS (INSERT INTO probe_events(name, kind, status, at) \
                    SELECT $1, $2, $5, $6 FROM cur \
                    WHERE NOT EXISTS (SELECT 1 FROM prev WHERE status = $5) \
                    RETURNING status) \
             SELECT status FROM ev",
        )
        .bind(&p.name)
        .bind(&p.kind)
        .bind(p.org_id)
        .bind(&p.label)
        .bind(status)
        .bind(p.at)
        .bind(p.latency_ms)
        .bind(&p.error)
        .fetch_optional(&self.pool)
        .await
        .map_err(db("record_probe"))?;
        Ok(changed.map(|(s,)| s))
    }

    /// Forgets the probes of `kind` not in `keep` (a deleted MCP server).
    ///
    /// # Errors
    /// Database failures.
    pub async fn forget_probes(&self, kind: &str, keep: &[String]) -> Result<()> {
        sqlx::query("DELETE FROM probes WHERE kind = $1 AND NOT (name = ANY($2))")
            .bind(kind)
            .bind(keep)
            .execute(&self.pool)
            .await
            .map_err(db("forget_probes"))?;
        Ok(())
    }

    /// The probes, of one organization (its MCP servers) or, None, every one.
    ///
    /// # Errors
    /// Database failures.
    pub async fn probes(&self, org: Option<Uuid>) -> Result<Vec<ProbeRow>> {
        sqlx::query_as(
            "SELECT * FROM probes WHERE $1::uuid IS NULL OR org_id = $1 ORDER BY kind, name",
        )
        .bind(org)
        .fetch_all(&self.pool)
        .await
        .map_err(db("probes"))
    }

    /// Every probe's ups and downs, oldest first: (name, kind, status, at).
    ///
    /// # Errors
    /// Database failures.
    pub async fn probe_events(&self) -> Result<Vec<(String, String, String, DateTime<Utc>)>> {
        sqlx::query_as("SELECT name, kind, status, at FROM probe_events ORDER BY at, id")
            .fetch_all(&self.pool)
            .await
            .map_err(db("probe_events"))
    }
}
