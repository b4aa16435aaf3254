//! Reading events back, with their sequence numbers in the `EVENTS` stream (the SSE `id:`):
//! every event from now on, for an API process's one shared reader ([`Bus::live_events`]); and
//! the stored events of a subject after a sequence ([`Bus::replay`]), read with direct gets, so
//! a client catching up costs no consumer on the server.

use std::sync::Arc;

use agentyard_core::events::{Event, EventKind};
use agentyard_core::run::Run;
use agentyard_core::{OrgId, RunId};
use async_nats::jetstream::consumer::{DeliverPolicy, push};
use async_nats::jetstream::stream;
use futures::{Stream, StreamExt};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::{Bus, BusError, Result};

/// An event as read back: where it belongs, its kind, its data as published (not parsed: most
/// readers only pass it on), and its sequence number in the `EVENTS` stream.
#[derive(Clone, Debug)]
pub struct SeqEvent {
    pub seq: u64,
    pub org: OrgId,
    pub run: RunId,
    pub kind: EventKind,
    pub data: Arc<RawValue>,
}

#[derive(Deserialize)]
struct Envelope {
    #[serde(rename = "type")]
    kind: String,
    data: Box<RawValue>,
}

#[derive(Deserialize)]
struct RunData {
    run: Run,
}

impl SeqEvent {
    /// The typed event.
    ///
    /// # Errors
    /// When the data does not match its kind (a bug, or a newer publisher).
    pub fn event(&self) -> serde_json::Result<Event> {
        let text = format!(r#"{{"type":"{}","data":{}}}"#, self.kind.as_str(), self.data.get());
        serde_json::from_str(&text)
    }

    /// The run a `run.*` event carries.
    pub fn run(&self) -> Option<Run> {
        serde_json::from_str::<RunData>(self.data.get()).ok().map(|d| d.run)
    }

    /// Decodes a stored message; None (with a warning) for one that is not an event we know.
    pub fn parse(bus: &Bus, subject: &str, seq: u64, payload: &[u8]) -> Option<Self> {
        let Some(address) = bus.subjects().parse_event(subject) else {
            tracing::debug!(subject, seq, "not a run event subject; skipped");
            return None;
        };
        let envelope: Envelope = match serde_json::from_slice(payload) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(subject, seq, error = %e, "skipping an undecodable event");
                return None;
            }
        };
        let Some(kind) = EventKind::parse(&envelope.kind) else {
            tracing::warn!(subject, seq, kind = envelope.kind, "skipping an event of unknown kind");
            return None;
        };
        Some(Self { seq, org: address.org, run: address.run, kind, data: envelope.data.into() })
    }
}

type Source = Box<dyn std::error::Error + Send + Sync>;

fn read_err(what: &str) -> impl Fn(Source) -> BusError + Clone + use<> {
    let what = what.to_owned();
    move |source| BusError::Read { what: what.clone(), source }
}

impl Bus {
    async fn events_stream(&self) -> Result<stream::Stream<()>> {
        self.js
            .get_stream_no_info(self.subjects.events_stream())
            .await
            .map_err(|e| read_err("the events stream")(e.into()))
    }

    /// An ordered consumer of every event from `policy` on, and its messages.
    async fn every_event(&self, policy: DeliverPolicy, what: &str) -> Result<push::Ordered> {
        let err = read_err(what);
        let consumer = self
            .events_stream()
            .await?
            .create_consumer(push::OrderedConfig {
                deliver_subject: self.client.new_inbox(),
                filter_subject: self.subjects.all_events(),
                deliver_policy: policy,
                ..Default::default()
            })
            .await
            .map_err(|e| err(e.into()))?;
        consumer.messages().await.map_err(|e| err(e.into()))
    }

    /// Every event published from now on, of every organization: one ordered consumer that an
    /// API process shares among all its clients (a consumer per client would make the server
    /// match every stored event against thousands of filters). Ends when the consumer breaks
    /// for good; the caller starts another one.
    ///
    /// # Errors
    /// When the consumer cannot be created.
    pub async fn live_events(&self) -> Result<impl Stream<Item = SeqEvent> + Send + use<>> {
        let messages = self.every_event(DeliverPolicy::New, "live events").await?;
        let bus = self.clone();
        Ok(messages.filter_map(move |m| {
            let out = match m {
                Ok(m) => m
                    .info()
                    .ok()
                    .map(|i| i.stream_sequence)
                    .and_then(|seq| SeqEvent::parse(&bus, &m.subject, seq, &m.payload)),
                Err(e) => {
                    tracing::warn!(error = %e, "the live event consumer reported an error");
                    None
                }
            };
            futures::future::ready(out)
        }))
    }

    /// The sequence of the last message of the `EVENTS` stream (0 when empty).
    ///
    /// # Errors
    /// When JetStream cannot be read.
    pub async fn events_last_seq(&self) -> Result<u64> {
        let stream = self
            .js
            .get_stream(self.subjects.events_stream())
            .await
            .map_err(|e| read_err("the events stream")(e.into()))?;
        Ok(stream.cached_info().state.last_sequence)
    }

    /// Every stored event after sequence `after` (0: from the first kept), then each one as it
    /// is published, in order, with the time the server stored it: the monitor's reading,
    /// whose position is kept in Postgres. Messages that are not run events are skipped (their
    /// sequence still counts). Ends when the consumer breaks; the caller starts again from its
    /// position.
    ///
    /// # Errors
    /// When the consumer cannot be created.
    pub async fn events_after(
        &self,
        after: u64,
    ) -> Result<
        impl Stream<Item = (u64, Option<(SeqEvent, chrono::DateTime<chrono::Utc>)>)> + Send + use<>,
    > {
        let policy = if after == 0 {
            DeliverPolicy::All
        } else {
            DeliverPolicy::ByStartSequence { start_sequence: after + 1 }
        };
        let messages = self.every_event(policy, "events from a position").await?;
        let bus = self.clone();
        Ok(messages.take_while(|m| futures::future::ready(m.is_ok())).filter_map(move |m| {
            let out = m.ok().and_then(|m| {
                let info = m.info().ok()?;
                let (seq, at) = (info.stream_sequence, info.published);
                let at = chrono::DateTime::from_timestamp(at.unix_timestamp(), at.nanosecond())?;
                let event = SeqEvent::parse(&bus, &m.subject, seq, &m.payload);
                Some((seq, event.map(|e| (e, at))))
            });
            futures::future::ready(out)
        }))
    }

    /// The stored events of `subject` (a run's, or an organization's `events.<org>.>`) with a
    /// sequence above `after`, oldest first, ending with the last one stored now.
    ///
    /// # Errors
    /// The stream yields an error when JetStream cannot be read.
    pub async fn replay(
        &self,
        subject: String,
        after: u64,
    ) -> Result<impl Stream<Item = Result<SeqEvent>> + Send + use<>> {
        let stream = self.events_stream().await?;
        let bus = self.clone();
        Ok(futures::stream::try_unfold(Some(after + 1), move |next| {
            let (stream, bus, subject) = (stream.clone(), bus.clone(), subject.clone());
            async move {
                let mut next = match next {
                    Some(n) => n,
                    None => return Ok(None),
                };
                loop {
                    match stream.direct_get_next_for_subject(subject.as_str(), Some(next)).await {
                        Ok(m) => {
                            next = m.sequence + 1;
                            if let Some(e) =
                                SeqEvent::parse(&bus, &m.subject, m.sequence, &m.payload)
                            {
                                return Ok(Some((e, Some(next))));
                            }
                        }
                        Err(e)
                            if matches!(
                                e.kind(),
                                async_nats::jetstream::stream::DirectGetErrorKind::NotFound
                            ) =>
                        {
                            return Ok(None);
                        }
                        Err(e) => return Err(read_err(&format!("events of {subject}"))(e.into())),
                    }
                }
            }
        }))
    }

    /// The newest sequence number of the `EVENTS` stream (0 when empty).
    ///
    /// # Errors
    /// When JetStream cannot be read.
    pub async fn last_event_seq(&self) -> Result<u64> {
        let mut stream = self
            .js
            .get_stream(self.subjects.events_stream())
            .await
            .map_err(|e| read_err("the events stream")(e.into()))?;
        let info = stream.info().await.map_err(|e| read_err("the events stream")(e.into()))?;
        Ok(info.state.last_sequence)
    }

    /// The shared durable consumer of every event that workflow triggers and event waits read
    /// (when missing, created from `since`, else from now on; an existing one keeps its place).
    ///
    /// # Errors
    /// When JetStream is unavailable.
    pub async fn trigger_consumer(
        &self,
        ack_wait: std::time::Duration,
        since: Option<time::OffsetDateTime>,
    ) -> Result<async_nats::jetstream::consumer::PullConsumer> {
        use async_nats::jetstream::consumer::{AckPolicy, pull};
        let deliver_policy = match since {
            Some(start_time) => DeliverPolicy::ByStartTime { start_time },
            None => DeliverPolicy::New,
        };
        let config = pull::Config {
            durable_name: Some(crate::TRIGGER_CONSUMER.to_owned()),
            filter_subject: self.subjects.all_events(),
            deliver_policy,
            ack_policy: AckPolicy::Explicit,
            ack_wait,
            max_deliver: -1,
            ..Default::default()
        };
        self.events_stream()
            .await?
            .get_or_create_consumer(crate::TRIGGER_CONSUMER, config)
            .await
            .map_err(|e| read_err("the trigger consumer")(e.into()))
    }

    /// Deletes the trigger consumer (no trigger reads events any more).
    ///
    /// # Errors
    /// When JetStream is unavailable.
    pub async fn drop_trigger_consumer(&self) -> Result<()> {
        let stream = self.events_stream().await?;
        match stream.delete_consumer(crate::TRIGGER_CONSUMER).await {
            Ok(_) => Ok(()),
            Err(e) if e.to_string().contains("not found") => Ok(()),
            Err(e) => Err(read_err("the trigger consumer")(e.into())),
        }
    }

    /// The events of one workflow execution with a sequence above `after`, then live ones,
    /// through an ordered consumer of its own (execution streams are few: a console or a
    /// script watching; run streams, which are many, share the hub instead). Each item is
    /// (sequence, type, data as published, events still pending behind it).
    ///
    /// # Errors
    /// When the consumer cannot be created.
    pub async fn workflow_events(
        &self,
        org: OrgId,
        execution: agentyard_core::ExecutionId,
        after: u64,
    ) -> Result<impl Stream<Item = (u64, String, String, u64)> + Send + use<>> {
        let err = read_err("workflow events");
        let deliver_policy = if after == 0 {
            DeliverPolicy::All
        } else {
            DeliverPolicy::ByStartSequence { start_sequence: after + 1 }
        };
        let consumer = self
            .events_stream()
            .await?
            .create_consumer(push::OrderedConfig {
                deliver_subject: self.client.new_inbox(),
                filter_subject: self.subjects.workflow_events(org, execution),
                deliver_policy,
                ..Default::default()
            })
            .await
            .map_err(|e| err(e.into()))?;
        let messages = consumer.messages().await.map_err(|e| err(e.into()))?;
        Ok(messages.filter_map(|m| {
            let out = m.ok().and_then(|m| {
                let info = m.info().ok()?;
                let (seq, pending) = (info.stream_sequence, info.pending);
                let event: agentyard_core::events::WorkflowEvent =
                    serde_json::from_slice(&m.payload).ok()?;
                Some((seq, event.kind, event.data.to_string(), pending))
            });
            futures::future::ready(out)
        }))
    }

    /// The sequence of the newest stored event of an execution (0 when none).
    ///
    /// # Errors
    /// When JetStream cannot be read.
    pub async fn last_workflow_event_seq(
        &self,
        org: OrgId,
        execution: agentyard_core::ExecutionId,
    ) -> Result<u64> {
        let stream = self.events_stream().await?;
        let subject = self.subjects.workflow_events(org, execution);
        match stream.direct_get_last_for_subject(subject.as_str()).await {
            Ok(m) => Ok(m.sequence),
            Err(e)
                if matches!(
                    e.kind(),
                    async_nats::jetstream::stream::DirectGetErrorKind::NotFound
                ) =>
            {
                Ok(0)
            }
            Err(e) => Err(read_err("workflow events")(e.into())),
        }
    }
}
