//! Agents: the org's agents, their configuration, tools, status and stats; agent types;
//! delegation by capability.

use std::collections::BTreeMap;

use agentyard_agents::AgentConfig;
use agentyard_core::{AgentId, Scope};
use agentyard_services::Entity;
use agentyard_services::agents::{
    self, Agent, AgentStatus, AgentTools, AgentToolsView, CreateAgentRequest, DelegateRequest,
    Delegation, PatchAgentRequest, SourcedValue,
};
use agentyard_store::usage::{Bucket, Totals};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::auth::Auth;
use crate::error::{ErrorBody, JsonBody, PathId, QueryParams};
use crate::{ApiError, AppState};

const READ: Scope = Scope::AgentsRead;
const ADMIN: Scope = Scope::AgentsAdmin;

/// The org's agents.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct AgentList {
    data: Vec<Agent>,
}

/// The org's agents, oldest first. Provisions the default agent when the org has none.
#[utoipa::path(get, path = "/v1/agents", tag = "agents",
    responses((status = 200, body = AgentList), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn list(
    State(state): State<AppState>,
    auth: Auth,
) -> Result<Json<AgentList>, ApiError> {
    let who = auth.require(READ)?;
    let rows = state.services.store.list_agents(who.org_id).await?;
    Ok(Json(AgentList {
        data: rows.into_iter().map(|r| agents::view(&state.services, r)).collect(),
    }))
}

/// Creates the org's agent of a type.
#[utoipa::path(post, path = "/v1/agents", tag = "agents",
    request_body(content = CreateAgentRequest, content_type = "application/json"),
    responses((status = 201, body = Agent), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 409, body = ErrorBody, description = "agent_exists"),
        (status = 422, body = ErrorBody, description = "unknown_agent_type, invalid_configuration (naming every bad field)")),
    security(("bearer" = [])))]
pub(crate) async fn create(
    State(state): State<AppState>,
    auth: Auth,
    body: JsonBody<CreateAgentRequest>,
) -> Result<(StatusCode, Json<Agent>), ApiError> {
    let who = auth.require(ADMIN)?;
    let agent = agents::create(&state.services, who, body.value).await?;
    let details = super::orgs::raw(&body.bytes);
    state.services.audit(who, "agent.created", "agent", agent.id, details).await;
    Ok((StatusCode::CREATED, Json(agent)))
}

/// An agent.
#[utoipa::path(get, path = "/v1/agents/{id}", tag = "agents", params(("id" = String, Path)),
    responses((status = 200, body = Agent), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn get(
    State(state): State<AppState>,
    auth: Auth,
    PathId(id): PathId<AgentId>,
) -> Result<Json<Agent>, ApiError> {
    let who = auth.require(READ)?;
    let row = agents::get(&state.services, who, id).await?;
    Ok(Json(agents::view(&state.services, row)))
}

/// Renames an agent and/or changes its configuration (a JSON merge patch on its overrides).
/// The next run uses the change, on every worker.
#[utoipa::path(patch, path = "/v1/agents/{id}", tag = "agents", params(("id" = String, Path)),
    request_body(content = PatchAgentRequest, content_type = "application/json"),
    responses((status = 200, body = Agent), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn patch(
    State(state): State<AppState>,
    auth: Auth,
    PathId(id): PathId<AgentId>,
    body: JsonBody<PatchAgentRequest>,
) -> Result<Json<Agent>, ApiError> {
    let who = auth.require(ADMIN)?;
    let agent = agents::patch(&state.services, who, id, body.value).await?;
    let details = super::orgs::raw(&body.bytes);
    state.services.audit(who, "agent.updated", "agent", id, details).await;
    Ok(Json(agent))
}

/// Deletes an agent. Its runs stay readable; `recreate` brings it back with the same id.
#[utoipa::path(delete, path = "/v1/agents/{id}", tag = "agents", params(("id" = String, Path)),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn delete(
    State(state): State<AppState>,
    auth: Auth,
    PathId(id): PathId<AgentId>,
) -> Result<StatusCode, ApiError> {
    let who = auth.require(ADMIN)?;
    if state.services.store.delete_agent(who.org_id, id).await? {
        state.services.audit(who, "agent.deleted", "agent", id, serde_json::json!({})).await;
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(Entity::Agent))
    }
}

/// Brings an agent (also a deleted one) back to its type's defaults, keeping its id: no
/// overrides, the type's name, active.
#[utoipa::path(post, path = "/v1/agents/{id}/recreate", tag = "agents", params(("id" = String, Path)),
    responses((status = 200, body = Agent), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn recreate(
    State(state): State<AppState>,
    auth: Auth,
    PathId(id): PathId<AgentId>,
) -> Result<Json<Agent>, ApiError> {
    let who = auth.require(ADMIN)?;
    let catalog = state.services.catalog.clone();
    let row = state
        .services
        .store
        .recreate_agent(who.org_id, id, |t| {
            catalog.agent_type(t).map_or_else(|| t.to_owned(), |c| c.name.clone())
        })
        .await?
        .ok_or_else(|| ApiError::not_found(Entity::Agent))?;
    state.services.audit(who, "agent.recreated", "agent", id, serde_json::json!({})).await;
    Ok(Json(agents::view(&state.services, row)))
}

async fn set_active(
    state: &AppState,
    auth: &Auth,
    id: AgentId,
    active: bool,
) -> Result<Json<Agent>, ApiError> {
    let who = auth.require(ADMIN)?;
    let row = state
        .services
        .store
        .set_agent_active(who.org_id, id, active)
        .await?
        .ok_or_else(|| ApiError::not_found(Entity::Agent))?;
    let action = if active { "agent.activated" } else { "agent.deactivated" };
    state.services.audit(who, action, "agent", id, serde_json::json!({})).await;
    Ok(Json(agents::view(&state.services, row)))
}

/// Activates an agent.
#[utoipa::path(post, path = "/v1/agents/{id}/activate", tag = "agents", params(("id" = String, Path)),
    responses((status = 200, body = Agent), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn activate(
    State(state): State<AppState>,
    auth: Auth,
    PathId(id): PathId<AgentId>,
) -> Result<Json<Agent>, ApiError> {
    set_active(&state, &auth, id, true).await
}

/// Deactivates an agent: new runs for it answer 409 `agent_inactive`.
#[utoipa::path(post, path = "/v1/agents/{id}/deactivate", tag = "agents", params(("id" = String, Path)),
    responses((status = 200, body = Agent), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn deactivate(
    State(state): State<AppState>,
    auth: Auth,
    PathId(id): PathId<AgentId>,
) -> Result<Json<Agent>, ApiError> {
    set_active(&state, &auth, id, false).await
}

/// Drops every override: the agent runs with its type's defaults (its name stays).
#[utoipa::path(post, path = "/v1/agents/{id}/reset-config", tag = "agents", params(("id" = String, Path)),
    responses((status = 200, body = Agent), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn reset_config(
    State(state): State<AppState>,
    auth: Auth,
    PathId(id): PathId<AgentId>,
) -> Result<Json<Agent>, ApiError> {
    let who = auth.require(ADMIN)?;
    let agent = agents::reset_config(&state.services, who, id).await?;
    state.services.audit(who, "agent.reset", "agent", id, serde_json::json!({})).await;
    Ok(Json(agent))
}

/// Whether the agent can answer now: active, its model reachable (as agent workers see it),
/// its tools.
#[utoipa::path(get, path = "/v1/agents/{id}/status", tag = "agents", params(("id" = String, Path)),
    responses((status = 200, body = AgentStatus), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn status(
    State(state): State<AppState>,
    auth: Auth,
    PathId(id): PathId<AgentId>,
) -> Result<Json<AgentStatus>, ApiError> {
    let who = auth.require(READ)?;
    let row = agents::get(&state.services, who, id).await?;
    Ok(Json(agents::status(&state.services, who, row).await?))
}

/// The effective configuration.
#[utoipa::path(get, path = "/v1/agents/{id}/configuration", tag = "agents", params(("id" = String, Path)),
    responses((status = 200, body = AgentConfig), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn configuration(
    State(state): State<AppState>,
    auth: Auth,
    PathId(id): PathId<AgentId>,
) -> Result<Json<AgentConfig>, ApiError> {
    let who = auth.require(READ)?;
    let row = agents::get(&state.services, who, id).await?;
    Ok(Json(state.services.catalog.effective(&row.agent_type, &row.name, &row.config)))
}

/// Field by field: the effective value and whether it is the type's `default` or `custom`.
#[utoipa::path(get, path = "/v1/agents/{id}/config-source", tag = "agents", params(("id" = String, Path)),
    responses((status = 200, body = BTreeMap<String, SourcedValue>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn config_source(
    State(state): State<AppState>,
    auth: Auth,
    PathId(id): PathId<AgentId>,
) -> Result<Json<BTreeMap<&'static str, SourcedValue>>, ApiError> {
    let who = auth.require(READ)?;
    let row = agents::get(&state.services, who, id).await?;
    Ok(Json(agents::config_source(&state.services, &row)))
}

/// The agent's tools.
#[utoipa::path(get, path = "/v1/agents/{id}/tools", tag = "agents", params(("id" = String, Path)),
    responses((status = 200, body = AgentToolsView), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn tools(
    State(state): State<AppState>,
    auth: Auth,
    PathId(id): PathId<AgentId>,
) -> Result<Json<AgentToolsView>, ApiError> {
    let who = auth.require(READ)?;
    let row = agents::get(&state.services, who, id).await?;
    let c = state.services.catalog.effective(&row.agent_type, &row.name, &row.config);
    Ok(Json(AgentToolsView {
        tools_enabled: c.tools_enabled,
        tools_require_approval: c.tools_require_approval,
        available: agentyard_core::tools::BUILTIN_TOOLS.iter().map(|t| t.name.to_owned()).collect(),
    }))
}

/// Sets the agent's tools (`tools_enabled`, and `tools_require_approval` when given).
#[utoipa::path(put, path = "/v1/agents/{id}/tools", tag = "agents", params(("id" = String, Path)),
    request_body(content = AgentTools, content_type = "application/json"),
    responses((status = 200, body = Agent), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn put_tools(
    State(state): State<AppState>,
    auth: Auth,
    PathId(id): PathId<AgentId>,
    body: JsonBody<AgentTools>,
) -> Result<Json<Agent>, ApiError> {
    let who = auth.require(ADMIN)?;
    let agent = agents::put_tools(&state.services, who, id, body.value).await?;
    let details = super::orgs::raw(&body.bytes);
    state.services.audit(who, "agent.tools_set", "agent", id, details).await;
    Ok(Json(agent))
}

/// Query of the stats.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct StatsQuery {
    /// `hour` or `day` (default): the runs created in the last hour or day.
    period: Option<String>,
}

/// An agent's numbers over a period.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct AgentStats {
    agent_id: AgentId,
    period: String,
    since: DateTime<Utc>,
    /// Messages the runs wrote (user, assistant and tool messages).
    messages: i64,
    successful_runs: i64,
    failed_runs: i64,
    #[serde(flatten)]
    totals: Totals,
}

/// An agent's messages, successful and failed runs, tool calls, response times and tokens over
/// the last hour or day.
#[utoipa::path(get, path = "/v1/agents/{id}/stats", tag = "agents", params(("id" = String, Path), StatsQuery),
    responses((status = 200, body = AgentStats), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn stats(
    State(state): State<AppState>,
    auth: Auth,
    PathId(id): PathId<AgentId>,
    QueryParams(q): QueryParams<StatsQuery>,
) -> Result<Json<AgentStats>, ApiError> {
    let who = auth.require(READ)?;
    let period = q.period.unwrap_or_else(|| "day".into());
    let span = match period.as_str() {
        "hour" => chrono::Duration::hours(1),
        "day" => chrono::Duration::days(1),
        other => {
            return Err(ApiError::invalid(
                "invalid_query",
                format!("period must be hour or day, not {other:?}"),
            ));
        }
    };
    let row = agents::get(&state.services, who, id).await?;
    let since = Utc::now() - span;
    let (totals, messages) = state.services.store.agent_stats(who.org_id, row.id, since).await?;
    Ok(Json(AgentStats {
        agent_id: row.id,
        period,
        since,
        messages,
        successful_runs: totals.completed,
        failed_runs: totals.failed,
        totals,
    }))
}

/// An agent's performance over the last 24 hours, hour by hour.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct Performance {
    agent_id: AgentId,
    since: DateTime<Utc>,
    /// Completed runs over ended runs (null without ended runs).
    success_rate: Option<f64>,
    totals: Totals,
    hours: Vec<Bucket>,
}

/// An agent's success rate, response times and tokens over the last 24 hours, in total and
/// hour by hour.
#[utoipa::path(get, path = "/v1/agents/{id}/performance", tag = "agents", params(("id" = String, Path)),
    responses((status = 200, body = Performance), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn performance(
    State(state): State<AppState>,
    auth: Auth,
    PathId(id): PathId<AgentId>,
) -> Result<Json<Performance>, ApiError> {
    let who = auth.require(READ)?;
    let row = agents::get(&state.services, who, id).await?;
    let since = Utc::now() - chrono::Duration::days(1);
    let id = row.id;
    let (totals, _) = state.services.store.agent_stats(who.org_id, id, since).await?;
    let hours = state.services.store.agent_buckets(who.org_id, id, since).await?;
    let ended = totals.completed + totals.failed + totals.cancelled;
    let success_rate = (ended > 0).then(|| totals.completed as f64 / ended as f64);
    Ok(Json(Performance { agent_id: id, since, success_rate, totals, hours }))
}

/// An agent type of `config/agents.yaml`.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct AgentType {
    agent_type: String,
    defaults: AgentConfig,
}

/// The agent types and their defaults.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct AgentTypeList {
    data: Vec<AgentType>,
}

/// The agent types an org can create, with their defaults.
#[utoipa::path(get, path = "/v1/agent-types", tag = "agents",
    responses((status = 200, body = AgentTypeList), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn types(
    State(state): State<AppState>,
    auth: Auth,
) -> Result<Json<AgentTypeList>, ApiError> {
    auth.require(READ)?;
    let data = state
        .services
        .catalog
        .agent_types()
        .iter()
        .map(|(k, v)| AgentType { agent_type: k.clone(), defaults: v.clone() })
        .collect();
    Ok(Json(AgentTypeList { data }))
}

/// Hands a task to the org's active agent with a capability (provisioned from its type when
/// missing): a run on a new thread, at the given priority.
#[utoipa::path(post, path = "/v1/agents/delegate", tag = "agents",
    request_body(content = DelegateRequest, content_type = "application/json"),
    responses((status = 202, body = Delegation), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 409, body = ErrorBody, description = "agent_inactive"),
        (status = 422, body = ErrorBody, description = "unknown_capability"), (status = 429, body = ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn delegate(
    State(state): State<AppState>,
    auth: Auth,
    body: JsonBody<DelegateRequest>,
) -> Result<(StatusCode, Json<Delegation>), ApiError> {
    let who = auth.require(Scope::RunsWrite)?;
    let req = body.value;
    Ok((StatusCode::ACCEPTED, Json(agents::delegate(&state.services, who, req).await?)))
}
