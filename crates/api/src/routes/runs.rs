//! Runs: create (202 or an SSE stream), read (with long-polling), list, events, cancel, answer
//! what a run waits for.

use std::time::Duration;

use chrono::{DateTime, Utc};

use agentyard_core::run::{Run, RunStatus};
use agentyard_core::{AgentId, RunId, Scope, ThreadId};
use agentyard_services::runs::{CreateRunRequest, InputAnswerRequest, RunQuery};
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::auth::Auth;
use crate::error::{
    ErrorBody, JsonBody, MAX_SEQ, PathId, QueryNumber, QueryParams, query_limit, query_seq,
};
use crate::{ApiError, AppState, live, sse};

/// Longest `?wait=`.
pub(crate) const MAX_WAIT: Duration = Duration::from_secs(60);

/// Query of `GET /v1/runs/{id}`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct GetQuery {
    /// Seconds (at most 60) to wait for the run to end (or to start waiting for input) before
    /// answering.
    #[param(value_type = Option<f64>, minimum = 0, maximum = 60)]
    wait: Option<QueryNumber>,
}

/// Query of `GET /v1/runs/{id}/events`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct EventsQuery {
    /// Resume after this event id (the `Last-Event-ID` header takes precedence).
    #[param(value_type = Option<i64>, minimum = 0)]
    after: Option<QueryNumber>,
}

/// Query of `GET /v1/runs`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListQuery {
    /// Only runs in this status.
    status: Option<RunStatus>,
    /// Only runs of this thread.
    thread_id: Option<ThreadId>,
    /// Only runs of this agent.
    agent_id: Option<AgentId>,
    /// RFC 3339: only runs created at or after.
    since: Option<DateTime<Utc>>,
    /// RFC 3339: only runs created before.
    until: Option<DateTime<Utc>>,
    /// The previous page's `next_cursor`.
    cursor: Option<String>,
    /// 1 to 100 (default 20).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 100)]
    limit: Option<QueryNumber>,
}

/// A page of runs, newest first.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct RunPage {
    data: Vec<Run>,
    /// Pass as `cursor` for the next page; null at the end.
    next_cursor: Option<String>,
}

/// What a `stream: true` run creation answers (documented as its own 200: the run's events).
const STREAMED: &str = "`stream` true: the run's event stream (as `GET /v1/runs/{id}/events`) from `run.queued` to its terminal event";

/// Posts a message to a thread: starts a run.
#[utoipa::path(post, path = "/v1/threads/{id}/runs", tag = "runs",
    params(("id" = String, Path), ("Idempotency-Key" = Option<String>, Header,
        description = "a retried POST with the same key returns the same run")),
    request_body(content = CreateRunRequest, content_type = "application/json"),
    responses((status = 202, body = Run, description = "queued (`stream` false or absent)"),
        (status = 200, content_type = "text/event-stream", description = STREAMED),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody, description = "thread_busy (strategy reject), agent_inactive"),
        (status = 413, body = ErrorBody), (status = 422, body = ErrorBody), (status = 429, body = ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn create_on_thread(
    State(state): State<AppState>,
    auth: Auth,
    PathId(thread): PathId<ThreadId>,
    headers: HeaderMap,
    body: JsonBody<CreateRunRequest>,
) -> Result<Response, ApiError> {
    let who = auth.require(Scope::RunsWrite)?;
    if body.value.thread_id.is_some() {
        return Err(ApiError::invalid("invalid_request", "thread_id belongs in the path here"));
    }
    let idempotency = idempotency(&headers, &thread.to_string(), &body.bytes);
    respond_created(&state, who, body.value, Some(thread), idempotency).await
}

/// Starts a run on a new thread, or on `thread_id`.
#[utoipa::path(post, path = "/v1/runs", tag = "runs",
    params(("Idempotency-Key" = Option<String>, Header)),
    request_body(content = CreateRunRequest, content_type = "application/json"),
    responses((status = 202, body = Run, description = "queued (`stream` false or absent)"),
        (status = 200, content_type = "text/event-stream", description = STREAMED),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 422, body = ErrorBody), (status = 429, body = ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn create(
    State(state): State<AppState>,
    auth: Auth,
    headers: HeaderMap,
    body: JsonBody<CreateRunRequest>,
) -> Result<Response, ApiError> {
    let who = auth.require(Scope::RunsWrite)?;
    let thread = body.value.thread_id;
    let idempotency = idempotency(&headers, "", &body.bytes);
    respond_created(&state, who, body.value, thread, idempotency).await
}

async fn respond_created(
    state: &AppState,
    who: &agentyard_services::Principal,
    req: CreateRunRequest,
    thread: Option<ThreadId>,
    idempotency: Option<(String, Vec<u8>)>,
) -> Result<Response, ApiError> {
    let id = RunId::new();
    if !req.stream {
        let run = state.services.create_run(who, req, thread, idempotency, id).await?;
        return Ok((StatusCode::ACCEPTED, Json(run)).into_response());
    }
    let permit = open_stream(state, who)?;
    // Listen before the run exists, so not one event is missed.
    let mut sub = state.hub.subscribe_run(id);
    let run = state.services.create_run(who, req, thread, idempotency, id).await?;
    // A new run's every event reaches `sub`. An idempotent replay of an earlier run reads its
    // stored events from the start (registered before they are read).
    let from = if run.id == id {
        live::StreamStart::Created
    } else {
        sub = state.hub.subscribe_run(run.id);
        live::StreamStart::Stored(None)
    };
    let bus = state.services.bus.clone();
    let events = live::run_events(bus, &run, who.org_id, from, sub, permit);
    Ok(sse::respond(events).into_response())
}

/// One more open stream of the caller's token, or 429; 503 while NATS is unreachable (a
/// stream is read from it, and would otherwise open only to end after a request's timeout).
pub(crate) fn open_stream(
    state: &AppState,
    who: &agentyard_services::Principal,
) -> Result<crate::hub::StreamPermit, ApiError> {
    if !state.services.bus.is_connected() {
        return Err(agentyard_services::Error::Unavailable("message bus").into());
    }
    let max = state.services.settings.max_streams_per_token;
    state.hub.open_stream(who.token_id, max).ok_or_else(|| {
        ApiError::too_many(
            "too_many_streams",
            format!(
                "this token has {max} event streams open (AY_MAX_STREAMS_PER_TOKEN); close one"
            ),
            1,
        )
    })
}

/// The key and a hash of what it guards (the path and the body).
pub(crate) fn idempotency(
    headers: &HeaderMap,
    path: &str,
    body: &[u8],
) -> Option<(String, Vec<u8>)> {
    let key = headers.get("idempotency-key")?.to_str().unwrap_or("\u{0}").to_owned();
    let mut h = Sha256::new();
    h.update(path.as_bytes());
    h.update([0]);
    h.update(body);
    Some((key, h.finalize().to_vec()))
}

/// A run; `?wait=N` answers as soon as it is terminal (or starts waiting for input), or after
/// N seconds.
#[utoipa::path(get, path = "/v1/runs/{id}", tag = "runs", params(("id" = String, Path), GetQuery),
    responses((status = 200, body = Run), (status = 400, body = ErrorBody, description = "invalid_query: a number out of range"), (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn get(
    State(state): State<AppState>,
    auth: Auth,
    PathId(id): PathId<RunId>,
    QueryParams(q): QueryParams<GetQuery>,
) -> Result<Json<Run>, ApiError> {
    let who = auth.require(Scope::RunsRead)?;
    let wait = match q.wait {
        None => Duration::ZERO,
        Some(w) => Duration::from_secs_f64(w.float("wait", 0.0, MAX_WAIT.as_secs_f64())?),
    };
    live::wait_run(&state, who, id, wait).await.map(Json)
}

/// The organization's runs (a token limited to its user: its own), newest first, optionally of
/// one status, thread or agent.
#[utoipa::path(get, path = "/v1/runs", tag = "runs", params(ListQuery),
    responses((status = 200, body = RunPage), (status = 400, body = ErrorBody, description = "invalid_query: a number out of range"), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn list(
    State(state): State<AppState>,
    auth: Auth,
    QueryParams(q): QueryParams<ListQuery>,
) -> Result<Json<RunPage>, ApiError> {
    let who = auth.require(Scope::RunsRead)?;
    let query = RunQuery {
        status: q.status,
        thread_id: q.thread_id,
        agent_id: q.agent_id,
        since: q.since,
        until: q.until,
        cursor: q.cursor,
        limit: query_limit(q.limit.as_ref())?,
    };
    let page = state.services.list_runs(who, query).await?;
    Ok(Json(RunPage { data: page.data, next_cursor: page.next_cursor }))
}

/// The `Last-Event-ID` header, else `after` (0 to [`MAX_SEQ`]: 400 `invalid_query` beyond).
pub(crate) fn resume_from(
    headers: &HeaderMap,
    after: Option<&QueryNumber>,
) -> Result<Option<u64>, ApiError> {
    match headers.get("last-event-id") {
        Some(v) => {
            let id = v.to_str().ok().and_then(|s| s.trim().parse().ok());
            Ok(Some(id.filter(|id| *id <= MAX_SEQ).ok_or_else(|| {
                ApiError::invalid("invalid_last_event_id", "Last-Event-ID must be an event id")
            })?))
        }
        None => query_seq("after", after),
    }
}

/// The run's events as SSE; resume with `Last-Event-ID`. Ends after the terminal event.
#[utoipa::path(get, path = "/v1/runs/{id}/events", tag = "runs",
    params(("id" = String, Path), ("Last-Event-ID" = Option<String>, Header), EventsQuery),
    responses((status = 200, content_type = "text/event-stream", description = "run.queued, run.started, message.delta, message.reset, message.completed, tool_call.created, tool_call.completed, run.requires_input, run.input_received, run.completed | run.failed | run.cancelled | run.expired"),
        (status = 400, body = ErrorBody, description = "invalid_query: a number out of range"), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 429, body = ErrorBody, description = "too_many_streams"),
        (status = 503, body = ErrorBody, description = "unavailable: NATS is unreachable")),
    security(("bearer" = [])))]
pub(crate) async fn events(
    State(state): State<AppState>,
    auth: Auth,
    PathId(id): PathId<RunId>,
    headers: HeaderMap,
    QueryParams(q): QueryParams<EventsQuery>,
) -> Result<Response, ApiError> {
    let who = auth.require(Scope::RunsRead)?;
    let after = resume_from(&headers, q.after.as_ref())?;
    let permit = open_stream(&state, who)?;
    let sub = state.hub.subscribe_run(id);
    let run = state.services.get_run(who, id).await?;
    let from = live::StreamStart::Stored(after);
    let events = live::run_events(state.services.bus.clone(), &run, who.org_id, from, sub, permit);
    Ok(sse::respond(events).into_response())
}

/// Cancels a run.
#[utoipa::path(post, path = "/v1/runs/{id}/cancel", tag = "runs", params(("id" = String, Path)),
    responses((status = 200, body = Run), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody, description = "run_already_terminal")),
    security(("bearer" = [])))]
pub(crate) async fn cancel(
    State(state): State<AppState>,
    auth: Auth,
    PathId(id): PathId<RunId>,
) -> Result<Json<Run>, ApiError> {
    let who = auth.require(Scope::RunsWrite)?;
    Ok(Json(state.services.cancel_run(who, id).await?))
}

/// Answers what a `requires_input` run waits for (`required_input` on the run says what).
#[utoipa::path(post, path = "/v1/runs/{id}/input", tag = "runs", params(("id" = String, Path)),
    request_body(content = InputAnswerRequest, content_type = "application/json"),
    responses((status = 200, body = Run), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "run_not_waiting"),
        (status = 422, body = ErrorBody, description = "invalid_action, invalid_content (against the requested schema)")),
    security(("bearer" = [])))]
pub(crate) async fn answer(
    State(state): State<AppState>,
    auth: Auth,
    PathId(id): PathId<RunId>,
    body: JsonBody<InputAnswerRequest>,
) -> Result<Json<Run>, ApiError> {
    let who = auth.require(Scope::RunsWrite)?;
    Ok(Json(state.services.answer_input(who, id, body.value).await?))
}
