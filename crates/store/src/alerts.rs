//! Alerts (migrations/0007_monitor_series.sql): opened once per rule and subject while its
//! condition holds, resolved when it clears or by hand, each open and resolve queued for every
//! configured webhook in the same transaction.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::FromRow;
use uuid::Uuid;

use crate::{Result, Store, StoreError};

/// An alert.
#[derive(Clone, Debug, PartialEq, FromRow, serde::Serialize, utoipa::ToSchema)]
pub struct AlertRow {
    pub id: Uuid,
    /// The rule of `config/alerts.yaml`.
    pub rule: String,
    /// What it is about: a host, a role, a queue, a probe.
    pub subject: String,
    /// The organization it concerns (its MCP server), or none for the platform's.
    pub org_id: Option<Uuid>,
    /// `info`, `warning` or `critical`.
    pub severity: String,
    /// `open` or `resolved`.
    pub status: String,
    pub message: String,
    /// The value that opened it.
    pub value: f64,
    pub threshold: f64,
    pub opened_at: DateTime<Utc>,
    pub resolved_at: Option<DateTime<Utc>>,
    /// `auto` when its condition cleared, else who resolved it.
    pub resolved_by: Option<String>,
}

/// An alert to open.
#[derive(Clone, Debug, PartialEq)]
pub struct NewAlert {
    pub rule: String,
    pub subject: String,
    pub org_id: Option<Uuid>,
    pub severity: String,
    pub message: String,
    pub value: f64,
    pub threshold: f64,
}

/// A condition seen true and not yet alerted on, or acknowledged by hand.
#[derive(Clone, Debug, PartialEq, FromRow)]
pub struct ConditionRow {
    pub rule: String,
    pub subject: String,
    pub since: DateTime<Utc>,
    pub acknowledged: bool,
}

/// A webhook delivery that is due, with its alert.
#[derive(Clone, Debug, PartialEq, FromRow)]
pub struct DueDelivery {
    #[sqlx(rename = "delivery_id")]
    pub id: i64,
    pub event: String,
    pub url: String,
    pub attempts: i32,
    #[sqlx(flatten)]
    pub alert: AlertRow,
}

/// A delivery as logged.
#[derive(Clone, Debug, PartialEq, FromRow, serde::Serialize, utoipa::ToSchema)]
pub struct DeliveryRow {
    pub id: i64,
    pub alert_id: Uuid,
    /// `alert.opened` or `alert.resolved`.
    pub event: String,
    pub url: String,
    /// `pending`, `delivered` or `failed` (given up).
    pub status: String,
    pub attempts: i32,
    pub last_status: Option<i32>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub delivered_at: Option<DateTime<Utc>>,
}

fn db(op: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |e| StoreError::db(op, e)
}

const ALERT_COLUMNS: &str = "alerts.id, alerts.rule, alerts.subject, alerts.org_id, \
    alerts.severity, alerts.status, alerts.message, alerts.value, alerts.threshold, \
    alerts.opened_at, alerts.resolved_at, alerts.resolved_by";

impl Store {
    /// Opens `a` unless an alert of its rule and subject is open; queues `alert.opened` for
    /// each of `webhooks`. None when one was open already.
    ///
    /// # Errors
    /// Database failures.
    pub async fn open_alert(&self, a: &NewAlert, webhooks: &[String]) -> Result<Option<AlertRow>> {
        let mut tx = self.pool.begin().await.map_err(db("open_alert.begin"))?;
        let row: Option<AlertRow> = sqlx::query_as(
            "INSERT INTO alerts(id, rule, subject, org_id, severity, status, message, value, \
                threshold) VALUES ($1, $2, $3, $4, $5, 'open', $6, $7, $8) \
             ON CONFLICT (rule, subject) WHERE status = 'open' DO NOTHING RETURNING *",
        )
        .bind(Uuid::now_v7())
        .bind(&a.rule)
        .bind(&a.subject)
        .bind(a.org_id)
        .bind(&a.severity)
        .bind(&a.message)
        .bind(a.value)
        .bind(a.threshold)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db("open_alert"))?;
        if let Some(alert) = &row {
            queue_deliveries(&mut tx, alert.id, "alert.opened", webhooks).await?;
            sqlx::query("DELETE FROM alert_conditions WHERE rule = $1 AND subject = $2")
                .bind(&a.rule)
                .bind(&a.subject)
                .execute(&mut *tx)
                .await
                .map_err(db("open_alert.condition"))?;
        }
        tx.commit().await.map_err(db("open_alert.commit"))?;
        Ok(row)
    }

    /// Resolves the open alert `id` (of `org` when given) as `by` (`auto` when its condition
    /// cleared); queues `alert.resolved`. A hand resolve whose condition still holds is
    /// acknowledged: it does not open again until the condition clears. None when no such
    /// alert is open.
    ///
    /// # Errors
    /// Database failures.
    pub async fn resolve_alert(
        &self,
        id: Uuid,
        org: Option<Uuid>,
        by: &str,
        webhooks: &[String],
    ) -> Result<Option<AlertRow>> {
        let mut tx = self.pool.begin().await.map_err(db("resolve_alert.begin"))?;
        let row: Option<AlertRow> = sqlx::query_as(
            "UPDATE alerts SET status = 'resolved', resolved_at = clock_timestamp(), \
                resolved_by = $3 \
             WHERE id = $1 AND status = 'open' AND ($2::uuid IS NULL OR org_id = $2) \
             RETURNING *",
        )
        .bind(id)
        .bind(org)
        .bind(by)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db("resolve_alert"))?;
        if let Some(alert) = &row {
            queue_deliveries(&mut tx, alert.id, "alert.resolved", webhooks).await?;
            if by != "auto" {
                sqlx::query(
                    "INSERT INTO alert_conditions(rule, subject, since, acknowledged) \
                     VALUES ($1, $2, $3, true) ON CONFLICT (rule, subject) \
                     DO UPDATE SET acknowledged = true",
                )
                .bind(&alert.rule)
                .bind(&alert.subject)
                .bind(alert.opened_at)
                .execute(&mut *tx)
                .await
                .map_err(db("resolve_alert.ack"))?;
            }
        }
        tx.commit().await.map_err(db("resolve_alert.commit"))?;
        Ok(row)
    }

    /// One alert (of `org` when given).
    ///
    /// # Errors
    /// Database failures.
    pub async fn alert(&self, id: Uuid, org: Option<Uuid>) -> Result<Option<AlertRow>> {
        sqlx::query_as("SELECT * FROM alerts WHERE id = $1 AND ($2::uuid IS NULL OR org_id = $2)")
            .bind(id)
            .bind(org)
            .fetch_optional(&self.pool)
            .await
            .map_err(db("alert"))
    }

    /// Alerts newest first: `status` `open`, `resolved` or None for both; of `org` when given.
    ///
    /// # Errors
    /// Database failures.
    pub async fn alerts(
        &self,
        status: Option<&str>,
        org: Option<Uuid>,
        limit: i64,
    ) -> Result<Vec<AlertRow>> {
        sqlx::query_as(
            "SELECT * FROM alerts WHERE ($1::text IS NULL OR status = $1) \
               AND ($2::uuid IS NULL OR org_id = $2) \
             ORDER BY opened_at DESC, id DESC LIMIT $3",
        )
        .bind(status)
        .bind(org)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(db("alerts"))
    }

    /// The conditions seen and not alerted on, and the acknowledged ones.
    ///
    /// # Errors
    /// Database failures.
    pub async fn alert_conditions(&self) -> Result<Vec<ConditionRow>> {
        sqlx::query_as("SELECT * FROM alert_conditions")
            .fetch_all(&self.pool)
            .await
            .map_err(db("alert_conditions"))
    }

    /// Notes that `rule` holds of `subject` since `since` (kept when already noted).
    ///
    /// # Errors
    /// Database failures.
    pub async fn note_condition(
        &self,
        rule: &str,
        subject: &str,
        since: DateTime<Utc>,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO alert_conditions(rule, subject, since) VALUES ($1, $2, $3) \
             ON CONFLICT (rule, subject) DO NOTHING",
        )
        .bind(rule)
        .bind(subject)
        .bind(since)
        .execute(&self.pool)
        .await
        .map_err(db("note_condition"))?;
        Ok(())
    }

    /// Forgets that `rule` held of `subject` (it cleared).
    ///
    /// # Errors
    /// Database failures.
    pub async fn clear_condition(&self, rule: &str, subject: &str) -> Result<()> {
        sqlx::query("DELETE FROM alert_conditions WHERE rule = $1 AND subject = $2")
            .bind(rule)
            .bind(subject)
            .execute(&self.pool)
            .await
            .map_err(db("clear_condition"))?;
        Ok(())
    }

    /// Claims up to `limit` due deliveries for `lease` seconds (their `next_at` moves on, so
    /// another deliverer does not take them meanwhile).
    ///
    /// # Errors
    /// Database failures.
    pub async fn due_deliveries(&self, limit: i64, lease: Duration) -> Result<Vec<DueDelivery>> {
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "WITH due AS (SELECT id FROM alert_deliveries \
                WHERE status = 'pending' AND next_at <= clock_timestamp() \
                ORDER BY next_at LIMIT $1 FOR UPDATE SKIP LOCKED), \
             claimed AS (UPDATE alert_deliveries d \
                SET next_at = clock_timestamp() + make_interval(secs => $2) \
                FROM due WHERE d.id = due.id RETURNING d.id, d.alert_id, d.event, d.url, \
                    d.attempts) \
             SELECT claimed.id AS delivery_id, claimed.event, claimed.url, claimed.attempts, {ALERT_COLUMNS} \
             FROM claimed JOIN alerts ON alerts.id = claimed.alert_id ORDER BY claimed.id"
        )))
        .bind(limit)
        .bind(lease.as_secs_f64())
        .fetch_all(&self.pool)
        .await
        .map_err(db("due_deliveries"))
    }

    /// Records an attempt: delivered, or tried again after `retry_in`, or (None) given up.
    ///
    /// # Errors
    /// Database failures.
    pub async fn record_delivery(
        &self,
        id: i64,
        delivered: bool,
        http_status: Option<u16>,
        error: Option<&str>,
        retry_in: Option<Duration>,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE alert_deliveries SET attempts = attempts + 1, last_status = $3, \
                last_error = $4, \
                status = CASE WHEN $2 THEN 'delivered' WHEN $5::float8 IS NULL THEN 'failed' \
                    ELSE 'pending' END, \
                delivered_at = CASE WHEN $2 THEN clock_timestamp() END, \
                next_at = clock_timestamp() + make_interval(secs => coalesce($5, 0)) \
             WHERE id = $1",
        )
        .bind(id)
        .bind(delivered)
        .bind(http_status.map(i32::from))
        .bind(error)
        .bind(retry_in.map(|d| d.as_secs_f64()))
        .execute(&self.pool)
        .await
        .map_err(db("record_delivery"))?;
        Ok(())
    }

    /// The deliveries of an alert, oldest first.
    ///
    /// # Errors
    /// Database failures.
    pub async fn alert_deliveries(&self, alert: Uuid) -> Result<Vec<DeliveryRow>> {
        sqlx::query_as(
            "SELECT id, alert_id, event, url, status, attempts, last_status, last_error, \
                created_at, delivered_at FROM alert_deliveries WHERE alert_id = $1 ORDER BY id",
        )
        .bind(alert)
        .fetch_all(&self.pool)
        .await
        .map_err(db("alert_deliveries"))
    }
}

async fn queue_deliveries(
    tx: &mut sqlx::PgConnection,
    alert: Uuid,
    event: &str,
    urls: &[String],
) -> Result<()> {
    if urls.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO alert_deliveries(alert_id, event, url, status) \
         SELECT $1, $2, u, 'pending' FROM unnest($3::text[]) AS u ON CONFLICT DO NOTHING",
    )
    .bind(alert)
    .bind(event)
    .bind(urls)
    .execute(tx)
    .await
    .map_err(db("queue_deliveries"))?;
    Ok(())
}
