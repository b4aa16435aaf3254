//! The consume loop: pulls jobs from a durable consumer and runs a handler for each, up to
//! `concurrency` at once. The handler settles its own message (ack after the durable write,
//! nak with delay on transient errors, term after dead-lettering).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::Message;
use async_nats::jetstream::consumer::PullConsumer;
use futures::StreamExt;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::{BusError, Result};

/// Runs `handler` on every message of `consumer` until `shutdown`, then waits for the jobs in
/// flight to finish (their messages are settled; nothing is dropped half-done).
///
/// # Errors
/// When the consumer cannot be read (NATS gone for good).
pub async fn run<H, F>(
    consumer: PullConsumer,
    concurrency: usize,
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
    let batch = concurrency.clamp(1, 256);
    let mut messages = consumer
        .stream()
        .max_messages_per_batch(batch)
        .heartbeat(Duration::from_secs(5))
        .expires(Duration::from_secs(30))
        .messages()
        .await
        .map_err(|e| BusError::Read { what: "consumer".into(), source: e.into() })?;
    loop {
        let permit = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            p = permits.clone().acquire_owned() => p.expect("semaphore is never closed"),
        };
        let next = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            next = messages.next() => next,
        };
        let msg = match next {
            Some(Ok(msg)) => msg,
            Some(Err(e)) => {
                tracing::warn!(error = %e, "consumer read failed; continuing");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
            None => break,
        };
        let handler = handler.clone();
        tasks.spawn(async move {
            handler(msg).await;
            drop(permit);
        });
    }
    tasks.close();
    tasks.wait().await;
    Ok(())
}
