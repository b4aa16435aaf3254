//! Counting events into series. The lead monitor reads the `EVENTS` stream in order from the
//! position kept in Postgres and, every second (or every few thousand events), adds what it
//! counted and moves the position in one transaction: a monitor killed at any moment counts
//! every event once, and one that was down catches up on what the stream still keeps.
//!
//! Counted, per organization, in minute and hour buckets at the time of the event:
//! - a run's end: `run.latency_ms` (post to end; key `agent=,status=`), its tokens and cost
//!   (`run.tokens_input`, `run.tokens_output`, `run.cost_usd`; key `agent=,model=`);
//! - a run's start: `run.queue_wait_ms` (post to pickup; key `agent=`);
//! - its first streamed token: `run.ttft_ms` (post to the token's publication; key `agent=`).
//!   The runs started and not yet streaming are remembered; the position also keeps the oldest
//!   of them, and a restart reads again from there, only remembering up to the position and
//!   counting past it;
//! - a tool call's end: `tool.latency_ms` (key `tool=,server=,outcome=`).

use std::collections::HashMap;
use std::time::Duration;

use agentyard_bus::events::SeqEvent;
use agentyard_core::events::{Event, EventKind};
use agentyard_core::{AgentId, RunId};
use agentyard_services::series::{LATENCY_BOUNDS_MS, bucket_of, is_latency};
use agentyard_store::series::BucketAdd;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::{Ctx, LEASE};

const FLUSH_EVERY: Duration = Duration::from_secs(1);
const FLUSH_AT: usize = 5_000;
/// Runs started and waiting for their first token, at most.
const MAX_WAITING: usize = 200_000;

/// Observations summed per series and bucket, waiting to be written.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    sums: HashMap<(&'static str, i32, DateTime<Utc>, Uuid, String), Acc>,
}

#[derive(Debug)]
struct Acc {
    count: i64,
    sum: f64,
    min: f64,
    max: f64,
    hist: Option<Vec<i64>>,
}

impl Tally {
    /// Counts `value` of `metric` at `at`, into its minute and its hour.
    pub(crate) fn observe(
        &mut self,
        metric: &'static str,
        at: DateTime<Utc>,
        org: Uuid,
        key: String,
        value: f64,
    ) {
        for step in [60, 3600] {
            let bucket = agentyard_services::series::floor(at, i64::from(step));
            let acc = self.sums.entry((metric, step, bucket, org, key.clone())).or_insert(Acc {
                count: 0,
                sum: 0.0,
                min: value,
                max: value,
                hist: is_latency(metric).then(|| vec![0; LATENCY_BOUNDS_MS.len() + 1]),
            });
            acc.count += 1;
            acc.sum += value;
            acc.min = acc.min.min(value);
            acc.max = acc.max.max(value);
            if let Some(h) = &mut acc.hist {
                h[bucket_of(value)] += 1;
            }
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.sums.is_empty()
    }

    /// Everything counted, as rows to add.
    pub(crate) fn drain(&mut self) -> Vec<BucketAdd> {
        self.sums
            .drain()
            .map(|((metric, step, bucket, org, key), a)| BucketAdd {
                metric: metric.to_owned(),
                step_secs: step,
                bucket,
                org_id: org,
                key,
                count: a.count,
                sum: a.sum,
                min: a.min,
                max: a.max,
                hist: a.hist,
            })
            .collect()
    }
}

/// What the counter remembers between events: the runs started and not yet streaming (with
/// the sequence of their `run.started`).
#[derive(Debug, Default)]
struct Counter {
    tally: Tally,
    waiting: HashMap<RunId, (AgentId, DateTime<Utc>, u64)>,
}

fn ms(from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    ((to - from).num_microseconds().unwrap_or(0) as f64 / 1e3).max(0.0)
}

impl Counter {
    /// Takes `e` in; counts it when `counting` (else only remembers the runs waiting for their
    /// first token: events read again after a restart).
    fn count(&mut self, e: &SeqEvent, at: DateTime<Utc>, counting: bool) {
        let org = e.org.0;
        match e.kind {
            EventKind::RunStarted => {
                let Some(run) = e.run() else { return };
                if counting {
                    let started = run.started_at.unwrap_or(at);
                    let key = format!("agent={}", run.agent_id);
                    let waited = ms(run.created_at, started);
                    self.tally.observe("run.queue_wait_ms", started, org, key, waited);
                }
                if self.waiting.len() >= MAX_WAITING {
                    self.waiting.clear();
                }
                self.waiting.insert(run.id, (run.agent_id, run.created_at, e.seq));
            }
            EventKind::MessageDelta => {
                if let Some((agent, created, _)) = self.waiting.remove(&e.run)
                    && counting
                {
                    let key = format!("agent={agent}");
                    self.tally.observe("run.ttft_ms", at, org, key, ms(created, at));
                }
            }
            kind if kind.is_terminal() => {
                self.waiting.remove(&e.run);
                if !counting {
                    return;
                }
                let Some(run) = e.run() else { return };
                let ended = run.completed_at.unwrap_or(at);
                let agent = run.agent_id;
                let key = format!("agent={agent},status={}", run.status.as_str());
                self.tally.observe("run.latency_ms", ended, org, key, ms(run.created_at, ended));
                if let Some(u) = &run.usage {
                    let model = u.model.as_deref().unwrap_or("unknown");
                    let key = format!("agent={agent},model={model}");
                    let t = &mut self.tally;
                    t.observe(
                        "run.tokens_input",
                        ended,
                        org,
                        key.clone(),
                        f64::from(u.prompt_tokens),
                    );
                    t.observe(
                        "run.tokens_output",
                        ended,
                        org,
                        key.clone(),
                        f64::from(u.completion_tokens),
                    );
                    t.observe("run.cost_usd", ended, org, key, u.cost_usd.unwrap_or(0.0));
                }
            }
            EventKind::ToolCallCompleted if counting => {
                let Ok(Event::ToolCallCompleted(c)) = e.event() else { return };
                let server = agentyard_core::tools::server_of(&c.name);
                let outcome = if c.is_error { "error" } else { "ok" };
                let key = format!("tool={},server={server},outcome={outcome}", c.name);
                let took = c.duration_ms.unwrap_or(0) as f64;
                self.tally.observe("tool.latency_ms", at, org, key, took);
            }
            _ => {}
        }
    }

    /// Where to read again from: before the oldest run still waiting for its first token, or
    /// `seq` when none is.
    fn rewind(&self, seq: u64) -> u64 {
        self.waiting.values().map(|(_, _, s)| s.saturating_sub(1)).min().unwrap_or(seq).min(seq)
    }
}

/// Counts events until `stop`, or until the stream breaks or the lease is lost.
pub(crate) async fn run(ctx: Ctx, stop: CancellationToken) {
    if let Err(e) = count(&ctx, &stop).await {
        tracing::warn!(error = %e, "counting events stopped; starting again from its position");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn count(ctx: &Ctx, stop: &CancellationToken) -> Result<(), String> {
    let stored = ctx.store.monitor_position(LEASE).await.map_err(|e| e.to_string())?;
    let (mut counted, mut rewind) = stored.unwrap_or((0, 0));
    let last = ctx.bus.events_last_seq().await.map_err(|e| e.to_string())?;
    if counted > last {
        tracing::warn!(
            position = counted,
            last,
            "the event stream is behind the position (recreated?): counting it from its start"
        );
        (counted, rewind) = (0, 0);
    }
    let events = ctx.bus.events_after(rewind.min(counted)).await.map_err(|e| e.to_string())?;
    tracing::info!(after = counted, from = rewind.min(counted), "counting events");
    let mut events = std::pin::pin!(events);
    let mut counter = Counter::default();
    let mut position: Option<(u64, u64)> = None;
    let mut pending = 0usize;
    let mut tick = tokio::time::interval(FLUSH_EVERY);
    loop {
        tokio::select! {
            () = stop.cancelled() => {
                flush(ctx, &mut counter, &mut position).await?;
                return Ok(());
            }
            _ = tick.tick() => {
                flush(ctx, &mut counter, &mut position).await?;
                pending = 0;
            }
            next = events.next() => {
                let Some((seq, event)) = next else {
                    flush(ctx, &mut counter, &mut position).await?;
                    return Err("the event stream ended".into());
                };
                let counting = seq > counted;
                if let Some((e, at)) = event {
                    counter.count(&e, at, counting);
                }
                if counting {
                    position = Some((seq, 0));
                }
                pending += 1;
                if pending >= FLUSH_AT {
                    flush(ctx, &mut counter, &mut position).await?;
                    pending = 0;
                }
            }
        }
    }
}

async fn flush(
    ctx: &Ctx,
    c: &mut Counter,
    position: &mut Option<(u64, u64)>,
) -> Result<(), String> {
    if c.tally.is_empty() && position.is_none() {
        return Ok(());
    }
    let rows = c.tally.drain();
    let at = position.take().map(|(seq, _)| (seq, c.rewind(seq)));
    match ctx.store.add_buckets((LEASE, &ctx.holder), at, &rows).await {
        Ok(true) => Ok(()),
        Ok(false) => Err("the lease was lost; nothing written".into()),
        Err(e) => Err(format!("cannot write the counts: {e}")),
    }
}
