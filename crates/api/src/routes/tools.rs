//! Tool calls and MCP servers: the audit log of calls, the servers an org registers, and the
//! operator's servers.

use agentyard_core::{McpServerId, RunId, Scope};
use agentyard_services::mcp::{RegisterServer, ServerView};
use agentyard_store::tools::{Invocation, InvocationOutcome};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::auth::Auth;
use crate::error::{ErrorBody, JsonBody, PathId, QueryNumber, QueryParams, query_limit};
use crate::{ApiError, AppState};

/// A run's tool calls, oldest first.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct InvocationList {
    data: Vec<Invocation>,
}

/// The run's tool calls, in order: tool, arguments, result, error, attempts, timing.
#[utoipa::path(get, path = "/v1/runs/{id}/tool-invocations", tag = "tools", params(("id" = String, Path)),
    responses((status = 200, body = InvocationList), (status = 400, body = ErrorBody, description = "invalid_query: a number out of range"), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn run_invocations(
    State(state): State<AppState>,
    auth: Auth,
    PathId(id): PathId<RunId>,
) -> Result<Json<InvocationList>, ApiError> {
    let who = auth.require(Scope::RunsRead)?;
    state.services.get_run(who, id).await?;
    Ok(Json(InvocationList { data: state.services.store.run_invocations(who.org_id, id).await? }))
}

/// Query of the audit log.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct InvocationQuery {
    /// Only calls of this tool (the name the model called).
    tool: Option<String>,
    /// Only calls to this server: `builtin`, or an MCP server's name.
    server: Option<String>,
    /// Only calls that ended so: `ok` (completed, no error), `error` (completed with
    /// `is_error` or an `error`), `pending` (not completed: `status` `pending` or
    /// `requires_input`).
    outcome: Option<InvocationOutcome>,
    /// RFC 3339: only calls made at or after.
    since: Option<DateTime<Utc>>,
    /// RFC 3339: only calls made before.
    until: Option<DateTime<Utc>>,
    /// Only calls of runs this user started.
    user_id: Option<agentyard_core::UserId>,
    /// The previous page's `next_cursor`.
    cursor: Option<String>,
    /// 1 to 500 (default 50).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 500)]
    limit: Option<QueryNumber>,
}

/// A page of the org's tool calls, newest first.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct InvocationPage {
    data: Vec<Invocation>,
    /// Pass as `cursor` for the next page; null at the end.
    next_cursor: Option<String>,
}

/// The organization's tool calls, newest first, a page at a time (a token limited to its user:
/// its own).
#[utoipa::path(get, path = "/v1/tool-invocations", tag = "tools", params(InvocationQuery),
    responses((status = 200, body = InvocationPage), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 422, body = ErrorBody, description = "invalid_query (a bad `outcome`, time or `user_id`), invalid_cursor")),
    security(("bearer" = [])))]
pub(crate) async fn invocations(
    State(state): State<AppState>,
    auth: Auth,
    QueryParams(q): QueryParams<InvocationQuery>,
) -> Result<Json<InvocationPage>, ApiError> {
    let who = auth.require(Scope::RunsRead)?;
    let query = agentyard_services::mcp::InvocationQuery {
        tool: q.tool,
        server: q.server,
        outcome: q.outcome,
        since: q.since,
        until: q.until,
        user_id: q.user_id,
        cursor: q.cursor,
        limit: query_limit(q.limit.as_ref())?,
    };
    let page = state.services.list_invocations(who, query).await?;
    Ok(Json(InvocationPage { data: page.data, next_cursor: page.next_cursor }))
}

/// The org's MCP servers, then the operator's.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct ServerList {
    data: Vec<ServerView>,
}

/// Registers an MCP server (streamable HTTP) and lists its tools.
#[utoipa::path(post, path = "/v1/mcp-servers", tag = "tools",
    request_body(content = RegisterServer, content_type = "application/json"),
    responses((status = 201, body = ServerView, description = "registered; `last_error` says when its tools could not be listed"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "server_exists"),
        (status = 422, body = ErrorBody, description = "invalid_name, invalid_url (malformed, or a private address the operator did not allow)")),
    security(("bearer" = [])))]
pub(crate) async fn register(
    State(state): State<AppState>,
    auth: Auth,
    body: JsonBody<RegisterServer>,
) -> Result<(StatusCode, Json<ServerView>), ApiError> {
    let who = auth.require(Scope::ToolsAdmin)?;
    let server = state.services.register_mcp_server(who, body.value).await?;
    // Not the body: it may hold the server's bearer token.
    let details = serde_json::json!({"name": server.name, "url": server.url});
    let id = server.id.map(|i| i.to_string()).unwrap_or_default();
    state.services.audit(who, "mcp_server.registered", "mcp_server", id, details).await;
    Ok((StatusCode::CREATED, Json(server)))
}

/// The org's MCP servers (never their tokens), then the operator's (`source: operator`).
#[utoipa::path(get, path = "/v1/mcp-servers", tag = "tools",
    responses((status = 200, body = ServerList), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn list(
    State(state): State<AppState>,
    auth: Auth,
) -> Result<Json<ServerList>, ApiError> {
    let who = auth.require(Scope::AgentsRead)?;
    Ok(Json(ServerList { data: state.services.list_mcp_servers(who).await? }))
}

/// One of the org's MCP servers (never its token), as listed.
#[utoipa::path(get, path = "/v1/mcp-servers/{id}", tag = "tools", params(("id" = String, Path)),
    responses((status = 200, body = ServerView), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody, description = "server_not_found")),
    security(("bearer" = [])))]
pub(crate) async fn get(
    State(state): State<AppState>,
    auth: Auth,
    PathId(id): PathId<McpServerId>,
) -> Result<Json<ServerView>, ApiError> {
    let who = auth.require(Scope::AgentsRead)?;
    Ok(Json(state.services.get_mcp_server(who, id).await?.into()))
}

/// A server's tools (its cached `tools/list`).
#[utoipa::path(get, path = "/v1/mcp-servers/{id}/tools", tag = "tools", params(("id" = String, Path)),
    responses((status = 200, body = Vec<Object>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn tools(
    State(state): State<AppState>,
    auth: Auth,
    PathId(id): PathId<McpServerId>,
) -> Result<Json<Value>, ApiError> {
    let who = auth.require(Scope::AgentsRead)?;
    Ok(Json(state.services.get_mcp_server(who, id).await?.tools))
}

/// Lists the server's tools again.
#[utoipa::path(post, path = "/v1/mcp-servers/{id}/refresh", tag = "tools", params(("id" = String, Path)),
    responses((status = 200, body = ServerView), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn refresh(
    State(state): State<AppState>,
    auth: Auth,
    PathId(id): PathId<McpServerId>,
) -> Result<Json<ServerView>, ApiError> {
    let who = auth.require(Scope::ToolsAdmin)?;
    Ok(Json(state.services.refresh_mcp_server(who, id).await?))
}

/// Removes a server; its tools stop reaching models.
#[utoipa::path(delete, path = "/v1/mcp-servers/{id}", tag = "tools", params(("id" = String, Path)),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn delete(
    State(state): State<AppState>,
    auth: Auth,
    PathId(id): PathId<McpServerId>,
) -> Result<StatusCode, ApiError> {
    let who = auth.require(Scope::ToolsAdmin)?;
    state.services.delete_mcp_server(who, id).await?;
    state.services.audit(who, "mcp_server.deleted", "mcp_server", id, serde_json::json!({})).await;
    Ok(StatusCode::NO_CONTENT)
}
