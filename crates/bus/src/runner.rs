//! The job runner every worker uses. It pulls jobs from durable consumers (highest priority
//! first), decodes them, runs the handler in a tracing span with JetStream "in progress" acks
//! (and the handler's keep-alive) while it works, and settles each message from the handler's
//! [`Verdict`]: ack, retry after a delay, or give up. Giving up first calls the handler's
//! [`Handler::give_up`] so nothing waits on the job forever (the run fails, the call ends with an
//! error result), then copies the job to the dead-letter stream and terminates it. A job whose
//! give-up cannot be recorded yet (Postgres down) is retried until it can: JetStream never drops
//! a job on its own (`max_deliver` is unlimited).
//!
//! Each consumer's messages are read ahead into a small local queue (at most `concurrency`
//! each). A free slot takes the oldest message of the highest-priority non-empty queue, so when
//! the worker is saturated, high-priority jobs overtake normal and low ones. Messages waiting in
//! a queue get in-progress acks, so their ack wait never expires while they wait.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::PullConsumer;
use async_nats::jetstream::{AckKind, Message};
use futures::StreamExt;
use futures::stream::BoxStream;
use serde::de::DeserializeOwned;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::{Bus, BusError, Result};

/// What to do with a job after one delivery.
#[derive(Debug, PartialEq)]
pub enum Verdict {
    /// Done (durably written, or nothing to do): ack.
    Ack,
    /// A transient failure: deliver it again after this delay.
    Retry(Duration),
    /// It cannot succeed: give up (the handler records why), dead-letter it, terminate it.
    GiveUp { code: &'static str, reason: String },
}

/// Why a give-up could not be recorded (the job is retried).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct GiveUpFailed(pub String);

/// A kind of job and what to do with it.
pub trait Handler: Send + Sync + 'static {
    /// The job's payload.
    type Job: DeserializeOwned + Send + Sync + 'static;

    /// The job kind: the dead-letter subject's last token and the span's name.
    const KIND: &'static str;

    /// The span a delivery runs in (ids of the job).
    fn span(&self, job: &Self::Job, delivered: i64) -> tracing::Span;

    /// Handles one delivery (`delivered` counts from 1).
    fn handle(&self, job: &Self::Job, delivered: i64) -> impl Future<Output = Verdict> + Send;

    /// Records that the job is given up (`code`, `reason`) so nothing waits on it forever.
    fn give_up(
        &self,
        job: &Self::Job,
        code: &'static str,
        reason: &str,
    ) -> impl Future<Output = std::result::Result<(), GiveUpFailed>> + Send;

    /// Called every third of the ack wait while a delivery runs (e.g. to tell the sweeper the
    /// run is alive). Does nothing unless overridden.
    fn keep_alive(&self, job: &Self::Job) -> impl Future<Output = ()> + Send {
        let _ = job;
        async {}
    }
}

/// How the runner reads and retries.
#[derive(Clone, Debug)]
pub struct RunnerSettings {
    /// Jobs handled at once.
    pub concurrency: usize,
    /// The consumers' ack wait: progress acks go out every third of it.
    pub ack_wait: Duration,
    /// Deliveries after which a job is given up whatever the handler says (a job that keeps
    /// killing its worker).
    pub max_deliveries: i64,
    /// Backoff between retries of a give-up that could not be recorded.
    pub retry_base: Duration,
    pub retry_max: Duration,
    /// Jobs being handled now (heartbeats report it).
    pub in_flight: Arc<std::sync::atomic::AtomicU64>,
}

/// The code of a job given up because it was delivered too often.
pub const MAX_DELIVERIES: &str = agentyard_core::run::error_codes::MAX_DELIVERIES;

type Messages = BoxStream<'static, std::result::Result<Message, BusError>>;

/// Runs `handler` on every message of `consumers` (highest priority first) until `shutdown`,
/// then waits for the jobs in flight to finish (their messages are settled; nothing is dropped
/// half-done). Messages read ahead but not started are left to redelivery.
///
/// # Errors
/// When a consumer cannot be read (NATS gone for good).
pub async fn run<H: Handler>(
    bus: Bus,
    consumers: Vec<PullConsumer>,
    settings: RunnerSettings,
    shutdown: CancellationToken,
    handler: Arc<H>,
) -> Result<()> {
    let names: Vec<String> = consumers.iter().map(|c| c.cached_info().name.clone()).collect();
    crate::metrics::watch_runner(&bus, H::KIND, &names, settings.in_flight.clone());
    let permits = Arc::new(Semaphore::new(settings.concurrency));
    let tasks = TaskTracker::new();
    let cap = settings.concurrency.clamp(1, 256);
    let mut streams: Vec<Messages> = Vec::new();
    for consumer in consumers {
        let messages = consumer
            .stream()
            .max_messages_per_batch(cap)
            .heartbeat(Duration::from_secs(5))
            .expires(Duration::from_secs(30))
            .messages()
            .await
            .map_err(|e| BusError::Read { what: "consumer".into(), source: e.into() })?;
        streams.push(
            messages
                .map(|m| {
                    m.map_err(|e| BusError::Read { what: "consumer".into(), source: e.into() })
                })
                .boxed(),
        );
    }
    let settings = Arc::new(settings);
    let mut queues: Vec<VecDeque<Message>> = streams.iter().map(|_| VecDeque::new()).collect();
    let mut progress =
        tokio::time::interval((settings.ack_wait / 3).max(Duration::from_millis(100)));
    progress.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let queued = queues.iter().any(|q| !q.is_empty());
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            p = permits.clone().acquire_owned(), if queued => {
                let permit = p.expect("semaphore is never closed");
                let msg = queues
                    .iter_mut()
                    .find_map(VecDeque::pop_front)
                    .expect("a queue is not empty");
                let (bus, handler, settings) = (bus.clone(), handler.clone(), settings.clone());
                settings.in_flight.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tasks.spawn(async move {
                    deliver(&bus, &*handler, &settings, msg).await;
                    settings.in_flight.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
                    drop(permit);
                });
            }
            (i, next) = next_message(&mut streams, &queues, cap) => match next {
                Some(Ok(msg)) => queues[i].push_back(msg),
                Some(Err(e)) => {
                    tracing::warn!(error = %e, kind = H::KIND, "reading jobs failed; continuing");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                None => break,
            },
            _ = progress.tick(), if queued => {
                for msg in queues.iter().flatten() {
                    let _ = msg.ack_with(AckKind::Progress).await;
                }
            }
        }
    }
    tasks.close();
    tasks.wait().await;
    Ok(())
}

/// One delivery, from decode to settle.
async fn deliver<H: Handler>(bus: &Bus, handler: &H, settings: &RunnerSettings, msg: Message) {
    let delivered = msg.info().map(|i| i.delivered).unwrap_or(1);
    // The trace span of this delivery (a no-op when traces are off), child of the publisher's.
    let traceparent = msg.headers.as_ref().and_then(|h| h.get(crate::TRACEPARENT));
    let consumer = agentyard_otel::consumer_span(&msg.subject, traceparent.map(|v| v.as_str()));
    consumer.record("messaging.message.delivery_count", delivered);
    let job: H::Job = match serde_json::from_slice(&msg.payload) {
        Ok(job) => job,
        Err(e) => {
            let reason = format!("undecodable {} job: {e}", H::KIND);
            consumer.record("error.type", "undecodable");
            tracing::error!(%reason, "dead-lettering a job");
            dead_letter_and_term(bus, H::KIND, &msg, "undecodable", &reason).await;
            return;
        }
    };
    let span = consumer.in_scope(|| handler.span(&job, delivered));
    async {
        let verdict = if delivered > settings.max_deliveries {
            Verdict::GiveUp {
                code: MAX_DELIVERIES,
                reason: format!("the job was delivered {delivered} times without completing"),
            }
        } else {
            let keep_alive = || handler.keep_alive(&job);
            with_progress(&msg, settings.ack_wait, keep_alive, handler.handle(&job, delivered))
                .await
        };
        match verdict {
            Verdict::Ack => settle(&msg, AckKind::Ack).await,
            Verdict::Retry(delay) => settle(&msg, AckKind::Nak(Some(delay))).await,
            Verdict::GiveUp { code, reason } => match handler.give_up(&job, code, &reason).await {
                Ok(()) => {
                    consumer.record("error.type", code);
                    tracing::warn!(code, %reason, "job given up");
                    dead_letter_and_term(bus, H::KIND, &msg, code, &reason).await;
                }
                Err(e) => {
                    let delay = backoff(settings.retry_base, settings.retry_max, delivered);
                    tracing::warn!(code, %reason, error = %e, ?delay,
                        "cannot record that the job is given up; it will be retried");
                    settle(&msg, AckKind::Nak(Some(delay))).await;
                }
            },
        }
    }
    // Inside the consumer span too: the handler's span may be off (by AY_LOG) while traces
    // are on, and what the job publishes must still carry its trace.
    .instrument(span)
    .instrument(consumer.clone())
    .await;
}

async fn dead_letter_and_term(bus: &Bus, kind: &str, msg: &Message, code: &str, reason: &str) {
    if let Err(e) = bus.dead_letter(kind, msg.payload.clone(), &format!("{code}: {reason}")).await {
        tracing::error!(error = %e, "cannot publish to the dead-letter stream");
    }
    settle(msg, AckKind::Term).await;
}

async fn settle(msg: &Message, kind: AckKind) {
    if let Err(e) = msg.ack_with(kind).await {
        tracing::warn!(error = %e, "cannot settle a job; it will be redelivered");
    }
}

/// The next message of the highest-priority stream that has one ready and room in its queue.
/// Pending while every stream with room is empty (or every queue is full).
async fn next_message(
    streams: &mut [Messages],
    queues: &[VecDeque<Message>],
    cap: usize,
) -> (usize, Option<std::result::Result<Message, BusError>>) {
    std::future::poll_fn(|cx| {
        for (i, s) in streams.iter_mut().enumerate() {
            if queues[i].len() >= cap {
                continue;
            }
            if let std::task::Poll::Ready(m) = s.poll_next_unpin(cx) {
                return std::task::Poll::Ready((i, m));
            }
        }
        std::task::Poll::Pending
    })
    .await
}

/// Runs `work` while sending JetStream "in progress" acks for `msg` and running `keep_alive`
/// every third of `ack_wait`, so a long job (a slow model, a slow tool) is not redelivered or
/// expired while it is alive. The keep-alive runs beside the work, never instead of it: a
/// work future left unpolled would hold its database connection while the keep-alive waited
/// for one.
async fn with_progress<T, K: Future<Output = ()>>(
    msg: &Message,
    ack_wait: Duration,
    keep_alive: impl Fn() -> K,
    work: impl Future<Output = T>,
) -> T {
    use futures::FutureExt;
    use futures::future::FusedFuture;
    let mut tick = tokio::time::interval(ack_wait / 3);
    tick.tick().await;
    tokio::pin!(work);
    let alive = futures::future::Fuse::terminated();
    tokio::pin!(alive);
    loop {
        tokio::select! {
            out = &mut work => return out,
            () = &mut alive => {}
            _ = tick.tick() => {
                let _ = msg.ack_with(AckKind::Progress).await;
                if alive.is_terminated() {
                    alive.set(keep_alive().fuse());
                }
            }
        }
    }
}

/// Exponential backoff with jitter before the `attempt`-th retry, between `base` and `max`.
pub fn backoff(base: Duration, max: Duration, attempt: i64) -> Duration {
    use backon::BackoffBuilder;
    let n = usize::try_from(attempt.max(1)).unwrap_or(1);
    backon::ExponentialBuilder::default()
        .with_min_delay(base)
        .with_max_delay(max)
        .with_jitter()
        .with_max_times(n)
        .build()
        .nth(n - 1)
        .unwrap_or(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_jitter_differs_between_calls() {
        let base = Duration::from_millis(500);
        let max = Duration::from_secs(30);
        let delays: Vec<Duration> = (0..8).map(|_| backoff(base, max, 2)).collect();
        assert!(delays.iter().all(|d| *d >= Duration::from_secs(1) && *d <= max), "{delays:?}");
        assert!(
            delays.windows(2).any(|w| w[0] != w[1]),
            "every backoff had the same jitter: {delays:?}"
        );
    }
}
