//! The W3C Trace Context `traceparent` header: `00-<trace id>-<parent id>-<flags>`.
//! <https://www.w3.org/TR/trace-context/#traceparent-header>

use std::fmt;

/// A parsed `traceparent`: the trace, the span that is the parent, and the trace flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceParent {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    /// Bit 0: sampled.
    pub flags: u8,
}

impl TraceParent {
    /// Parses a header value. None for anything the spec says to ignore: a version that is not
    /// two lowercase hex digits or is `ff`, a version-00 value that is not exactly 55
    /// characters, ids that are not lowercase hex or are all zeros. A later version may append
    /// fields after a `-`; its first four fields are read as version 00's.
    pub fn parse(value: &str) -> Option<Self> {
        let v = value.trim().as_bytes();
        if v.len() < 55 {
            return None;
        }
        let version = hex_byte(&v[0..2])?;
        if version == 0xff || v[2] != b'-' || v[35] != b'-' || v[52] != b'-' {
            return None;
        }
        if (version == 0 && v.len() != 55) || (v.len() > 55 && v[55] != b'-') {
            return None;
        }
        let mut trace_id = [0u8; 16];
        for (i, b) in trace_id.iter_mut().enumerate() {
            *b = hex_byte(&v[3 + 2 * i..5 + 2 * i])?;
        }
        let mut span_id = [0u8; 8];
        for (i, b) in span_id.iter_mut().enumerate() {
            *b = hex_byte(&v[36 + 2 * i..38 + 2 * i])?;
        }
        let flags = hex_byte(&v[53..55])?;
        if trace_id == [0; 16] || span_id == [0; 8] {
            return None;
        }
        Some(Self { trace_id, span_id, flags })
    }
}

/// Always version 00, lowercase.
impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("00-")?;
        for b in self.trace_id {
            write!(f, "{b:02x}")?;
        }
        f.write_str("-")?;
        for b in self.span_id {
            write!(f, "{b:02x}")?;
        }
        write!(f, "-{:02x}", self.flags)
    }
}

fn hex_byte(two: &[u8]) -> Option<u8> {
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    Some(digit(two[0])? << 4 | digit(two[1])?)
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_valid_header_round_trips() {
        let tp = TraceParent::parse(VALID).unwrap();
        assert_eq!(tp.trace_id[0], 0x4b);
        assert_eq!(tp.trace_id[15], 0x36);
        assert_eq!(tp.span_id, [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7]);
        assert_eq!(tp.flags, 1);
        assert_eq!(tp.to_string(), VALID);
        assert_eq!(TraceParent::parse(&format!(" {VALID} ")), Some(tp), "whitespace is trimmed");
    }

    #[test]
    fn later_versions_are_read_as_00_and_ff_is_refused() {
        let v1 = VALID.replacen("00", "cc", 1);
        assert_eq!(TraceParent::parse(&v1).unwrap().to_string(), VALID);
        assert!(TraceParent::parse(&format!("{v1}-what-comes-next")).is_some());
        assert!(TraceParent::parse(&format!("{v1}xyz")).is_none(), "a new field needs a dash");
        assert!(TraceParent::parse(&VALID.replacen("00", "ff", 1)).is_none());
        assert!(TraceParent::parse(&format!("{VALID}-extra")).is_none(), "00 is exactly 55");
        assert!(TraceParent::parse(&VALID.replacen("00", "0g", 1)).is_none());
    }

    #[test]
    fn malformed_and_all_zero_ids_are_refused() {
        let zero_trace = "00-00000000000000000000000000000000-00f067aa0ba902b7-01";
        let zero_span = "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01";
        for bad in [
            "",
            zero_trace,
            zero_span,
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-zz",
        ] {
            assert_eq!(TraceParent::parse(bad), None, "{bad:?}");
        }
    }
}
