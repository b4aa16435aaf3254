//! Usage and performance, aggregated from the runs themselves (their status, timestamps,
//! `tools_used` and `usage`), so the numbers can never disagree with the runs a client sees.
//! Response time is from a run's creation to its end, as the client experiences it.

use agentyard_core::{AgentId, OrgId};
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::FromRow;

use crate::{Result, Store, StoreError};

/// Totals over a set of runs.
#[derive(Clone, Debug, Default, PartialEq, Serialize, FromRow, utoipa::ToSchema)]
pub struct Totals {
    /// Runs created in the period.
    pub runs: i64,
    pub completed: i64,
    pub failed: i64,
    pub cancelled: i64,
    /// Runs not yet ended.
    pub active: i64,
    /// Tool calls made by the runs.
    pub tools_called: i64,
    /// Mean response time of completed runs, in milliseconds.
    pub avg_response_ms: Option<f64>,
    /// 95th percentile response time of completed runs, in milliseconds.
    pub p95_response_ms: Option<f64>,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub total_tokens: i64,
    /// Estimated cost in USD.
    pub cost_usd: f64,
}

/// Totals of one agent.
#[derive(Clone, Debug, PartialEq, Serialize, FromRow, utoipa::ToSchema)]
pub struct AgentTotals {
    pub agent_id: AgentId,
    pub agent_type: Option<String>,
    pub name: Option<String>,
    #[sqlx(flatten)]
    #[serde(flatten)]
    pub totals: Totals,
}

/// Totals of one model alias.
#[derive(Clone, Debug, PartialEq, Serialize, FromRow, utoipa::ToSchema)]
pub struct ModelTotals {
    /// The model alias (`unknown` for runs without usage).
    pub model: String,
    pub runs: i64,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub total_tokens: i64,
    pub cost_usd: f64,
}

/// One hour of an agent's performance.
#[derive(Clone, Debug, PartialEq, Serialize, FromRow, utoipa::ToSchema)]
pub struct Bucket {
    pub hour: DateTime<Utc>,
    #[sqlx(flatten)]
    #[serde(flatten)]
    pub totals: Totals,
}

const TOTALS: &str = "\
    count(*) AS runs, \
    count(*) FILTER (WHERE r.status = 'completed') AS completed, \
    count(*) FILTER (WHERE r.status = 'failed') AS failed, \
    count(*) FILTER (WHERE r.status = 'cancelled') AS cancelled, \
    count(*) FILTER (WHERE r.status IN ('queued', 'in_progress', 'requires_input')) AS active, \
    coalesce(sum(jsonb_array_length(r.tools_used)), 0)::bigint AS tools_called, \
    (avg(extract(epoch FROM r.completed_at - r.created_at) * 1000) \
        FILTER (WHERE r.status = 'completed'))::float8 AS avg_response_ms, \
    (percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM r.completed_at - r.created_at) * 1000) \
        FILTER (WHERE r.status = 'completed'))::float8 AS p95_response_ms, \
    coalesce(sum((r.usage->>'prompt_tokens')::bigint), 0)::bigint AS prompt_tokens, \
    coalesce(sum((r.usage->>'completion_tokens')::bigint), 0)::bigint AS completion_tokens, \
    coalesce(sum((r.usage->>'total_tokens')::bigint), 0)::bigint AS total_tokens, \
    coalesce(sum((r.usage->>'cost_usd')::float8), 0)::float8 AS cost_usd";

impl Store {
    /// An agent's totals over the runs created since `since`, and the messages those runs wrote.
    ///
    /// # Errors
    /// Database failures.
    pub async fn agent_stats(
        &self,
        org: OrgId,
        agent: AgentId,
        since: DateTime<Utc>,
    ) -> Result<(Totals, i64)> {
        let totals: Totals = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {TOTALS} FROM runs r WHERE r.agent_id = $1 AND r.org_id = $2 \
             AND r.created_at >= $3"
        )))
        .bind(agent)
        .bind(org)
        .bind(since)
        .fetch_one(&self.pool)
        .await
        .map_err(|e| StoreError::db("agent_stats", e))?;
        // Through the runs' threads: (thread_id, seq) is indexed, run_id alone is not.
        let messages: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM messages m \
             JOIN (SELECT id, thread_id FROM runs WHERE agent_id = $1 AND org_id = $2 \
                   AND created_at >= $3) r ON m.thread_id = r.thread_id AND m.run_id = r.id",
        )
        .bind(agent)
        .bind(org)
        .bind(since)
        .fetch_one(&self.pool)
        .await
        .map_err(|e| StoreError::db("agent_stats.messages", e))?;
        Ok((totals, messages))
    }

    /// An agent's totals per hour since `since`, oldest first (hours without runs left out).
    ///
    /// # Errors
    /// Database failures.
    pub async fn agent_buckets(
        &self,
        org: OrgId,
        agent: AgentId,
        since: DateTime<Utc>,
    ) -> Result<Vec<Bucket>> {
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT date_trunc('hour', r.created_at) AS hour, {TOTALS} FROM runs r \
             WHERE r.agent_id = $1 AND r.org_id = $2 AND r.created_at >= $3 \
             GROUP BY 1 ORDER BY 1"
        )))
        .bind(agent)
        .bind(org)
        .bind(since)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| StoreError::db("agent_buckets", e))
    }

    /// The org's totals over runs created in `[from, to)`: overall, per agent and per model.
    ///
    /// # Errors
    /// Database failures.
    pub async fn org_usage(
        &self,
        org: OrgId,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<(Totals, Vec<AgentTotals>, Vec<ModelTotals>)> {
        let map = |op| move |e| StoreError::db(op, e);
        let totals: Totals = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {TOTALS} FROM runs r WHERE r.org_id = $1 AND r.created_at >= $2 \
             AND r.created_at < $3"
        )))
        .bind(org)
        .bind(from)
        .bind(to)
        .fetch_one(&self.pool)
        .await
        .map_err(map("org_usage"))?;
        let agents: Vec<AgentTotals> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT r.agent_id, a.agent_type, a.name, {TOTALS} FROM runs r \
             LEFT JOIN agents a ON a.id = r.agent_id \
             WHERE r.org_id = $1 AND r.created_at >= $2 AND r.created_at < $3 \
             GROUP BY r.agent_id, a.agent_type, a.name ORDER BY count(*) DESC, r.agent_id"
        )))
        .bind(org)
        .bind(from)
        .bind(to)
        .fetch_all(&self.pool)
        .await
        .map_err(map("org_usage.agents"))?;
        let models: Vec<ModelTotals> = sqlx::query_as(
            "SELECT coalesce(r.usage->>'model', 'unknown') AS model, count(*) AS runs, \
                coalesce(sum((r.usage->>'prompt_tokens')::bigint), 0)::bigint AS prompt_tokens, \
                coalesce(sum((r.usage->>'completion_tokens')::bigint), 0)::bigint AS completion_tokens, \
                coalesce(sum((r.usage->>'total_tokens')::bigint), 0)::bigint AS total_tokens, \
                coalesce(sum((r.usage->>'cost_usd')::float8), 0)::float8 AS cost_usd \
             FROM runs r WHERE r.org_id = $1 AND r.created_at >= $2 AND r.created_at < $3 \
             GROUP BY 1 ORDER BY 1",
        )
        .bind(org)
        .bind(from)
        .bind(to)
        .fetch_all(&self.pool)
        .await
        .map_err(map("org_usage.models"))?;
        Ok((totals, agents, models))
    }
}
