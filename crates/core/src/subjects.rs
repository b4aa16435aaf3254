//! Subject and stream names, all derived from one configurable prefix (default `ay`) so tests
//! and tenants of one NATS server never see each other's traffic.

use crate::RunId;

/// Names under one prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subjects {
    prefix: String,
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
    /// Limits stream of run (and later workflow) events.
    pub fn events_stream(&self) -> String {
        self.stream("EVENTS")
    }
    /// Dead letters.
    pub fn dlq_stream(&self) -> String {
        self.stream("DLQ")
    }
    /// Agent-step jobs of one priority.
    pub fn agent_jobs(&self, priority: crate::run::Priority) -> String {
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
    pub fn run_events(&self, run: RunId) -> String {
        format!("{}.events.run.{run}", self.prefix)
    }
    /// Events of every run.
    pub fn all_run_events(&self) -> String {
        format!("{}.events.run.*", self.prefix)
    }
    /// Events of every workflow execution.
    pub fn all_workflow_events(&self) -> String {
        format!("{}.events.workflow.*", self.prefix)
    }
    /// Dead letters of a job kind (`agent`, `tool`, ...).
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
    /// Core-NATS broadcast of revoked token ids (API processes evict them from their cache).
    pub fn auth_revoked(&self) -> String {
        format!("{}.control.auth.revoked", self.prefix)
    }
    /// Core-NATS request to every agent worker for its status (model reachable).
    pub fn agent_worker_status(&self) -> String {
        format!("{}.control.workers.agent.status", self.prefix)
    }
    /// Core-NATS cancel signals of all runs.
    pub fn all_run_cancels(&self) -> String {
        format!("{}.control.run.*.cancel", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_prefix() {
        let s = Subjects::new("t-1a");
        assert_eq!(s.jobs_stream(), "T_1A_JOBS");
        assert_eq!(s.agent_jobs(crate::run::Priority::High), "t-1a.jobs.agent.high");
        let run = RunId::new();
        assert_eq!(s.run_events(run), format!("t-1a.events.run.{run}"));
    }
}
