//! OpenTelemetry traces without the OpenTelemetry SDK: a `tracing` layer, W3C Trace Context
//! (`traceparent`) and an OTLP/HTTP exporter writing protobuf by hand (see docs/decisions.md).
//!
//! Only spans that name themselves for OpenTelemetry are recorded and exported, by convention
//! of their fields:
//! - `otel.name`: the span's name (required; a span without it is not exported, and its
//!   children hang off its nearest exported ancestor);
//! - `otel.kind`: `server`, `client`, `producer`, `consumer` (anything else: internal);
//! - `traceparent`: a remote parent (an incoming HTTP or NATS header);
//! - `error.type`: an attribute that also marks the span as failed;
//! - every other field: an attribute (`tracing::field::Empty` ones once recorded).
//!
//! Such spans are created at `TRACE` level, so with tracing off (no `OTEL_EXPORTER_OTLP_*`
//! endpoint) they are disabled at their call site and cost nothing, and logs show them only at
//! `AY_LOG=trace` (the log filter and the trace layer each filter on their own).
//! The HTTP and messaging spans are made here ([`http_server_span`], [`consumer_span`]);
//! model and tool spans are made where the calls are, with the same convention.

pub mod cost;
mod export;
mod layer;
mod proto;
mod span;
mod traceparent;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::{Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;

pub use traceparent::TraceParent;

use crate::span::{AttrValue, SpanData};

/// Set once the layer is installed: until then, asking for the current context costs one load.
static ENABLED: AtomicBool = AtomicBool::new(false);

/// Where and how to export, from the standard `OTEL_*` variables.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// The full URL spans are POSTed to (`.../v1/traces`).
    pub endpoint: String,
    pub service_name: String,
    /// Resource attributes besides `service.name` (`OTEL_RESOURCE_ATTRIBUTES`).
    pub resource: Vec<(String, String)>,
    /// Extra request headers (`OTEL_EXPORTER_OTLP_HEADERS`, e.g. a collector's API key).
    pub headers: Vec<(String, String)>,
    /// `OTEL_BSP_SCHEDULE_DELAY` (ms; 5000).
    pub schedule_delay: Duration,
    /// `OTEL_BSP_MAX_QUEUE_SIZE` (2048): spans ended and not yet sent; more are dropped.
    pub max_queue: usize,
    /// `OTEL_BSP_MAX_EXPORT_BATCH_SIZE` (512).
    pub max_batch: usize,
    /// `OTEL_EXPORTER_OTLP_TIMEOUT` (ms; 10000).
    pub timeout: Duration,
    /// Values that were ignored, and why (logged once the subscriber is up).
    pub warnings: Vec<String>,
}

impl Config {
    /// From the process environment; None when traces are off.
    pub fn from_env(default_service: &str) -> Option<Self> {
        Self::from_vars(|k| std::env::var(k).ok(), default_service)
    }

    /// From `get`; None when no endpoint is set, `OTEL_SDK_DISABLED=true` or
    /// `OTEL_TRACES_EXPORTER=none`. `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is used as it is;
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` gets `/v1/traces` appended. Invalid numbers fall back to
    /// their defaults with a warning (the OpenTelemetry spec's rule), never stop the process.
    pub fn from_vars(get: impl Fn(&str) -> Option<String>, default_service: &str) -> Option<Self> {
        let get = |k: &str| get(k).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        if get("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
            return None;
        }
        if get("OTEL_TRACES_EXPORTER").is_some_and(|v| v.eq_ignore_ascii_case("none")) {
            return None;
        }
        let endpoint = match get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
            Some(e) => e,
            None => {
                format!("{}/v1/traces", get("OTEL_EXPORTER_OTLP_ENDPOINT")?.trim_end_matches('/'))
            }
        };
        let mut warnings = Vec::new();
        let protocol = get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
            .or_else(|| get("OTEL_EXPORTER_OTLP_PROTOCOL"));
        if let Some(p) = protocol.filter(|p| p != "http/protobuf") {
            warnings.push(format!(
                "OTEL_EXPORTER_OTLP_PROTOCOL={p} is not supported: sending http/protobuf"
            ));
        }
        let mut resource = pairs(get("OTEL_RESOURCE_ATTRIBUTES").as_deref());
        let from_resource = resource.iter().position(|(k, _)| k == "service.name");
        let from_resource = from_resource.map(|i| resource.remove(i).1);
        let service_name = get("OTEL_SERVICE_NAME")
            .or(from_resource)
            .unwrap_or_else(|| default_service.to_owned());
        let mut headers = pairs(get("OTEL_EXPORTER_OTLP_HEADERS").as_deref());
        headers.extend(pairs(get("OTEL_EXPORTER_OTLP_TRACES_HEADERS").as_deref()));
        let mut number = |var: &str, default: u64| match get(var) {
            None => default,
            Some(v) => match v.parse::<u64>() {
                Ok(n) if n > 0 => n,
                _ => {
                    warnings.push(format!("{var}={v} is not a positive number: using {default}"));
                    default
                }
            },
        };
        let schedule_delay = Duration::from_millis(number("OTEL_BSP_SCHEDULE_DELAY", 5000));
        let max_queue = number("OTEL_BSP_MAX_QUEUE_SIZE", 2048);
        let max_batch = number("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 512).min(max_queue);
        let timeout = match get("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT") {
            Some(_) => number("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", 10_000),
            None => number("OTEL_EXPORTER_OTLP_TIMEOUT", 10_000),
        };
        Some(Self {
            endpoint,
            service_name,
            resource,
            headers,
            schedule_delay,
            max_queue: usize::try_from(max_queue).unwrap_or(2048),
            max_batch: usize::try_from(max_batch).unwrap_or(512),
            timeout: Duration::from_millis(timeout),
            warnings,
        })
    }
}

/// `k=v,k=v` (the format of `OTEL_RESOURCE_ATTRIBUTES` and `OTEL_EXPORTER_OTLP_HEADERS`).
fn pairs(v: Option<&str>) -> Vec<(String, String)> {
    v.unwrap_or_default()
        .split(',')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .filter(|(k, _)| !k.is_empty())
        .collect()
}

/// The exporter of an installed subscriber: flush it before the process ends.
#[derive(Clone, Debug, Default)]
pub struct Traces {
    flushes: Option<mpsc::UnboundedSender<oneshot::Sender<()>>>,
}

impl Traces {
    /// Sends the spans ended so far, waiting at most `timeout`.
    pub async fn flush(&self, timeout: Duration) {
        let Some(flushes) = &self.flushes else { return };
        let (tx, rx) = oneshot::channel();
        if flushes.send(tx).is_ok() {
            let _ = tokio::time::timeout(timeout, rx).await;
        }
    }
}

/// Installs the global subscriber: log lines to stderr filtered by `log_filter` (as without
/// traces), and the trace layer exporting to `config`. Must run inside a Tokio runtime (the
/// exporter is a task). None when a global subscriber was already installed.
pub fn install(log_filter: EnvFilter, config: Config) -> Option<Traces> {
    let mut headers = reqwest::header::HeaderMap::new();
    for (k, v) in &config.headers {
        match (k.parse::<reqwest::header::HeaderName>(), v.parse()) {
            (Ok(k), Ok(v)) => {
                headers.insert(k, v);
            }
            _ => eprintln!("warning: ignoring the OTLP header {k:?}: not a valid header"),
        }
    }
    let mut resource: Vec<(String, AttrValue)> = vec![
        ("service.name".into(), AttrValue::Str(config.service_name.clone())),
        ("service.version".into(), AttrValue::Str(env!("CARGO_PKG_VERSION").into())),
        ("telemetry.sdk.name".into(), AttrValue::Str("agentyard-otel".into())),
        ("telemetry.sdk.language".into(), AttrValue::Str("rust".into())),
        ("process.pid".into(), AttrValue::Int(i64::from(std::process::id()))),
    ];
    resource.extend(config.resource.iter().map(|(k, v)| (k.clone(), AttrValue::Str(v.clone()))));
    let (queue, spans) = mpsc::channel(config.max_queue.max(1));
    let (flush_tx, flushes) = mpsc::unbounded_channel();
    let dropped = Arc::new(AtomicU64::new(0));
    let exporter = export::Exporter {
        spans,
        flushes,
        http: reqwest::Client::builder()
            .connect_timeout(config.timeout)
            .build()
            .unwrap_or_default(),
        url: config.endpoint.clone(),
        headers,
        resource,
        every: config.schedule_delay,
        max_batch: config.max_batch.max(1),
        timeout: config.timeout,
        dropped: dropped.clone(),
        failing: false,
    };
    let otel = layer::OtelLayer { queue, dropped }.with_filter(layer::Exported);
    let logs =
        tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_filter(log_filter);
    tracing_subscriber::registry().with(logs).with(otel).try_init().ok()?;
    tokio::spawn(exporter.run());
    ENABLED.store(true, Ordering::Relaxed);
    for w in &config.warnings {
        tracing::warn!("{w}");
    }
    tracing::info!(endpoint = %config.endpoint, service = %config.service_name,
        "exporting traces (OTLP/HTTP protobuf)");
    Some(Traces { flushes: Some(flush_tx) })
}

/// The `traceparent` of the current span (its nearest exported ancestor), to send with a
/// message or request it causes. None when traces are off or no exported span is current.
pub fn current_traceparent() -> Option<String> {
    if !ENABLED.load(Ordering::Relaxed) {
        return None;
    }
    tracing::Span::current()
        .with_subscriber(|(id, dispatch)| {
            let registry = dispatch.downcast_ref::<tracing_subscriber::Registry>()?;
            let span = registry.span(id)?;
            span.scope().find_map(|s| s.extensions().get::<SpanData>().map(SpanData::context))
        })
        .flatten()
        .map(|tp| tp.to_string())
}

/// Whether traces are being exported.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// `{a} {b}`, or `{a}` without `b`, formatted only when the span is recorded.
struct Name<'a>(&'a str, Option<&'a str>);

impl std::fmt::Display for Name<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.1 {
            Some(b) => write!(f, "{} {b}", self.0),
            None => f.write_str(self.0),
        }
    }
}

/// The server span of one HTTP request (`{method} {route}`, kind server), continuing the
/// caller's trace when it sent a valid `traceparent`. Record the answer with
/// [`record_http_status`].
pub fn http_server_span(
    method: &str,
    route: Option<&str>,
    path: &str,
    traceparent: Option<&str>,
) -> tracing::Span {
    tracing::trace_span!("http_request",
        otel.name = %Name(method, route),
        otel.kind = "server",
        http.request.method = method,
        http.route = route,
        url.path = path,
        url.scheme = "http",
        http.response.status_code = tracing::field::Empty,
        error.type = tracing::field::Empty,
        traceparent,
    )
}

/// Records the response status on an [`http_server_span`]; a 5xx marks it failed.
pub fn record_http_status(span: &tracing::Span, status: u16) {
    span.record("http.response.status_code", status);
    if status >= 500 {
        span.record("error.type", status.to_string());
    }
}

/// The consumer span of one delivery of a NATS message (`process {subject}`, kind consumer),
/// child of the `traceparent` the message carried.
pub fn consumer_span(subject: &str, traceparent: Option<&str>) -> tracing::Span {
    tracing::trace_span!("message",
        otel.name = %Name("process", Some(subject)),
        otel.kind = "consumer",
        messaging.system = "nats",
        messaging.destination.name = subject,
        messaging.operation.type = "process",
        messaging.operation.name = "process",
        messaging.message.delivery_count = tracing::field::Empty,
        error.type = tracing::field::Empty,
        traceparent,
    )
}

#[cfg(test)]
mod tests;

/// An axum middleware: one server span per request, continuing the caller's `traceparent`
/// (a no-op while traces are off). Used by the API and the MCP tool server; a tool runs in the
/// MCP session's task, outside this span.
pub async fn trace_http(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use tracing::Instrument;
    let span = http_server_span(
        req.method().as_str(),
        req.extensions()
            .get::<axum::extract::MatchedPath>()
            .map(axum::extract::MatchedPath::as_str),
        req.uri().path(),
        req.headers().get("traceparent").and_then(|v| v.to_str().ok()),
    );
    if span.is_disabled() {
        return next.run(req).await;
    }
    let response = next.run(req).instrument(span.clone()).await;
    record_http_status(&span, response.status().as_u16());
    response
}
