//! An incremental Server-Sent Events parser for our own clients (the CLI, the tests and the
//! benchmark): feed it bytes as they arrive, take whole events out.

/// One SSE event.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SseEvent {
    pub id: Option<String>,
    pub event: String,
    pub data: String,
}

/// Accumulates bytes; yields events at each blank line.
#[derive(Debug, Default)]
pub struct SseParser {
    buf: Vec<u8>,
    current: SseEvent,
    has_field: bool,
}

impl SseParser {
    /// Adds `chunk` and returns the events it completed.
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<SseEvent> {
        self.buf.extend_from_slice(chunk);
        let mut out = Vec::new();
        while let Some(pos) = self.buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.buf.drain(..=pos).collect();
            let line = String::from_utf8_lossy(&line);
            let line = line.trim_end_matches(['\n', '\r']);
            if line.is_empty() {
                if self.has_field {
                    out.push(std::mem::take(&mut self.current));
                    self.has_field = false;
                }
                continue;
            }
            if line.starts_with(':') {
                continue; // comment (keep-alive)
            }
            let (field, value) = match line.split_once(':') {
                Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
                None => (line, ""),
            };
            self.has_field = true;
            match field {
                "id" => self.current.id = Some(value.to_owned()),
                "event" => self.current.event = value.to_owned(),
                "data" => {
                    if !self.current.data.is_empty() {
                        self.current.data.push('\n');
                    }
                    self.current.data.push_str(value);
                }
                _ => {}
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_across_chunks_are_reassembled() {
        let mut p = SseParser::default();
        assert!(p.feed(b"id: 7\nevent: message.delta\nda").is_empty());
        let evs =
            p.feed(b"ta: {\"content\":\"hi\"}\n\n: keep-alive\n\nevent: x\ndata: a\ndata: b\n\n");
        assert_eq!(evs.len(), 2);
        assert_eq!(evs[0].id.as_deref(), Some("7"));
        assert_eq!(evs[0].event, "message.delta");
        assert_eq!(evs[0].data, "{\"content\":\"hi\"}");
        assert_eq!(evs[1].data, "a\nb");
    }
}
