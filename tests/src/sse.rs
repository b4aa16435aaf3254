//! Reading SSE responses in tests.

use std::time::Duration;

use agentyard_core::sse::{SseEvent, SseParser};
use futures::StreamExt;

/// Reads an SSE response to its end (or until `stop` says so), failing after `timeout`.
pub async fn read(
    resp: reqwest::Response,
    timeout: Duration,
    mut stop: impl FnMut(&SseEvent) -> bool,
) -> Vec<SseEvent> {
    assert!(resp.status().is_success(), "SSE request failed: {}", resp.status());
    let mut parser = SseParser::default();
    let mut out = Vec::new();
    let mut body = resp.bytes_stream();
    let read = async {
        while let Some(chunk) = body.next().await {
            for ev in parser.feed(&chunk.expect("SSE chunk")) {
                let done = stop(&ev);
                out.push(ev);
                if done {
                    return;
                }
            }
        }
    };
    tokio::time::timeout(timeout, read).await.expect("SSE stream did not end in time");
    out
}

/// Reads to the natural end of the stream.
pub async fn read_all(resp: reqwest::Response, timeout: Duration) -> Vec<SseEvent> {
    read(resp, timeout, |_| false).await
}

/// The concatenated `message.delta` contents, honouring `message.reset`.
pub fn content(events: &[SseEvent]) -> String {
    let mut s = String::new();
    for e in events {
        match e.event.as_str() {
            "message.delta" => {
                let v: serde_json::Value = serde_json::from_str(&e.data).expect("delta JSON");
                s.push_str(v["content"].as_str().unwrap_or_default());
            }
            "message.reset" => s.clear(),
            _ => {}
        }
    }
    s
}

/// The event types, in order.
pub fn kinds(events: &[SseEvent]) -> Vec<&str> {
    events.iter().map(|e| e.event.as_str()).collect()
}
