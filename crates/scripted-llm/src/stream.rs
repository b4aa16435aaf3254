//! Turning a planned reply into an SSE body, with the scripted delays.
//!
//! The whole stream is serialized up front into frames; a frame is everything sent after one
//! delay. Events with no delay before them join the previous frame, so with zero delays the
//! complete stream is a single body frame (the benchmark path). A stalled stream sends its
//! frames, then holds the connection open until the server shuts down.

use std::convert::Infallible;
use std::time::Duration;

use axum::body::{Body, Bytes};
use tokio_util::sync::CancellationToken;

use crate::answer;
use crate::plan::{Plan, Reply};
use crate::wire::{self, Delta, FunctionDelta, Head, ToolCallDelta, Usage};

/// A serialized stream, ready to send.
#[derive(Debug)]
pub(crate) struct Frames {
    /// (delay before, bytes) pairs.
    frames: Vec<(Duration, Vec<u8>)>,
    /// Hang after the last frame instead of ending the body.
    stall: bool,
}

impl Frames {
    fn push(&mut self, delay: Duration, write: impl FnOnce(&mut Vec<u8>)) {
        match self.frames.last_mut() {
            Some((_, bytes)) if delay.is_zero() => write(bytes),
            _ => {
                let mut bytes = Vec::with_capacity(256);
                write(&mut bytes);
                self.frames.push((delay, bytes));
            }
        }
    }

    /// The number of content events written so far decides the next delay.
    fn delay_for(plan: &Plan<'_>, event: usize) -> Duration {
        if event == 0 { plan.first_token } else { plan.token_delay }
    }

    /// The HTTP body: one frame when there is nothing to wait for, else a timed stream that
    /// ends early when `shutdown` fires.
    pub(crate) fn into_body(mut self, shutdown: CancellationToken) -> Body {
        if !self.stall && self.frames.len() == 1 {
            let (_, bytes) = self.frames.pop().expect("one frame");
            return Body::from(bytes);
        }
        let state = (self.frames.into_iter(), self.stall, shutdown);
        let stream = futures::stream::unfold(state, |(mut frames, stall, shutdown)| async move {
            let Some((delay, bytes)) = frames.next() else {
                if stall {
                    shutdown.cancelled().await;
                }
                return None;
            };
            if !delay.is_zero() {
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = shutdown.cancelled() => return None,
                }
            }
            Some((Ok::<_, Infallible>(Bytes::from(bytes)), (frames, stall, shutdown)))
        });
        Body::from_stream(stream)
    }
}

/// Serializes `plan` (text or tool calls) as chunks. `include_usage` is the client's
/// `stream_options.include_usage`; `call_id` names the n-th tool call.
pub(crate) fn frames(
    head: Head<'_>,
    plan: &Plan<'_>,
    include_usage: bool,
    prompt_tokens: u32,
    mut call_id: impl FnMut() -> String,
) -> Frames {
    let mut out = Frames { frames: Vec::with_capacity(1), stall: false };
    let role = Delta { role: Some("assistant"), ..Delta::default() };
    let role = match plan.reply {
        Reply::Text(_) => Delta { content: Some(""), ..role },
        _ => role,
    };
    out.push(Duration::ZERO, |b| wire::write_chunk(b, head, role, None));
    let mut events = 0usize;
    // Returns false once the stall or cut point is reached: nothing more may be written.
    let mut emit = |out: &mut Frames, delta: Delta<'_>| {
        if plan.stall_after == Some(events) {
            out.stall = true;
            return false;
        }
        if plan.cut_after == Some(events) {
            return false;
        }
        out.push(Frames::delay_for(plan, events), |b| wire::write_chunk(b, head, delta, None));
        events += 1;
        true
    };
    let finish_reason = match &plan.reply {
        Reply::Text(text) => {
            for token in answer::tokenize(text) {
                if !emit(&mut out, Delta { content: Some(token), ..Delta::default() }) {
                    return out;
                }
            }
            "stop"
        }
        Reply::ToolCalls(calls) => {
            for (index, call) in calls.iter().enumerate() {
                let id = call_id();
                let function = FunctionDelta { name: Some(&call.name), arguments: "" };
                let first =
                    ToolCallDelta { index, id: Some(&id), kind: Some("function"), function };
                if !emit(&mut out, Delta { tool_calls: Some([first]), ..Delta::default() }) {
                    return out;
                }
                for fragment in wire::split_arguments(&call.arguments) {
                    let function = FunctionDelta { name: None, arguments: fragment };
                    let part = ToolCallDelta { index, id: None, kind: None, function };
                    if !emit(&mut out, Delta { tool_calls: Some([part]), ..Delta::default() }) {
                        return out;
                    }
                }
            }
            "tool_calls"
        }
        Reply::Error(_) | Reply::Hang => "stop",
    };
    if plan.stall_after == Some(events) {
        out.stall = true;
        return out;
    }
    if plan.cut_after.is_some_and(|n| n <= events) {
        return out;
    }
    out.push(Duration::ZERO, |b| {
        wire::write_chunk(b, head, Delta::default(), Some(finish_reason));
        if include_usage && plan.usage {
            let usage = Usage::new(prompt_tokens, u32::try_from(events).unwrap_or(u32::MAX));
            wire::write_usage_chunk(b, head, usage);
        }
        b.extend_from_slice(wire::DONE);
    });
    out
}

/// How many content chunks a reply streams (its `completion_tokens`).
pub(crate) fn content_events(reply: &Reply<'_>) -> usize {
    match reply {
        Reply::Text(text) => answer::tokenize(text).len(),
        Reply::ToolCalls(calls) => {
            calls.iter().map(|c| 1 + wire::split_arguments(&c.arguments).len()).sum()
        }
        Reply::Error(_) | Reply::Hang => 0,
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use super::*;
    use crate::plan::Source;

    fn plan(text: &'static str, delay_ms: u64, stall_after: Option<usize>) -> Plan<'static> {
        Plan {
            reply: Reply::Text(Cow::Borrowed(text)),
            first_token: Duration::from_millis(delay_ms),
            token_delay: Duration::from_millis(delay_ms),
            usage: true,
            stall_after,
            cut_after: None,
            source: Source::Default,
        }
    }

    const HEAD: Head<'static> = Head { id: "chatcmpl-1", created: 1, model: "m" };

    #[test]
    fn zero_delays_give_a_single_frame() {
        let out = frames(HEAD, &plan("a b c", 0, None), true, 3, String::new);
        assert_eq!(out.frames.len(), 1);
        let text = String::from_utf8(out.frames[0].1.clone()).unwrap();
        assert_eq!(text.matches("data: ").count(), 1 + 3 + 1 + 1 + 1);
        assert!(text.ends_with("data: [DONE]\n\n"));
    }

    #[test]
    fn delays_give_one_frame_per_token_and_stalls_stop_early() {
        let out = frames(HEAD, &plan("a b c", 5, None), false, 3, String::new);
        assert_eq!(out.frames.len(), 4);
        assert!(!out.stall);
        let out = frames(HEAD, &plan("a b c", 0, Some(2)), false, 3, String::new);
        assert!(out.stall);
        let text = String::from_utf8(out.frames[0].1.clone()).unwrap();
        assert_eq!(text.matches("\"content\"").count(), 3);
        assert!(!text.contains("[DONE]"));
    }
}
