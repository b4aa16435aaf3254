//! The platform's state as operators see it: dependencies, the processes of each role by their
//! heartbeats (kept by the monitor), and the job queues.

use std::collections::BTreeMap;
use std::time::Duration;

use agentyard_store::monitor::InstanceRow;
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::Services;

/// A dependency's or role's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Up,
    Down,
}

/// The instances of one role.
#[derive(Clone, Debug, Default, Serialize, utoipa::ToSchema)]
pub struct RoleCount {
    pub up: usize,
    /// Down within the last hour.
    pub down: usize,
}

/// `GET /v1/system/status`.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct SystemStatus {
    /// `ok` when Postgres and NATS answer and every role seen in the last hour has an instance
    /// up; `degraded` otherwise.
    pub status: String,
    pub checked_at: DateTime<Utc>,
    /// `postgres`, `nats`.
    pub dependencies: BTreeMap<String, State>,
    /// Per role (`api`, `agent`, `tool`, `orchestrator`, `mcp-server`, `monitor`).
    pub roles: BTreeMap<String, RoleCount>,
    /// The instances up, and those down within the last hour.
    pub instances: Vec<InstanceRow>,
    /// Each job consumer: pending, in progress, redelivered, the oldest job's age.
    pub queues: Vec<agentyard_bus::QueueState>,
    /// Jobs given up and kept in the dead-letter stream.
    pub dead_letters: u64,
}

impl Services {
    /// The platform's state now.
    pub async fn system_status(&self) -> SystemStatus {
        let now = Utc::now();
        let (postgres, nats) = tokio::join!(
            tokio::time::timeout(Duration::from_secs(2), self.store.ping()),
            tokio::time::timeout(Duration::from_secs(2), self.bus.ping()),
        );
        let up = |r: Result<bool, _>| if r.unwrap_or(false) { State::Up } else { State::Down };
        let dependencies =
            BTreeMap::from([("postgres".to_owned(), up(postgres)), ("nats".to_owned(), up(nats))]);
        let instances = match self.store.instances(now - chrono::Duration::hours(1)).await {
            Ok(i) => i,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the instances");
                Vec::new()
            }
        };
        let mut roles: BTreeMap<String, RoleCount> = BTreeMap::new();
        for i in &instances {
            let r = roles.entry(i.role.clone()).or_default();
            if i.status == "up" {
                r.up += 1;
            } else {
                r.down += 1;
            }
        }
        let (queues, dead_letters) = match self.bus.queue_states().await {
            Ok(q) => q,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the queues");
                (Vec::new(), 0)
            }
        };
        let healthy =
            dependencies.values().all(|s| *s == State::Up) && roles.values().all(|r| r.up > 0);
        SystemStatus {
            status: if healthy { "ok" } else { "degraded" }.to_owned(),
            checked_at: now,
            dependencies,
            roles,
            instances,
            queues,
            dead_letters,
        }
    }
}
