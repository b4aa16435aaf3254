//! The event hub: the API process's one reader of every event ([`agentyard_bus::Bus::live_events`]),
//! fanned out in memory to what waits for them here: SSE streams of a run or of an
//! organization, and long-polls (`GET /v1/runs/{id}?wait=`). A subscriber registers before it
//! reads anything else (the run in Postgres, the stored events), so an event is either already
//! there when it reads or delivered to it afterwards: no wakeup is lost, and no request costs a
//! NATS subscription or a JetStream consumer.
//!
//! A stream of a token limited to its user subscribes to that user's events only: the hub learns
//! whose each run is from the run that `run.*` events carry (a run's first event, `run.queued`,
//! is one) and hands a run's events to its user's streams alone, so an event costs one delivery
//! per stream that shows it, not one per stream of the organization. What the hub does not know
//! yet (a run whose earlier events it did not see) goes to every user stream of the
//! organization, which checks it as before ([`crate::live::owned_by`]).
//!
//! If the reader breaks (NATS restarted), every subscriber gets [`Delivery::Resync`] and catches
//! up from the stored events or the run's row; then a new reader starts.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use agentyard_bus::Bus;
use agentyard_bus::events::SeqEvent;
use agentyard_core::{OrgId, RunId, TokenId, UserId};
use futures::{Stream, StreamExt};
use serde::Deserialize;
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
    /// The organization's events of one user's runs.
    User(OrgId, UserId),
}

type Senders = Vec<(u64, mpsc::UnboundedSender<Delivery>)>;

#[derive(Debug, Default)]
struct State {
    subscribers: HashMap<Key, Senders>,
    next_id: u64,
    /// Open streams per token (for the per-token cap).
    streams: HashMap<TokenId, usize>,
    /// `Key::User` subscriptions per organization: its events need their run's user.
    user_subs: HashMap<OrgId, usize>,
}

/// Runs' users remembered, per generation (two are kept: the newest 100,000 to 200,000 runs).
const OWNERS_KEPT: usize = 100_000;

/// Whose each recent run is (a run's user never changes): from the run that `run.*` events
/// carry, or read from Postgres by a stream. Shared by every stream of the process, so a run's
/// user is read at most once, not once per stream.
#[derive(Debug, Default)]
struct Owners {
    current: HashMap<RunId, Option<UserId>>,
    previous: HashMap<RunId, Option<UserId>>,
}

impl Owners {
    fn get(&self, run: RunId) -> Option<Option<UserId>> {
        self.current.get(&run).or_else(|| self.previous.get(&run)).copied()
    }

    fn insert(&mut self, run: RunId, owner: Option<UserId>) {
        if self.current.len() >= OWNERS_KEPT {
            self.previous = std::mem::take(&mut self.current);
        }
        self.current.insert(run, owner);
    }
}

/// Live events by run and by organization.
#[derive(Debug, Default)]
pub struct EventHub {
    state: Mutex<State>,
    owners: Mutex<Owners>,
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
            if let Key::User(org, _) = self.key
                && let Some(n) = state.user_subs.get_mut(&org)
            {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    state.user_subs.remove(&org);
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
        if let Key::User(org, _) = key {
            *state.user_subs.entry(org).or_default() += 1;
        }
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

    /// The events of `org` that belong to `user`'s runs (and of runs whose user the hub does
    /// not know yet: check those with [`EventHub::owner`] and Postgres), from now on.
    pub fn subscribe_user(self: &Arc<Self>, org: OrgId, user: UserId) -> Subscription {
        self.subscribe(Key::User(org, user))
    }

    /// The user of `run` (None inside: a run of no user), when known.
    pub fn owner(&self, run: RunId) -> Option<Option<UserId>> {
        self.owners.lock().expect("hub poisoned").get(run)
    }

    /// Remembers the user of `run`, as read from Postgres.
    pub fn remember_owner(&self, run: RunId, owner: Option<UserId>) {
        self.owners.lock().expect("hub poisoned").insert(run, owner);
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
        let send = |list: &Senders| {
            for (_, tx) in list {
                let _ = tx.send(Delivery::Event(event.clone()));
            }
        };
        for key in [Key::Run(event.run), Key::Org(event.org)] {
            if let Some(list) = state.subscribers.get(&key) {
                send(list);
            }
        }
        if !state.user_subs.contains_key(&event.org) {
            return;
        }
        match self.learn_owner(&event) {
            Some(Some(user)) => {
                if let Some(list) = state.subscribers.get(&Key::User(event.org, user)) {
                    send(list);
                }
            }
            // A run of no user: no user's stream shows it.
            Some(None) => {}
            // Unknown: every user stream of the org checks it.
            None => {
                for (key, list) in &state.subscribers {
                    if matches!(key, Key::User(org, _) if *org == event.org) {
                        send(list);
                    }
                }
            }
        }
    }

    /// The user of `event`'s run: remembered, or from the run the event carries.
    fn learn_owner(&self, event: &SeqEvent) -> Option<Option<UserId>> {
        let mut owners = self.owners.lock().expect("hub poisoned");
        if let Some(owner) = owners.get(event.run) {
            return Some(owner);
        }
        let owner = carried_owner(event)?;
        owners.insert(event.run, owner);
        Some(owner)
    }
}

/// The `user_id` of the run a `run.*` event carries; None for other events.
fn carried_owner(event: &SeqEvent) -> Option<Option<UserId>> {
    #[derive(Deserialize)]
    struct Data {
        run: RunUser,
    }
    #[derive(Deserialize)]
    struct RunUser {
        user_id: Option<UserId>,
    }
    if !event.kind.as_str().starts_with("run.") {
        return None;
    }
    serde_json::from_str::<Data>(event.data.get()).ok().map(|d| d.run.user_id)
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

#[cfg(test)]
mod tests {
    use agentyard_core::events::EventKind;
    use serde_json::value::RawValue;

    use super::*;

    fn event(org: OrgId, run: RunId, kind: EventKind, data: &str) -> SeqEvent {
        let data: Arc<RawValue> = RawValue::from_string(data.to_owned()).unwrap().into();
        SeqEvent { seq: 1, org, run, kind, data }
    }

    fn received(sub: &mut Subscription) -> usize {
        let mut n = 0;
        while let Ok(Delivery::Event(_)) = sub.rx.try_recv() {
            n += 1;
        }
        n
    }

    #[test]
    fn a_runs_events_reach_its_users_streams_once_the_hub_knows_whose_it_is() {
        let hub = Arc::new(EventHub::default());
        let (org, ada, bob) = (OrgId::new(), UserId::new(), UserId::new());
        let (mut a, mut b, mut all) =
            (hub.subscribe_user(org, ada), hub.subscribe_user(org, bob), hub.subscribe_org(org));
        let (run, unknown) = (RunId::new(), RunId::new());
        let queued = format!(r#"{{"run":{{"id":"{run}","user_id":"{ada}","status":"queued"}}}}"#);
        hub.publish(event(org, run, EventKind::RunQueued, &queued));
        hub.publish(event(org, run, EventKind::MessageDelta, r#"{"content":"hi"}"#));
        // A run whose first event the hub did not see goes to every user stream to check.
        hub.publish(event(org, unknown, EventKind::MessageDelta, r#"{"content":"?"}"#));
        assert_eq!((received(&mut a), received(&mut b), received(&mut all)), (3, 1, 3));
        assert_eq!(hub.owner(run), Some(Some(ada)));
        assert_eq!(hub.owner(unknown), None);
        // A run of no user reaches no user stream.
        let service = RunId::new();
        let data = format!(r#"{{"run":{{"id":"{service}","user_id":null}}}}"#);
        hub.publish(event(org, service, EventKind::RunCompleted, &data));
        assert_eq!((received(&mut a), received(&mut b), received(&mut all)), (0, 0, 1));
        // Another org's user streams are not involved.
        hub.publish(event(OrgId::new(), RunId::new(), EventKind::MessageDelta, "{}"));
        assert_eq!((received(&mut a), received(&mut b)), (0, 0));
        drop((a, b));
        assert!(hub.state.lock().unwrap().user_subs.is_empty());
        assert_eq!(hub.subscriptions(), 1);
    }

    #[test]
    fn owners_keep_two_generations() {
        let mut owners = Owners::default();
        let first = RunId::new();
        owners.insert(first, None);
        for _ in 1..OWNERS_KEPT {
            owners.insert(RunId::new(), Some(UserId::new()));
        }
        // The next insert starts a generation; the first run is still known, then forgotten.
        owners.insert(RunId::new(), None);
        assert_eq!(owners.get(first), Some(None));
        for _ in 0..OWNERS_KEPT {
            owners.insert(RunId::new(), None);
        }
        assert_eq!(owners.get(first), None);
    }
}
