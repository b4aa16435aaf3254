//! The consume loop: pulls jobs from durable consumers, highest priority first, and runs a
//! handler for each, up to `concurrency` at once. The handler settles its own message (ack
//! after the durable write, nak with delay on transient errors, term after dead-lettering).
//!
//! Each consumer's messages are read ahead into a small local queue (at most `concurrency`
//! each). A free slot takes the oldest message of the highest-priority non-empty queue, so
//! when the worker is saturated, high-priority jobs overtake normal and low ones. Messages
//! waiting in a queue get in-progress acks, so their ack wait never expires while they wait.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::PullConsumer;
use async_nats::jetstream::{AckKind, Message};
use futures::StreamExt;
use futures::stream::BoxStream;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::{BusError, Result};

type Messages = BoxStream<'static, std::result::Result<Message, BusError>>;

/// Runs `handler` on every message of `consumers` (highest priority first) until `shutdown`,
/// then waits for the jobs in flight to finish (their messages are settled; nothing is
/// dropped half-done). Messages read ahead but not started are left to redelivery.
///
/// # Errors
/// When a consumer cannot be read (NATS gone for good).
pub async fn run<H, F>(
    consumers: Vec<PullConsumer>,
    concurrency: usize,
    ack_wait: Duration,
    shutdown: CancellationToken,
    handler: H,
) -> Result<()>
where
    H: Fn(Message) -> F + Send + Sync + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    let handler = Arc::new(handler);
    let permits = Arc::new(Semaphore::new(concurrency));
    let tasks = TaskTracker::new();
    let cap = concurrency.clamp(1, 256);
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
    let mut queues: Vec<VecDeque<Message>> = streams.iter().map(|_| VecDeque::new()).collect();
    let mut progress = tokio::time::interval((ack_wait / 3).max(Duration::from_millis(100)));
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
                let handler = handler.clone();
                tasks.spawn(async move {
                    handler(msg).await;
                    drop(permit);
                });
            }
            (i, next) = next_message(&mut streams, &queues, cap) => match next {
                Some(Ok(msg)) => queues[i].push_back(msg),
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "consumer read failed; continuing");
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

/// Runs `work` while sending JetStream "in progress" acks for `msg` every third of `ack_wait`,
/// so a long job (a slow model, a human answering) is not redelivered while it is alive.
pub async fn with_progress<T>(
    msg: &Message,
    ack_wait: Duration,
    work: impl Future<Output = T>,
) -> T {
    let mut tick = tokio::time::interval(ack_wait / 3);
    tick.tick().await;
    tokio::pin!(work);
    loop {
        tokio::select! {
            out = &mut work => return out,
            _ = tick.tick() => { let _ = msg.ack_with(AckKind::Progress).await; }
        }
    }
}

/// Exponential backoff with jitter before the `delivered`-th attempt, between `base` and `max`.
pub fn backoff(base: Duration, max: Duration, delivered: i64) -> Duration {
    use backon::BackoffBuilder;
    let n = usize::try_from(delivered.max(1)).unwrap_or(1);
    backon::ExponentialBuilder::default()
        .with_min_delay(base)
        .with_max_delay(max)
        .with_jitter()
        .with_max_times(n)
        .build()
        .nth(n - 1)
        .unwrap_or(max)
}
