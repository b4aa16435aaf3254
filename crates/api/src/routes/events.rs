//! The organization's event stream.

use agentyard_core::Scope;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::runs::{open_stream, resume_from};
use crate::auth::Auth;
use crate::error::{ErrorBody, QueryNumber, QueryParams};
use crate::live::{self, KindFilter};
use crate::{ApiError, AppState, sse};

/// Query of `GET /v1/events`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct OrgEventsQuery {
    /// Only these kinds, comma-separated; a name ending in `*` takes every kind it starts
    /// (`run.*`, `tool_call.*`).
    kind: Option<String>,
    /// Resume after this event id (the `Last-Event-ID` header takes precedence).
    #[param(value_type = Option<i64>, minimum = 0)]
    after: Option<QueryNumber>,
}

/// Every event of the caller's organization (a token limited to its user: of its runs) from now on (or after `Last-Event-ID`), as SSE.
/// Each event's data carries the `run_id` it belongs to. Never ends by itself.
#[utoipa::path(get, path = "/v1/events", tag = "runs",
    params(("Last-Event-ID" = Option<String>, Header), OrgEventsQuery),
    responses((status = 200, content_type = "text/event-stream", description = "the events of every run of the organization, `data` with `run_id`"),
        (status = 400, body = ErrorBody, description = "invalid_query: a number out of range"), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 429, body = ErrorBody, description = "too_many_streams"),
        (status = 503, body = ErrorBody, description = "unavailable: NATS is unreachable")),
    security(("bearer" = [])))]
pub(crate) async fn org_events(
    State(state): State<AppState>,
    auth: Auth,
    headers: HeaderMap,
    QueryParams(q): QueryParams<OrgEventsQuery>,
) -> Result<Response, ApiError> {
    let who = auth.require(Scope::RunsRead)?;
    let filter = KindFilter::parse(q.kind.as_deref())?;
    let after = resume_from(&headers, q.after.as_ref())?;
    let permit = open_stream(&state, who)?;
    // A token limited to its user hears of its user's runs only (and of runs the hub cannot
    // place yet, which `owned_by` checks).
    let sub = match who.owner() {
        None => state.hub.subscribe_org(who.org_id),
        Some(owner) => state.hub.subscribe_user(who.org_id, owner),
    };
    let events =
        live::org_events(state.services.bus.clone(), who.org_id, after, filter, sub, permit);
    Ok(match who.owner() {
        None => sse::respond(events).into_response(),
        Some(owner) => {
            let hub = state.hub.clone();
            let mine = live::owned_by(events, state.services.store, hub, who.org_id, owner);
            sse::respond(mine).into_response()
        }
    })
}
