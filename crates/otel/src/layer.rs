//! The `tracing` layer: gives spans that carry an `otel.name` field W3C ids and a parent (the
//! nearest such ancestor, or the remote parent in their `traceparent` field), records their
//! fields as attributes, and hands each ended span to the exporter's bounded queue. A full
//! queue drops the span (counted): recording never waits for the network.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::mpsc;
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::Interest;
use tracing::{Metadata, Subscriber};
use tracing_subscriber::layer::{Context, Filter, Layer};
use tracing_subscriber::registry::LookupSpan;

use crate::span::{Fields, SpanData, now_unix_nano};

/// Records the spans [`Exported`] lets through.
pub(crate) struct OtelLayer {
    pub(crate) queue: mpsc::Sender<SpanData>,
    pub(crate) dropped: Arc<AtomicU64>,
}

impl<S> Layer<S> for OtelLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut data = SpanData::new();
        let mut fields = Fields { span: &mut data, remote: None };
        attrs.record(&mut fields);
        let remote = fields.remote;
        if data.name.is_empty() {
            span.name().clone_into(&mut data.name);
        }
        // In this (filtered) context, the parent is the nearest exported ancestor.
        let local = span
            .parent()
            .and_then(|p| p.extensions().get::<SpanData>().map(|d| (d.trace_id, d.span_id)));
        match (remote, local) {
            (Some(tp), _) => {
                data.trace_id = tp.trace_id;
                data.parent_span_id = Some(tp.span_id);
                data.remote_parent = true;
            }
            (None, Some((trace_id, parent))) => {
                data.trace_id = trace_id;
                data.parent_span_id = Some(parent);
            }
            (None, None) => data.trace_id = new_trace_id(),
        }
        data.span_id = new_span_id();
        span.extensions_mut().insert(data);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut ext = span.extensions_mut();
        if let Some(data) = ext.get_mut::<SpanData>() {
            values.record(&mut Fields { span: data, remote: None });
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else { return };
        let Some(mut data) = span.extensions_mut().remove::<SpanData>() else { return };
        data.end_unix_nano = now_unix_nano();
        if self.queue.try_send(data).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Lets through the spans that name themselves for OpenTelemetry (an `otel.name` field),
/// whatever their level; decided once per call site.
pub(crate) struct Exported;

fn exported(meta: &Metadata<'_>) -> bool {
    meta.is_span() && meta.fields().field("otel.name").is_some()
}

impl<S> Filter<S> for Exported {
    fn enabled(&self, meta: &Metadata<'_>, _: &Context<'_, S>) -> bool {
        exported(meta)
    }

    fn callsite_enabled(&self, meta: &'static Metadata<'static>) -> Interest {
        if exported(meta) { Interest::always() } else { Interest::never() }
    }

    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        Some(tracing::level_filters::LevelFilter::TRACE)
    }
}

fn new_trace_id() -> [u8; 16] {
    loop {
        let id: u128 = rand::random();
        if id != 0 {
            return id.to_be_bytes();
        }
    }
}

fn new_span_id() -> [u8; 8] {
    loop {
        let id: u64 = rand::random();
        if id != 0 {
            return id.to_be_bytes();
        }
    }
}
