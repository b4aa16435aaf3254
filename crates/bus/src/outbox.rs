//! The outbox dispatcher: publishes the facts a transaction wrote, right after its commit, then
//! deletes their rows in batches (one `DELETE` for many rows); and the relay, which re-publishes
//! rows a crash left behind. Every fact carries its `Nats-Msg-Id`, so a second publish is
//! harmless. A fact the relay cannot read is set aside (`outbox_rejects`) and reported; it never
//! stops the relay for the other rows.

use std::time::Duration;

use agentyard_core::outbox::Fact;
use agentyard_store::{OutboxRow, Store};
use async_nats::jetstream::message::PublishMessage;
use futures::future::join_all;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::{Bus, BusError, TRACEPARENT, publication};

/// Rows older than this are the relay's.
const RELAY_MIN_AGE_MS: i64 = 3_000;
const RELAY_EVERY: Duration = Duration::from_secs(1);
const RELAY_BATCH: i64 = 1000;
const DELETE_BATCH: usize = 1024;
const DELETE_GATHER: Duration = Duration::from_millis(25);

/// Publishes outbox facts; cheap to clone.
#[derive(Clone, Debug)]
pub struct Outbox {
    bus: Bus,
    deletes: mpsc::UnboundedSender<i64>,
}

impl Outbox {
    /// Starts the batch deleter and the relay; both stop when `shutdown` is cancelled.
    pub fn start(bus: Bus, store: Store, shutdown: CancellationToken) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(delete_loop(store.clone(), rx));
        let outbox = Self { bus, deletes: tx };
        tokio::spawn(outbox.clone().relay_loop(store, shutdown));
        outbox
    }

    /// Publishes the facts of `rows` in order (pipelined: all are sent before any ack is
    /// awaited) and queues the rows whose facts were all acked for deletion. Rows that fail stay
    /// for the relay.
    ///
    /// # Errors
    /// The first publish failure (after every row was tried).
    pub async fn dispatch(&self, rows: &[OutboxRow]) -> Result<(), BusError> {
        if !rows.is_empty() && !self.bus.is_connected() {
            // NATS is away: the rows wait for the relay rather than the caller waiting for
            // acks that cannot come (a request answers at once; nothing is lost).
            return Err(not_connected("the outbox relay will publish"));
        }
        let mut failed = Vec::new();
        let mut first_err = None;
        let batches = rows.iter().map(|r| (r.id, r.facts.as_slice()));
        for (row, res) in self.publish(batches).await {
            if let Err(e) = res {
                failed.push(row);
                first_err.get_or_insert(e);
            }
        }
        for row in rows.iter().filter(|r| !failed.contains(&r.id)) {
            let _ = self.deletes.send(row.id);
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Publishes `facts` that no outbox row holds (any longer): a job that was kept back from
    /// its row's dispatch and must go out after all.
    ///
    /// # Errors
    /// The first publish failure.
    pub async fn publish_now(&self, facts: &[Fact]) -> Result<(), BusError> {
        if !self.bus.is_connected() {
            return Err(not_connected("the caller retries"));
        }
        let sent = self.publish(std::iter::once((0, facts))).await;
        sent.into_iter().find_map(|(_, r)| r.err()).map_or(Ok(()), Err)
    }

    /// Publishes each row's facts; returns, per fact, its row and how it went.
    async fn publish<'a>(
        &self,
        rows: impl Iterator<Item = (i64, &'a [Fact])>,
    ) -> Vec<(i64, Result<(), BusError>)> {
        let mut sent = Vec::new();
        // Jobs carry the trace of whoever published them (the request, or the job, whose
        // transaction wrote them: dispatch runs right after its commit, in its span). Rows the
        // relay publishes after a crash have no span to carry: their jobs start a trace.
        let traceparent = agentyard_otel::current_traceparent();
        for (row, facts) in rows {
            for fact in facts {
                let p = match publication(self.bus.subjects(), fact) {
                    Ok(p) => p,
                    Err(e) => {
                        sent.push((row, String::new(), String::new(), Err(e), None));
                        continue;
                    }
                };
                let mut message = PublishMessage::build().payload(p.payload).message_id(&p.msg_id);
                if let (Some(tp), Fact::Job { .. }) = (&traceparent, fact) {
                    message = message.header(TRACEPARENT, tp.as_str());
                }
                let ack = self.bus.js.send_publish(p.subject.clone(), message).await;
                let ack = ack.map_err(|e| BusError::Publish {
                    subject: p.subject.clone(),
                    source: e.into(),
                });
                let ends = crate::metrics::terminal(fact);
                sent.push((row, p.subject, p.msg_id, ack, ends));
            }
        }
        let waits = sent.into_iter().map(|(row, subject, msg_id, ack, ends)| async move {
            let res = match ack {
                Ok(ack) => ack
                    .await
                    .map(|ack| {
                        // A duplicate was counted by whoever published it first.
                        if let Some((status, seconds)) = ends.filter(|_| !ack.duplicate) {
                            agentyard_metrics::run_ended(status, seconds);
                        }
                    })
                    .map_err(|e| BusError::Publish { subject: subject.clone(), source: e.into() }),
                Err(e) => Err(e),
            };
            if let Err(e) = &res {
                tracing::warn!(%subject, %msg_id, error = %e, "publish failed; the outbox relay will retry");
            }
            (row, res)
        });
        join_all(waits).await
    }

    async fn relay_loop(self, store: Store, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(RELAY_EVERY) => {}
            }
            if let Err(e) = self.relay_once(&store).await {
                tracing::warn!(error = %e, "outbox relay cannot read the outbox");
            }
        }
    }

    /// Re-publishes the rows older than a few seconds: their publisher crashed or failed.
    /// Returns how many rows were handled.
    ///
    /// # Errors
    /// When the outbox cannot be read.
    pub async fn relay_once(&self, store: &Store) -> Result<usize, agentyard_store::StoreError> {
        if !self.bus.is_connected() {
            return Ok(0);
        }
        let rows = store.outbox_stale(RELAY_MIN_AGE_MS, RELAY_BATCH).await?;
        if rows.is_empty() {
            return Ok(0);
        }
        tracing::info!(rows = rows.len(), "relaying unsent outbox rows");
        let results = self.publish(rows.iter().map(|r| (r.id, r.facts.as_slice()))).await;
        let failed: Vec<i64> =
            results.iter().filter(|(_, r)| r.is_err()).map(|(row, _)| *row).collect();
        for row in &rows {
            if failed.contains(&row.id) {
                continue;
            }
            if !row.unreadable.is_empty() {
                for (fact, error) in &row.unreadable {
                    tracing::error!(outbox_id = row.id, %error, fact = %truncate(fact, 300),
                        "an outbox fact cannot be read: set aside in outbox_rejects");
                }
                if let Err(e) = store.outbox_reject(row.id, &row.unreadable).await {
                    tracing::warn!(outbox_id = row.id, error = %e, "cannot set an outbox fact aside");
                    continue;
                }
            }
            let _ = self.deletes.send(row.id);
        }
        Ok(rows.len())
    }
}

fn truncate(s: &str, max: usize) -> &str {
    let mut cut = s.len().min(max);
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    &s[..cut]
}

/// Why nothing was published: NATS is away (`then`: who publishes later).
fn not_connected(then: &str) -> BusError {
    BusError::Publish {
        subject: String::new(),
        source: format!("not connected to NATS; {then}").into(),
    }
}

async fn delete_loop(store: Store, mut rx: mpsc::UnboundedReceiver<i64>) {
    let mut batch = Vec::with_capacity(DELETE_BATCH);
    while rx.recv_many(&mut batch, DELETE_BATCH).await > 0 {
        // Gather for a moment: one DELETE for many rows instead of one per transition.
        tokio::time::sleep(DELETE_GATHER).await;
        while batch.len() < DELETE_BATCH {
            match rx.try_recv() {
                Ok(id) => batch.push(id),
                Err(_) => break,
            }
        }
        // Rows not deleted now are published again by the relay and dropped by dedupe.
        if let Err(e) = store.outbox_delete(&batch).await {
            tracing::warn!(error = %e, rows = batch.len(), "cannot delete published outbox rows");
        }
        batch.clear();
    }
}
