//! Events as Server-Sent Events: `id:` is the event's sequence in the events stream (send it
//! back as `Last-Event-ID` to resume), `event:` its type, `data:` its JSON.

use std::convert::Infallible;
use std::time::Duration;

use axum::response::sse::{Event, KeepAlive, Sse};
use futures::{Stream, StreamExt};

use crate::live::Item;

/// Turns events into an SSE response.
pub(crate) fn respond(
    events: impl Stream<Item = Item> + Send + 'static,
) -> Sse<impl Stream<Item = Result<Event, Infallible>> + Send + 'static> {
    let stream = events
        .map(|e| Ok(Event::default().id(e.seq.to_string()).event(e.kind.as_str()).data(e.data)));
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

/// Turns (sequence, type, data) triples into an SSE response.
pub(crate) fn respond_raw(
    events: impl Stream<Item = (u64, String, String)> + Send + 'static,
) -> Sse<impl Stream<Item = Result<Event, Infallible>> + Send + 'static> {
    let stream = events
        .map(|(seq, kind, data)| Ok(Event::default().id(seq.to_string()).event(kind).data(data)));
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}
