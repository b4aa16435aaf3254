//! Tools: the audit log of tool calls, answering what a run waits for, and the MCP servers an
//! organization registers.

use agentyard_core::RunId;
use agentyard_core::run::{Run, RunStatus};
use agentyard_mcp::{Client, ServerConfig};
use agentyard_store::tools::{BUILTIN_SERVER, Invocation, McpServer};
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::parse_id;
use crate::auth::Auth;
use crate::error::{self, ErrorBody, parse_json};
use crate::{ApiError, AppState};

/// A list.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct InvocationList {
    data: Vec<Invocation>,
}

/// The run's tool calls, in order: tool, arguments, result, error, attempts, timing.
#[utoipa::path(get, path = "/v1/runs/{id}/tool-invocations", tag = "tools", params(("id" = String, Path)),
    responses((status = 200, body = InvocationList), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn run_invocations(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<Json<InvocationList>, ApiError> {
    let who = auth.require("runs:read")?;
    let id: RunId = parse_id(&id, "run_not_found", "run")?;
    if state.store.get_run(who.org_id, id).await?.is_none() {
        return Err(ApiError::not_found("run_not_found", "run"));
    }
    Ok(Json(InvocationList { data: state.store.run_invocations(who.org_id, id).await? }))
}

/// Query of the audit log.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub(crate) struct InvocationQuery {
    /// Only calls of this tool (the name the model called).
    tool: Option<String>,
    /// RFC 3339: only calls made since.
    since: Option<DateTime<Utc>>,
    /// 1 to 500 (default 50).
    limit: Option<i64>,
}

/// The organization's tool calls, newest first.
#[utoipa::path(get, path = "/v1/tool-invocations", tag = "tools", params(InvocationQuery),
    responses((status = 200, body = InvocationList), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn invocations(
    State(state): State<AppState>,
    auth: Auth,
    query: Result<Query<InvocationQuery>, QueryRejection>,
) -> Result<Json<InvocationList>, ApiError> {
    let who = auth.require("runs:read")?;
    let Query(q) = query.map_err(|e| ApiError::invalid("invalid_query", e.body_text()))?;
    let limit = q.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::invalid("invalid_query", "limit must be between 1 and 500"));
    }
    let data = state.store.org_invocations(who.org_id, q.tool.as_deref(), q.since, limit).await?;
    Ok(Json(InvocationList { data }))
}

/// Body of `POST /v1/runs/{id}/input`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct InputAnswer {
    /// Elicitation: `accept`, `decline` or `cancel`; tool approval: `approve` or `deny`.
    action: String,
    /// With `accept`: the requested fields, valid against the requested schema.
    #[schema(value_type = Option<Object>)]
    content: Option<Value>,
}

/// Answers what a `requires_input` run waits for (`required_input` on the run says what).
#[utoipa::path(post, path = "/v1/runs/{id}/input", tag = "tools", params(("id" = String, Path)),
    request_body(content = InputAnswer, content_type = "application/json"),
    responses((status = 200, body = Run), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "run_not_waiting"),
        (status = 422, body = ErrorBody, description = "invalid_action, invalid_content (against the requested schema)")),
    security(("bearer" = [])))]
pub(crate) async fn answer(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Run>, ApiError> {
    let who = auth.require("runs:write")?;
    let id: RunId = parse_id(&id, "run_not_found", "run")?;
    let req: InputAnswer = parse_json(&error::body(body)?)?;
    let run = state
        .store
        .get_run(who.org_id, id)
        .await?
        .ok_or_else(|| ApiError::not_found("run_not_found", "run"))?;
    let not_waiting = || {
        ApiError::new(StatusCode::CONFLICT, "run_not_waiting", "the run is not waiting for input")
    };
    let (RunStatus::RequiresInput, Some(required)) = (run.status, run.required_input.as_ref())
    else {
        return Err(not_waiting());
    };
    let kind = required["kind"].as_str().unwrap_or("elicitation");
    let allowed: &[&str] = if kind == "tool_approval" {
        &["approve", "deny"]
    } else {
        &["accept", "decline", "cancel"]
    };
    if !allowed.contains(&req.action.as_str()) {
        return Err(ApiError::invalid(
            "invalid_action",
            format!("action must be one of {} for a {kind}", allowed.join(", ")),
        ));
    }
    let mut response = serde_json::json!({ "action": req.action });
    if req.action == "accept" {
        let content = req.content.unwrap_or(Value::Null);
        validate_content(&required["requested_schema"], &content)
            .map_err(|m| ApiError::invalid("invalid_content", m))?;
        response["content"] = content;
    }
    let Some((Some(_), outbox)) = state.store.answer_input(who.org_id, id, &response).await? else {
        return Err(not_waiting());
    };
    if let Err(e) = state.outbox.dispatch(&outbox).await {
        tracing::warn!(error = %e, "publish after commit failed; the relay will retry");
    }
    state
        .store
        .get_run(who.org_id, id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found("run_not_found", "run"))
}

/// Checks an elicitation answer against its requested schema (a flat object of strings,
/// numbers, integers and booleans, with `required` and `enum`).
fn validate_content(schema: &Value, content: &Value) -> Result<(), String> {
    let Value::Object(fields) = content else {
        return Err("content must be a JSON object".into());
    };
    let props = schema["properties"].as_object();
    for name in schema["required"].as_array().into_iter().flatten().filter_map(Value::as_str) {
        if fields.get(name).is_none_or(Value::is_null) {
            return Err(format!("content.{name} is required"));
        }
    }
    for (name, value) in fields {
        let Some(prop) = props.and_then(|p| p.get(name)) else {
            return Err(format!("content.{name} is not a requested field"));
        };
        let ok = match prop["type"].as_str() {
            Some("string") => value.is_string(),
            Some("number") => value.is_number(),
            Some("integer") => value.is_i64() || value.is_u64(),
            Some("boolean") => value.is_boolean(),
            _ => true,
        };
        if !ok {
            return Err(format!(
                "content.{name} must be a {}",
                prop["type"].as_str().unwrap_or("value")
            ));
        }
        if let Some(options) = prop["enum"].as_array()
            && !options.contains(value)
        {
            return Err(format!("content.{name} must be one of {}", Value::Array(options.clone())));
        }
        if let (Some(s), Some(min)) = (value.as_str(), prop["minLength"].as_u64())
            && (s.chars().count() as u64) < min
        {
            return Err(format!("content.{name} must be at least {min} characters"));
        }
    }
    Ok(())
}

/// Body of `POST /v1/mcp-servers`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RegisterServer {
    /// 1 to 32 of a-z, 0-9, `-`, `_` (no `__`); its tools reach models as `<name>__<tool>`.
    name: String,
    /// Its streamable HTTP endpoint (http or https).
    url: String,
    /// Sent as `Authorization: Bearer ...`; stored, never returned.
    bearer_token: Option<String>,
}

/// The org's MCP servers.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct ServerList {
    data: Vec<McpServer>,
}

/// Registers an MCP server (streamable HTTP) and lists its tools.
#[utoipa::path(post, path = "/v1/mcp-servers", tag = "tools",
    request_body(content = RegisterServer, content_type = "application/json"),
    responses((status = 201, body = McpServer, description = "registered; `last_error` says when its tools could not be listed"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "server_exists"),
        (status = 422, body = ErrorBody, description = "invalid_name, invalid_url (malformed, or a private address the operator did not allow)")),
    security(("bearer" = [])))]
pub(crate) async fn register(
    State(state): State<AppState>,
    auth: Auth,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<McpServer>), ApiError> {
    let who = auth.require("tools:admin")?;
    let req: RegisterServer = parse_json(&error::body(body)?)?;
    if !agentyard_mcp::valid_name(&req.name) || req.name == BUILTIN_SERVER {
        return Err(ApiError::invalid(
            "invalid_name",
            "name must be 1 to 32 of a-z, 0-9, - and _, without `__`, and not `builtin`",
        ));
    }
    if state.mcp_servers.0.contains_key(&req.name) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "server_exists",
            format!("`{}` is a server of the platform", req.name),
        ));
    }
    let url = agentyard_mcp::check_url(&req.url, state.settings.mcp_allow_private)
        .await
        .map_err(|m| ApiError::invalid("invalid_url", m))?;
    if req.bearer_token.as_ref().is_some_and(|t| t.is_empty() || t.len() > 4096) {
        return Err(ApiError::invalid("invalid_request", "bearer_token must be 1 to 4096 bytes"));
    }
    let server = state
        .store
        .create_mcp_server(who.org_id, &req.name, url.as_str(), req.bearer_token.as_deref())
        .await?
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::CONFLICT,
                "server_exists",
                format!("the organization already has a server named `{}`", req.name),
            )
        })?;
    let server = refresh_tools(&state, who.org_id, server, req.bearer_token).await?;
    Ok((StatusCode::CREATED, Json(server)))
}

async fn refresh_tools(
    state: &AppState,
    org: agentyard_core::OrgId,
    server: McpServer,
    bearer_token: Option<String>,
) -> Result<McpServer, ApiError> {
    let config = ServerConfig::Http { url: server.url.clone(), bearer_token };
    let listed = async {
        let client = Client::connect(
            &config,
            None,
            None,
            state.settings.tool_timeout.min(std::time::Duration::from_secs(10)),
        )
        .await?;
        let tools = client.list_tools().await;
        client.close().await;
        tools
    }
    .await;
    let updated = match listed {
        Ok(tools) => {
            let tools = serde_json::to_value(tools).unwrap_or_default();
            state.store.set_mcp_server_tools(org, server.id, Ok(&tools)).await?
        }
        Err(e) => state.store.set_mcp_server_tools(org, server.id, Err(&e.to_string())).await?,
    };
    Ok(updated.unwrap_or(server))
}

/// The org's MCP servers (never their tokens).
#[utoipa::path(get, path = "/v1/mcp-servers", tag = "tools",
    responses((status = 200, body = ServerList), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn list(
    State(state): State<AppState>,
    auth: Auth,
) -> Result<Json<ServerList>, ApiError> {
    let who = auth.require("agents:read")?;
    Ok(Json(ServerList { data: state.store.list_mcp_servers(who.org_id).await? }))
}

/// A server's tools (its cached `tools/list`).
#[utoipa::path(get, path = "/v1/mcp-servers/{id}/tools", tag = "tools", params(("id" = String, Path)),
    responses((status = 200, body = Vec<Object>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn tools(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let who = auth.require("agents:read")?;
    let server = org_server(&state, who, &id).await?;
    Ok(Json(server.tools))
}

/// Lists the server's tools again.
#[utoipa::path(post, path = "/v1/mcp-servers/{id}/refresh", tag = "tools", params(("id" = String, Path)),
    responses((status = 200, body = McpServer), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn refresh(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<Json<McpServer>, ApiError> {
    let who = auth.require("tools:admin")?;
    let server = org_server(&state, who, &id).await?;
    let token = state.store.mcp_server_token(who.org_id, server.id).await?;
    Ok(Json(refresh_tools(&state, who.org_id, server, token).await?))
}

/// Removes a server; its tools stop reaching models.
#[utoipa::path(delete, path = "/v1/mcp-servers/{id}", tag = "tools", params(("id" = String, Path)),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn delete(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let who = auth.require("tools:admin")?;
    let id: uuid::Uuid = parse_id(&id, "server_not_found", "MCP server")?;
    if state.store.delete_mcp_server(who.org_id, id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(server_not_found())
    }
}

fn server_not_found() -> ApiError {
    ApiError::not_found("server_not_found", "MCP server")
}

/// One of the caller's org's servers, by the id in the path.
async fn org_server(
    state: &AppState,
    who: &agentyard_store::orgs::Principal,
    raw_id: &str,
) -> Result<McpServer, ApiError> {
    let id: uuid::Uuid = parse_id(raw_id, "server_not_found", "MCP server")?;
    state.store.get_mcp_server(who.org_id, id).await?.ok_or_else(server_not_found)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::validate_content;

    #[test]
    fn content_is_checked_against_the_requested_schema() {
        let schema = json!({"type": "object", "properties": {
            "description": {"type": "string", "minLength": 3},
            "priority": {"type": "string", "enum": ["low", "high"]},
            "count": {"type": "integer"}}, "required": ["description"]});
        assert!(
            validate_content(&schema, &json!({"description": "broken", "priority": "low"})).is_ok()
        );
        for bad in [
            json!({}),
            json!({"description": 3}),
            json!({"description": "ok!", "priority": "mid"}),
            json!({"description": "ok!", "extra": 1}),
            json!({"description": "ok!", "count": 1.5}),
            json!({"description": "no"}),
            json!("text"),
        ] {
            assert!(validate_content(&schema, &bad).is_err(), "{bad}");
        }
    }
}
