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

/// A role's availability over a window.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct RoleAvailability {
    /// The share of the window during which at least one instance was up, in percent (of the
    /// part of the window since the role was first seen).
    pub availability_pct: f64,
    pub up_seconds: f64,
    /// The part of the window since the role was first seen.
    pub observed_seconds: f64,
    /// Times the role went from no instance up to some, or back.
    pub outages: u32,
}

/// `GET /v1/system/availability`.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct Availability {
    /// `1h`, `24h` or `7d`.
    pub window: String,
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    pub roles: BTreeMap<String, RoleAvailability>,
}

/// Each role's availability in `[since, until]` from the instances' ups and downs (oldest
/// first): a role is up while at least one of its instances is.
pub fn role_availability(
    events: &[(String, String, String, DateTime<Utc>)],
    since: DateTime<Utc>,
    until: DateTime<Utc>,
) -> BTreeMap<String, RoleAvailability> {
    struct Acc {
        up: std::collections::BTreeSet<String>,
        first: DateTime<Utc>,
        up_since: Option<DateTime<Utc>>,
        up_secs: f64,
        outages: u32,
    }
    let mut roles: BTreeMap<String, Acc> = BTreeMap::new();
    let secs = |a: DateTime<Utc>, b: DateTime<Utc>| (b - a).num_milliseconds().max(0) as f64 / 1e3;
    for (instance, role, status, at) in events.iter().filter(|e| e.3 <= until) {
        let acc = roles.entry(role.clone()).or_insert(Acc {
            up: Default::default(),
            first: *at,
            up_since: None,
            up_secs: 0.0,
            outages: 0,
        });
        let was_up = !acc.up.is_empty();
        if status == "up" {
            acc.up.insert(instance.clone());
        } else {
            acc.up.remove(instance);
        }
        match (was_up, acc.up.is_empty()) {
            (false, false) => acc.up_since = Some(*at),
            (true, true) => {
                if let Some(from) = acc.up_since.take() {
                    acc.up_secs += secs(from.max(since), *at.max(&since));
                }
                if *at >= since {
                    acc.outages += 1;
                }
            }
            _ => {}
        }
    }
    roles
        .into_iter()
        .map(|(role, acc)| {
            let mut up = acc.up_secs;
            if let Some(from) = acc.up_since {
                up += secs(from.max(since), until);
            }
            let observed = secs(acc.first.max(since), until);
            let pct = if observed > 0.0 { (100.0 * up / observed).min(100.0) } else { 100.0 };
            let pct = (pct * 1000.0).round() / 1000.0;
            (
                role,
                RoleAvailability {
                    availability_pct: pct,
                    up_seconds: up,
                    observed_seconds: observed,
                    outages: acc.outages,
                },
            )
        })
        .collect()
}

impl Services {
    /// Each role's availability over `window` (`1h`, `24h` or `7d`).
    ///
    /// # Errors
    /// `invalid_query` for another window; database failures.
    pub async fn availability(&self, window: &str) -> crate::Result<Availability> {
        let span = match window {
            "1h" => chrono::Duration::hours(1),
            "24h" => chrono::Duration::hours(24),
            "7d" => chrono::Duration::days(7),
            _ => {
                return Err(crate::Error::invalid("invalid_query", "window must be 1h, 24h or 7d"));
            }
        };
        let until = Utc::now();
        let since = until - span;
        let events = self.store.instance_events().await?;
        Ok(Availability {
            window: window.to_owned(),
            since,
            until,
            roles: role_availability(&events, since, until),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap()
    }

    fn ev(i: &str, role: &str, status: &str, at: i64) -> (String, String, String, DateTime<Utc>) {
        (i.into(), role.into(), status.into(), t(at))
    }

    #[test]
    fn a_role_is_up_while_any_of_its_instances_is() {
        let events = [
            ev("a1", "agent", "up", 0),
            ev("a2", "agent", "up", 10),
            ev("a1", "agent", "down", 20), // a2 still up: no outage
            ev("a2", "agent", "down", 40), // outage 40..60
            ev("a3", "agent", "up", 60),
            ev("m1", "monitor", "up", 50),
        ];
        let r = role_availability(&events, t(0), t(100));
        assert_eq!(r["agent"].up_seconds, 80.0);
        assert_eq!(r["agent"].observed_seconds, 100.0);
        assert_eq!(r["agent"].availability_pct, 80.0);
        assert_eq!(r["agent"].outages, 1);
        // Seen from 50 on: observed for 50 s, up all of them.
        assert_eq!(r["monitor"].availability_pct, 100.0);
        assert_eq!(r["monitor"].observed_seconds, 50.0);
        // A window starting inside the outage.
        let r = role_availability(&events, t(50), t(100));
        assert_eq!(r["agent"].up_seconds, 40.0);
        assert_eq!(r["agent"].availability_pct, 80.0);
        assert_eq!(r["agent"].outages, 0);
    }
}
