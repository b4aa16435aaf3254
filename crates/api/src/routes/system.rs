//! The platform's state: the status and availability for operators (`platform:admin`); the
//! health report, trends and alerts for operators (the whole platform) and for each
//! organization (its own runs, tools, costs, MCP servers and alerts).

use std::collections::BTreeMap;

use agentyard_core::Scope;
use agentyard_services::Principal;
use agentyard_services::system::{AlertDetail, Availability, HealthReport, SystemStatus, Trend};
use agentyard_store::alerts::AlertRow;
use axum::Json;
use axum::extract::State;
use serde::Deserialize;

use crate::auth::Auth;
use crate::error::{ErrorBody, PathId, QueryNumber, QueryParams, query_limit};
use crate::{ApiError, AppState};

/// Operators, or an organization's token with `scope`.
fn operator_or(auth: &Auth, scope: Scope) -> Result<&Principal, ApiError> {
    auth.require(Scope::PlatformAdmin).or_else(|_| auth.require(scope))
}

/// Postgres and NATS, and the processes of each role by their heartbeats (the monitor must
/// run: `agentyard worker monitor`, run by `dev`).
#[utoipa::path(get, path = "/v1/system/status", tag = "system",
    responses((status = 200, body = SystemStatus), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn status(
    State(state): State<AppState>,
    auth: Auth,
) -> Result<Json<SystemStatus>, ApiError> {
    auth.require(Scope::PlatformAdmin)?;
    Ok(Json(state.services.system_status().await))
}

/// Query of `GET /v1/system/availability`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct AvailabilityQuery {
    /// `1h` (default), `24h` or `7d`.
    window: Option<String>,
}

/// Each role's availability over a window: the share of it during which at least one instance
/// of the role was up (by the monitor's heartbeats).
#[utoipa::path(get, path = "/v1/system/availability", tag = "system", params(AvailabilityQuery),
    responses((status = 200, body = Availability), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn availability(
    State(state): State<AppState>,
    auth: Auth,
    QueryParams(q): QueryParams<AvailabilityQuery>,
) -> Result<Json<Availability>, ApiError> {
    auth.require(Scope::PlatformAdmin)?;
    let window = q.window.as_deref().unwrap_or("1h");
    Ok(Json(state.services.availability(window).await?))
}

/// Every dependency and probe, the processes of each role, the queues, the hosts, the open
/// alerts and the last hour's figures (runs by status, latency and time to first token
/// percentiles, tool calls and errors, tokens and cost). With `platform:admin`, the platform's;
/// with `runs:read`, the caller's organization's (its runs, tools, costs, MCP servers and
/// alerts; no hosts, queues or processes).
#[utoipa::path(get, path = "/v1/system/health-report", tag = "system",
    responses((status = 200, body = HealthReport), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn health_report(
    State(state): State<AppState>,
    auth: Auth,
) -> Result<Json<HealthReport>, ApiError> {
    let who = operator_or(&auth, Scope::RunsRead)?;
    Ok(Json(state.services.health_report(who).await?))
}

/// Query of `GET /v1/system/performance-trends`: `metric`, `window`, `step`, and label filters
/// (`agent`, `status`, `tool`, `server`, `outcome`, `host`, `consumer`, `probe`, `role`,
/// `model`).
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct TrendQuery {
    /// `run.latency_ms`, `run.ttft_ms`, `run.queue_wait_ms`, `run.tokens_input`,
    /// `run.tokens_output`, `run.cost_usd`, `tool.latency_ms` (per organization); `host.cpu_pct`,
    /// `host.mem_pct`, `host.disk_pct`, `host.net_rx_bytes_per_s`, `host.net_tx_bytes_per_s`,
    /// `queue.pending`, `queue.oldest_pending_seconds`, `dead_letters`, `probe.latency_ms`,
    /// `instances.up` (operators).
    metric: String,
    /// `1h` (default), `24h` or `7d`.
    window: Option<String>,
    /// The points' width: whole minutes up to 24 h (default `1m`), whole hours for `7d`
    /// (default `1h`).
    step: Option<String>,
    #[serde(flatten)]
    #[param(ignore)]
    filters: BTreeMap<String, String>,
}

/// A series as points over a window: count, sum, mean, min, max and, for latencies, p50, p95
/// and p99 of each step.
#[utoipa::path(get, path = "/v1/system/performance-trends", tag = "system", params(TrendQuery),
    responses((status = 200, body = Trend), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn performance_trends(
    State(state): State<AppState>,
    auth: Auth,
    QueryParams(q): QueryParams<TrendQuery>,
) -> Result<Json<Trend>, ApiError> {
    let who = operator_or(&auth, Scope::RunsRead)?;
    let window = q.window.as_deref().unwrap_or("1h");
    let trend = state
        .services
        .performance_trends(who, &q.metric, window, q.step.as_deref(), q.filters)
        .await?;
    Ok(Json(trend))
}

/// Query of `GET /v1/system/alerts`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct AlertsQuery {
    /// `open`, `resolved` or `all` (default).
    status: Option<String>,
    /// At most this many, newest first (1 to 500, default 100).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 500)]
    limit: Option<QueryNumber>,
}

/// Alerts newest first: the platform's for operators, the organization's own (its MCP
/// servers') for `org:admin`.
#[utoipa::path(get, path = "/v1/system/alerts", tag = "system", params(AlertsQuery),
    responses((status = 200, body = Vec<AlertRow>), (status = 400, body = ErrorBody, description = "invalid_query: a number out of range"), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn alerts(
    State(state): State<AppState>,
    auth: Auth,
    QueryParams(q): QueryParams<AlertsQuery>,
) -> Result<Json<Vec<AlertRow>>, ApiError> {
    let who = operator_or(&auth, Scope::OrgAdmin)?;
    let limit = agentyard_services::page_limit(query_limit(q.limit.as_ref())?, 100, 500)?;
    Ok(Json(state.services.alerts(who, q.status.as_deref(), limit).await?))
}

/// An alert and each of its webhook deliveries (attempts, last status, error).
#[utoipa::path(get, path = "/v1/system/alerts/{id}", tag = "system", params(("id" = String, Path)),
    responses((status = 200, body = AlertDetail), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn alert(
    State(state): State<AppState>,
    auth: Auth,
    PathId(id): PathId<uuid::Uuid>,
) -> Result<Json<AlertDetail>, ApiError> {
    let who = operator_or(&auth, Scope::OrgAdmin)?;
    Ok(Json(state.services.alert(who, id).await?))
}

/// Resolves an open alert by hand (its webhooks hear of it). While its condition still holds
/// it does not open again; once the condition clears and returns, it does.
#[utoipa::path(post, path = "/v1/system/alerts/{id}/resolve", tag = "system",
    params(("id" = String, Path)),
    responses((status = 200, body = AlertRow), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn resolve_alert(
    State(state): State<AppState>,
    auth: Auth,
    PathId(id): PathId<uuid::Uuid>,
) -> Result<Json<AlertRow>, ApiError> {
    let who = operator_or(&auth, Scope::OrgAdmin)?;
    Ok(Json(state.services.resolve_alert(who, id).await?))
}
