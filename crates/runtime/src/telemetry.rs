//! Logging: structured `tracing` events to stderr, filtered by `AY_LOG` (or `RUST_LOG`); and,
//! when an OTLP endpoint is configured (`OTEL_EXPORTER_OTLP_ENDPOINT`, see `agentyard-otel`),
//! traces exported to it.

use tracing_subscriber::EnvFilter;

pub use agentyard_otel::Traces;

/// Installs the global subscriber once; later calls do nothing (tests call it freely).
/// `service` names the process in traces (`OTEL_SERVICE_NAME` overrides it); None: no traces
/// whatever the environment says (commands that are not services).
pub fn init(filter: Option<&str>, service: Option<&str>) -> Traces {
    let filter = filter
        .map(str::to_owned)
        .or_else(|| std::env::var("RUST_LOG").ok())
        .unwrap_or_else(|| "info,sqlx=warn,async_nats=warn,rmcp=warn".to_owned());
    if let Some(config) = service.and_then(agentyard_otel::Config::from_env) {
        return agentyard_otel::install(EnvFilter::new(filter), config).unwrap_or_default();
    }
    let _ = tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .try_init();
    Traces::default()
}
