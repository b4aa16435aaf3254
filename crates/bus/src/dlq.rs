//! The dead-letter stream read back for operators: what was given up, why, how often, when;
//! publishing a job again (a replay), and removing an entry once dealt with. A dead letter's id
//! is its sequence in the stream.

use std::collections::BTreeMap;

use agentyard_core::jobs::Job;
use agentyard_core::outbox::Fact;
use async_nats::jetstream::ErrorCode;
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream::{DeleteMessageErrorKind, LastRawMessageErrorKind, Stream};
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::{Bus, BusError, Result};

/// At most this many dead letters are read to count them (the stream keeps 14 days).
const SCAN_LIMIT: u64 = 10_000;

/// One job given up.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct DeadLetter {
    /// Its sequence in the dead-letter stream.
    pub id: u64,
    /// The job's kind: `agent_step`, `tool_call` or `workflow_advance`.
    pub kind: String,
    /// Why it was given up, as a code (`llm_unavailable`, `max_deliveries_exceeded`,
    /// `undecodable`, ...).
    pub code: String,
    /// Why, in words (the whole `Ay-Dlq-Reason` header).
    pub reason: String,
    /// When it was given up.
    pub dead_lettered_at: DateTime<Utc>,
    /// The job as it was published (null when it was not JSON).
    #[schema(value_type = Object)]
    pub job: serde_json::Value,
}

/// How many dead letters of one kind and code, the first and the last.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct DeadLetterCount {
    pub kind: String,
    pub code: String,
    pub count: u64,
    pub first_at: DateTime<Utc>,
    pub last_at: DateTime<Utc>,
}

/// The dead letters: the newest first (up to a limit) and counts of all of them.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct DeadLetters {
    /// Dead letters kept.
    pub total: u64,
    /// By kind and code, the most frequent first.
    pub counts: Vec<DeadLetterCount>,
    /// The newest first.
    pub data: Vec<DeadLetter>,
}

fn read_err(e: impl std::error::Error + Send + Sync + 'static) -> BusError {
    BusError::Read { what: "dead letters".into(), source: Box::new(e) }
}

impl Bus {
    async fn dlq(&self) -> Result<Stream> {
        self.js.get_stream(self.subjects.dlq_stream()).await.map_err(read_err)
    }

    /// The newest `limit` dead letters and counts by kind and code of all of them (of the
    /// newest 10,000 when there are more).
    ///
    /// # Errors
    /// When JetStream cannot be read.
    pub async fn dead_letters(&self, limit: usize) -> Result<DeadLetters> {
        let mut stream = self.dlq().await?;
        let state = stream.info().await.map_err(read_err)?.state.clone();
        let mut counts: BTreeMap<(String, String), DeadLetterCount> = BTreeMap::new();
        let mut data = Vec::new();
        let mut seq = state.last_sequence;
        let floor = state.first_sequence.max(state.last_sequence.saturating_sub(SCAN_LIMIT));
        while seq >= floor && seq > 0 {
            if let Some(d) = read(&stream, seq).await? {
                let c = counts.entry((d.kind.clone(), d.code.clone())).or_insert_with(|| {
                    DeadLetterCount {
                        kind: d.kind.clone(),
                        code: d.code.clone(),
                        count: 0,
                        first_at: d.dead_lettered_at,
                        last_at: d.dead_lettered_at,
                    }
                });
                c.count += 1;
                c.first_at = c.first_at.min(d.dead_lettered_at);
                c.last_at = c.last_at.max(d.dead_lettered_at);
                if data.len() < limit {
                    data.push(d);
                }
            }
            seq -= 1;
        }
        let mut counts: Vec<DeadLetterCount> = counts.into_values().collect();
        counts.sort_by(|a, b| b.count.cmp(&a.count).then(a.kind.cmp(&b.kind)));
        Ok(DeadLetters { total: state.messages, counts, data })
    }

    /// One dead letter; None when there is none of that id (never was, or dropped).
    ///
    /// # Errors
    /// When JetStream cannot be read.
    pub async fn dead_letter_by_id(&self, id: u64) -> Result<Option<DeadLetter>> {
        read(&self.dlq().await?, id).await
    }

    /// Publishes `job` again under message id `msg_id` (not the job's own: a job published
    /// again within the deduplication window under its first id would be dropped).
    ///
    /// # Errors
    /// When JetStream does not ack it.
    pub async fn republish_job(&self, job: &Job, msg_id: &str) -> Result<()> {
        let p = crate::publication(&self.subjects, &Fact::Job { job: job.clone() })?;
        let message = PublishMessage::build().payload(p.payload).message_id(msg_id);
        let err = |e: Box<dyn std::error::Error + Send + Sync>| BusError::Publish {
            subject: p.subject.clone(),
            source: e,
        };
        let ack =
            self.js.send_publish(p.subject.clone(), message).await.map_err(|e| err(e.into()))?;
        ack.await.map_err(|e| err(e.into()))?;
        Ok(())
    }

    /// Removes a dead letter; false when there is none of that id.
    ///
    /// # Errors
    /// When JetStream cannot be reached.
    pub async fn drop_dead_letter(&self, id: u64) -> Result<bool> {
        let stream = self.dlq().await?;
        if read(&stream, id).await?.is_none() {
            return Ok(false);
        }
        match stream.delete_message(id).await {
            Ok(deleted) => Ok(deleted),
            // Deleted by someone else since we read it.
            Err(e)
                if matches!(e.kind(), DeleteMessageErrorKind::JetStream(ref j)
                if j.error_code() == ErrorCode::STREAM_MESSAGE_DELETE_FAILED) =>
            {
                Ok(false)
            }
            Err(e) => Err(read_err(e)),
        }
    }
}

/// The dead letter at `seq`, None when there is none.
async fn read(stream: &Stream, seq: u64) -> Result<Option<DeadLetter>> {
    if seq == 0 {
        return Ok(None);
    }
    let msg = match stream.get_raw_message(seq).await {
        Ok(m) => m,
        // Never was, or deleted.
        Err(e) if matches!(e.kind(), LastRawMessageErrorKind::NoMessageFound) => return Ok(None),
        Err(e) => return Err(read_err(e)),
    };
    let reason =
        msg.headers.get("Ay-Dlq-Reason").map(|v| v.as_str().to_owned()).unwrap_or_default();
    let code = reason.split_once(':').map_or(reason.as_str(), |(c, _)| c).trim().to_owned();
    let kind = msg.subject.rsplit('.').next().unwrap_or_default().to_owned();
    let at = DateTime::from_timestamp(msg.time.unix_timestamp(), msg.time.nanosecond())
        .unwrap_or_default();
    Ok(Some(DeadLetter {
        id: msg.sequence,
        kind,
        code,
        reason,
        dead_lettered_at: at,
        job: serde_json::from_slice(&msg.payload).unwrap_or(serde_json::Value::Null),
    }))
}
