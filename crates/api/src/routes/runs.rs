//! Runs: create (202 or an SSE stream), read (with long-polling), events, cancel.

use std::time::Duration;

use agentyard_core::run::Run;
use agentyard_core::{RunId, ThreadId};
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::parse_id;
use crate::auth::Auth;
use crate::error::{self, ErrorBody, parse_json};
use crate::service::{self, CreateRunRequest, MAX_WAIT};
use crate::{ApiError, AppState, sse};

/// Query of `GET /v1/runs/{id}`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub(crate) struct GetQuery {
    /// Seconds (at most 60) to wait for the run to end before answering.
    wait: Option<f64>,
}

/// Query of `GET /v1/runs/{id}/events`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub(crate) struct EventsQuery {
    /// Resume after this event id (the `Last-Event-ID` header takes precedence).
    after: Option<u64>,
}

/// Posts a message to a thread: starts a run.
#[utoipa::path(post, path = "/v1/threads/{id}/runs", tag = "runs",
    params(("id" = String, Path), ("Idempotency-Key" = Option<String>, Header,
        description = "a retried POST with the same key returns the same run")),
    request_body(content = CreateRunRequest, content_type = "application/json"),
    responses((status = 202, body = Run, description = "queued; or `text/event-stream` when `stream` is true"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody, description = "thread_busy (strategy reject)"),
        (status = 413, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn create_on_thread(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let who = auth.require("runs:write")?;
    let body = error::body(body)?;
    let thread: ThreadId = parse_id(&id, "thread_not_found", "thread")?;
    let req: CreateRunRequest = parse_json(&body)?;
    if req.thread_id.is_some() {
        return Err(ApiError::invalid("invalid_request", "thread_id belongs in the path here"));
    }
    respond_created(&state, who, req, Some(thread), idempotency(&headers, &id, &body)).await
}

/// Starts a run on a new thread, or on `thread_id`.
#[utoipa::path(post, path = "/v1/runs", tag = "runs",
    params(("Idempotency-Key" = Option<String>, Header)),
    request_body(content = CreateRunRequest, content_type = "application/json"),
    responses((status = 202, body = Run), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn create(
    State(state): State<AppState>,
    auth: Auth,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let who = auth.require("runs:write")?;
    let body = error::body(body)?;
    let req: CreateRunRequest = parse_json(&body)?;
    let thread = req.thread_id;
    respond_created(&state, who, req, thread, idempotency(&headers, "", &body)).await
}

async fn respond_created(
    state: &AppState,
    who: &agentyard_store::orgs::Principal,
    req: CreateRunRequest,
    thread: Option<ThreadId>,
    idempotency: Option<(String, Vec<u8>)>,
) -> Result<Response, ApiError> {
    let id = RunId::new();
    if !req.stream {
        let run = service::create_run(state, who, req, thread, idempotency, id).await?;
        return Ok((StatusCode::ACCEPTED, Json(run)).into_response());
    }
    // Listen before the run exists, so not one event is missed.
    let live = state.hub.subscribe(id);
    let run = service::create_run(state, who, req, thread, idempotency, id).await?;
    if run.id == id {
        return Ok(sse::respond(live).into_response());
    }
    // An idempotent replay of an earlier run: read its stream from the start.
    drop(live);
    let events = service::events_of(state, &run, None).await?;
    Ok(sse::respond(events).into_response())
}

/// The key and a hash of what it guards (the path and the body).
fn idempotency(headers: &HeaderMap, path: &str, body: &[u8]) -> Option<(String, Vec<u8>)> {
    let key = headers.get("idempotency-key")?.to_str().unwrap_or("\u{0}").to_owned();
    let mut h = Sha256::new();
    h.update(path.as_bytes());
    h.update([0]);
    h.update(body);
    Some((key, h.finalize().to_vec()))
}

/// A run; `?wait=N` answers as soon as it is terminal, or after N seconds.
#[utoipa::path(get, path = "/v1/runs/{id}", tag = "runs", params(("id" = String, Path), GetQuery),
    responses((status = 200, body = Run), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn get(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    query: Result<Query<GetQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Run>, ApiError> {
    let who = auth.require("runs:read")?;
    let Query(q) = query.map_err(|e| ApiError::invalid("invalid_query", e.body_text()))?;
    let wait = match q.wait {
        None => Duration::ZERO,
        Some(w) if w.is_finite() && (0.0..=MAX_WAIT.as_secs_f64()).contains(&w) => {
            Duration::from_secs_f64(w)
        }
        Some(_) => {
            return Err(ApiError::invalid(
                "invalid_query",
                "wait must be between 0 and 60 seconds",
            ));
        }
    };
    let id: RunId = parse_id(&id, "run_not_found", "run")?;
    service::wait_run(&state, who, id, wait).await.map(Json)
}

/// The run's events as SSE; resume with `Last-Event-ID`. Ends after the terminal event.
#[utoipa::path(get, path = "/v1/runs/{id}/events", tag = "runs",
    params(("id" = String, Path), ("Last-Event-ID" = Option<String>, Header), EventsQuery),
    responses((status = 200, content_type = "text/event-stream", description = "run.queued, run.started, message.delta, message.reset, message.completed, run.completed | run.failed | run.cancelled"),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn events(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    headers: HeaderMap,
    query: Result<Query<EventsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let who = auth.require("runs:read")?;
    let Query(q) = query.map_err(|e| ApiError::invalid("invalid_query", e.body_text()))?;
    let after = match headers.get("last-event-id") {
        Some(v) => Some(v.to_str().ok().and_then(|s| s.trim().parse().ok()).ok_or_else(|| {
            ApiError::invalid("invalid_last_event_id", "Last-Event-ID must be an event id")
        })?),
        None => q.after,
    };
    let id: RunId = parse_id(&id, "run_not_found", "run")?;
    let events = service::events(&state, who, id, after).await?;
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
    Path(id): Path<String>,
) -> Result<Json<Run>, ApiError> {
    let who = auth.require("runs:write")?;
    let id: RunId = parse_id(&id, "run_not_found", "run")?;
    service::cancel_run(&state, who, id).await.map(Json)
}
