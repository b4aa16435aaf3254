//! Reading run events back: every event of a run from a given stream sequence, in order, with
//! its sequence number (the SSE `id:`), ending after the terminal event.

use agentyard_core::RunId;
use agentyard_core::events::RunEvent;
use async_nats::jetstream::consumer::{DeliverPolicy, push};
use futures::{Stream, StreamExt};

use crate::{Bus, BusError, Result};

/// An event and its sequence number in the `EVENTS` stream.
#[derive(Clone, Debug, PartialEq)]
pub struct SeqEvent {
    pub seq: u64,
    pub event: RunEvent,
}

impl Bus {
    /// The last event stored for `run`, if any.
    ///
    /// # Errors
    /// When JetStream cannot be read.
    pub async fn last_run_event(&self, run: RunId) -> Result<Option<SeqEvent>> {
        let read_err = |e: Box<dyn std::error::Error + Send + Sync>| BusError::Read {
            what: format!("last event of run {run}"),
            source: e,
        };
        let stream = self
            .js
            .get_stream_no_info(self.subjects.events_stream())
            .await
            .map_err(|e| read_err(e.into()))?;
        match stream.get_last_raw_message_by_subject(&self.subjects.run_events(run)).await {
            Ok(raw) => {
                let event = serde_json::from_slice(&raw.payload).map_err(|e| read_err(e.into()))?;
                Ok(Some(SeqEvent { seq: raw.sequence, event }))
            }
            Err(e)
                if matches!(
                    e.kind(),
                    async_nats::jetstream::stream::LastRawMessageErrorKind::NoMessageFound
                ) =>
            {
                Ok(None)
            }
            Err(e) => Err(read_err(e.into())),
        }
    }

    /// Every event of `run` with a sequence above `after` (all when None), live, in order,
    /// ending after the terminal event. Undecodable events are skipped with a warning.
    ///
    /// # Errors
    /// When the ordered consumer cannot be created.
    pub async fn run_events(
        &self,
        run: RunId,
        after: Option<u64>,
    ) -> Result<impl Stream<Item = Result<SeqEvent>> + Send + use<>> {
        let read_err = |e: Box<dyn std::error::Error + Send + Sync>| BusError::Read {
            what: format!("events of run {run}"),
            source: e,
        };
        let stream = self
            .js
            .get_stream_no_info(self.subjects.events_stream())
            .await
            .map_err(|e| read_err(e.into()))?;
        let deliver_policy = match after {
            Some(seq) => DeliverPolicy::ByStartSequence { start_sequence: seq + 1 },
            None => DeliverPolicy::All,
        };
        let consumer = stream
            .create_consumer(push::OrderedConfig {
                deliver_subject: self.client.new_inbox(),
                filter_subject: self.subjects.run_events(run),
                deliver_policy,
                ..Default::default()
            })
            .await
            .map_err(|e| read_err(e.into()))?;
        let messages = consumer.messages().await.map_err(|e| read_err(e.into()))?;
        let messages = messages
            .filter_map(move |m| {
                let out = match m {
                    Err(e) => Some(Err(BusError::Read {
                        what: format!("events of run {run}"),
                        source: e.into(),
                    })),
                    Ok(m) => match (m.info(), serde_json::from_slice::<RunEvent>(&m.payload)) {
                        (Ok(info), Ok(event)) => {
                            Some(Ok(SeqEvent { seq: info.stream_sequence, event }))
                        }
                        (_, Err(e)) => {
                            tracing::warn!(%run, error = %e, "skipping an undecodable run event");
                            None
                        }
                        (Err(e), _) => {
                            tracing::warn!(%run, error = %e, "skipping an event without info");
                            None
                        }
                    },
                };
                futures::future::ready(out)
            })
            .boxed();
        // End right after the terminal event, without waiting for another message.
        Ok(futures::stream::unfold((messages, false), |(mut inner, ended)| async move {
            if ended {
                return None;
            }
            let item = inner.next().await?;
            let ended = matches!(&item, Ok(e) if e.event.is_terminal());
            Some((item, (inner, ended)))
        }))
    }
}

impl Bus {
    /// Every run event published from now on, with its run and sequence: one ordered consumer
    /// that an API process shares among all its SSE clients (a consumer per client would make
    /// the server match every stored event against thousands of filters).
    ///
    /// # Errors
    /// When the ordered consumer cannot be created.
    pub async fn live_run_events(
        &self,
    ) -> Result<impl Stream<Item = (RunId, SeqEvent)> + Send + use<>> {
        let read_err = |e: Box<dyn std::error::Error + Send + Sync>| BusError::Read {
            what: "live run events".into(),
            source: e,
        };
        let stream = self
            .js
            .get_stream_no_info(self.subjects.events_stream())
            .await
            .map_err(|e| read_err(e.into()))?;
        let consumer = stream
            .create_consumer(push::OrderedConfig {
                deliver_subject: self.client.new_inbox(),
                filter_subject: self.subjects.all_run_events(),
                deliver_policy: DeliverPolicy::New,
                ..Default::default()
            })
            .await
            .map_err(|e| read_err(e.into()))?;
        let messages = consumer.messages().await.map_err(|e| read_err(e.into()))?;
        Ok(messages.filter_map(|m| {
            let out = m.ok().and_then(|m| {
                let run: RunId = m.subject.rsplit('.').next()?.parse().ok()?;
                let seq = m.info().ok()?.stream_sequence;
                let event = serde_json::from_slice(&m.payload).ok()?;
                Some((run, SeqEvent { seq, event }))
            });
            futures::future::ready(out)
        }))
    }
}
