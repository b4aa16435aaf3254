//! Dead letters for operators (`platform:admin`): the jobs the workers gave up, what failed,
//! why and how often; one by one; replayed; dropped once dealt with.

use agentyard_bus::dlq::{DeadLetter, DeadLetters};
use agentyard_core::Scope;
use agentyard_services::dlq::Replay;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;

use crate::auth::Auth;
use crate::error::{ErrorBody, PathId, QueryNumber, QueryParams, query_limit};
use crate::{ApiError, AppState};

/// Query of `GET /v1/admin/dlq`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct DlqQuery {
    /// How many of the newest to list: 1 to 500, default 100 (the counts cover all).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 500)]
    limit: Option<QueryNumber>,
}

/// The newest dead letters (kind, reason code and text, when, the job) and counts of all of
/// them by kind and reason code, the most frequent first.
#[utoipa::path(get, path = "/v1/admin/dlq", tag = "system", params(DlqQuery),
    responses((status = 200, body = DeadLetters), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn list(
    State(state): State<AppState>,
    auth: Auth,
    QueryParams(q): QueryParams<DlqQuery>,
) -> Result<Json<DeadLetters>, ApiError> {
    auth.require(Scope::PlatformAdmin)?;
    let limit = agentyard_services::page_limit(query_limit(q.limit.as_ref())?, 100, 500)?;
    Ok(Json(state.services.dead_letters(usize::try_from(limit).unwrap_or(100)).await?))
}

/// One dead letter.
#[utoipa::path(get, path = "/v1/admin/dlq/{id}", tag = "system", params(("id" = u64, Path)),
    responses((status = 200, body = DeadLetter), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn get(
    State(state): State<AppState>,
    auth: Auth,
    PathId(id): PathId<u64>,
) -> Result<Json<DeadLetter>, ApiError> {
    auth.require(Scope::PlatformAdmin)?;
    Ok(Json(state.services.dead_letter(id).await?))
}

/// Runs a dead-lettered agent step again as a new attempt of its run (fix the cause first):
/// the failed run goes back to `queued` at that step, its attempts counted from zero, and the
/// dead letter is removed. `outcome: skipped` when the run had finished or moved on meanwhile
/// (nothing runs twice); 409 `thread_busy` while another run holds its thread; 409
/// `not_replayable` for tool and workflow jobs.
#[utoipa::path(post, path = "/v1/admin/dlq/{id}/replay", tag = "system",
    params(("id" = u64, Path)),
    responses((status = 200, body = Replay), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn replay(
    State(state): State<AppState>,
    auth: Auth,
    PathId(id): PathId<u64>,
) -> Result<Json<Replay>, ApiError> {
    auth.require(Scope::PlatformAdmin)?;
    Ok(Json(state.services.replay_dead_letter(id).await?))
}

/// Drops a dead letter (the job is not run again).
#[utoipa::path(delete, path = "/v1/admin/dlq/{id}", tag = "system", params(("id" = u64, Path)),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn drop(
    State(state): State<AppState>,
    auth: Auth,
    PathId(id): PathId<u64>,
) -> Result<StatusCode, ApiError> {
    auth.require(Scope::PlatformAdmin)?;
    state.services.drop_dead_letter(id).await?;
    Ok(StatusCode::NO_CONTENT)
}
