//! HTTP: the shared state, the routes and their handlers.
//!
//! Routes: `GET /v1/models`, `POST /v1/chat/completions`, and the test hooks
//! `GET|DELETE /_scripted/requests`. Requests that hang (scripted `hang`, stalls) are released
//! when the server's shutdown token fires, so graceful shutdown never waits on them.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use tokio_util::sync::CancellationToken;

use crate::Options;
use crate::answer;
use crate::plan::{self, BaseTiming, Plan, Reply, Rules, Turn};
use crate::script::ErrorSpec;
use crate::stream;
use crate::wire::{self, ChatRequest, Head, Usage};

/// How many request bodies `/_scripted/requests` keeps.
const LOG_CAPACITY: usize = 1000;
/// Conversations can be long; OpenAI accepts large bodies too.
const BODY_LIMIT: usize = 32 * 1024 * 1024;

/// Everything the handlers share.
#[derive(Debug)]
pub(crate) struct AppState {
    rules: Rules,
    model: String,
    /// The last request bodies, oldest first. Kept as raw bytes: recording costs a refcount.
    log: Mutex<VecDeque<Bytes>>,
    completion_ids: AtomicU64,
    call_ids: AtomicU64,
    /// Releases hanging requests.
    shutdown: CancellationToken,
}

impl AppState {
    /// State for one server; `shutdown` releases its hanging requests.
    pub(crate) fn new(options: Options, shutdown: CancellationToken) -> Arc<Self> {
        let base = BaseTiming {
            first_token_ms: options.first_token_ms,
            token_delay_ms: options.token_delay_ms,
        };
        Arc::new(Self {
            rules: Rules::new(options.script, options.builtin_rules, base),
            model: options.model,
            log: Mutex::new(VecDeque::with_capacity(64)),
            completion_ids: AtomicU64::new(1),
            call_ids: AtomicU64::new(1),
            shutdown,
        })
    }

    fn log(&self) -> std::sync::MutexGuard<'_, VecDeque<Bytes>> {
        // The log holds plain bytes; a panic elsewhere cannot leave it inconsistent.
        self.log.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn record(&self, body: Bytes) {
        let mut log = self.log();
        if log.len() == LOG_CAPACITY {
            log.pop_front();
        }
        log.push_back(body);
    }

    /// The recorded request bodies, oldest first.
    pub(crate) fn requests(&self) -> Vec<Bytes> {
        self.log().iter().cloned().collect()
    }

    /// Forgets the recorded request bodies.
    pub(crate) fn clear_requests(&self) {
        self.log().clear();
    }

    fn next_call_id(&self) -> String {
        format!("call_{}", self.call_ids.fetch_add(1, Ordering::Relaxed))
    }
}

/// The routes over `state`.
pub(crate) fn routes(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/v1/models", get(list_models))
        .route("/v1/chat/completions", post(chat_completions))
        .route("/_scripted/requests", get(list_requests).delete(clear_requests))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state)
}

async fn list_models(State(state): State<Arc<AppState>>) -> Json<serde_json::Value> {
    Json(wire::models_body(&state.model))
}

async fn list_requests(State(state): State<Arc<AppState>>) -> Response {
    let bodies = state.requests();
    let mut out = Vec::with_capacity(bodies.iter().map(|b| b.len() + 1).sum::<usize>() + 2);
    out.push(b'[');
    for (i, body) in bodies.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(body);
    }
    out.push(b']');
    ([(header::CONTENT_TYPE, "application/json")], out).into_response()
}

async fn clear_requests(State(state): State<Arc<AppState>>) -> StatusCode {
    state.clear_requests();
    StatusCode::NO_CONTENT
}

async fn not_found() -> Response {
    openai_error(StatusCode::NOT_FOUND, "unknown endpoint", "invalid_request_error", None)
}

#[tracing::instrument(name = "scripted_llm.chat", skip_all, fields(rule, stream))]
async fn chat_completions(State(state): State<Arc<AppState>>, body: Bytes) -> Response {
    let request: ChatRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(e) => {
            let message = format!("invalid request body: {e}");
            return openai_error(StatusCode::BAD_REQUEST, &message, "invalid_request_error", None);
        }
    };
    if request.messages.is_empty() {
        let message = "`messages` must contain at least one message";
        return openai_error(
            StatusCode::BAD_REQUEST,
            message,
            "invalid_request_error",
            Some("messages"),
        );
    }
    state.record(body);
    let tools = request.tool_names();
    let plan = plan::plan(&state.rules, Turn { messages: &request.messages, tools: &tools });
    let streaming = request.stream.unwrap_or(false);
    let span = tracing::Span::current();
    span.record("rule", tracing::field::debug(plan.source));
    span.record("stream", streaming);
    tracing::debug!("answering chat completion");
    match &plan.reply {
        Reply::Error(spec) => return scripted_error(spec),
        Reply::Hang => return hang(&state.shutdown).await,
        Reply::Text(_) | Reply::ToolCalls(_) => {}
    }
    let id = format!("chatcmpl-{}", state.completion_ids.fetch_add(1, Ordering::Relaxed));
    let model = request.model.as_deref().filter(|m| !m.is_empty()).unwrap_or(&state.model);
    let head = Head { id: &id, created: unix_now(), model };
    let prompt_tokens = answer::prompt_tokens(&request.messages);
    if streaming {
        let include_usage = request.stream_options.and_then(|o| o.include_usage).unwrap_or(false);
        let frames =
            stream::frames(head, &plan, include_usage, prompt_tokens, || state.next_call_id());
        let body = frames.into_body(state.shutdown.clone());
        let headers =
            [(header::CONTENT_TYPE, "text/event-stream"), (header::CACHE_CONTROL, "no-cache")];
        return (headers, body).into_response();
    }
    complete(&state, head, &plan, prompt_tokens).await
}

/// The non-streaming answer, after the time streaming would have taken.
async fn complete(
    state: &AppState,
    head: Head<'_>,
    plan: &Plan<'_>,
    prompt_tokens: u32,
) -> Response {
    let events = stream::content_events(&plan.reply);
    if plan.stall_after.is_some_and(|n| n <= events) {
        return hang(&state.shutdown).await;
    }
    if events > 0 {
        let rest = u32::try_from(events - 1).unwrap_or(u32::MAX);
        let wait = plan.first_token + plan.token_delay.saturating_mul(rest);
        if !wait.is_zero() && !sleep_or_shutdown(wait, &state.shutdown).await {
            return shutting_down();
        }
    }
    let completion = u32::try_from(events).unwrap_or(u32::MAX);
    let usage = plan.usage.then(|| Usage::new(prompt_tokens, completion));
    let body = wire::completion_body(head, &plan.reply, usage, || state.next_call_id());
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// Holds the request until shutdown.
async fn hang(shutdown: &CancellationToken) -> Response {
    shutdown.cancelled().await;
    shutting_down()
}

/// Sleeps; `false` when shutdown came first.
async fn sleep_or_shutdown(wait: Duration, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        () = tokio::time::sleep(wait) => true,
        () = shutdown.cancelled() => false,
    }
}

fn shutting_down() -> Response {
    openai_error(StatusCode::SERVICE_UNAVAILABLE, "server is shutting down", "server_error", None)
}

fn scripted_error(spec: &ErrorSpec) -> Response {
    let status = StatusCode::from_u16(spec.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let (default_kind, default_code) = match status.as_u16() {
        429 => ("requests", Some("rate_limit_exceeded")),
        500..=599 => ("server_error", None),
        _ => ("invalid_request_error", None),
    };
    let default_message = format!(
        "scripted error: {} {}",
        status.as_u16(),
        status.canonical_reason().unwrap_or("error")
    );
    let message = spec.message.as_deref().unwrap_or(&default_message);
    let kind = spec.kind.as_deref().unwrap_or(default_kind);
    let code = spec.code.as_deref().or(default_code);
    let mut response = Response::new(Body::from(wire::error_body(message, kind, None, code)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/json"));
    if let Some(seconds) = spec.retry_after {
        headers.insert(header::RETRY_AFTER, header::HeaderValue::from(seconds));
    }
    response
}

fn openai_error(status: StatusCode, message: &str, kind: &str, param: Option<&str>) -> Response {
    let body = wire::error_body(message, kind, param, None);
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}
