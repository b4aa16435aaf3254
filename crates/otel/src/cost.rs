//! What a span costs when traces are on: recorded (ids, parent, attributes, queued) and
//! encoded, against the same spans under the bare registry. Run by `agentyard-bench spans`
//! (release build; a measurement, not a check).

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tracing_subscriber::layer::{Layer, SubscriberExt};

use crate::span::{AttrValue, SpanData};
use crate::{consumer_span, layer, proto};

/// Spans kept to encode, at most.
const KEPT: usize = 2_048;

/// Per-span costs.
#[derive(Clone, Debug)]
pub struct SpanCost {
    /// Spans recorded (a job span and a model-call span per iteration).
    pub spans: usize,
    pub recorded_ns: u128,
    /// The same spans with the registry alone: what `tracing` costs anyway.
    pub registry_alone_ns: u128,
    /// Spans encoded (the first ones recorded, in batches of 512).
    pub encoded: usize,
    pub encoded_ns: u128,
    pub bytes_per_span: usize,
}

/// Records `iterations` × (a consumer span and a `chat` span inside it) with the exporter's
/// layer, draining its queue as the exporter would, then the same under the bare registry, and
/// encodes the first spans.
pub fn measure(iterations: usize) -> SpanCost {
    let (queue, mut rx) = mpsc::channel(4096);
    let mut kept: Vec<SpanData> = Vec::with_capacity(KEPT);
    let mut spans = 0;
    let mut drain = |rx: &mut mpsc::Receiver<SpanData>| {
        while let Ok(s) = rx.try_recv() {
            spans += 1;
            if kept.len() < KEPT {
                kept.push(s);
            }
        }
    };
    let layer = layer::OtelLayer { queue, dropped: Arc::new(AtomicU64::new(0)) };
    let subscriber = tracing_subscriber::registry().with(layer.with_filter(layer::Exported));
    let incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let started = Instant::now();
    tracing::subscriber::with_default(subscriber, || {
        for i in 0..iterations {
            if i % 1000 == 0 {
                drain(&mut rx);
            }
            let job = consumer_span("ay.jobs.agent.normal", Some(incoming));
            job.record("messaging.message.delivery_count", 1);
            let chat = job.in_scope(|| {
                tracing::trace_span!("chat", otel.name = %format_args!("chat {}", "gpt-4o-mini"),
                    otel.kind = "client", gen_ai.operation.name = "chat",
                    gen_ai.provider.name = "openai", gen_ai.request.model = "gpt-4o-mini",
                    gen_ai.request.max_tokens = 1024,
                    gen_ai.response.model = tracing::field::Empty,
                    gen_ai.usage.input_tokens = tracing::field::Empty,
                    gen_ai.usage.output_tokens = tracing::field::Empty)
            });
            chat.record("gen_ai.response.model", "gpt-4o-mini-2024-07-18");
            chat.record("gen_ai.usage.input_tokens", 404);
            chat.record("gen_ai.usage.output_tokens", 12);
        }
    });
    let recorded = started.elapsed();
    drain(&mut rx);
    let started = Instant::now();
    tracing::subscriber::with_default(tracing_subscriber::registry(), || {
        for _ in 0..iterations {
            let job = tracing::info_span!("job", subject = "ay.jobs.agent.normal", n = 1);
            let chat = job.in_scope(|| tracing::info_span!("chat", model = "gpt-4o-mini"));
            chat.record("model", "gpt-4o-mini");
        }
    });
    let bare = started.elapsed();
    let resource = [("service.name".to_owned(), AttrValue::Str("agentyard-worker-agent".into()))];
    let started = Instant::now();
    let bytes: usize = kept
        .chunks(512)
        .map(|batch| proto::export_request(&resource, ("agentyard", "0.1.0"), batch).len())
        .sum();
    let encoded = started.elapsed();
    let per = |d: Duration, n: usize| d.as_nanos() / n.max(1) as u128;
    SpanCost {
        spans,
        recorded_ns: per(recorded, 2 * iterations),
        registry_alone_ns: per(bare, 2 * iterations),
        encoded: kept.len(),
        encoded_ns: per(encoded, kept.len()),
        bytes_per_span: bytes / kept.len().max(1),
    }
}
