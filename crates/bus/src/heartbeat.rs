//! Publishing a process's heartbeat on core NATS until shutdown (best effort: a lost beat is
//! the next one's job; three lost in a row and the monitor counts the process as down).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use agentyard_core::heartbeat::Heartbeat;
use chrono::Utc;
use tokio_util::sync::CancellationToken;

use crate::Bus;

static METRICS_ADDR: OnceLock<String> = OnceLock::new();

/// Says, in every heartbeat from now on, where this process serves `GET /metrics` (the first
/// address announced stays).
pub fn announce_metrics_addr(addr: String) {
    let _ = METRICS_ADDR.set(addr);
}

/// Beats for `role` every `every` until `shutdown`, with its `capacity` and the jobs
/// `in_flight` (a runner's count) when it runs jobs; returns the instance id.
pub fn spawn(
    bus: Bus,
    role: &'static str,
    capacity: Option<u64>,
    in_flight: Option<Arc<AtomicU64>>,
    every: Duration,
    shutdown: CancellationToken,
) -> String {
    let instance_id = uuid::Uuid::now_v7().to_string();
    let mut beat = Heartbeat {
        instance_id: instance_id.clone(),
        role: role.to_owned(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        host: std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_default(),
        pid: std::process::id(),
        started_at: Utc::now(),
        at: Utc::now(),
        every_ms: u64::try_from(every.as_millis()).unwrap_or(u64::MAX),
        capacity,
        in_flight: None,
        metrics_addr: None,
    };
    let subject = bus.subjects().heartbeat(role);
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(every);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = ticker.tick() => {}
            }
            beat.at = Utc::now();
            beat.in_flight = in_flight.as_ref().map(|n| n.load(Ordering::Relaxed));
            beat.metrics_addr = METRICS_ADDR.get().cloned();
            let Ok(payload) = serde_json::to_vec(&beat) else { return };
            if let Err(e) = bus.client().publish(subject.clone(), payload.into()).await {
                tracing::debug!(error = %e, "cannot publish a heartbeat");
            }
        }
    });
    instance_id
}
