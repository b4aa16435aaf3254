//! The ingress API (axum): authenticates, parses, calls one of [`agentyard_services`] and
//! answers; it maps domain errors to HTTP. What is HTTP's own lives here: bearer tokens and
//! rate limits, SSE, long-polls, and the one live event reader they share.
//!
//! Layout:
//! - [`error`]: the JSON error shape and the extractors (JSON body, path id, query).
//! - [`auth`]: bearer tokens to principals (with a short cache), scopes, the rate limiter.
//! - [`hub`]: the process's one reader of every event, fanned out to its waiters.
//! - [`live`]: event streams of a run or an organization, and long-polls, served from the hub.
//! - [`routes`]: the HTTP handlers, annotated for OpenAPI ([`openapi`]).
//! - `console`: the web console's static files at `/console`.

pub mod auth;
mod console;
pub mod error;
pub mod hub;
mod live;
pub mod openapi;
pub mod routes;
mod sse;

use std::sync::Arc;

use agentyard_bus::{Bus, Outbox};
use agentyard_runtime::Settings;
use agentyard_runtime::limit::RateLimiter;
use agentyard_services::Services;
use agentyard_store::Store;
use axum::Router;
use tokio_util::sync::CancellationToken;

pub use error::ApiError;

/// Everything a handler may use; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub services: Services,
    pub auth: Arc<auth::AuthCache>,
    pub limiter: Arc<RateLimiter<agentyard_core::TokenId>>,
    /// Failed authentications per client address.
    pub failures: Arc<RateLimiter<std::net::IpAddr>>,
    pub hub: Arc<hub::EventHub>,
}

impl AppState {
    /// Builds the state and starts its background tasks (outbox relay, event hub, revocation
    /// listener).
    ///
    /// # Errors
    /// When a configuration file (`config/agents.yaml`, `alerts.yaml`, ...) is broken, or the event hub's
    /// reader cannot start.
    pub async fn new(
        settings: Settings,
        store: Store,
        bus: Bus,
        shutdown: CancellationToken,
    ) -> Result<Self, StartError> {
        let outbox = Outbox::start(bus.clone(), store.clone(), shutdown.clone());
        let limiter = Arc::new(RateLimiter::new(settings.rate_limit, settings.rate_burst));
        let failures =
            Arc::new(RateLimiter::new(settings.auth_failure_rate, settings.auth_failure_burst));
        let services =
            Services::new(settings, store, bus.clone(), outbox).map_err(StartError::Config)?;
        let every = services.settings.heartbeat_every;
        agentyard_bus::heartbeat::spawn(bus.clone(), "api", None, None, every, shutdown.clone());
        let hub = hub::EventHub::start(&bus, shutdown.clone()).await?;
        let auth = Arc::new(auth::AuthCache::default());
        tokio::spawn(auth::listen_for_revocations(bus.clone(), auth.clone(), shutdown));
        Ok(Self { services, auth, limiter, failures, hub })
    }
}

/// Why the API could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Bus(#[from] agentyard_bus::BusError),
}

/// The whole HTTP surface, with `GET /metrics` (unless metrics are off: `AY_METRICS=off`).
pub fn router(state: AppState) -> Router {
    agentyard_metrics::http::instrument(
        routes::router(state).layer(axum::middleware::from_fn(agentyard_otel::trace_http)),
    )
}

/// Serves `router(state)` on `listener` until `shutdown`, with the limits of `AY_HTTP_*`
/// (see [`agentyard_runtime::http`]).
///
/// # Errors
/// When the listener fails.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let limits = state.services.settings.http;
    agentyard_runtime::http::serve(listener, router(state), limits, shutdown).await
}
