//! The event hub: one ordered consumer of all run events per API process, fanned out in memory
//! to the SSE clients of runs created here (`POST ... {"stream": true}`), which register before
//! their run exists and so miss nothing. Clients that connect to an existing run read the
//! stream with a consumer of their own ([`agentyard_bus::Bus::run_events`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agentyard_bus::events::SeqEvent;
use agentyard_bus::{Bus, BusError};
use agentyard_core::RunId;
use futures::{Stream, StreamExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

type Senders = Arc<Mutex<HashMap<RunId, mpsc::UnboundedSender<SeqEvent>>>>;

/// Live run events by run.
#[derive(Debug, Default)]
pub struct EventHub {
    senders: Senders,
}

impl EventHub {
    /// Starts the shared consumer.
    ///
    /// # Errors
    /// When the consumer cannot be created.
    pub async fn start(bus: &Bus, shutdown: CancellationToken) -> Result<Arc<Self>, BusError> {
        let events = bus.live_run_events().await?;
        let hub = Arc::new(Self::default());
        let (bus, senders) = (bus.clone(), hub.senders.clone());
        tokio::spawn(async move {
            deliver(events, &senders, &shutdown).await;
            // The consumer ended (NATS gone for good?): start a new one until shutdown. Clients
            // that missed events meanwhile resume with Last-Event-ID.
            while !shutdown.is_cancelled() {
                tokio::time::sleep(Duration::from_secs(1)).await;
                match bus.live_run_events().await {
                    Ok(events) => deliver(events, &senders, &shutdown).await,
                    Err(e) => tracing::warn!(error = %e, "cannot restart the live event consumer"),
                }
            }
        });
        Ok(hub)
    }

    /// Events of `run` from now on, ending after its terminal event.
    pub fn subscribe(
        &self,
        run: RunId,
    ) -> impl Stream<Item = Result<SeqEvent, BusError>> + Send + 'static {
        let (tx, rx) = mpsc::unbounded_channel();
        self.senders.lock().expect("hub poisoned").insert(run, tx);
        tokio_stream::wrappers::UnboundedReceiverStream::new(rx).map(Ok)
    }
}

async fn deliver(
    events: impl Stream<Item = (RunId, SeqEvent)> + Send + 'static,
    senders: &Senders,
    shutdown: &CancellationToken,
) {
    let mut events = std::pin::pin!(events);
    let mut sweep = tokio::time::interval(Duration::from_secs(10));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            // Forget clients that went away before their run ended.
            _ = sweep.tick() => senders.lock().expect("hub poisoned").retain(|_, tx| !tx.is_closed()),
            next = events.next() => {
                let Some((run, event)) = next else {
                    tracing::error!("the live event consumer ended; restarting it");
                    return;
                };
                let mut map = senders.lock().expect("hub poisoned");
                if let Some(tx) = map.get(&run) {
                    let terminal = event.event.is_terminal();
                    if tx.send(event).is_err() || terminal {
                        map.remove(&run);
                    }
                }
            }
        }
    }
}
