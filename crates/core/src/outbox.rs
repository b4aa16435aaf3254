//! Outbox facts: what a state transition asks to publish, written by Postgres in the same
//! transaction as the state. SQL writes only facts (a job, or an event with its organization,
//! run and a dedupe key); `bus` derives every subject and message id from them.

use serde::{Deserialize, Serialize};

use crate::events::{Event, WorkflowEvent};
use crate::jobs::Job;
use crate::{ExecutionId, OrgId, RunId};

/// One fact.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "fact", rename_all = "snake_case")]
pub enum Fact {
    /// A job to enqueue.
    Job { job: Job },
    /// An event of a run.
    Event {
        org: OrgId,
        run: RunId,
        /// Unique among the run's events of this kind (`queued`, `terminal`,
        /// `tool:<invocation>:created`, ...): the message id is derived from it.
        key: String,
        event: Box<Event>,
    },
    /// An event of a workflow execution.
    WorkflowEvent {
        org: OrgId,
        execution: ExecutionId,
        /// Unique among the execution's events: the message id is derived from it.
        key: String,
        event: WorkflowEvent,
    },
}

impl Fact {
    /// The JetStream dedupe id: a job's own, `run:<run>:<key>` for a run's event,
    /// `wf:<execution>:<key>` for an execution's.
    pub fn msg_id(&self) -> String {
        match self {
            Self::Job { job } => job.msg_id(),
            Self::Event { run, key, .. } => format!("run:{run}:{key}"),
            Self::WorkflowEvent { execution, key, .. } => format!("wf:{execution}:{key}"),
        }
    }
}
