//! The outbox dispatcher: publishes the rows a transaction wrote, right after its commit, then
//! deletes them in batches (one `DELETE` for many rows); and the relay, which re-publishes rows
//! a crash left behind. Every row carries a `Nats-Msg-Id`, so a second publish is harmless.

use std::time::Duration;

use agentyard_store::{OutboxRow, Store};
use async_nats::jetstream::message::PublishMessage;
use futures::future::join_all;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::{Bus, BusError};

/// Rows older than this are the relay's.
const RELAY_MIN_AGE_MS: i64 = 3_000;
const RELAY_EVERY: Duration = Duration::from_secs(1);
const DELETE_BATCH: usize = 1024;
const DELETE_GATHER: Duration = Duration::from_millis(25);

/// Publishes outbox rows; cheap to clone.
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

    /// Publishes `rows` in order (pipelined: all are sent before any ack is awaited) and queues
    /// the acked ones for deletion. Rows that fail stay for the relay.
    ///
    /// # Errors
    /// The first publish failure (after every row was tried).
    pub async fn dispatch(&self, rows: &[OutboxRow]) -> Result<(), BusError> {
        let mut acks = Vec::new();
        for row in rows {
            for m in &row.messages {
                let payload = serde_json::to_vec(&m.payload).map_err(BusError::Encode)?;
                let publish = PublishMessage::build().payload(payload.into()).message_id(&m.msg_id);
                let sent = self.bus.js.send_publish(m.subject.clone(), publish).await;
                acks.push((row.id, m, sent));
            }
        }
        let waits = acks.into_iter().map(|(row, m, sent)| async move {
            let res: Result<(), Box<dyn std::error::Error + Send + Sync>> = match sent {
                Ok(ack) => ack.await.map(|_| ()).map_err(Into::into),
                Err(e) => Err(e.into()),
            };
            (row, m, res)
        });
        let mut failed_rows = Vec::new();
        let mut first_err = None;
        for (row, m, res) in join_all(waits).await {
            if let Err(source) = res {
                tracing::warn!(subject = %m.subject, msg_id = %m.msg_id, error = %source,
                    "publish failed; the outbox relay will retry");
                failed_rows.push(row);
                first_err.get_or_insert(BusError::Publish { subject: m.subject.clone(), source });
            }
        }
        for row in rows.iter().filter(|r| !failed_rows.contains(&r.id)) {
            let _ = self.deletes.send(row.id);
        }
        first_err.map_or(Ok(()), Err)
    }

    async fn relay_loop(self, store: Store, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(RELAY_EVERY) => {}
            }
            match store.outbox_stale(RELAY_MIN_AGE_MS, 1000).await {
                Ok(rows) if !rows.is_empty() => {
                    tracing::info!(rows = rows.len(), "relaying unsent outbox rows");
                    let _ = self.dispatch(&rows).await;
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "outbox relay cannot read the outbox"),
            }
        }
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
