//! The monitor: a separate consumer on the bus. It records every process's heartbeat
//! (`<p>.heartbeat.<role>`, core NATS) in Postgres and marks down the instances silent for three
//! heartbeats, writing each up and down as an event (availability is computed from those).
//! Stateless: several monitors may run; every write is a conditional transition, so each
//! change is counted once.

use std::time::Duration;

use agentyard_bus::{Bus, BusError};
use agentyard_core::heartbeat::Heartbeat;
use agentyard_runtime::Settings;
use agentyard_store::Store;
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

/// Why the monitor stopped.
#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error("cannot subscribe to heartbeats: {0}")]
    Subscribe(String),
}

/// Runs the monitor until `shutdown`.
///
/// # Errors
/// When heartbeats cannot be subscribed to.
pub async fn run(
    settings: Settings,
    store: Store,
    bus: Bus,
    shutdown: CancellationToken,
) -> Result<(), MonitorError> {
    let every = settings.heartbeat_every;
    agentyard_bus::heartbeat::spawn(bus.clone(), "monitor", None, None, every, shutdown.clone());
    let mut beats = bus
        .client()
        .subscribe(bus.subjects().all_heartbeats())
        .await
        .map_err(|e| MonitorError::Subscribe(e.to_string()))?;
    tokio::spawn(scan(store.clone(), (every / 2).min(Duration::from_secs(1)), shutdown.clone()));
    tracing::info!(heartbeat_every = ?every, "monitor started");
    loop {
        let msg = tokio::select! {
            () = shutdown.cancelled() => break,
            m = beats.next() => m,
        };
        let Some(msg) = msg else { break };
        let Ok(beat) = serde_json::from_slice::<Heartbeat>(&msg.payload) else {
            tracing::debug!(subject = %msg.subject, "not a heartbeat; skipped");
            continue;
        };
        if let Err(e) = store.record_heartbeat(&beat).await {
            tracing::warn!(error = %e, "cannot record a heartbeat");
        }
    }
    tracing::info!("monitor stopped");
    Ok(())
}

/// Marks down, every `every`, the instances that stopped beating.
async fn scan(store: Store, every: Duration, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
        match store.mark_silent_down().await {
            Ok(down) => {
                for i in down {
                    tracing::warn!(instance = i.id, role = i.role, host = i.host, pid = i.pid,
                        last_seen = %i.last_seen, "an instance stopped beating: down");
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot look for silent instances"),
        }
    }
}
