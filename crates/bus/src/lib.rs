//! The bus: JetStream streams and consumers, publishing with message ids, the outbox
//! dispatcher and relay, the consume loop, and reading run events back for SSE.
//!
//! Streams (names under the subject prefix, see [`agentyard_core::subjects`]):
//! - `JOBS`: work queue of jobs, deduplicated by `Nats-Msg-Id`; agent jobs go to
//!   `jobs.agent.<priority>`, each read by a durable pull consumer `agent-<priority>`.
//! - `EVENTS`: run events kept for `AY_EVENTS_MAX_AGE`; read by ordered consumers.
//! - `DLQ`: jobs that could not be processed, with the reason in a header.

pub mod consume;
pub mod error;
pub mod events;
pub mod outbox;

use std::time::Duration;

use agentyard_core::RunId;
use agentyard_core::events::RunEvent;
use agentyard_core::run::Priority;
use agentyard_core::subjects::Subjects;
use async_nats::jetstream::{self, consumer, stream};

pub use error::{BusError, Result};
pub use outbox::Outbox;

/// The durable consumer of agent jobs of one priority.
pub fn agent_consumer_name(priority: Priority) -> String {
    format!("agent-{}", priority.as_str())
}

/// Stream and consumer settings.
#[derive(Clone, Debug)]
pub struct BusSettings {
    pub events_max_age: Duration,
    pub ack_wait: Duration,
    /// JetStream redelivers a job at most this many times; the worker gives up earlier.
    pub max_deliver: i64,
}

/// A connection to NATS with JetStream, under one subject prefix.
#[derive(Clone, Debug)]
pub struct Bus {
    client: async_nats::Client,
    js: jetstream::Context,
    subjects: Subjects,
}

impl Bus {
    /// Connects to `url`.
    ///
    /// # Errors
    /// When NATS does not answer.
    pub async fn connect(url: &str, prefix: &str) -> Result<Self> {
        let client = async_nats::ConnectOptions::new()
            .connection_timeout(Duration::from_secs(5))
            .retry_on_initial_connect()
            .max_reconnects(None)
            .connect(url)
            .await
            .map_err(|e| BusError::Connect { url: url.to_owned(), source: e.into() })?;
        Ok(Self::from_client(client, prefix))
    }

    /// Connects once, failing fast (used to probe whether a server is there).
    ///
    /// # Errors
    /// When NATS does not answer within `timeout`.
    pub async fn probe(url: &str, timeout: Duration) -> Result<()> {
        let fut = async_nats::ConnectOptions::new().connection_timeout(timeout).connect(url);
        match tokio::time::timeout(timeout, fut).await {
            Ok(Ok(c)) => {
                drop(c);
                Ok(())
            }
            Ok(Err(e)) => Err(BusError::Connect { url: url.to_owned(), source: e.into() }),
            Err(_) => Err(BusError::Connect { url: url.to_owned(), source: "timed out".into() }),
        }
    }

    /// Wraps a connected client.
    pub fn from_client(client: async_nats::Client, prefix: &str) -> Self {
        let js = jetstream::ContextBuilder::new().max_ack_inflight(50_000).build(client.clone());
        Self { client, js, subjects: Subjects::new(prefix) }
    }

    /// Subject and stream names.
    pub fn subjects(&self) -> &Subjects {
        &self.subjects
    }

    /// The core NATS client (control messages, subscriptions).
    pub fn client(&self) -> &async_nats::Client {
        &self.client
    }

    /// The JetStream context.
    pub fn jetstream(&self) -> &jetstream::Context {
        &self.js
    }

    /// Creates the streams and durable consumers when missing (idempotent; every process calls
    /// it at start, so no start order between processes matters).
    ///
    /// # Errors
    /// When JetStream is unavailable or refuses a configuration.
    pub async fn provision(&self, s: &BusSettings) -> Result<()> {
        let subj = &self.subjects;
        // Agent jobs moved from `jobs.agent` to `jobs.agent.<priority>`: the consumer of the old
        // subject goes first, or the stream could not drop that subject.
        if let Ok(old) = self.js.get_stream(subj.jobs_stream()).await
            && old.cached_info().config.subjects.iter().any(|s| s.ends_with(".jobs.agent"))
        {
            let _ = old.delete_consumer("agent").await;
        }
        let jobs = self
            .upsert_jobs_stream(stream::Config {
                name: subj.jobs_stream(),
                subjects: vec![subj.all_agent_jobs(), subj.tool_jobs(), subj.workflow_jobs()],
                retention: stream::RetentionPolicy::WorkQueue,
                storage: stream::StorageType::File,
                duplicate_window: Duration::from_secs(120),
                ..Default::default()
            })
            .await?;
        // Limits streams follow the configuration (e.g. a new AY_EVENTS_MAX_AGE) on restart.
        self.upsert_stream(stream::Config {
            name: subj.events_stream(),
            subjects: vec![subj.all_run_events(), subj.all_workflow_events()],
            retention: stream::RetentionPolicy::Limits,
            storage: stream::StorageType::File,
            max_age: s.events_max_age,
            duplicate_window: Duration::from_secs(120).min(s.events_max_age),
            allow_direct: true,
            ..Default::default()
        })
        .await?;
        self.upsert_stream(stream::Config {
            name: subj.dlq_stream(),
            subjects: vec![subj.all_dlq()],
            retention: stream::RetentionPolicy::Limits,
            storage: stream::StorageType::File,
            max_age: Duration::from_secs(14 * 86400),
            ..Default::default()
        })
        .await?;
        let tool = consumer::pull::Config {
            durable_name: Some("tool".into()),
            filter_subject: subj.tool_jobs(),
            ack_policy: consumer::AckPolicy::Explicit,
            ack_wait: s.ack_wait,
            max_deliver: s.max_deliver,
            max_ack_pending: 100_000,
            max_waiting: 4096,
            ..Default::default()
        };
        jobs.get_or_create_consumer("tool", tool)
            .await
            .map_err(|e| BusError::Provision { what: "consumer tool".into(), source: e.into() })?;
        for priority in Priority::ALL {
            let name = agent_consumer_name(priority);
            let config = consumer::pull::Config {
                durable_name: Some(name.clone()),
                filter_subject: subj.agent_jobs(priority),
                ack_policy: consumer::AckPolicy::Explicit,
                ack_wait: s.ack_wait,
                max_deliver: s.max_deliver,
                max_ack_pending: 100_000,
                max_waiting: 4096,
                ..Default::default()
            };
            jobs.get_or_create_consumer(&name, config).await.map_err(|e| BusError::Provision {
                what: format!("consumer {name}"),
                source: e.into(),
            })?;
        }
        Ok(())
    }

    async fn upsert_jobs_stream(&self, config: stream::Config) -> Result<stream::Stream> {
        let name = config.name.clone();
        let err = |e: Box<dyn std::error::Error + Send + Sync>| BusError::Provision {
            what: format!("stream {name}"),
            source: e,
        };
        self.js.create_or_update_stream(config).await.map_err(|e| err(e.into()))?;
        self.js.get_stream(&name).await.map_err(|e| err(e.into()))
    }

    async fn upsert_stream(&self, config: stream::Config) -> Result<()> {
        let name = config.name.clone();
        self.js
            .create_or_update_stream(config)
            .await
            .map(|_| ())
            .map_err(|e| BusError::Provision { what: format!("stream {name}"), source: e.into() })
    }

    /// The shared durable consumer of tool-call jobs.
    ///
    /// # Errors
    /// When it was not provisioned or JetStream is unavailable.
    pub async fn tool_consumer(&self) -> Result<consumer::PullConsumer> {
        self.js
            .get_consumer_from_stream("tool", self.subjects.jobs_stream())
            .await
            .map_err(|e| BusError::Provision { what: "consumer tool".into(), source: e.into() })
    }

    /// The shared durable consumers of agent jobs, highest priority first.
    ///
    /// # Errors
    /// When they were not provisioned or JetStream is unavailable.
    pub async fn agent_consumers(&self) -> Result<Vec<consumer::PullConsumer>> {
        let mut out = Vec::new();
        for priority in Priority::ALL {
            let name = agent_consumer_name(priority);
            let c = self
                .js
                .get_consumer_from_stream(&name, self.subjects.jobs_stream())
                .await
                .map_err(|e| BusError::Provision {
                    what: format!("consumer {name}"),
                    source: e.into(),
                })?;
            out.push(c);
        }
        Ok(out)
    }

    /// Publishes a run event without waiting for JetStream's ack: the returned future resolves
    /// to the ack. Await several together; never line them up one behind another.
    ///
    /// # Errors
    /// When the message cannot be sent.
    pub async fn publish_event(
        &self,
        run: RunId,
        event: &RunEvent,
    ) -> Result<jetstream::context::PublishAckFuture> {
        let subject = self.subjects.run_events(run);
        let payload = serde_json::to_vec(event).map_err(BusError::Encode)?;
        self.js
            .publish(subject.clone(), payload.into())
            .await
            .map_err(|e| BusError::Publish { subject, source: e.into() })
    }

    /// Copies a job to the dead-letter stream with the reason in `Ay-Dlq-Reason`.
    ///
    /// # Errors
    /// When JetStream does not ack it.
    pub async fn dead_letter(&self, kind: &str, payload: bytes::Bytes, reason: &str) -> Result<()> {
        let subject = self.subjects.dlq(kind);
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Ay-Dlq-Reason", reason.replace(['\r', '\n'], " ").as_str());
        let ack = self
            .js
            .publish_with_headers(subject.clone(), headers, payload)
            .await
            .map_err(|e| BusError::Publish { subject: subject.clone(), source: e.into() })?;
        ack.await.map_err(|e| BusError::Publish { subject, source: e.into() })?;
        Ok(())
    }

    /// Sends a core-NATS cancel signal for a run (workers generating it stop).
    ///
    /// # Errors
    /// When the client is closed.
    pub async fn signal_cancel(&self, run: RunId) -> Result<()> {
        let subject = self.subjects.run_cancel(run);
        self.client
            .publish(subject.clone(), bytes::Bytes::new())
            .await
            .map_err(|e| BusError::Publish { subject, source: e.into() })
    }

    /// True when the server answers a round trip within 2 s.
    pub async fn ping(&self) -> bool {
        matches!(
            tokio::time::timeout(Duration::from_secs(2), self.client.flush()).await,
            Ok(Ok(()))
        )
    }
}
