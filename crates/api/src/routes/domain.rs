//! The built-in tools' data: the org's tasks (listed, created), tickets (listed) and
//! integrations (listed; created and changed with `tools:admin`). The same rows the MCP tools
//! read and write.

use agentyard_agents::FieldError;
use agentyard_core::{IntegrationId, Scope};
use agentyard_services::Entity;
use agentyard_store::domain::{
    IntegrationChange, IntegrationRow, Invalid, NewIntegration, NewTask, TaskRow, TaskStatus,
    TicketRow, TicketStatus, UpdateIntegration,
};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use crate::auth::Auth;
use crate::error::{ErrorBody, JsonBody, PathId, QueryNumber, QueryParams, query_limit};
use crate::{ApiError, AppState};

const READ: Scope = Scope::RunsRead;
const WRITE: Scope = Scope::RunsWrite;
const TOOLS_ADMIN: Scope = Scope::ToolsAdmin;

/// Tickets a list returns by default, and at most.
const DEFAULT_LIMIT: i64 = 50;
const MAX_LIMIT: i64 = agentyard_store::domain::tickets::MAX_LIMIT;

fn invalid(e: Invalid) -> ApiError {
    let field = FieldError { field: e.field.to_owned(), message: e.message };
    agentyard_services::Error::fields("invalid_request", vec![field]).into()
}

fn integration_exists(name: &str) -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "integration_exists",
        format!("the organization already has an integration named {name:?}"),
    )
}

/// Query of `GET /v1/tasks`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct TaskQuery {
    /// `all` (default), `pending` or `completed`.
    status: Option<String>,
}

/// The org's tasks.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct TaskList {
    data: Vec<TaskRow>,
}

/// The org's tasks (a token limited to its user: those its user created), oldest first (at most
/// 500).
#[utoipa::path(get, path = "/v1/tasks", tag = "tools", params(TaskQuery),
    responses((status = 200, body = TaskList), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 422, body = ErrorBody, description = "invalid_query")),
    security(("bearer" = [])))]
pub(crate) async fn list_tasks(
    State(state): State<AppState>,
    auth: Auth,
    QueryParams(q): QueryParams<TaskQuery>,
) -> Result<Json<TaskList>, ApiError> {
    let who = auth.require(READ)?;
    let status = match q.status.as_deref() {
        None | Some("all") => None,
        Some(s) => Some(s.parse::<TaskStatus>().map_err(|_| {
            ApiError::invalid(
                "invalid_query",
                format!("status must be all, pending or completed, not {s:?}"),
            )
        })?),
    };
    Ok(Json(TaskList {
        data: state.services.store.list_tasks(who.org_id, who.owner(), status).await?,
    }))
}

/// Body of `POST /v1/tasks`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateTask {
    /// 1 to 200 characters.
    #[schema(min_length = 1, max_length = 200)]
    title: String,
    description: Option<String>,
    /// `YYYY-MM-DD`.
    #[schema(format = Date)]
    due_date: Option<String>,
}

/// Adds a task to the org's to-do list.
#[utoipa::path(post, path = "/v1/tasks", tag = "tools",
    request_body(content = CreateTask, content_type = "application/json"),
    responses((status = 201, body = TaskRow), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 422, body = ErrorBody, description = "invalid_request, naming the field")),
    security(("bearer" = [])))]
pub(crate) async fn create_task(
    State(state): State<AppState>,
    auth: Auth,
    body: JsonBody<CreateTask>,
) -> Result<(StatusCode, Json<TaskRow>), ApiError> {
    let who = auth.require(WRITE)?;
    let req = body.value;
    let due_date = req
        .due_date
        .as_deref()
        .map(|d| chrono::NaiveDate::parse_from_str(d.trim(), "%Y-%m-%d"))
        .transpose()
        .map_err(|_| {
            invalid(Invalid { field: "due_date", message: "must be a date as YYYY-MM-DD".into() })
        })?;
    let task = NewTask::parse(&req.title, req.description.as_deref(), due_date).map_err(invalid)?;
    let row = state.services.store.create_task(who.org_id, who.user_id, &task).await?;
    Ok((StatusCode::CREATED, Json(row)))
}

/// Query of `GET /v1/tickets`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct TicketQuery {
    /// `open`, `in_progress`, `resolved` or `closed` (default: every status).
    status: Option<String>,
    /// 1 to 200 (default 50).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 200)]
    limit: Option<QueryNumber>,
}

/// The org's tickets.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct TicketList {
    data: Vec<TicketRow>,
}

/// The org's tickets, newest first.
#[utoipa::path(get, path = "/v1/tickets", tag = "tools", params(TicketQuery),
    responses((status = 200, body = TicketList), (status = 400, body = ErrorBody, description = "invalid_query: a number out of range"), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 422, body = ErrorBody, description = "invalid_query")),
    security(("bearer" = [])))]
pub(crate) async fn list_tickets(
    State(state): State<AppState>,
    auth: Auth,
    QueryParams(q): QueryParams<TicketQuery>,
) -> Result<Json<TicketList>, ApiError> {
    let who = auth.require(READ)?;
    let status = q
        .status
        .as_deref()
        .map(str::parse::<TicketStatus>)
        .transpose()
        .map_err(|e| ApiError::invalid("invalid_query", format!("status: {e}")))?;
    let limit =
        agentyard_services::page_limit(query_limit(q.limit.as_ref())?, DEFAULT_LIMIT, MAX_LIMIT)?;
    Ok(Json(TicketList {
        data: state.services.store.list_tickets(who.org_id, status, limit).await?,
    }))
}

/// The org's integrations.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct IntegrationList {
    data: Vec<IntegrationRow>,
}

/// The org's integrations, by name.
#[utoipa::path(get, path = "/v1/integrations", tag = "tools",
    responses((status = 200, body = IntegrationList), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn list_integrations(
    State(state): State<AppState>,
    auth: Auth,
) -> Result<Json<IntegrationList>, ApiError> {
    let who = auth.require(READ)?;
    Ok(Json(IntegrationList {
        data: state.services.store.list_integrations(who.org_id, false).await?,
    }))
}

/// Body of `POST /v1/integrations`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateIntegration {
    /// Unique in the org (case-insensitive), 1 to 100 characters.
    name: String,
    /// What it is (`chat`, `crm`, `helpdesk`, ...; default `custom`).
    kind: Option<String>,
    /// Default true.
    is_active: Option<bool>,
    /// A JSON object (default `{}`).
    #[schema(value_type = Option<Object>)]
    config: Option<serde_json::Value>,
}

/// Connects an integration.
#[utoipa::path(post, path = "/v1/integrations", tag = "tools",
    request_body(content = CreateIntegration, content_type = "application/json"),
    responses((status = 201, body = IntegrationRow), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody, description = "needs tools:admin"),
        (status = 409, body = ErrorBody, description = "integration_exists"),
        (status = 422, body = ErrorBody, description = "invalid_request, naming the field")),
    security(("bearer" = [])))]
pub(crate) async fn create_integration(
    State(state): State<AppState>,
    auth: Auth,
    body: JsonBody<CreateIntegration>,
) -> Result<(StatusCode, Json<IntegrationRow>), ApiError> {
    let who = auth.require(TOOLS_ADMIN)?;
    let req = body.value;
    let new = NewIntegration::parse(&req.name, req.kind.as_deref(), req.is_active, req.config)
        .map_err(invalid)?;
    match state.services.store.create_integration(who.org_id, &new).await? {
        Some(row) => Ok((StatusCode::CREATED, Json(row))),
        None => Err(integration_exists(new.name())),
    }
}

/// Body of `PATCH /v1/integrations/{id}`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PatchIntegration {
    is_active: Option<bool>,
    name: Option<String>,
    /// Replaces the configuration (a JSON object).
    #[schema(value_type = Option<Object>)]
    config: Option<serde_json::Value>,
}

/// Activates, deactivates, renames or reconfigures an integration.
#[utoipa::path(patch, path = "/v1/integrations/{id}", tag = "tools", params(("id" = String, Path)),
    request_body(content = PatchIntegration, content_type = "application/json"),
    responses((status = 200, body = IntegrationRow), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody, description = "needs tools:admin"), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "integration_exists"),
        (status = 422, body = ErrorBody, description = "invalid_request, naming the field")),
    security(("bearer" = [])))]
pub(crate) async fn patch_integration(
    State(state): State<AppState>,
    auth: Auth,
    PathId(id): PathId<IntegrationId>,
    body: JsonBody<PatchIntegration>,
) -> Result<Json<IntegrationRow>, ApiError> {
    let who = auth.require(TOOLS_ADMIN)?;
    let req = body.value;
    let name = req.name.clone().unwrap_or_default();
    let change = IntegrationChange::parse(req.name.as_deref(), req.is_active, req.config)
        .map_err(invalid)?;
    match state.services.store.update_integration(who.org_id, id, &change).await? {
        UpdateIntegration::Updated(row) => Ok(Json(row)),
        UpdateIntegration::NotFound => Err(ApiError::not_found(Entity::Integration)),
        UpdateIntegration::NameTaken => Err(integration_exists(name.trim())),
    }
}
