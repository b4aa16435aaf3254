//! Workflows: templates and an organization's definitions, executions (start, read, list,
//! cancel, retry, answer an approval). Reading needs `runs:read`; defining, starting,
//! cancelling, retrying and answering need `workflows:run`.

use agentyard_core::events::WorkflowEvent;
use agentyard_core::{ExecutionId, Scope};
use agentyard_services::triggers::{HookCreated, HookView};
use agentyard_services::workflows::{
    AnswerRequest, ExecutionQuery, ExecutionView, StartRequest, Target, WorkflowView,
};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::auth::Auth;
use crate::error::{
    ErrorBody, JsonBody, OptionalJsonBody, PathId, QueryNumber, QueryParams, query_limit,
};
use crate::routes::runs::{idempotency, open_stream, resume_from};
use crate::{ApiError, AppState};

/// A list of definitions.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct WorkflowList {
    data: Vec<WorkflowView>,
}

/// A page of executions, newest first.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct ExecutionPage {
    data: Vec<ExecutionView>,
    /// Pass as `cursor` for the next page; null at the end.
    next_cursor: Option<String>,
}

/// Query of `GET /v1/workflows/executions`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListQuery {
    /// queued, running, completed, failed or cancelled.
    status: Option<String>,
    /// Only executions of this definition or template.
    workflow_id: Option<String>,
    /// The previous page's `next_cursor`.
    cursor: Option<String>,
    /// 1 to 100 (default 20).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 100)]
    limit: Option<QueryNumber>,
}

/// The built-in templates.
#[utoipa::path(get, path = "/v1/workflows/templates", tag = "workflows",
    responses((status = 200, body = WorkflowList), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn templates(
    State(state): State<AppState>,
    auth: Auth,
) -> Result<Json<WorkflowList>, ApiError> {
    auth.require(Scope::RunsRead)?;
    Ok(Json(WorkflowList { data: state.services.list_templates() }))
}

/// The organization's definitions (the newest version of each).
#[utoipa::path(get, path = "/v1/workflows", tag = "workflows",
    responses((status = 200, body = WorkflowList), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn list(
    State(state): State<AppState>,
    auth: Auth,
) -> Result<Json<WorkflowList>, ApiError> {
    let who = auth.require(Scope::RunsRead)?;
    Ok(Json(WorkflowList { data: state.services.list_workflows(who).await? }))
}

/// Creates a definition, or a new version of one (`schemas/workflow.v1.json`). Executions in
/// flight keep the version they started with.
#[utoipa::path(post, path = "/v1/workflows", tag = "workflows",
    request_body(content = Object, content_type = "application/json"),
    responses((status = 201, body = WorkflowView), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 422, body = ErrorBody, description = "invalid_workflow: `fields` names each problem's path")),
    security(("bearer" = [])))]
pub(crate) async fn create(
    State(state): State<AppState>,
    auth: Auth,
    body: JsonBody<Value>,
) -> Result<(StatusCode, Json<WorkflowView>), ApiError> {
    let who = auth.require(Scope::WorkflowsRun)?;
    let v = state.services.create_workflow(who, body.value).await?;
    Ok((StatusCode::CREATED, Json(v)))
}

/// A definition with its versions: the organization's, else the template of that id.
#[utoipa::path(get, path = "/v1/workflows/{id}", tag = "workflows", params(("id" = String, Path)),
    responses((status = 200, body = WorkflowView), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn get(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<Json<WorkflowView>, ApiError> {
    let who = auth.require(Scope::RunsRead)?;
    Ok(Json(state.services.get_workflow(who, &id).await?))
}

/// Starts an execution of the organization's definition (its newest version unless `version`
/// says otherwise), else of the template of that id.
#[utoipa::path(post, path = "/v1/workflows/{id}/executions", tag = "workflows",
    params(("id" = String, Path), ("Idempotency-Key" = Option<String>, Header,
        description = "a retried POST with the same key returns the same execution")),
    request_body(content = StartRequest, content_type = "application/json"),
    responses((status = 202, body = ExecutionView), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "concurrency_limit (on_limit: reject)"),
        (status = 422, body = ErrorBody, description = "invalid_inputs")),
    security(("bearer" = [])))]
pub(crate) async fn start(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: OptionalJsonBody<StartRequest>,
) -> Result<(StatusCode, Json<ExecutionView>), ApiError> {
    let who = auth.require(Scope::WorkflowsRun)?;
    let req = body.0.unwrap_or_default();
    let bytes = serde_json::to_vec(&json!({"inputs": req.inputs, "version": req.version}))
        .unwrap_or_default();
    let idem = idempotency(&headers, &format!("workflows/{id}"), &bytes);
    let trigger = json!({"kind": "api"});
    let e = state.services.start_execution(who, Target::Any(&id), req, idem, trigger).await?;
    Ok((StatusCode::ACCEPTED, Json(e)))
}

/// Starts a template (the body is its inputs).
#[utoipa::path(post, path = "/v1/workflows/start/{id}", tag = "workflows",
    params(("id" = String, Path, description = "the template's id"),
        ("Idempotency-Key" = Option<String>, Header)),
    request_body(content = Object, content_type = "application/json"),
    responses((status = 202, body = ExecutionView), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn start_template(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: OptionalJsonBody<Value>,
) -> Result<(StatusCode, Json<ExecutionView>), ApiError> {
    let who = auth.require(Scope::WorkflowsRun)?;
    let inputs = body.0.unwrap_or_else(|| json!({}));
    let bytes = serde_json::to_vec(&inputs).unwrap_or_default();
    let idem = idempotency(&headers, &format!("workflows/start/{id}"), &bytes);
    let req = StartRequest { inputs: Some(inputs), version: None };
    let trigger = json!({"kind": "template"});
    let e = state.services.start_execution(who, Target::Template(&id), req, idem, trigger).await?;
    Ok((StatusCode::ACCEPTED, Json(e)))
}

/// The organization's executions (a token limited to its user: those it started), newest first.
#[utoipa::path(get, path = "/v1/workflows/executions", tag = "workflows", params(ListQuery),
    responses((status = 200, body = ExecutionPage), (status = 400, body = ErrorBody, description = "invalid_query: a number out of range"), (status = 401, body = ErrorBody),
        (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn executions(
    State(state): State<AppState>,
    auth: Auth,
    QueryParams(q): QueryParams<ListQuery>,
) -> Result<Json<ExecutionPage>, ApiError> {
    let who = auth.require(Scope::RunsRead)?;
    let q = ExecutionQuery {
        status: q.status,
        workflow_id: q.workflow_id,
        cursor: q.cursor,
        limit: query_limit(q.limit.as_ref())?,
    };
    let page = state.services.list_executions(who, q).await?;
    Ok(Json(ExecutionPage { data: page.data, next_cursor: page.next_cursor }))
}

/// An execution: every step with its status, attempts, timings, output, error and run.
#[utoipa::path(get, path = "/v1/workflows/executions/{id}", tag = "workflows",
    params(("id" = String, Path)),
    responses((status = 200, body = ExecutionView), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn execution(
    State(state): State<AppState>,
    auth: Auth,
    PathId(id): PathId<ExecutionId>,
) -> Result<Json<ExecutionView>, ApiError> {
    let who = auth.require(Scope::RunsRead)?;
    Ok(Json(state.services.get_execution(who, id).await?))
}

/// Query of `GET /v1/workflows/executions/{id}/events`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct EventsQuery {
    /// Resume after this event id (the `Last-Event-ID` header takes precedence).
    #[param(value_type = Option<i64>, minimum = 0)]
    after: Option<QueryNumber>,
}

/// The execution's events as SSE, from the first (or after `Last-Event-ID`), then live; ends
/// after `workflow.execution.completed | failed | cancelled`.
#[utoipa::path(get, path = "/v1/workflows/executions/{id}/events", tag = "workflows",
    params(("id" = String, Path), ("Last-Event-ID" = Option<String>, Header), EventsQuery),
    responses((status = 200, content_type = "text/event-stream", description = "workflow.execution.<status> {execution_id, workflow_id, version, status, output, error}; workflow.step.<status> {execution_id, step}"),
        (status = 400, body = ErrorBody, description = "invalid_query: a number out of range"), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody), (status = 429, body = ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn events(
    State(state): State<AppState>,
    auth: Auth,
    PathId(id): PathId<ExecutionId>,
    headers: HeaderMap,
    QueryParams(q): QueryParams<EventsQuery>,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    use futures::StreamExt;
    let who = auth.require(Scope::RunsRead)?;
    let after = resume_from(&headers, q.after.as_ref())?.unwrap_or(0);
    let permit = open_stream(&state, who)?;
    let bus = state.services.bus.clone();
    let e = state.services.get_execution(who, id).await?;
    let ended = e.status.is_terminal();
    if ended && bus.last_workflow_event_seq(who.org_id, id).await? <= after {
        return Ok(crate::sse::respond_raw(futures::stream::empty()).into_response());
    }
    let events = bus.workflow_events(who.org_id, id, after).await?;
    // Ends right after the terminal event (or, for an execution that had ended, after the
    // last stored one), without waiting for another.
    let events = futures::stream::unfold(
        (Box::pin(events), false, permit),
        move |(mut s, done, p)| async move {
            if done {
                return None;
            }
            let (seq, kind, data, pending) = s.next().await?;
            let done = WorkflowEvent::is_terminal(&kind) || (ended && pending == 0);
            Some(((seq, kind, data), (s, done, p)))
        },
    );
    Ok(crate::sse::respond_raw(events).into_response())
}

/// Cancels an execution and the runs of its running steps.
#[utoipa::path(post, path = "/v1/workflows/executions/{id}/cancel", tag = "workflows",
    params(("id" = String, Path)),
    responses((status = 200, body = ExecutionView), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "execution_already_terminal")),
    security(("bearer" = [])))]
pub(crate) async fn cancel(
    State(state): State<AppState>,
    auth: Auth,
    PathId(id): PathId<ExecutionId>,
) -> Result<Json<ExecutionView>, ApiError> {
    let who = auth.require(Scope::WorkflowsRun)?;
    Ok(Json(state.services.cancel_execution(who, id).await?))
}

/// Runs a failed execution's failed steps again (and those it did not run because of the
/// failure), keeping completed outputs.
#[utoipa::path(post, path = "/v1/workflows/executions/{id}/retry", tag = "workflows",
    params(("id" = String, Path)),
    responses((status = 200, body = ExecutionView), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "execution_not_failed")),
    security(("bearer" = [])))]
pub(crate) async fn retry(
    State(state): State<AppState>,
    auth: Auth,
    PathId(id): PathId<ExecutionId>,
) -> Result<Json<ExecutionView>, ApiError> {
    let who = auth.require(Scope::WorkflowsRun)?;
    Ok(Json(state.services.retry_execution(who, id).await?))
}

/// Answers an approval step (`approve` or `deny`).
#[utoipa::path(post, path = "/v1/workflows/executions/{id}/input", tag = "workflows",
    params(("id" = String, Path)),
    request_body(content = AnswerRequest, content_type = "application/json"),
    responses((status = 200, body = ExecutionView), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "step_not_waiting"),
        (status = 422, body = ErrorBody, description = "unknown_step")),
    security(("bearer" = [])))]
pub(crate) async fn answer(
    State(state): State<AppState>,
    auth: Auth,
    PathId(id): PathId<ExecutionId>,
    body: JsonBody<AnswerRequest>,
) -> Result<Json<ExecutionView>, ApiError> {
    let who = auth.require(Scope::WorkflowsRun)?;
    Ok(Json(state.services.answer_execution(who, id, body.value).await?))
}

/// A workflow's webhooks.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct HookList {
    data: Vec<HookView>,
}

/// Adds an inbound webhook to a workflow; the answer holds its secret, shown this once.
#[utoipa::path(post, path = "/v1/workflows/{id}/hooks", tag = "workflows",
    params(("id" = String, Path)),
    responses((status = 201, body = HookCreated), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn create_hook(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<HookCreated>), ApiError> {
    let who = auth.require(Scope::WorkflowsRun)?;
    Ok((StatusCode::CREATED, Json(state.services.create_hook(who, &id).await?)))
}

/// A workflow's webhooks (without their secrets).
#[utoipa::path(get, path = "/v1/workflows/{id}/hooks", tag = "workflows",
    params(("id" = String, Path)),
    responses((status = 200, body = HookList), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn list_hooks(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<Json<HookList>, ApiError> {
    let who = auth.require(Scope::RunsRead)?;
    Ok(Json(HookList { data: state.services.list_hooks(who, &id).await? }))
}

/// Revokes a webhook.
#[utoipa::path(delete, path = "/v1/hooks/{id}", tag = "workflows", params(("id" = String, Path)),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn revoke_hook(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let who = auth.require(Scope::WorkflowsRun)?;
    let id = id.parse().map_err(|_| ApiError::not_found(agentyard_services::Entity::Hook))?;
    state.services.revoke_hook(who, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// An inbound webhook: starts the hook's workflow with the body as inputs. No bearer token:
/// `X-Agentyard-Timestamp` (unix seconds, within 5 minutes of now) and `X-Agentyard-Signature`
/// (`sha256=` and the hex HMAC-SHA256, under the hook's secret, of `<timestamp>.<raw body>`)
/// authenticate it; a bad or stale signature is 401 and starts nothing.
#[utoipa::path(post, path = "/v1/hooks/{id}", tag = "workflows",
    params(("id" = String, Path), ("X-Agentyard-Timestamp" = String, Header),
        ("X-Agentyard-Signature" = String, Header)),
    request_body(content = Object, content_type = "application/json"),
    responses((status = 202, body = ExecutionView), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub(crate) async fn hook(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<ExecutionView>), ApiError> {
    let id = id.parse().map_err(|_| ApiError::not_found(agentyard_services::Entity::Hook))?;
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let e = state
        .services
        .hook_start(id, header("x-agentyard-timestamp"), header("x-agentyard-signature"), &body)
        .await?;
    Ok((StatusCode::ACCEPTED, Json(e)))
}
