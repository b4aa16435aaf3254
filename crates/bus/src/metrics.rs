//! What the bus tells the metrics registry: runs that ended (from the terminal events it
//! publishes: each counted once, by the process whose publish JetStream did not find to be a
//! duplicate), jobs in flight per runner, and the job consumers' states (read from JetStream
//! at scrape time, at most every [`QUEUE_REFRESH`]).

use std::collections::BTreeSet;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use agentyard_core::events::Event;
use agentyard_core::outbox::Fact;
use agentyard_metrics::Gauge;

use crate::Bus;

/// JetStream's consumer states are read at most this often, however often /metrics is scraped.
pub const QUEUE_REFRESH: Duration = Duration::from_secs(5);

/// The status and duration of the run a fact ends, if it ends one.
pub(crate) fn terminal(fact: &Fact) -> Option<(&'static str, Option<f64>)> {
    let Fact::Event { event, .. } = fact else { return None };
    if !event.is_terminal() {
        return None;
    }
    let run = event.run()?;
    let seconds = run.completed_at.map(|end| (end - run.created_at).as_seconds_f64());
    let status = match **event {
        Event::RunCompleted { .. } => "completed",
        Event::RunFailed { .. } => "failed",
        Event::RunCancelled { .. } => "cancelled",
        _ => "expired",
    };
    Some((status, seconds))
}

/// The consumers this process reads (their states are what its /metrics shows).
static WATCHED: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());
static HOOKED: OnceLock<()> = OnceLock::new();

/// Shows a runner's in-flight count and its consumers' states in this process's metrics.
pub(crate) fn watch_runner(bus: &Bus, kind: &'static str, consumers: &[String], n: Arc<AtomicU64>) {
    if !agentyard_metrics::enabled() {
        return;
    }
    agentyard_metrics::watch_in_flight(kind, n);
    WATCHED.lock().unwrap_or_else(|e| e.into_inner()).extend(consumers.iter().cloned());
    if HOOKED.set(()).is_err() {
        return;
    }
    let bus = bus.clone();
    let last: Arc<tokio::sync::Mutex<Option<Instant>>> = Arc::default();
    agentyard_metrics::on_scrape(move || {
        let (bus, last) = (bus.clone(), last.clone());
        async move {
            // One refresh at a time; scrapes in between see the last values.
            let mut last = last.lock().await;
            if last.is_some_and(|t| t.elapsed() < QUEUE_REFRESH) {
                return;
            }
            *last = Some(Instant::now());
            refresh_queues(&bus).await;
        }
    });
}

async fn refresh_queues(bus: &Bus) {
    let (states, dead) = match bus.queue_states().await {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!(error = %e, "cannot read the job consumers' states for metrics");
            return;
        }
    };
    let watched = WATCHED.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let m = agentyard_metrics::metrics();
    for q in states.iter().filter(|q| watched.contains(&q.consumer)) {
        let c = [q.consumer.as_str()];
        m.queue_pending.with(&c, |g| g.set(q.pending as f64));
        m.queue_ack_pending.with(&c, |g| g.set(q.ack_pending as f64));
        m.queue_redelivered.with(&c, |g| g.set(q.redelivered as f64));
        m.queue_oldest_age.with(&c, |g| g.set(q.oldest_job_age_s.unwrap_or(0.0)));
    }
    m.dead_letters.with(&[], |g: &Gauge| g.set(dead as f64));
}
