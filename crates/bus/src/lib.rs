//! The bus: JetStream streams and consumers, the one place subjects and message ids are derived
//! from facts ([`publication`]), the outbox dispatcher and relay, the job runner every worker
//! uses, and reading events back.
//!
//! Streams (names under the subject prefix, see [`agentyard_core::subjects`]):
//! - `JOBS`: work queue of jobs, deduplicated by `Nats-Msg-Id`; agent jobs go to
//!   `jobs.agent.<priority>`, each read by a durable pull consumer `agent-<priority>`; tool
//!   jobs to `jobs.tool` (consumer `tool`).
//! - `EVENTS`: every organization's events (`events.<org>.run.<run>`), kept for
//!   `AY_EVENTS_MAX_AGE`.
//! - `DLQ`: jobs given up, with the reason in a header.
//!
//! Layout: [`runner`] (the consume loop), [`outbox`] (dispatcher and relay), [`events`]
//! (reading events back: live, and replayed from a sequence).

pub mod dlq;
pub mod error;
pub mod events;
pub mod heartbeat;
pub mod host;
pub mod metrics;
pub mod outbox;
pub mod runner;

use std::time::Duration;

use agentyard_core::events::Event;
use agentyard_core::outbox::Fact;
use agentyard_core::run::Priority;
use agentyard_core::subjects::Subjects;
use agentyard_core::{OrgId, RunId};
use async_nats::jetstream::{self, consumer, stream};

pub use error::{BusError, Result};
pub use outbox::Outbox;

/// The durable consumer of agent jobs of one priority.
pub fn agent_consumer_name(priority: Priority) -> String {
    format!("agent-{}", priority.as_str())
}

/// The header carrying a job's W3C trace context (set when traces are on).
pub const TRACEPARENT: &str = "traceparent";

/// The durable consumer of tool-call jobs.
pub const TOOL_CONSUMER: &str = "tool";
/// The durable consumer of workflow jobs, shared by every orchestrator.
pub const WORKFLOW_CONSUMER: &str = "workflow";
/// The durable consumer of events that workflow triggers (`on:`) read; it exists only while
/// some definition has such a trigger.
pub const TRIGGER_CONSUMER: &str = "workflow_triggers";

/// How one job consumer stands.
#[derive(Clone, Debug, serde::Serialize, utoipa::ToSchema)]
pub struct QueueState {
    /// `agent-high`, `agent-normal`, `agent-low`, `tool`, `workflow`.
    pub consumer: String,
    /// Jobs not yet delivered.
    pub pending: u64,
    /// Jobs delivered and not yet acked (in progress, or lost with a worker).
    pub ack_pending: u64,
    /// Jobs delivered more than once.
    pub redelivered: u64,
    /// Seconds since the oldest job not done was published (None: no job waits).
    pub oldest_job_age_s: Option<f64>,
}

/// Stream and consumer settings.
#[derive(Clone, Debug)]
pub struct BusSettings {
    pub events_max_age: Duration,
    pub ack_wait: Duration,
    /// Copies of each stream (and of its consumers) a NATS cluster keeps (`AY_NATS_REPLICAS`):
    /// 1 on a single server, 3 on a three-node cluster so that one node may die.
    pub replicas: usize,
}

/// The servers of a `NATS_URL` that lists several, comma-separated (the nodes of a cluster):
/// the client connects to any one that answers and moves to another when it goes.
///
/// # Errors
/// When one of them is not a valid address.
pub fn server_addrs(url: &str) -> Result<Vec<async_nats::ServerAddr>> {
    url.split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(|u| {
            u.parse::<async_nats::ServerAddr>()
                .map_err(|e| BusError::Connect { url: u.to_owned(), source: e.into() })
        })
        .collect()
}

/// A connection to NATS with JetStream, under one subject prefix.
#[derive(Clone, Debug)]
pub struct Bus {
    client: async_nats::Client,
    js: jetstream::Context,
    subjects: Subjects,
}

/// What to publish for a fact: its subject, message id and payload.
#[derive(Clone, Debug, PartialEq)]
pub struct Publication {
    pub subject: String,
    pub msg_id: String,
    pub payload: bytes::Bytes,
}

/// The subject, message id and payload of `fact` under `subjects`: the only place they are
/// derived.
///
/// # Errors
/// When the fact cannot be encoded (a bug).
pub fn publication(subjects: &Subjects, fact: &Fact) -> Result<Publication> {
    use agentyard_core::jobs::Job;
    let (subject, payload) = match fact {
        Fact::Job { job } => {
            let subject = match job {
                Job::AgentStep(j) => subjects.agent_jobs(j.priority),
                Job::ToolCall(_) => subjects.tool_jobs(),
                Job::WorkflowAdvance(_) => subjects.workflow_jobs(),
            };
            (subject, job.payload().map_err(BusError::Encode)?)
        }
        Fact::Event { org, run, event, .. } => {
            (subjects.run_events(*org, *run), serde_json::to_vec(event).map_err(BusError::Encode)?)
        }
        Fact::WorkflowEvent { org, execution, event, .. } => (
            subjects.workflow_events(*org, *execution),
            serde_json::to_vec(event).map_err(BusError::Encode)?,
        ),
    };
    Ok(Publication { subject, msg_id: fact.msg_id(), payload: payload.into() })
}

impl Bus {
    /// Connects to `url` (one server, or several comma-separated).
    ///
    /// # Errors
    /// When NATS does not answer.
    pub async fn connect(url: &str, prefix: &str) -> Result<Self> {
        let client = async_nats::ConnectOptions::new()
            .connection_timeout(Duration::from_secs(5))
            .retry_on_initial_connect()
            .max_reconnects(None)
            .connect(server_addrs(url)?)
            .await
            .map_err(|e| BusError::Connect { url: url.to_owned(), source: e.into() })?;
        Ok(Self::from_client(client, prefix))
    }

    /// Connects once, failing fast (used to probe whether a server is there).
    ///
    /// # Errors
    /// When NATS does not answer within `timeout`.
    pub async fn probe(url: &str, timeout: Duration) -> Result<()> {
        let fut = async_nats::ConnectOptions::new()
            .connection_timeout(timeout)
            .connect(server_addrs(url)?);
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

    /// Creates the streams and durable consumers when missing, and brings existing ones to the
    /// current configuration (idempotent; every process calls it at start, so no start order
    /// between processes matters).
    ///
    /// # Errors
    /// When JetStream is unavailable or refuses a configuration.
    pub async fn provision(&self, s: &BusSettings) -> Result<()> {
        let subj = &self.subjects;
        let jobs = self
            .upsert_stream(
                stream::Config {
                    name: subj.jobs_stream(),
                    subjects: vec![subj.all_agent_jobs(), subj.tool_jobs(), subj.workflow_jobs()],
                    retention: stream::RetentionPolicy::WorkQueue,
                    storage: stream::StorageType::File,
                    duplicate_window: Duration::from_secs(120),
                    ..Default::default()
                },
                s.replicas,
            )
            .await?;
        // Limits streams follow the configuration (e.g. a new AY_EVENTS_MAX_AGE) on restart.
        self.upsert_stream(
            stream::Config {
                name: subj.events_stream(),
                subjects: vec![subj.all_events()],
                retention: stream::RetentionPolicy::Limits,
                storage: stream::StorageType::File,
                max_age: s.events_max_age,
                duplicate_window: Duration::from_secs(120).min(s.events_max_age),
                allow_direct: true,
                ..Default::default()
            },
            s.replicas,
        )
        .await?;
        self.upsert_stream(
            stream::Config {
                name: subj.dlq_stream(),
                subjects: vec![subj.all_dlq()],
                retention: stream::RetentionPolicy::Limits,
                storage: stream::StorageType::File,
                max_age: Duration::from_secs(14 * 86400),
                ..Default::default()
            },
            s.replicas,
        )
        .await?;
        let mut durables = vec![
            (TOOL_CONSUMER.to_owned(), subj.tool_jobs()),
            (WORKFLOW_CONSUMER.to_owned(), subj.workflow_jobs()),
        ];
        for priority in Priority::ALL {
            durables.push((agent_consumer_name(priority), subj.agent_jobs(priority)));
        }
        for (name, filter) in durables {
            // JetStream never gives up on a job by itself (max_deliver -1): the runner decides,
            // after recording why, so a run never waits for a job that was silently dropped.
            let config = consumer::pull::Config {
                durable_name: Some(name.clone()),
                filter_subject: filter,
                ack_policy: consumer::AckPolicy::Explicit,
                ack_wait: s.ack_wait,
                max_deliver: -1,
                max_ack_pending: 100_000,
                max_waiting: 4096,
                ..Default::default()
            };
            let err = |e: Box<dyn std::error::Error + Send + Sync>| BusError::Provision {
                what: format!("consumer {name}"),
                source: e,
            };
            match jobs.consumer_info(&name).await {
                Ok(info) if info.config.max_deliver != -1 || info.config.ack_wait != s.ack_wait => {
                    jobs.create_consumer(config).await.map_err(|e| err(e.into()))?;
                }
                Ok(_) => {}
                Err(_) => {
                    jobs.get_or_create_consumer(&name, config).await.map_err(|e| err(e.into()))?;
                }
            }
        }
        Ok(())
    }

    async fn upsert_stream(
        &self,
        config: stream::Config,
        replicas: usize,
    ) -> Result<stream::Stream> {
        // Consumers are created with 0 replicas: they follow their stream's.
        let config = stream::Config { num_replicas: replicas.max(1), ..config };
        let name = config.name.clone();
        let err = |e: Box<dyn std::error::Error + Send + Sync>| BusError::Provision {
            what: format!("stream {name}"),
            source: e,
        };
        self.js.create_or_update_stream(config).await.map_err(|e| err(e.into()))?;
        self.js.get_stream(&name).await.map_err(|e| err(e.into()))
    }

    /// The shared durable consumer of tool-call jobs.
    ///
    /// # Errors
    /// When it was not provisioned or JetStream is unavailable.
    pub async fn tool_consumer(&self) -> Result<consumer::PullConsumer> {
        self.js
            .get_consumer_from_stream(TOOL_CONSUMER, self.subjects.jobs_stream())
            .await
            .map_err(|e| BusError::Provision { what: "consumer tool".into(), source: e.into() })
    }

    /// How each job consumer stands, and how many dead letters are kept.
    ///
    /// # Errors
    /// When JetStream cannot be read.
    pub async fn queue_states(&self) -> Result<(Vec<QueueState>, u64)> {
        let err = |what: &str, e: Box<dyn std::error::Error + Send + Sync>| BusError::Read {
            what: what.to_owned(),
            source: e,
        };
        let jobs = self
            .js
            .get_stream(self.subjects.jobs_stream())
            .await
            .map_err(|e| err("jobs", e.into()))?;
        let mut consumers = vec![
            (TOOL_CONSUMER.to_owned(), self.subjects.tool_jobs()),
            (WORKFLOW_CONSUMER.to_owned(), self.subjects.workflow_jobs()),
        ];
        for p in Priority::ALL {
            consumers.push((agent_consumer_name(p), self.subjects.agent_jobs(p)));
        }
        let now = time::OffsetDateTime::now_utc();
        let mut out = Vec::new();
        for (name, subject) in consumers {
            let Ok(info) = jobs.consumer_info(&name).await else { continue };
            // Jobs stay in the work-queue stream until acked: the oldest one of the subject is
            // the oldest job not done.
            let first = jobs.raw_message_builder().sequence(1).next_by_subject(subject).send();
            let oldest = match first.await {
                Ok(m) => Some((now - m.time).as_seconds_f64().max(0.0)),
                Err(_) => None,
            };
            out.push(QueueState {
                consumer: name,
                pending: info.num_pending,
                ack_pending: info.num_ack_pending as u64,
                redelivered: info.num_redelivered as u64,
                oldest_job_age_s: oldest,
            });
        }
        // A failure is an error, not 0: a monitor comparing counts would see false growth.
        let dead = self
            .js
            .get_stream(self.subjects.dlq_stream())
            .await
            .map_err(|e| err("dead letters", e.into()))?
            .cached_info()
            .state
            .messages;
        Ok((out, dead))
    }

    /// The shared durable consumer of workflow jobs (the orchestrators').
    ///
    /// # Errors
    /// When it was not provisioned or JetStream is unavailable.
    pub async fn workflow_consumer(&self) -> Result<consumer::PullConsumer> {
        self.js
            .get_consumer_from_stream(WORKFLOW_CONSUMER, self.subjects.jobs_stream())
            .await
            .map_err(|e| BusError::Provision { what: "consumer workflow".into(), source: e.into() })
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

    /// Publishes an event of a run without waiting for JetStream's ack: the returned future
    /// resolves to the ack. Await several together; never line them up one behind another.
    ///
    /// # Errors
    /// When the message cannot be sent.
    pub async fn publish_event(
        &self,
        org: OrgId,
        run: RunId,
        event: &Event,
    ) -> Result<jetstream::context::PublishAckFuture> {
        let subject = self.subjects.run_events(org, run);
        let payload = serde_json::to_vec(event).map_err(BusError::Encode)?;
        self.js
            .publish(subject.clone(), payload.into())
            .await
            .map_err(|e| BusError::Publish { subject, source: e.into() })
    }

    /// Copies a job to the dead-letter stream (`dlq.<kind>`) with the reason in `Ay-Dlq-Reason`.
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

    /// True while the client is connected to a server (false from the moment the connection
    /// drops until it is back): what needs NATS now can answer 503 at once instead of waiting
    /// for a request's timeout.
    pub fn is_connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }

    /// True when the server answers a round trip within 2 s.
    pub async fn ping(&self) -> bool {
        matches!(
            tokio::time::timeout(Duration::from_secs(2), self.client.flush()).await,
            Ok(Ok(()))
        )
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_nats_url_may_list_the_nodes_of_a_cluster() {
        let addrs = super::server_addrs("nats://a:4222, nats://b:4223,nats://c:4224").unwrap();
        let hosts: Vec<String> =
            addrs.iter().map(|a| format!("{}:{}", a.host(), a.port())).collect();
        assert_eq!(hosts, ["a:4222", "b:4223", "c:4224"]);
        assert_eq!(super::server_addrs("nats://127.0.0.1:4222").unwrap().len(), 1);
        assert!(super::server_addrs("nats://a:4222,nats://b:notaport").is_err());
    }
}
