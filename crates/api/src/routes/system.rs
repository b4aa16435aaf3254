//! The platform's state, for operators (`platform:admin`).

use agentyard_core::Scope;
use agentyard_services::system::SystemStatus;
use axum::Json;
use axum::extract::State;

use crate::auth::Auth;
use crate::error::ErrorBody;
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
