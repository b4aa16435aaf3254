//! The monitor: a separate consumer on the bus.
//!
//! Every monitor records every process's heartbeat (`<p>.heartbeat.<role>`, core NATS) in
//! Postgres and marks down the instances silent for three heartbeats, writing each up and down
//! as an event (availability is computed from those); those writes are conditional
//! transitions, so several monitors count each change once.
//!
//! One monitor at a time, the holder of the `monitor` lease (the others stand by and take over
//! when it lapses), also:
//! - counts every event into time-bucketed series ([`counting`]), its place in the event
//!   stream kept in the same transaction as the counts, so each event counts once;
//! - probes Postgres, NATS, the job queues, each model alias and each MCP server, records the
//!   hosts' figures from the heartbeats, and evaluates the alert rules ([`probes`]);
//! - delivers alerts to webhooks ([`deliver`]);
//! - prunes what is older than the series keep.

mod counting;
mod deliver;
mod probes;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agentyard_bus::{Bus, BusError};
use agentyard_core::heartbeat::{Heartbeat, HostStats};
use agentyard_runtime::Settings;
use agentyard_services::alerting::AlertConfig;
use agentyard_store::Store;
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

/// The lease one monitor holds at a time.
pub const LEASE: &str = "monitor";
const LEASE_TTL: Duration = Duration::from_secs(10);

/// Why the monitor stopped.
#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error("cannot subscribe to heartbeats: {0}")]
    Subscribe(String),
    #[error("{0}")]
    Config(String),
}

/// Where the models are served, for the model probes.
#[derive(Clone, Debug)]
pub struct ModelEndpoint {
    /// Including `/v1`.
    pub base_url: String,
    pub api_key: Option<String>,
}

/// Each host's latest figures, from the heartbeats of the processes on it.
type Hosts = Arc<Mutex<HashMap<String, (HostStats, Instant)>>>;

/// What the lease holder's duties share.
#[derive(Clone)]
struct Ctx {
    settings: Arc<Settings>,
    store: Store,
    bus: Bus,
    alerts: Arc<AlertConfig>,
    catalog: Arc<agentyard_agents::Catalog>,
    mcp_servers: Arc<agentyard_mcp::ConfigServers>,
    model: Option<ModelEndpoint>,
    hosts: Hosts,
    holder: String,
}

/// Runs the monitor until `shutdown`.
///
/// # Errors
/// When a configuration file is broken or heartbeats cannot be subscribed to.
pub async fn run(
    settings: Settings,
    store: Store,
    bus: Bus,
    model: Option<ModelEndpoint>,
    shutdown: CancellationToken,
) -> Result<(), MonitorError> {
    let dir = settings.config_dir.as_deref();
    let alerts = AlertConfig::load(dir, |k| std::env::var(k).ok()).map_err(MonitorError::Config)?;
    let catalog = agentyard_agents::Catalog::load(dir).map_err(MonitorError::Config)?;
    let mcp_servers = agentyard_mcp::ConfigServers::load(dir).map_err(MonitorError::Config)?;
    let every = settings.heartbeat_every;
    let holder = agentyard_bus::heartbeat::spawn(
        bus.clone(),
        "monitor",
        None,
        None,
        every,
        shutdown.clone(),
    );
    let mut beats = bus
        .client()
        .subscribe(bus.subjects().all_heartbeats())
        .await
        .map_err(|e| MonitorError::Subscribe(e.to_string()))?;
    tokio::spawn(scan(store.clone(), (every / 2).min(Duration::from_secs(1)), shutdown.clone()));
    let hosts: Hosts = Arc::default();
    let ctx = Ctx {
        settings: Arc::new(settings),
        store: store.clone(),
        bus,
        alerts: Arc::new(alerts),
        catalog: Arc::new(catalog),
        mcp_servers: Arc::new(mcp_servers),
        model,
        hosts: hosts.clone(),
        holder,
    };
    tokio::spawn(lead(ctx, shutdown.clone()));
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
        if let Some(stats) = &beat.host_stats {
            let mut hosts = hosts.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            hosts.insert(beat.host.clone(), (stats.clone(), Instant::now()));
        }
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

/// The lease holder's running duties.
type Duties = (CancellationToken, Vec<tokio::task::JoinHandle<()>>);

/// Stops the duties and waits for them (a counting task flushes what it counted as it stops:
/// the next one must read the position after that), at most 30 s.
async fn stop_duties(duties: Option<Duties>) {
    let Some((stop, tasks)) = duties else { return };
    stop.cancel();
    for t in tasks {
        let abort = t.abort_handle();
        if tokio::time::timeout(Duration::from_secs(30), t).await.is_err() {
            abort.abort();
        }
    }
}

/// Holds the lease when it can and, while it does, runs the holder's duties; gives it up on
/// shutdown so a standby takes over at once.
async fn lead(ctx: Ctx, shutdown: CancellationToken) {
    let mut duties: Option<Duties> = None;
    loop {
        let held = match ctx.store.claim_lease(LEASE, &ctx.holder, LEASE_TTL).await {
            Ok(h) => h,
            Err(e) => {
                tracing::warn!(error = %e, "cannot renew the monitor's lease");
                false
            }
        };
        // A duty that ended (a broken consumer, a lost lease) is started again, after the
        // others stopped.
        if duties.as_ref().is_some_and(|(_, tasks)| tasks.iter().any(|t| t.is_finished())) {
            stop_duties(duties.take()).await;
        }
        match (held, duties.is_some()) {
            (true, false) => {
                tracing::info!(
                    holder = ctx.holder,
                    "this monitor leads: counting, probing, alerting"
                );
                let stop = shutdown.child_token();
                let tasks = vec![
                    tokio::spawn(counting::run(ctx.clone(), stop.clone())),
                    tokio::spawn(probes::run(ctx.clone(), stop.clone())),
                    tokio::spawn(probes::run_slow(ctx.clone(), stop.clone())),
                    tokio::spawn(deliver::run(ctx.clone(), stop.clone())),
                    tokio::spawn(prune(ctx.store.clone(), stop.clone())),
                ];
                duties = Some((stop, tasks));
            }
            (false, true) => {
                tracing::warn!("this monitor lost its lease: standing by");
                stop_duties(duties.take()).await;
            }
            _ => {}
        }
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(LEASE_TTL / 4) => {}
        }
    }
    let leading = duties.is_some();
    stop_duties(duties).await;
    if leading {
        let _ = ctx.store.release_lease(LEASE, &ctx.holder).await;
    }
}

async fn prune(store: Store, stop: CancellationToken) {
    loop {
        match store.prune_monitoring().await {
            Ok(n) if n > 0 => tracing::info!(rows = n, "pruned old monitoring data"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "cannot prune monitoring data"),
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(Duration::from_secs(600)) => {}
        }
    }
}
