//! What the layer keeps of a span, and how it reads the span's fields.
//!
//! Field convention (see the crate docs): `otel.name` (the span's name; a span without this field
//! is not exported), `otel.kind` (`server`, `client`, `producer`, `consumer`, else internal),
//! `traceparent` (a remote parent, e.g. from an HTTP or NATS header), `error.type` (also marks
//! the span as failed). Every other field is an attribute.

use std::time::{SystemTime, UNIX_EPOCH};

use tracing::field::{Field, Visit};

use crate::TraceParent;

/// OTLP `SpanKind`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Kind {
    Internal = 1,
    Server = 2,
    Client = 3,
    Producer = 4,
    Consumer = 5,
}

impl Kind {
    fn parse(s: &str) -> Self {
        match s {
            "server" => Self::Server,
            "client" => Self::Client,
            "producer" => Self::Producer,
            "consumer" => Self::Consumer,
            _ => Self::Internal,
        }
    }
}

/// An attribute's value.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum AttrValue {
    Str(String),
    Bool(bool),
    Int(i64),
    F64(f64),
}

/// A span being recorded (in the registry's extensions) or ended (on its way out).
#[derive(Clone, Debug)]
pub(crate) struct SpanData {
    pub(crate) trace_id: [u8; 16],
    pub(crate) span_id: [u8; 8],
    pub(crate) parent_span_id: Option<[u8; 8]>,
    pub(crate) remote_parent: bool,
    pub(crate) name: String,
    pub(crate) kind: Kind,
    pub(crate) start_unix_nano: u64,
    pub(crate) end_unix_nano: u64,
    pub(crate) attributes: Vec<(&'static str, AttrValue)>,
    pub(crate) error: bool,
}

impl SpanData {
    pub(crate) fn new() -> Self {
        Self {
            trace_id: [0; 16],
            span_id: [0; 8],
            parent_span_id: None,
            remote_parent: false,
            name: String::new(),
            kind: Kind::Internal,
            start_unix_nano: now_unix_nano(),
            end_unix_nano: 0,
            attributes: Vec::with_capacity(12),
            error: false,
        }
    }

    fn set(&mut self, key: &'static str, value: AttrValue) {
        match self.attributes.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => *v = value,
            None => self.attributes.push((key, value)),
        }
    }

    /// This span as a parent: `traceparent` of what it causes.
    pub(crate) fn context(&self) -> TraceParent {
        TraceParent { trace_id: self.trace_id, span_id: self.span_id, flags: 1 }
    }
}

pub(crate) fn now_unix_nano() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// Reads fields into a [`SpanData`]; a `traceparent` field lands in `remote`.
pub(crate) struct Fields<'a> {
    pub(crate) span: &'a mut SpanData,
    pub(crate) remote: Option<TraceParent>,
}

impl Fields<'_> {
    fn string(&mut self, field: &Field, value: std::borrow::Cow<'_, str>) {
        match field.name() {
            "otel.name" => self.span.name = value.into_owned(),
            "otel.kind" => self.span.kind = Kind::parse(&value),
            "traceparent" => self.remote = TraceParent::parse(&value),
            name => {
                if name == "error.type" {
                    self.span.error = true;
                }
                self.span.set(name, AttrValue::Str(value.into_owned()));
            }
        }
    }
}

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.string(field, value.into());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        // `%value` fields arrive here; their Debug is their Display.
        self.string(field, format!("{value:?}").into());
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.span.set(field.name(), AttrValue::Int(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.span.set(field.name(), AttrValue::Int(i64::try_from(value).unwrap_or(i64::MAX)));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.span.set(field.name(), AttrValue::Bool(value));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.span.set(field.name(), AttrValue::F64(value));
    }
}
