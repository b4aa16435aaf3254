//! The event hub: the API process's one reader of every event ([`agentyard_bus::Bus::live_events`]),
//! fanned out in memory to what waits for them here: SSE streams of a run or of an
//! organization, and long-polls (`GET /v1/runs/{id}?wait=`). A subscriber registers before it
//! reads anything else (the run in Postgres, the stored events), so an event is either already
//! there when it reads or delivered to it afterwards: no wakeup is lost, and no request costs a
//! NATS subscription or a JetStream consumer.
//!
//! If the reader breaks (NATS restarted), every subscriber gets [`Delivery::Resync`] and catches
//! up from the stored events or the run's row; then a new reader starts.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use agentyard_bus::Bus;
use agentyard_bus::events::SeqEvent;
use agentyard_core::{OrgId, RunId, TokenId};
use futures::{Stream, StreamExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// What a subscriber receives.
#[derive(Clone, Debug)]
pub enum Delivery {
    Event(SeqEvent),
    /// Events may have been missed (the reader restarted): read the stored state again.
    Resync,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Key {
    Run(RunId),
    Org(OrgId),
}

type Senders = Vec<(u64, mpsc::UnboundedSender<Delivery>)>;

#[derive(Debug, Default)]
struct State {
    subscribers: HashMap<Key, Senders>,
    next_id: u64,
    /// Open streams per token (for the per-token cap).
    streams: HashMap<TokenId, usize>,
}

/// Live events by run and by organization.
#[derive(Debug, Default)]
pub struct EventHub {
    state: Mutex<State>,
}

/// A registration; unregisters when dropped.
#[derive(Debug)]
pub struct Subscription {
    rx: mpsc::UnboundedReceiver<Delivery>,
    hub: Weak<EventHub>,
    key: Key,
    id: u64,
}

impl Subscription {
    /// The next delivery; None only if the hub is gone.
    pub async fn recv(&mut self) -> Option<Delivery> {
        self.rx.recv().await
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Some(hub) = self.hub.upgrade() {
            let mut state = hub.state.lock().expect("hub poisoned");
            if let Some(list) = state.subscribers.get_mut(&self.key) {
                list.retain(|(id, _)| *id != self.id);
                if list.is_empty() {
                    state.subscribers.remove(&self.key);
                }
            }
        }
    }
}

/// An open stream counted against its token's cap; released when dropped.
#[derive(Debug)]
pub struct StreamPermit {
    hub: Weak<EventHub>,
    token: TokenId,
}

impl Drop for StreamPermit {
    fn drop(&mut self) {
        if let Some(hub) = self.hub.upgrade() {
            let mut state = hub.state.lock().expect("hub poisoned");
            if let Some(n) = state.streams.get_mut(&self.token) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    state.streams.remove(&self.token);
                }
            }
        }
    }
}

impl EventHub {
    /// Starts the shared reader.
    ///
    /// # Errors
    /// When its consumer cannot be created.
    pub async fn start(
        bus: &Bus,
        shutdown: CancellationToken,
    ) -> Result<Arc<Self>, agentyard_bus::BusError> {
        let events = bus.live_events().await?;
        let hub = Arc::new(Self::default());
        let (bus, weak) = (bus.clone(), Arc::downgrade(&hub));
        tokio::spawn(async move {
            deliver(events, &weak, &shutdown).await;
            while !shutdown.is_cancelled() {
                let Some(hub) = weak.upgrade() else { return };
                hub.broadcast_resync();
                drop(hub);
                tokio::time::sleep(Duration::from_secs(1)).await;
                match bus.live_events().await {
                    Ok(events) => {
                        tracing::info!("the live event reader restarted");
                        if let Some(hub) = weak.upgrade() {
                            hub.broadcast_resync();
                        }
                        deliver(events, &weak, &shutdown).await;
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot restart the live event reader"),
                }
            }
        });
        Ok(hub)
    }

    fn subscribe(self: &Arc<Self>, key: Key) -> Subscription {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut state = self.state.lock().expect("hub poisoned");
        state.next_id += 1;
        let id = state.next_id;
        state.subscribers.entry(key).or_default().push((id, tx));
        Subscription { rx, hub: Arc::downgrade(self), key, id }
    }

    /// The events of `run` from now on.
    pub fn subscribe_run(self: &Arc<Self>, run: RunId) -> Subscription {
        self.subscribe(Key::Run(run))
    }

    /// Every event of `org` from now on.
    pub fn subscribe_org(self: &Arc<Self>, org: OrgId) -> Subscription {
        self.subscribe(Key::Org(org))
    }

    /// Counts one more open stream of `token`; None when it has `max` already.
    pub fn open_stream(self: &Arc<Self>, token: TokenId, max: usize) -> Option<StreamPermit> {
        let mut state = self.state.lock().expect("hub poisoned");
        let n = state.streams.entry(token).or_default();
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(StreamPermit { hub: Arc::downgrade(self), token })
    }

    /// How many subscriptions are registered (for tests and diagnostics).
    pub fn subscriptions(&self) -> usize {
        self.state.lock().expect("hub poisoned").subscribers.values().map(Vec::len).sum()
    }

    fn broadcast_resync(&self) {
        let state = self.state.lock().expect("hub poisoned");
        for (_, tx) in state.subscribers.values().flatten() {
            let _ = tx.send(Delivery::Resync);
        }
    }

    fn publish(&self, event: SeqEvent) {
        let state = self.state.lock().expect("hub poisoned");
        for key in [Key::Run(event.run), Key::Org(event.org)] {
            if let Some(list) = state.subscribers.get(&key) {
                for (_, tx) in list {
                    let _ = tx.send(Delivery::Event(event.clone()));
                }
            }
        }
    }
}

async fn deliver(
    events: impl Stream<Item = SeqEvent> + Send + 'static,
    hub: &Weak<EventHub>,
    shutdown: &CancellationToken,
) {
    let mut events = std::pin::pin!(events);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            next = events.next() => {
                let Some(event) = next else {
                    tracing::error!("the live event reader ended; restarting it");
                    return;
                };
                match hub.upgrade() {
                    Some(hub) => hub.publish(event),
                    None => return,
                }
            }
        }
    }
}
