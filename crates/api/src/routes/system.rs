//! The platform's state, for operators (`platform:admin`).

use agentyard_core::Scope;
use agentyard_services::system::{Availability, SystemStatus};
use axum::Json;
use axum::extract::State;
use serde::Deserialize;

use crate::auth::Auth;
use crate::error::{ErrorBody, QueryParams};
use crate::{ApiError, AppState};

/// Postgres and NATS, and the processes of each role by their heartbeats (the monitor must
/// run: `agentyard worker monitor`, run by `dev`).
#[utoipa::path(get, path = "/v1/system/status", tag = "system",
    responses((status = 200, body = SystemStatus), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn status(
    State(state): State<AppState>,
    auth: Auth,
) -> Result<Json<SystemStatus>, ApiError> {
    auth.require(Scope::PlatformAdmin)?;
    Ok(Json(state.services.system_status().await))
}

/// Query of `GET /v1/system/availability`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub(crate) struct AvailabilityQuery {
    /// `1h` (default), `24h` or `7d`.
    window: Option<String>,
}

/// Each role's availability over a window: the share of it during which at least one instance
/// of the role was up (by the monitor's heartbeats).
#[utoipa::path(get, path = "/v1/system/availability", tag = "system", params(AvailabilityQuery),
    responses((status = 200, body = Availability), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn availability(
    State(state): State<AppState>,
    auth: Auth,
    QueryParams(q): QueryParams<AvailabilityQuery>,
) -> Result<Json<Availability>, ApiError> {
    auth.require(Scope::PlatformAdmin)?;
    let window = q.window.as_deref().unwrap_or("1h");
    Ok(Json(state.services.availability(window).await?))
}
