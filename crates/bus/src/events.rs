//! Reading run events back, with their sequence numbers in the `EVENTS` stream (the SSE `id:`):
//! one run's events from a given sequence, ending after its terminal event; or every run's
//! events from now on, for an API process's shared hub.

use agentyard_core::RunId;
use agentyard_core::events::RunEvent;
use async_nats::jetstream::consumer::{DeliverPolicy, push};
use async_nats::jetstream::{Message, stream};
use futures::{Stream, StreamExt};

use crate::{Bus, BusError, Result};

/// An event and its sequence number in the `EVENTS` stream.
#[derive(Clone, Debug, PartialEq)]
pub struct SeqEvent {
    pub seq: u64,
    pub event: RunEvent,
}

type Source = Box<dyn std::error::Error + Send + Sync>;

fn read_err(what: String) -> impl Fn(Source) -> BusError {
    move |source| BusError::Read { what: what.clone(), source }
}

/// Decodes a delivered event; None (with a warning) for one we cannot read.
fn decode(m: &Message) -> Option<SeqEvent> {
    let seq = m.info().ok()?.stream_sequence;
    match serde_json::from_slice::<RunEvent>(&m.payload) {
        Ok(event) => Some(SeqEvent { seq, event }),
        Err(e) => {
            tracing::warn!(subject = %m.subject, seq, error = %e, "skipping an undecodable event");
            None
        }
    }
}

impl Bus {
    async fn events_stream(&self, err: &impl Fn(Source) -> BusError) -> Result<stream::Stream<()>> {
        self.js.get_stream_no_info(self.subjects.events_stream()).await.map_err(|e| err(e.into()))
    }

    /// An ordered push consumer of `filter` (server-side flow control, recreated by the client
    /// from the last sequence if it stalls).
    async fn ordered(
        &self,
        filter: String,
        deliver_policy: DeliverPolicy,
        err: &impl Fn(Source) -> BusError,
    ) -> Result<push::Ordered> {
        let consumer = self
            .events_stream(err)
            .await?
            .create_consumer(push::OrderedConfig {
                deliver_subject: self.client.new_inbox(),
                filter_subject: filter,
                deliver_policy,
                ..Default::default()
            })
            .await
            .map_err(|e| err(e.into()))?;
        consumer.messages().await.map_err(|e| err(e.into()))
    }

    /// The last event stored for `run`, if any.
    ///
    /// # Errors
    /// When JetStream cannot be read.
    pub async fn last_run_event(&self, run: RunId) -> Result<Option<SeqEvent>> {
        let err = read_err(format!("last event of run {run}"));
        let stream = self.events_stream(&err).await?;
        match stream.get_last_raw_message_by_subject(&self.subjects.run_events(run)).await {
            Ok(raw) => {
                let event = serde_json::from_slice(&raw.payload).map_err(|e| err(e.into()))?;
                Ok(Some(SeqEvent { seq: raw.sequence, event }))
            }
            Err(e) if matches!(e.kind(), stream::LastRawMessageErrorKind::NoMessageFound) => {
                Ok(None)
            }
            Err(e) => Err(err(e.into())),
        }
    }

    /// Every event of `run` with a sequence above `after` (all when None), live, in order,
    /// ending right after the terminal event.
    ///
    /// # Errors
    /// When the consumer cannot be created.
    pub async fn run_events(
        &self,
        run: RunId,
        after: Option<u64>,
    ) -> Result<impl Stream<Item = Result<SeqEvent>> + Send + use<>> {
        let err = read_err(format!("events of run {run}"));
        let deliver_policy = match after {
            Some(seq) => DeliverPolicy::ByStartSequence { start_sequence: seq + 1 },
            None => DeliverPolicy::All,
        };
        let messages = self.ordered(self.subjects.run_events(run), deliver_policy, &err).await?;
        let events = messages
            .filter_map(move |m| {
                let out = match m {
                    Ok(m) => decode(&m).map(Ok),
                    Err(e) => Some(Err(err(e.into()))),
                };
                futures::future::ready(out)
            })
            .boxed();
        // End right after the terminal event, without waiting for another message.
        Ok(futures::stream::unfold((events, false), |(mut inner, ended)| async move {
            if ended {
                return None;
            }
            let item = inner.next().await?;
            let ended = matches!(&item, Ok(e) if e.event.is_terminal());
            Some((item, (inner, ended)))
        }))
    }

    /// Every run event published from now on, with its run: one ordered consumer that an API
    /// process shares among all its SSE clients (a consumer per client would make the server
    /// match every stored event against thousands of filters).
    ///
    /// # Errors
    /// When the consumer cannot be created.
    pub async fn live_run_events(
        &self,
    ) -> Result<impl Stream<Item = (RunId, SeqEvent)> + Send + use<>> {
        let err = read_err("live run events".into());
        let messages =
            self.ordered(self.subjects.all_run_events(), DeliverPolicy::New, &err).await?;
        Ok(messages.filter_map(|m| {
            let out = m.ok().and_then(|m| {
                let run: RunId = m.subject.rsplit('.').next()?.parse().ok()?;
                Some((run, decode(&m)?))
            });
            futures::future::ready(out)
        }))
    }
}
