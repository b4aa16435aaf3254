//! The run operations behind the handlers: validation, the one-transaction create, publishing
//! its outbox rows, cancel signals, long-polling and event streams.

use std::time::Duration;

use agentyard_bus::BusError;
use agentyard_bus::events::SeqEvent;
use agentyard_core::events::{RunEvent, is_terminal_kind};
use agentyard_core::run::{MultitaskStrategy, Priority, Run};
use agentyard_core::{AgentId, RunId, ThreadId};
use agentyard_store::OutboxRow;
use agentyard_store::orgs::Principal;
use agentyard_store::runs::{CancelOutcome, CreateOutcome, NewRun};
use axum::http::StatusCode;
use futures::{Stream, StreamExt};
use serde::Deserialize;

use crate::{ApiError, AppState};

/// Longest `?wait=`.
pub const MAX_WAIT: Duration = Duration::from_secs(60);
const MAX_METADATA_BYTES: usize = 16 * 1024;
const MAX_IDEMPOTENCY_KEY: usize = 255;

/// Body of `POST /v1/threads/{id}/runs` and `POST /v1/runs`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRunRequest {
    /// The user's message. Not empty; at most `AY_MAX_INPUT_BYTES` bytes.
    pub input: String,
    /// Answer with the run's SSE event stream instead of 202.
    #[serde(default)]
    pub stream: bool,
    /// What to do when the thread already has an active run (default `enqueue`).
    #[serde(default)]
    pub multitask_strategy: MultitaskStrategy,
    /// Free-form object stored with the run.
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Value>,
    /// `POST /v1/runs` only: the thread to post to; a new thread when absent.
    pub thread_id: Option<ThreadId>,
    /// The agent that answers; the org's default agent when absent.
    pub agent_id: Option<AgentId>,
    /// `high`, `normal` (default) or `low`: saturated workers take higher priorities first.
    #[serde(default)]
    pub priority: Priority,
}

/// Checks a create request against the limits.
///
/// # Errors
/// 413 `input_too_large`, 422 `invalid_input` / `invalid_metadata`.
pub fn validate(req: &CreateRunRequest, max_input_bytes: usize) -> Result<(), ApiError> {
    if req.input.trim().is_empty() {
        return Err(ApiError::invalid("invalid_input", "input must not be empty"));
    }
    if req.input.len() > max_input_bytes {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "input_too_large",
            format!("input is {} bytes; the limit is {max_input_bytes}", req.input.len()),
        ));
    }
    if let Some(m) = &req.metadata {
        if !m.is_object() {
            return Err(ApiError::invalid("invalid_metadata", "metadata must be a JSON object"));
        }
        if m.to_string().len() > MAX_METADATA_BYTES {
            return Err(ApiError::invalid(
                "invalid_metadata",
                format!("metadata must be at most {MAX_METADATA_BYTES} bytes of JSON"),
            ));
        }
    }
    Ok(())
}

/// Checks an `Idempotency-Key` header value.
///
/// # Errors
/// 422 `invalid_idempotency_key`.
pub fn validate_idempotency_key(key: &str) -> Result<(), ApiError> {
    if key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY || key.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            "invalid_idempotency_key",
            format!("Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} printable characters"),
        ));
    }
    Ok(())
}

/// Creates run `id` (and its thread when `thread` is None), publishes its job, and returns it
/// (an earlier run when `idempotency`, the key and the SHA-256 of the request, was seen).
///
/// # Errors
/// 404 `thread_not_found`, 409 `thread_busy`, 422 `idempotency_key_reused`, 5xx.
pub async fn create_run(
    state: &AppState,
    who: &Principal,
    req: CreateRunRequest,
    thread: Option<ThreadId>,
    idempotency: Option<(String, Vec<u8>)>,
    id: RunId,
) -> Result<Run, ApiError> {
    validate(&req, state.settings.max_input_bytes)?;
    if let Some((key, hash)) = &idempotency {
        validate_idempotency_key(key)?;
        if let Some((seen_hash, run)) = state.store.idempotent_run(who.org_id, key).await? {
            return if &seen_hash == hash { Ok(run) } else { Err(key_reused()) };
        }
    }
    let new = NewRun {
        id,
        org: who.org_id,
        thread,
        agent: req.agent_id,
        user: who.user_id,
        input: req.input,
        strategy: req.multitask_strategy,
        metadata: req.metadata.unwrap_or_else(|| serde_json::json!({})),
        idempotency,
        priority: req.priority,
        quota: Some(state.settings.org_max_active_runs).filter(|q| *q > 0),
        scopes: who.scopes.clone(),
    };
    match state.store.create_run(&new).await? {
        CreateOutcome::Created { run, outbox, interrupted } => {
            dispatch(state, &outbox).await;
            if let Some(old) = interrupted {
                signal_cancel(state, old).await;
            }
            Ok(run)
        }
        CreateOutcome::Idempotent(run) => Ok(run),
        CreateOutcome::IdempotencyMismatch => Err(key_reused()),
        CreateOutcome::ThreadNotFound => Err(ApiError::not_found("thread_not_found", "thread")),
        CreateOutcome::ThreadBusy { active } => Err(ApiError::new(
            StatusCode::CONFLICT,
            "thread_busy",
            format!("the thread has an active run ({active}) and multitask_strategy is reject"),
        )),
        CreateOutcome::AgentNotFound => Err(ApiError::not_found("agent_not_found", "agent")),
        CreateOutcome::AgentInactive => Err(ApiError::new(
            StatusCode::CONFLICT,
            "agent_inactive",
            "the agent is deactivated; activate it with POST /v1/agents/{id}/activate",
        )),
        CreateOutcome::QuotaExceeded { live } => Err(ApiError::too_many(
            "quota_exceeded",
            format!(
                "the organization has {live} active runs; its quota is {}",
                state.settings.org_max_active_runs
            ),
            1,
        )),
    }
}

fn key_reused() -> ApiError {
    ApiError::invalid(
        "idempotency_key_reused",
        "this Idempotency-Key was used with a different request",
    )
}

/// Publishes outbox rows; a failure is logged and left to the relay (the state is committed).
async fn dispatch(state: &AppState, rows: &[OutboxRow]) {
    if let Err(e) = state.outbox.dispatch(rows).await {
        tracing::warn!(error = %e, "publish after commit failed; the relay will retry");
    }
}

async fn signal_cancel(state: &AppState, run: RunId) {
    if let Err(e) = state.bus.signal_cancel(run).await {
        tracing::warn!(run_id = %run, error = %e, "cannot send the cancel signal");
    }
}

/// A run of the caller's org.
///
/// # Errors
/// 404 `run_not_found`.
pub async fn get_run(state: &AppState, who: &Principal, id: RunId) -> Result<Run, ApiError> {
    state.store.get_run(who.org_id, id).await?.ok_or_else(run_not_found)
}

fn run_not_found() -> ApiError {
    ApiError::not_found("run_not_found", "run")
}

/// The run once it is terminal, or after `wait` with its current state.
///
/// # Errors
/// 404 `run_not_found`.
pub async fn wait_run(
    state: &AppState,
    who: &Principal,
    id: RunId,
    wait: Duration,
) -> Result<Run, ApiError> {
    if wait.is_zero() {
        return get_run(state, who, id).await;
    }
    // Subscribe before reading, so a terminal event between the read and the wait is seen.
    let mut sub = state.bus.client().subscribe(state.bus.subjects().run_events(id)).await.ok();
    let run = get_run(state, who, id).await?;
    if run.status.is_terminal() {
        return Ok(run);
    }
    let Some(sub) = sub.as_mut() else {
        return Ok(run);
    };
    let terminal = async {
        while let Some(msg) = sub.next().await {
            let kind = serde_json::from_slice::<RunEvent>(&msg.payload).map(|e| e.kind);
            if kind.is_ok_and(|k| is_terminal_kind(&k)) {
                return;
            }
        }
    };
    let _ = tokio::time::timeout(wait, terminal).await;
    get_run(state, who, id).await
}

/// Cancels a run: queued ones at once; for one in progress the worker is signalled and stops
/// within a second, and its final write changes nothing.
///
/// # Errors
/// 404 `run_not_found`, 409 `run_already_terminal`.
pub async fn cancel_run(state: &AppState, who: &Principal, id: RunId) -> Result<Run, ApiError> {
    match state.store.cancel_run(who.org_id, id).await? {
        CancelOutcome::NotFound => Err(run_not_found()),
        CancelOutcome::AlreadyTerminal(status) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "run_already_terminal",
            format!("the run is already {}", status.as_str()),
        )),
        CancelOutcome::Cancelled { outbox, .. } => {
            dispatch(state, &outbox).await;
            signal_cancel(state, id).await;
            get_run(state, who, id).await
        }
    }
}

/// The events of a run of the caller's org after sequence `after` (all when None), ending
/// after the terminal event.
///
/// # Errors
/// 404 `run_not_found`; 503 when the bus cannot be read.
pub async fn events(
    state: &AppState,
    who: &Principal,
    id: RunId,
    after: Option<u64>,
) -> Result<impl Stream<Item = Result<SeqEvent, BusError>> + Send + use<>, ApiError> {
    let run = get_run(state, who, id).await?;
    events_of(state, &run, after).await
}

/// The events of `run` (already authorized) after `after`.
///
/// # Errors
/// 503 when the bus cannot be read.
pub async fn events_of(
    state: &AppState,
    run: &Run,
    after: Option<u64>,
) -> Result<impl Stream<Item = Result<SeqEvent, BusError>> + Send + use<>, ApiError> {
    let id = run.id;
    let mut finished = false;
    if run.status.is_terminal() {
        // A client resuming after the terminal event gets the end of the stream at once.
        match state.bus.last_run_event(id).await? {
            Some(last) => {
                finished = last.event.is_terminal() && after.is_some_and(|a| a >= last.seq)
            }
            None => finished = true, // its events have expired
        }
    }
    let live = if finished { None } else { Some(state.bus.run_events(id, after).await?) };
    Ok(futures::stream::iter(live).flatten())
}
