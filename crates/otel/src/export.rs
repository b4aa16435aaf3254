//! The exporter: one background task that gathers ended spans into batches and POSTs each as
//! an OTLP/HTTP protobuf request. A batch goes out when it is full or every schedule delay; a
//! batch the collector refuses or cannot take is dropped (and said so, once per outage).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::proto;
use crate::span::{AttrValue, SpanData};

pub(crate) struct Exporter {
    pub(crate) spans: mpsc::Receiver<SpanData>,
    pub(crate) flushes: mpsc::UnboundedReceiver<oneshot::Sender<()>>,
    pub(crate) http: reqwest::Client,
    pub(crate) url: String,
    pub(crate) headers: reqwest::header::HeaderMap,
    pub(crate) resource: Vec<(String, AttrValue)>,
    pub(crate) every: Duration,
    pub(crate) max_batch: usize,
    pub(crate) timeout: Duration,
    pub(crate) dropped: Arc<AtomicU64>,
    pub(crate) failing: bool,
}

impl Exporter {
    pub(crate) async fn run(mut self) {
        let mut batch = Vec::with_capacity(self.max_batch);
        let mut tick = tokio::time::interval(self.every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let room = self.max_batch - batch.len();
            tokio::select! {
                n = self.spans.recv_many(&mut batch, room) => {
                    if n == 0 {
                        // Every sender is gone (the subscriber was never installed).
                        return;
                    }
                    if batch.len() >= self.max_batch {
                        self.export(&mut batch).await;
                    }
                }
                _ = tick.tick() => {
                    if !batch.is_empty() {
                        self.export(&mut batch).await;
                    }
                }
                Some(done) = self.flushes.recv() => {
                    while let Ok(span) = self.spans.try_recv() {
                        batch.push(span);
                        if batch.len() >= self.max_batch {
                            self.export(&mut batch).await;
                        }
                    }
                    if !batch.is_empty() {
                        self.export(&mut batch).await;
                    }
                    let _ = done.send(());
                }
            }
        }
    }

    async fn export(&mut self, batch: &mut Vec<SpanData>) {
        let scope = ("agentyard", env!("CARGO_PKG_VERSION"));
        let body = proto::export_request(&self.resource, scope, batch);
        let spans = batch.len();
        batch.clear();
        let sent = self
            .http
            .post(&self.url)
            .headers(self.headers.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/x-protobuf")
            .timeout(self.timeout)
            .body(body)
            .send()
            .await;
        let problem = match sent {
            Ok(r) if r.status().is_success() => None,
            Ok(r) => Some(format!("{} answered {}", self.url, r.status())),
            Err(e) => Some(format!("cannot reach {}: {e}", self.url)),
        };
        match problem {
            None if self.failing => {
                self.failing = false;
                tracing::info!(url = %self.url, "exporting traces again");
            }
            None => {}
            Some(p) if !self.failing => {
                self.failing = true;
                tracing::warn!(problem = %p, spans, "cannot export traces; dropping them until the collector answers");
            }
            Some(p) => tracing::debug!(problem = %p, spans, "trace export failed"),
        }
        let dropped = self.dropped.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            tracing::warn!(dropped, "spans dropped: the trace export queue was full");
        }
    }
}
