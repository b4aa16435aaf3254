//! Subject and stream names, all derived from one configurable prefix (default `ay`) so tests
//! and tenants of one NATS server never see each other's traffic.
//!
//! - jobs: `<p>.jobs.agent.<priority>`, `<p>.jobs.tool`, `<p>.jobs.workflow`
//! - events: `<p>.events.<org>.run.<run>` (and `<p>.events.<org>.workflow.<execution>`), so one
//!   organization's events are one subscription (`<p>.events.<org>.>`)
//! - dead letters: `<p>.dlq.<job kind>`
//! - core NATS control: `<p>.control.run.<run>.cancel`, `<p>.control.auth.revoked`, ...

use crate::run::Priority;
use crate::{OrgId, RunId};

/// Names under one prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subjects {
    prefix: String,
}

/// What an event subject names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventAddress {
    pub org: OrgId,
    pub run: RunId,
}

impl Subjects {
    /// Names under `prefix` (e.g. `ay`).
    pub fn new(prefix: impl Into<String>) -> Self {
        Self { prefix: prefix.into() }
    }

    /// The prefix itself.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    fn stream(&self, name: &str) -> String {
        format!("{}_{name}", self.prefix.to_uppercase().replace(['.', '-'], "_"))
    }

    /// Work-queue stream of jobs.
    pub fn jobs_stream(&self) -> String {
        self.stream("JOBS")
    }
    /// Limits stream of events.
    pub fn events_stream(&self) -> String {
        self.stream("EVENTS")
    }
    /// Dead letters.
    pub fn dlq_stream(&self) -> String {
        self.stream("DLQ")
    }
    /// Agent-step jobs of one priority.
    pub fn agent_jobs(&self, priority: Priority) -> String {
        format!("{}.jobs.agent.{}", self.prefix, priority.as_str())
    }
    /// Agent-step jobs of every priority.
    pub fn all_agent_jobs(&self) -> String {
        format!("{}.jobs.agent.*", self.prefix)
    }
    /// Tool-call jobs.
    pub fn tool_jobs(&self) -> String {
        format!("{}.jobs.tool", self.prefix)
    }
    /// Workflow jobs.
    pub fn workflow_jobs(&self) -> String {
        format!("{}.jobs.workflow", self.prefix)
    }
    /// Events of one run.
    pub fn run_events(&self, org: OrgId, run: RunId) -> String {
        format!("{}.events.{org}.run.{run}", self.prefix)
    }
    /// Events of one workflow execution.
    pub fn workflow_events(&self, org: OrgId, execution: crate::ExecutionId) -> String {
        format!("{}.events.{org}.workflow.{execution}", self.prefix)
    }
    /// Every event of one organization.
    pub fn org_events(&self, org: OrgId) -> String {
        format!("{}.events.{org}.>", self.prefix)
    }
    /// Every event.
    pub fn all_events(&self) -> String {
        format!("{}.events.>", self.prefix)
    }
    /// The organization and run of an event subject.
    pub fn parse_event(&self, subject: &str) -> Option<EventAddress> {
        let rest = subject.strip_prefix(&self.prefix)?.strip_prefix(".events.")?;
        let mut parts = rest.split('.');
        let org = parts.next()?.parse().ok()?;
        if parts.next()? != "run" {
            return None;
        }
        let run = parts.next()?.parse().ok()?;
        parts.next().is_none().then_some(EventAddress { org, run })
    }
    /// Dead letters of a job kind (`agent_step`, `tool_call`, ...).
    pub fn dlq(&self, kind: &str) -> String {
        format!("{}.dlq.{kind}", self.prefix)
    }
    /// Dead letters of every kind.
    pub fn all_dlq(&self) -> String {
        format!("{}.dlq.>", self.prefix)
    }
    /// Core-NATS cancel signal of one run.
    pub fn run_cancel(&self, run: RunId) -> String {
        format!("{}.control.run.{run}.cancel", self.prefix)
    }
    /// Core-NATS cancel signals of all runs.
    pub fn all_run_cancels(&self) -> String {
        format!("{}.control.run.*.cancel", self.prefix)
    }
    /// Core-NATS broadcast of revoked token ids (API processes evict them from their cache).
    pub fn auth_revoked(&self) -> String {
        format!("{}.control.auth.revoked", self.prefix)
    }
    /// Core-NATS heartbeats of one role.
    pub fn heartbeat(&self, role: &str) -> String {
        format!("{}.heartbeat.{role}", self.prefix)
    }
    /// Core-NATS heartbeats of every role.
    pub fn all_heartbeats(&self) -> String {
        format!("{}.heartbeat.>", self.prefix)
    }
    /// Core-NATS request to every agent worker for its status (model reachable).
    pub fn agent_worker_status(&self) -> String {
        format!("{}.control.workers.agent.status", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_prefix_and_event_subjects_parse_back() {
        let s = Subjects::new("t-1a");
        assert_eq!(s.jobs_stream(), "T_1A_JOBS");
        assert_eq!(s.agent_jobs(Priority::High), "t-1a.jobs.agent.high");
        let (org, run) = (OrgId::new(), RunId::new());
        let subject = s.run_events(org, run);
        assert_eq!(subject, format!("t-1a.events.{org}.run.{run}"));
        assert_eq!(s.parse_event(&subject), Some(EventAddress { org, run }));
        assert_eq!(s.parse_event(&format!("other.events.{org}.run.{run}")), None);
        assert_eq!(s.parse_event(&format!("t-1a.events.{org}.run.x")), None);
    }
}
