use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use tokio::sync::mpsc;
use tracing_subscriber::layer::{Layer, SubscriberExt};

use super::*;
use crate::span::Kind;

/// Runs `f` under a subscriber with only the trace layer; returns the spans it ended.
fn record(f: impl FnOnce()) -> Vec<SpanData> {
    let (queue, mut rx) = mpsc::channel(64);
    let layer = layer::OtelLayer { queue, dropped: Arc::new(AtomicU64::new(0)) };
    let subscriber = tracing_subscriber::registry().with(layer.with_filter(layer::Exported));
    tracing::subscriber::with_default(subscriber, f);
    let mut out = Vec::new();
    while let Ok(s) = rx.try_recv() {
        out.push(s);
    }
    out
}

fn attr<'a>(s: &'a SpanData, key: &str) -> Option<&'a AttrValue> {
    s.attributes.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
}

#[test]
fn spans_continue_a_remote_parent_and_skip_unexported_ancestors() {
    let incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let spans = record(|| {
        let server = http_server_span("POST", Some("/v1/runs"), "/v1/runs", Some(incoming));
        let _s = server.enter();
        // A plain span (logs only) between two exported ones.
        let plain = tracing::info_span!("plain", run_id = 7);
        let _p = plain.enter();
        let chat = tracing::trace_span!(
            "chat",
            otel.name = "chat m",
            otel.kind = "client",
            gen_ai.usage.input_tokens = tracing::field::Empty
        );
        chat.record("gen_ai.usage.input_tokens", 12u64);
        drop(chat);
        record_http_status(&server, 503);
    });
    assert_eq!(spans.len(), 2, "the plain span is not exported: {spans:?}");
    let (chat, server) = (&spans[0], &spans[1]);
    assert_eq!(server.name, "POST /v1/runs");
    assert_eq!(server.kind, Kind::Server);
    assert_eq!(server.trace_id, TraceParent::parse(incoming).unwrap().trace_id);
    assert_eq!(server.parent_span_id, Some(TraceParent::parse(incoming).unwrap().span_id));
    assert!(server.remote_parent);
    assert_eq!(attr(server, "http.route"), Some(&AttrValue::Str("/v1/runs".into())));
    assert_eq!(attr(server, "http.response.status_code"), Some(&AttrValue::Int(503)));
    assert!(server.error, "a 5xx fails the span");
    assert_eq!(chat.name, "chat m");
    assert_eq!(chat.kind, Kind::Client);
    assert_eq!(chat.trace_id, server.trace_id);
    assert_eq!(chat.parent_span_id, Some(server.span_id));
    assert!(!chat.remote_parent);
    assert_eq!(attr(chat, "gen_ai.usage.input_tokens"), Some(&AttrValue::Int(12)));
    assert!(attr(chat, "otel.name").is_none() && attr(server, "traceparent").is_none());
    assert!(chat.end_unix_nano >= chat.start_unix_nano && chat.start_unix_nano > 0);
}

#[test]
fn a_span_without_a_valid_parent_starts_a_trace() {
    let spans = record(|| {
        let a = consumer_span(
            "ay.jobs.tool",
            Some("00-00000000000000000000000000000000-00f067aa0ba902b7-01"),
        );
        let b = consumer_span("ay.jobs.tool", None);
        drop((a, b));
    });
    assert_eq!(spans.len(), 2);
    assert_ne!(spans[0].trace_id, spans[1].trace_id);
    assert!(spans.iter().all(|s| s.parent_span_id.is_none() && s.trace_id != [0; 16]));
    assert_eq!(spans[0].name, "process ay.jobs.tool");
    assert_eq!(spans[0].kind, Kind::Consumer);
    assert_eq!(attr(&spans[0], "messaging.system"), Some(&AttrValue::Str("nats".into())));
}

#[test]
fn config_follows_the_otel_variables() {
    let vars = |pairs: &'static [(&'static str, &'static str)]| {
        move |k: &str| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| (*v).to_owned())
    };
    assert_eq!(Config::from_vars(vars(&[]), "agentyard-api"), None);
    let c = Config::from_vars(
        vars(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/"),
            ("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=prod,service.name=from-resource"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "x-api-key=secret"),
            ("OTEL_BSP_SCHEDULE_DELAY", "soon"),
        ]),
        "agentyard-api",
    )
    .unwrap();
    assert_eq!(c.endpoint, "http://collector:4318/v1/traces");
    assert_eq!(c.service_name, "from-resource");
    assert_eq!(c.resource, [("deployment.environment".to_owned(), "prod".to_owned())]);
    assert_eq!(c.headers, [("x-api-key".to_owned(), "secret".to_owned())]);
    assert_eq!(c.schedule_delay, Duration::from_secs(5));
    assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
    let c = Config::from_vars(
        vars(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://ignored:4318"),
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://collector:4318/custom"),
            ("OTEL_SERVICE_NAME", "mine"),
        ]),
        "agentyard-api",
    )
    .unwrap();
    assert_eq!(
        (c.endpoint.as_str(), c.service_name.as_str()),
        ("http://collector:4318/custom", "mine")
    );
    const OFF: &[(&str, &str)] =
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"), ("OTEL_SDK_DISABLED", "true")];
    assert_eq!(Config::from_vars(vars(OFF), "x"), None);
}

/// The only test that touches `ENABLED`.
#[test]
fn the_current_context_is_the_nearest_exported_span() {
    let incoming = TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
    let mut seen = (None, None);
    let spans = record(|| {
        let job = consumer_span("ay.jobs.tool", Some(&incoming.unwrap().to_string()));
        let _j = job.enter();
        let plain = tracing::info_span!("tool_call");
        let _p = plain.enter();
        seen.0 = current_traceparent();
        ENABLED.store(true, Ordering::Relaxed);
        seen.1 = current_traceparent();
    });
    assert_eq!(seen.0, None, "traces off: no context");
    let sent = TraceParent::parse(&seen.1.expect("a context")).unwrap();
    assert_eq!(sent.trace_id, incoming.unwrap().trace_id);
    assert_eq!(sent.span_id, spans[0].span_id, "the consumer span is the parent of what it sends");
    assert_eq!(sent.flags, 1);
}

/// The measurement `agentyard-bench spans` runs, at a small count: every span of the load
/// reaches the exporter's queue and encodes.
#[test]
fn the_span_cost_measurement_exports_and_encodes_every_span() {
    let c = crate::cost::measure(2_000);
    assert_eq!(c.spans, 4_000, "a job span and a chat span per iteration");
    assert_eq!(c.encoded, 2_048.min(c.spans));
    assert!(c.bytes_per_span > 50, "{c:?}");
}
