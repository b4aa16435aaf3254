//! Just enough protobuf to write an OTLP `ExportTraceServiceRequest`: varints, fixed-width
//! numbers and length-delimited fields. Field numbers are those of opentelemetry-proto's
//! `collector/trace/v1/trace_service.proto`, `trace/v1/trace.proto`,
//! `common/v1/common.proto` and `resource/v1/resource.proto`. The end-to-end test has the
//! official `opentelemetry-proto` package decode what this writes.

use crate::span::{AttrValue, SpanData};

const VARINT: u32 = 0;
const FIXED64: u32 = 1;
const LEN: u32 = 2;
const FIXED32: u32 = 5;

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn key(out: &mut Vec<u8>, field: u32, wire: u32) {
    varint(out, u64::from(field << 3 | wire));
}

fn bytes(out: &mut Vec<u8>, field: u32, b: &[u8]) {
    key(out, field, LEN);
    varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

fn uint(out: &mut Vec<u8>, field: u32, v: u64) {
    key(out, field, VARINT);
    varint(out, v);
}

fn fixed64(out: &mut Vec<u8>, field: u32, v: u64) {
    key(out, field, FIXED64);
    out.extend_from_slice(&v.to_le_bytes());
}

fn fixed32(out: &mut Vec<u8>, field: u32, v: u32) {
    key(out, field, FIXED32);
    out.extend_from_slice(&v.to_le_bytes());
}

/// An embedded message: written in place, then its length put in front of it (moving it by
/// a byte or two beats a scratch buffer per message).
fn message(out: &mut Vec<u8>, field: u32, write: impl FnOnce(&mut Vec<u8>)) {
    key(out, field, LEN);
    let start = out.len();
    write(out);
    let len = out.len() - start;
    let (mut prefix, mut n, mut v) = ([0u8; 10], 0, len as u64);
    while v >= 0x80 {
        prefix[n] = (v as u8) | 0x80;
        v >>= 7;
        n += 1;
    }
    prefix[n] = v as u8;
    out.extend_from_slice(&prefix[..=n]);
    out[start..].rotate_right(n + 1);
}

/// `KeyValue { key = 1; AnyValue value = 2 }`, `AnyValue { string_value = 1; bool_value = 2;
/// int_value = 3; double_value = 4 }`.
fn key_value(out: &mut Vec<u8>, field: u32, k: &str, v: &AttrValue) {
    message(out, field, |kv| {
        bytes(kv, 1, k.as_bytes());
        message(kv, 2, |any| match v {
            AttrValue::Str(s) => bytes(any, 1, s.as_bytes()),
            AttrValue::Bool(b) => uint(any, 2, u64::from(*b)),
            AttrValue::Int(i) => uint(any, 3, *i as u64),
            AttrValue::F64(f) => fixed64(any, 4, f.to_bits()),
        });
    });
}

/// `Span` (trace.proto).
fn span(out: &mut Vec<u8>, s: &SpanData) {
    message(out, 2, |m| {
        bytes(m, 1, &s.trace_id);
        bytes(m, 2, &s.span_id);
        if let Some(parent) = &s.parent_span_id {
            bytes(m, 4, parent);
        }
        bytes(m, 5, s.name.as_bytes());
        uint(m, 6, u64::from(s.kind as u8));
        fixed64(m, 7, s.start_unix_nano);
        fixed64(m, 8, s.end_unix_nano);
        for (k, v) in &s.attributes {
            key_value(m, 9, k, v);
        }
        if s.error {
            // Status { code = 3 }: STATUS_CODE_ERROR = 2.
            message(m, 15, |st| uint(st, 3, 2));
        }
        // Trace flags (sampled), and whether the parent is known to be remote (bits 8, 9).
        let remote = if s.remote_parent { 0x300 } else { 0x100 };
        fixed32(m, 16, 0x01 | remote);
    });
}

/// `ExportTraceServiceRequest { repeated ResourceSpans resource_spans = 1 }` holding one
/// resource (its attributes) and one instrumentation scope with `spans`.
pub(crate) fn export_request(
    resource: &[(String, AttrValue)],
    scope: (&str, &str),
    spans: &[SpanData],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(256 + spans.len() * 256);
    message(&mut out, 1, |rs| {
        // ResourceSpans { Resource resource = 1; repeated ScopeSpans scope_spans = 2 }
        message(rs, 1, |r| {
            for (k, v) in resource {
                key_value(r, 1, k, v);
            }
        });
        message(rs, 2, |ss| {
            // ScopeSpans { InstrumentationScope scope = 1; repeated Span spans = 2 }
            message(ss, 1, |sc| {
                bytes(sc, 1, scope.0.as_bytes());
                bytes(sc, 2, scope.1.as_bytes());
            });
            for s in spans {
                span(ss, s);
            }
        });
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_are_little_endian_groups_of_seven_bits() {
        let enc = |v| {
            let mut out = Vec::new();
            varint(&mut out, v);
            out
        };
        assert_eq!(enc(0), [0]);
        assert_eq!(enc(1), [1]);
        assert_eq!(enc(300), [0xac, 0x02]);
        assert_eq!(enc(u64::MAX).len(), 10);
        // A negative int64 is its two's complement: ten bytes.
        let mut out = Vec::new();
        uint(&mut out, 3, -1i64 as u64);
        assert_eq!(out.len(), 11);
    }

    #[test]
    fn an_embedded_message_is_prefixed_with_its_length() {
        let mut out = vec![0xee];
        message(&mut out, 2, |m| {
            bytes(m, 1, &[7; 200]);
            message(m, 3, |m| uint(m, 1, 1));
        });
        // key 2/LEN, length 207 as a two-byte varint, then key 1/LEN, 200 as two bytes, ...
        assert_eq!(out[..4], [0xee, 2 << 3 | 2, 0xcf, 0x01]);
        assert_eq!(out[4..7], [1 << 3 | 2, 0xc8, 0x01]);
        assert_eq!(out[207..], [3 << 3 | 2, 2, 1 << 3, 1]);
        assert_eq!(out.len(), 4 + 207);
    }

    #[test]
    fn a_string_field_is_tag_length_bytes() {
        let mut out = Vec::new();
        bytes(&mut out, 5, b"chat");
        assert_eq!(out, [5 << 3 | 2, 4, b'c', b'h', b'a', b't']);
    }
}
