//! Liveness and readiness.

use std::time::Duration;

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

/// NATS and Postgres answer, each within 2 s (not after the pool's 5 s wait for a
/// connection: a health check answers quickly).
#[utoipa::path(get, path = "/readyz", tag = "health", responses(
    (status = 200, body = Ready), (status = 503, body = Ready)))]
pub(crate) async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Ready>) {
    let postgres = tokio::time::timeout(Duration::from_secs(2), state.services.store.ping());
    let (nats, postgres) = tokio::join!(state.services.bus.ping(), postgres);
    let postgres = postgres.unwrap_or(false);
    let status = if nats && postgres { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(Ready { nats, postgres }))
}
