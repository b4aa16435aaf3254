//! Liveness and readiness.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;

use crate::AppState;

/// Readiness of each dependency.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct Ready {
    nats: bool,
    postgres: bool,
}

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "health", responses((status = 200, description = "up")))]
pub(crate) async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({"status": "ok"}))
}

/// NATS and Postgres answer.
#[utoipa::path(get, path = "/readyz", tag = "health", responses(
    (status = 200, body = Ready), (status = 503, body = Ready)))]
pub(crate) async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Ready>) {
    let (nats, postgres) = tokio::join!(state.services.bus.ping(), state.services.store.ping());
    let status = if nats && postgres { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(Ready { nats, postgres }))
}
