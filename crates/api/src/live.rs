//! What clients wait for, served from the hub ([`crate::hub`]) and the stored events: a run's
//! events (replayed from a sequence, then live, ending after the terminal one), an
//! organization's events, and a long-poll for a run's end.

use std::sync::Arc;
use std::time::Duration;

use agentyard_bus::Bus;
use agentyard_bus::events::SeqEvent;
use agentyard_core::events::EventKind;
use agentyard_core::run::{Run, RunStatus};
use agentyard_core::{OrgId, RunId, UserId};
use agentyard_services::Principal;
use agentyard_store::Store;
use futures::{Stream, StreamExt};
use tokio::sync::mpsc;

use crate::hub::{Delivery, EventHub, StreamPermit, Subscription};
use crate::{ApiError, AppState};

/// Events a stream keeps ready for a slow client before it waits for it.
const BUFFER: usize = 256;

/// One SSE event: `id:`, `event:`, `data:`.
#[derive(Clone, Debug)]
pub(crate) struct Item {
    pub(crate) run: RunId,
    pub(crate) seq: u64,
    pub(crate) kind: EventKind,
    pub(crate) data: String,
}

impl From<&SeqEvent> for Item {
    fn from(e: &SeqEvent) -> Self {
        Self { run: e.run, seq: e.seq, kind: e.kind, data: e.data.get().to_owned() }
    }
}

/// An organization's event as the org stream shows it: its data with the run's id added.
fn with_run_id(e: &SeqEvent) -> Item {
    let raw = e.data.get();
    let data = match raw.strip_prefix('{') {
        Some(rest) if rest.trim_start().starts_with('}') => format!(r#"{{"run_id":"{}"}}"#, e.run),
        Some(rest) => format!(r#"{{"run_id":"{}",{rest}"#, e.run),
        None => raw.to_owned(),
    };
    Item { run: e.run, seq: e.seq, kind: e.kind, data }
}

/// Only the events of `owner`'s runs (an org stream of a token limited to its user, subscribed
/// with [`EventHub::subscribe_user`], which already leaves out most others). Whose a run is
/// comes from the hub's memory, shared by every stream, or is read once and remembered there
/// (a run's user never changes).
pub(crate) fn owned_by(
    events: impl Stream<Item = Item> + Send + 'static,
    store: Store,
    hub: Arc<EventHub>,
    org: OrgId,
    owner: UserId,
) -> impl Stream<Item = Item> + Send + 'static {
    events.filter_map(move |item| {
        let (hub, store) = (hub.clone(), store.clone());
        async move {
            let mine = match hub.owner(item.run) {
                Some(user) => user == Some(owner),
                None => match store.run_user(org, item.run).await {
                    Ok(user) => {
                        hub.remember_owner(item.run, user);
                        user == Some(owner)
                    }
                    // Unknown is not shown; the next event of the run asks again.
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot read whose a run is");
                        false
                    }
                },
            };
            mine.then_some(item)
        }
    })
}

/// Where a run's stream starts.
#[derive(Clone, Copy, Debug)]
pub(crate) enum StreamStart {
    /// A run created after its subscription registered: every event comes live.
    Created,
    /// An existing run: its stored events after this sequence (all when None) come first.
    Stored(Option<u64>),
}

/// The events of `run` (already authorized), from `start`, then live ones, ending after the
/// terminal event. `sub` must have been registered before `run` was read (or created).
pub(crate) fn run_events(
    bus: Bus,
    run: &Run,
    org: OrgId,
    start: StreamStart,
    sub: Subscription,
    permit: StreamPermit,
) -> impl Stream<Item = Item> + Send + 'static {
    let (tx, rx) = mpsc::channel(BUFFER);
    let subject = bus.subjects().run_events(org, run.id);
    let ended = run.status.is_terminal();
    let (after, replay_first) = match start {
        StreamStart::Created => (0, false),
        StreamStart::Stored(after) => (after.unwrap_or(0), true),
    };
    tokio::spawn(async move {
        let _permit = permit;
        let pick = |e: &SeqEvent| Some(Item::from(e));
        pump(bus, subject, after, replay_first, ended, sub, tx, pick, true).await;
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

/// Every event of `org` (with a sequence above `after`, when given, replayed first), of the
/// kinds `filter` accepts, never ending.
pub(crate) fn org_events(
    bus: Bus,
    org: OrgId,
    after: Option<u64>,
    filter: KindFilter,
    sub: Subscription,
    permit: StreamPermit,
) -> impl Stream<Item = Item> + Send + 'static {
    let (tx, rx) = mpsc::channel(BUFFER);
    let subject = bus.subjects().org_events(org);
    tokio::spawn(async move {
        let _permit = permit;
        let pick = move |e: &SeqEvent| filter.accepts(e.kind).then(|| with_run_id(e));
        match after {
            Some(after) => pump(bus, subject, after, true, false, sub, tx, pick, false).await,
            // From now on: nothing to replay, but a resync must not replay the whole past.
            None => match bus.last_event_seq().await {
                Ok(last) => pump(bus, subject, last, false, false, sub, tx, pick, false).await,
                Err(e) => tracing::warn!(error = %e, "cannot read the events stream"),
            },
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

/// Replays `subject` after `after` (when `replay_first`), then passes on live deliveries
/// (skipping what was already sent); a resync replays again. With `ends`, stops after a
/// terminal event, or after the replay when the run had ended before (`ended`: its events, if
/// not expired, are all stored).
#[allow(clippy::too_many_arguments)]
async fn pump(
    bus: Bus,
    subject: String,
    after: u64,
    replay_first: bool,
    ended: bool,
    mut sub: Subscription,
    tx: mpsc::Sender<Item>,
    pick: impl Fn(&SeqEvent) -> Option<Item> + Send,
    ends: bool,
) {
    let mut last = after;
    if replay_first
        && let Replayed::Stop = replay(&bus, &subject, &mut last, &tx, &pick, ends).await
    {
        return;
    }
    if ends && ended {
        return;
    }
    loop {
        tokio::select! {
            _ = tx.closed() => return,
            d = sub.recv() => match d {
                Some(Delivery::Event(e)) if e.seq > last => {
                    last = e.seq;
                    let terminal = e.kind.is_terminal();
                    if let Some(item) = pick(&e)
                        && tx.send(item).await.is_err()
                    {
                        return;
                    }
                    if ends && terminal {
                        return;
                    }
                }
                Some(Delivery::Event(_)) => {}
                Some(Delivery::Resync) => {
                    if let Replayed::Stop = replay(&bus, &subject, &mut last, &tx, &pick, ends).await {
                        return;
                    }
                }
                None => return,
            }
        }
    }
}

enum Replayed {
    /// Caught up with what is stored.
    Caught,
    /// The stream is over (a terminal event, a client gone, or the stored events unreadable).
    Stop,
}

async fn replay(
    bus: &Bus,
    subject: &str,
    last: &mut u64,
    tx: &mpsc::Sender<Item>,
    pick: &impl Fn(&SeqEvent) -> Option<Item>,
    ends: bool,
) -> Replayed {
    let stored = match bus.replay(subject.to_owned(), *last).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot replay stored events; the client may resume");
            return Replayed::Stop;
        }
    };
    let mut stored = std::pin::pin!(stored);
    while let Some(next) = stored.next().await {
        let e = match next {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(error = %e, "replaying stored events failed; the client may resume");
                return Replayed::Stop;
            }
        };
        *last = e.seq;
        if let Some(item) = pick(&e)
            && tx.send(item).await.is_err()
        {
            return Replayed::Stop;
        }
        if ends && e.kind.is_terminal() {
            return Replayed::Stop;
        }
    }
    Replayed::Caught
}

/// Which kinds an org stream passes: names, or prefixes ending in `*` (`run.*`).
#[derive(Clone, Debug, Default)]
pub(crate) struct KindFilter(Vec<String>);

impl KindFilter {
    /// Parses `run.completed,tool_call.*`; empty: every kind.
    pub(crate) fn parse(raw: Option<&str>) -> Result<Self, ApiError> {
        let Some(raw) = raw else { return Ok(Self::default()) };
        let mut out = Vec::new();
        for k in raw.split(',').map(str::trim).filter(|k| !k.is_empty()) {
            let known = match k.strip_suffix('*') {
                Some(prefix) => EventKind::ALL.iter().any(|e| e.as_str().starts_with(prefix)),
                None => EventKind::parse(k).is_some(),
            };
            if !known {
                let names: Vec<&str> = EventKind::ALL.iter().map(|e| e.as_str()).collect();
                return Err(ApiError::invalid(
                    "invalid_query",
                    format!("unknown event kind `{k}`; known: {}", names.join(", ")),
                ));
            }
            out.push(k.to_owned());
        }
        Ok(Self(out))
    }

    fn accepts(&self, kind: EventKind) -> bool {
        self.0.is_empty()
            || self.0.iter().any(|k| match k.strip_suffix('*') {
                Some(prefix) => kind.as_str().starts_with(prefix),
                None => k == kind.as_str(),
            })
    }
}

/// The run once it is terminal or starts waiting for input, or after `wait` as it is then.
/// Wakes on the hub's delivery of the run's event, which carries the run: no subscription per
/// request, no second read.
///
/// # Errors
/// `run_not_found`.
pub(crate) async fn wait_run(
    state: &AppState,
    who: &Principal,
    id: agentyard_core::RunId,
    wait: Duration,
) -> Result<Run, ApiError> {
    if wait.is_zero() {
        return Ok(state.services.get_run(who, id).await?);
    }
    // Register before reading: an event published after the read is delivered to us.
    let mut sub = state.hub.subscribe_run(id);
    let run = state.services.get_run(who, id).await?;
    if run.status.is_terminal() {
        return Ok(run);
    }
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        tokio::select! {
            d = sub.recv() => match d {
                Some(Delivery::Event(e))
                    if e.kind.is_terminal() || e.kind == EventKind::RunRequiresInput =>
                {
                    if let Some(run) = e.run() {
                        return Ok(run);
                    }
                    return Ok(state.services.get_run(who, id).await?);
                }
                Some(Delivery::Event(_)) => {}
                Some(Delivery::Resync) => {
                    let now = state.services.get_run(who, id).await?;
                    if now.status.is_terminal()
                        || (now.status == RunStatus::RequiresInput
                            && now.required_input != run.required_input)
                    {
                        return Ok(now);
                    }
                }
                None => break,
            },
            _ = tokio::time::sleep_until(deadline) => break,
        }
    }
    Ok(state.services.get_run(who, id).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_filters_take_names_and_prefixes() {
        let f = KindFilter::parse(Some("run.completed, tool_call.*")).unwrap();
        assert!(f.accepts(EventKind::RunCompleted));
        assert!(f.accepts(EventKind::ToolCallCreated));
        assert!(!f.accepts(EventKind::MessageDelta));
        assert!(KindFilter::parse(None).unwrap().accepts(EventKind::MessageDelta));
        assert!(KindFilter::parse(Some("run.finished")).is_err());
    }
}
