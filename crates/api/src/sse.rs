//! Run events as Server-Sent Events: `id:` is the event's sequence in the events stream (send it
//! back as `Last-Event-ID` to resume), `event:` its type, `data:` its JSON.

use std::convert::Infallible;
use std::time::Duration;

use agentyard_bus::BusError;
use agentyard_bus::events::SeqEvent;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::{Stream, StreamExt};

/// Turns run events into an SSE response that ends after the terminal event.
pub(crate) fn respond(
    events: impl Stream<Item = Result<SeqEvent, BusError>> + Send + 'static,
) -> Sse<impl Stream<Item = Result<Event, Infallible>> + Send + 'static> {
    let stream = events
        .take_while(|r| {
            if let Err(e) = r {
                tracing::warn!(error = %e, "event stream broke; the client may resume");
            }
            futures::future::ready(r.is_ok())
        })
        .filter_map(|r| futures::future::ready(r.ok()))
        .map(|e| {
            Ok(Event::default()
                .id(e.seq.to_string())
                .event(e.event.kind)
                .data(e.event.data.to_string()))
        });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}
