//! Threads and their messages.

use agentyard_core::thread::{Message, Thread};
use agentyard_core::{Scope, ThreadId};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use crate::auth::Auth;
use crate::error::{ErrorBody, OptionalJsonBody, PathId, QueryNumber, QueryParams, query_limit};
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
#[into_params(parameter_in = Query)]
pub(crate) struct MessagesQuery {
    /// 1 to 100 (default 20).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 100)]
    limit: Option<QueryNumber>,
    /// Return messages after this `seq` (the previous page's `next_after`).
    #[param(value_type = Option<i64>, minimum = 0)]
    after: Option<QueryNumber>,
}

/// A page of messages, oldest first.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct MessagePage {
    data: Vec<Message>,
    /// Pass as `after` for the next page; null at the end.
    next_after: Option<i64>,
}

/// Query of the thread list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListQuery {
    /// The previous page's `next_cursor`.
    cursor: Option<String>,
    /// 1 to 100 (default 20).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 100)]
    limit: Option<QueryNumber>,
}

/// A page of threads, newest first.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct ThreadPage {
    data: Vec<Thread>,
    /// Pass as `cursor` for the next page; null at the end.
    next_cursor: Option<String>,
}

/// Creates a thread.
#[utoipa::path(post, path = "/v1/threads", tag = "threads", request_body(content = CreateThread, content_type = "application/json"),
    responses((status = 201, body = Thread), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn create(
    State(state): State<AppState>,
    auth: Auth,
    OptionalJsonBody(body): OptionalJsonBody<CreateThread>,
) -> Result<(StatusCode, Json<Thread>), ApiError> {
    let who = auth.require(Scope::RunsWrite)?;
    let metadata = body.unwrap_or_default().metadata;
    Ok((StatusCode::CREATED, Json(state.services.create_thread(who, metadata).await?)))
}

/// The organization's threads (a token limited to its user: its own), newest first.
#[utoipa::path(get, path = "/v1/threads", tag = "threads", params(ListQuery),
    responses((status = 200, body = ThreadPage), (status = 400, body = ErrorBody, description = "invalid_query: a number out of range"), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn list(
    State(state): State<AppState>,
    auth: Auth,
    QueryParams(q): QueryParams<ListQuery>,
) -> Result<Json<ThreadPage>, ApiError> {
    let who = auth.require(Scope::RunsRead)?;
    let limit = query_limit(q.limit.as_ref())?;
    let page = state.services.list_threads(who, q.cursor.as_deref(), limit).await?;
    Ok(Json(ThreadPage { data: page.data, next_cursor: page.next_cursor }))
}

/// A thread.
#[utoipa::path(get, path = "/v1/threads/{id}", tag = "threads", params(("id" = String, Path)),
    responses((status = 200, body = Thread), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn get(
    State(state): State<AppState>,
    auth: Auth,
    PathId(id): PathId<ThreadId>,
) -> Result<Json<Thread>, ApiError> {
    let who = auth.require(Scope::RunsRead)?;
    Ok(Json(state.services.get_thread(who, id).await?))
}

/// The thread's messages, oldest first, `limit` at a time.
#[utoipa::path(get, path = "/v1/threads/{id}/messages", tag = "threads",
    params(("id" = String, Path), MessagesQuery),
    responses((status = 200, body = MessagePage), (status = 400, body = ErrorBody, description = "invalid_query: a number out of range"), (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn messages(
    State(state): State<AppState>,
    auth: Auth,
    PathId(id): PathId<ThreadId>,
    QueryParams(q): QueryParams<MessagesQuery>,
) -> Result<Json<MessagePage>, ApiError> {
    let who = auth.require(Scope::RunsRead)?;
    let limit = query_limit(q.limit.as_ref())?;
    let after = q.after.as_ref().map(|a| a.integer("after", 0, i64::MAX)).transpose()?;
    let (data, next_after) = state.services.list_messages(who, id, after, limit).await?;
    Ok(Json(MessagePage { data, next_after }))
}
