//! Threads and their messages.

use agentyard_core::ThreadId;
use agentyard_store::threads::{Message, Thread};
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use super::parse_id;
use crate::auth::Auth;
use crate::error::{self, ErrorBody, parse_json};
use crate::{ApiError, AppState};

/// Body of `POST /v1/threads` (optional).
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateThread {
    #[schema(value_type = Option<Object>)]
    metadata: Option<serde_json::Value>,
}

/// Query of the message list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub(crate) struct MessagesQuery {
    /// 1 to 100 (default 20).
    limit: Option<i64>,
    /// Return messages after this `seq` (the previous page's `next_after`).
    after: Option<i64>,
}

/// A page of messages, oldest first.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct MessagePage {
    data: Vec<Message>,
    /// Pass as `after` for the next page; null at the end.
    next_after: Option<i64>,
}

/// Creates a thread.
#[utoipa::path(post, path = "/v1/threads", tag = "threads", request_body(content = CreateThread, content_type = "application/json"),
    responses((status = 201, body = Thread), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn create(
    State(state): State<AppState>,
    auth: Auth,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Thread>), ApiError> {
    let who = auth.require("runs:write")?;
    let body = error::body(body)?;
    let req: CreateThread =
        if body.is_empty() { CreateThread::default() } else { parse_json(&body)? };
    let metadata = req.metadata.unwrap_or_else(|| serde_json::json!({}));
    if !metadata.is_object() {
        return Err(ApiError::invalid("invalid_metadata", "metadata must be a JSON object"));
    }
    let thread = state.store.create_thread(who.org_id, &metadata).await?;
    Ok((StatusCode::CREATED, Json(thread)))
}

/// A thread.
#[utoipa::path(get, path = "/v1/threads/{id}", tag = "threads", params(("id" = String, Path)),
    responses((status = 200, body = Thread), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn get(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<Json<Thread>, ApiError> {
    let who = auth.require("runs:read")?;
    let id: ThreadId = parse_id(&id, "thread_not_found", "thread")?;
    let thread = state.store.get_thread(who.org_id, id).await?;
    thread.map(Json).ok_or_else(|| ApiError::not_found("thread_not_found", "thread"))
}

/// The thread's messages, oldest first, `limit` at a time.
#[utoipa::path(get, path = "/v1/threads/{id}/messages", tag = "threads",
    params(("id" = String, Path), MessagesQuery),
    responses((status = 200, body = MessagePage), (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn messages(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    query: Result<Query<MessagesQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<MessagePage>, ApiError> {
    let who = auth.require("runs:read")?;
    let Query(q) = query.map_err(|e| ApiError::invalid("invalid_query", e.body_text()))?;
    let limit = q.limit.unwrap_or(20);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::invalid("invalid_query", "limit must be between 1 and 100"));
    }
    let id: ThreadId = parse_id(&id, "thread_not_found", "thread")?;
    if state.store.get_thread(who.org_id, id).await?.is_none() {
        return Err(ApiError::not_found("thread_not_found", "thread"));
    }
    let mut data =
        state.store.list_messages(who.org_id, id, q.after.unwrap_or(0), limit + 1).await?;
    let more = data.len() > usize::try_from(limit).unwrap_or(usize::MAX);
    data.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    let next_after = if more { data.last().map(|m| m.seq) } else { None };
    Ok(Json(MessagePage { data, next_after }))
}
