//! The platform's state as operators see it: dependencies, the processes of each role by their
//! heartbeats (kept by the monitor), and the job queues.

use std::collections::BTreeMap;
use std::time::Duration;

use agentyard_core::Scope;
use agentyard_store::alerts::{AlertRow, DeliveryRow};
use agentyard_store::monitor::InstanceRow;
use agentyard_store::series::{BucketRow, ProbeRow};
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::series::{Merged, Point, SERIES, Scope as SeriesScope, key_value, points};
use crate::{Principal, Services};

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
    /// Per probe (`postgres`, `nats`, `model:<alias>`, `mcp:<server>`): the share of the
    /// window it answered, by the monitor's probes.
    pub dependencies: BTreeMap<String, RoleAvailability>,
}

/// Each role's availability in `[since, until]` from the instances' ups and downs (oldest
/// first): a role is up while at least one of its instances is. (A probe is a role of one
/// instance.)
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
        let span = window_span(window)?;
        let until = Utc::now();
        let since = until - span;
        let events = self.store.instance_events().await?;
        let probes: Vec<_> = self
            .store
            .probe_events()
            .await?
            .into_iter()
            .map(|(name, _kind, status, at)| (name.clone(), name, status, at))
            .collect();
        Ok(Availability {
            window: window.to_owned(),
            since,
            until,
            roles: role_availability(&events, since, until),
            dependencies: role_availability(&probes, since, until),
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

/// Who reads the monitoring views: operators see the platform, everyone else their
/// organization's runs, tools, costs, MCP servers and alerts.
fn view_of(who: &Principal) -> Option<uuid::Uuid> {
    (!who.has_scope(Scope::PlatformAdmin)).then_some(who.org_id.0)
}

/// Percentiles and mean of a latency series, in milliseconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Latency {
    pub count: i64,
    pub avg: Option<f64>,
    pub p50: Option<f64>,
    pub p95: Option<f64>,
    pub p99: Option<f64>,
    pub max: Option<f64>,
}

impl From<&Merged> for Latency {
    fn from(m: &Merged) -> Self {
        let p = m.point(Utc::now());
        Self { count: m.count, avg: p.avg, p50: p.p50, p95: p.p95, p99: p.p99, max: p.max }
    }
}

/// One tool's calls.
#[derive(Clone, Debug, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ToolFigures {
    pub tool: String,
    pub server: String,
    pub calls: i64,
    pub errors: i64,
    pub error_rate_pct: f64,
    pub latency_ms: Latency,
}

/// One agent's runs.
#[derive(Clone, Debug, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct AgentFigures {
    pub agent_id: String,
    pub runs: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cost_usd: f64,
}

/// What happened over a window, from the monitor's series.
#[derive(Clone, Debug, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Figures {
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    /// Runs that ended, by status.
    pub runs: BTreeMap<String, i64>,
    pub runs_total: i64,
    /// Post to end.
    pub run_latency_ms: Latency,
    /// Post to the first streamed token.
    pub time_to_first_token_ms: Latency,
    /// Post to a worker's pickup.
    pub queue_wait_ms: Latency,
    pub tool_calls: i64,
    pub tool_errors: i64,
    pub tool_error_rate_pct: f64,
    pub tools: Vec<ToolFigures>,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cost_usd: f64,
    pub agents: Vec<AgentFigures>,
}

/// A host's latest figures.
#[derive(Clone, Debug, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct HostFigures {
    pub host: String,
    pub cpu_pct: Option<f64>,
    pub mem_pct: Option<f64>,
    pub disk_pct: Option<f64>,
    pub net_rx_bytes_per_s: Option<f64>,
    pub net_tx_bytes_per_s: Option<f64>,
}

/// `GET /v1/system/health-report`.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct HealthReport {
    /// `ok`, or `degraded` when a dependency or role is down or an alert is open.
    pub status: String,
    /// `platform` (operators) or `organization` (the caller's own).
    pub scope: String,
    pub checked_at: DateTime<Utc>,
    /// Every probe: Postgres, NATS, model aliases, MCP servers (an organization sees its own
    /// servers only).
    pub dependencies: Vec<ProbeRow>,
    /// Instances up and recently down per role (operators).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub roles: Option<BTreeMap<String, RoleCount>>,
    /// Job consumers (operators).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queues: Option<Vec<agentyard_bus::QueueState>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dead_letters: Option<u64>,
    /// The hosts heard from in the last minutes (operators).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hosts: Option<Vec<HostFigures>>,
    pub open_alerts: Vec<AlertRow>,
    pub last_hour: Figures,
}

/// `GET /v1/system/performance-trends`.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct Trend {
    pub metric: String,
    pub window: String,
    pub step_secs: i64,
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    /// The label filters applied (`agent`, `status`, `tool`, `server`, `outcome`, `host`,
    /// `consumer`, `probe`, `role`, `model`).
    pub filters: BTreeMap<String, String>,
    pub points: Vec<Point>,
}

/// The label names a trend may be filtered by.
pub const TREND_FILTERS: [&str; 10] =
    ["agent", "status", "tool", "server", "outcome", "host", "consumer", "probe", "role", "model"];

fn window_span(window: &str) -> crate::Result<chrono::Duration> {
    match window {
        "1h" => Ok(chrono::Duration::hours(1)),
        "24h" => Ok(chrono::Duration::hours(24)),
        "7d" => Ok(chrono::Duration::days(7)),
        _ => Err(crate::Error::invalid("invalid_query", "window must be 1h, 24h or 7d")),
    }
}

fn merged(rows: &[BucketRow], keep: impl Fn(&str) -> bool) -> Merged {
    let mut m = Merged::default();
    rows.iter().filter(|r| keep(&r.key)).for_each(|r| m.add(r));
    m
}

impl Services {
    async fn rows(
        &self,
        metric: &str,
        org: Option<uuid::Uuid>,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> crate::Result<Vec<BucketRow>> {
        let step = if until - since > chrono::Duration::hours(24) { 3600 } else { 60 };
        Ok(self.store.buckets(metric, step, org, since, until).await?)
    }

    /// The figures of `[since, until)` (minute buckets), of one organization or all.
    ///
    /// # Errors
    /// Database failures.
    pub async fn figures(
        &self,
        org: Option<uuid::Uuid>,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> crate::Result<Figures> {
        let (latency, ttft, wait, tools, input, output, cost) = tokio::try_join!(
            self.rows("run.latency_ms", org, since, until),
            self.rows("run.ttft_ms", org, since, until),
            self.rows("run.queue_wait_ms", org, since, until),
            self.rows("tool.latency_ms", org, since, until),
            self.rows("run.tokens_input", org, since, until),
            self.rows("run.tokens_output", org, since, until),
            self.rows("run.cost_usd", org, since, until),
        )?;
        let mut f = Figures { since, until, ..Figures::default() };
        for r in &latency {
            let status = key_value(&r.key, "status").unwrap_or("unknown");
            *f.runs.entry(status.to_owned()).or_default() += r.count;
            f.runs_total += r.count;
        }
        f.run_latency_ms = (&merged(&latency, |_| true)).into();
        f.time_to_first_token_ms = (&merged(&ttft, |_| true)).into();
        f.queue_wait_ms = (&merged(&wait, |_| true)).into();
        let mut per_tool: BTreeMap<(String, String), (Merged, i64)> = BTreeMap::new();
        for r in &tools {
            let tool = key_value(&r.key, "tool").unwrap_or("").to_owned();
            let server = key_value(&r.key, "server").unwrap_or("").to_owned();
            let e = per_tool.entry((tool, server)).or_default();
            e.0.add(r);
            if key_value(&r.key, "outcome") == Some("error") {
                e.1 += r.count;
            }
        }
        let pct = |errors: i64, calls: i64| {
            if calls == 0 { 0.0 } else { (10_000.0 * errors as f64 / calls as f64).round() / 100.0 }
        };
        for ((tool, server), (m, errors)) in per_tool {
            f.tool_calls += m.count;
            f.tool_errors += errors;
            f.tools.push(ToolFigures {
                tool,
                server,
                calls: m.count,
                errors,
                error_rate_pct: pct(errors, m.count),
                latency_ms: (&m).into(),
            });
        }
        f.tool_error_rate_pct = pct(f.tool_errors, f.tool_calls);
        let mut agents: BTreeMap<String, AgentFigures> = BTreeMap::new();
        // Runs per agent from the latency series; tokens and cost from theirs.
        fn of<'a>(
            agents: &'a mut BTreeMap<String, AgentFigures>,
            key: &str,
        ) -> &'a mut AgentFigures {
            let id = key_value(key, "agent").unwrap_or("").to_owned();
            agents
                .entry(id.clone())
                .or_insert_with(|| AgentFigures { agent_id: id, ..Default::default() })
        }
        for r in &latency {
            of(&mut agents, &r.key).runs += r.count;
        }
        for r in &input {
            of(&mut agents, &r.key).input_tokens += r.sum as i64;
        }
        for r in &output {
            of(&mut agents, &r.key).output_tokens += r.sum as i64;
        }
        for r in &cost {
            of(&mut agents, &r.key).cost_usd += r.sum;
        }
        for a in agents.values_mut() {
            a.cost_usd = (a.cost_usd * 1e8).round() / 1e8;
            f.input_tokens += a.input_tokens;
            f.output_tokens += a.output_tokens;
            f.cost_usd += a.cost_usd;
        }
        f.cost_usd = (f.cost_usd * 1e8).round() / 1e8;
        f.agents = agents.into_values().collect();
        Ok(f)
    }

    /// The health report: the platform's for operators, else the caller's organization's.
    ///
    /// # Errors
    /// Database failures.
    pub async fn health_report(&self, who: &Principal) -> crate::Result<HealthReport> {
        let org = view_of(who);
        let now = Utc::now();
        let (probes, open_alerts, last_hour) = tokio::try_join!(
            async { Ok::<_, crate::Error>(self.store.probes(None).await?) },
            async { Ok(self.store.alerts(Some("open"), org, 1000).await?) },
            self.figures(org, now - chrono::Duration::hours(1), now + chrono::Duration::minutes(1)),
        )?;
        let dependencies: Vec<ProbeRow> = match org {
            None => probes,
            // An organization sees the shared dependencies (not their errors, which name the
            // operator's addresses) and its own servers.
            Some(o) => probes
                .into_iter()
                .filter(|p| p.org_id.is_none_or(|id| id == o))
                .map(|mut p| {
                    if p.org_id.is_none() {
                        p.error = p.error.map(|_| "unavailable".to_owned());
                    }
                    p
                })
                .collect(),
        };
        let mut healthy = dependencies.iter().all(|p| p.status == "up") && open_alerts.is_empty();
        let (mut roles, mut queues, mut dead_letters, mut hosts) = (None, None, None, None);
        if org.is_none() {
            let status = self.system_status().await;
            healthy &= status.status == "ok";
            roles = Some(status.roles);
            queues = Some(status.queues);
            dead_letters = Some(status.dead_letters);
            hosts = Some(self.hosts(now).await?);
        }
        Ok(HealthReport {
            status: if healthy { "ok" } else { "degraded" }.to_owned(),
            scope: if org.is_none() { "platform" } else { "organization" }.to_owned(),
            checked_at: now,
            dependencies,
            roles,
            queues,
            dead_letters,
            hosts,
            open_alerts,
            last_hour,
        })
    }

    /// Each host's latest figures, from the last five minutes.
    async fn hosts(&self, now: DateTime<Utc>) -> crate::Result<Vec<HostFigures>> {
        let since = now - chrono::Duration::minutes(5);
        let until = now + chrono::Duration::minutes(1);
        let mut hosts: BTreeMap<String, HostFigures> = BTreeMap::new();
        for metric in [
            "host.cpu_pct",
            "host.mem_pct",
            "host.disk_pct",
            "host.net_rx_bytes_per_s",
            "host.net_tx_bytes_per_s",
        ] {
            // Oldest first: the last bucket's mean wins.
            for r in self.store.buckets(metric, 60, None, since, until).await? {
                let host = key_value(&r.key, "host").unwrap_or("").to_owned();
                let h = hosts
                    .entry(host.clone())
                    .or_insert_with(|| HostFigures { host, ..Default::default() });
                let v = Some((r.sum / r.count.max(1) as f64 * 100.0).round() / 100.0);
                match metric {
                    "host.cpu_pct" => h.cpu_pct = v,
                    "host.mem_pct" => h.mem_pct = v,
                    "host.disk_pct" => h.disk_pct = v,
                    "host.net_rx_bytes_per_s" => h.net_rx_bytes_per_s = v,
                    _ => h.net_tx_bytes_per_s = v,
                }
            }
        }
        Ok(hosts.into_values().collect())
    }

    /// A series over `window` in points of `step` (`1m`, `5m`, `1h`, ...), filtered by labels.
    ///
    /// # Errors
    /// `invalid_query` for an unknown metric or filter, a platform metric asked by an
    /// organization, or a step that does not fit the window; database failures.
    pub async fn performance_trends(
        &self,
        who: &Principal,
        metric: &str,
        window: &str,
        step: Option<&str>,
        filters: BTreeMap<String, String>,
    ) -> crate::Result<Trend> {
        let invalid = |m: String| crate::Error::invalid("invalid_query", m);
        let Some((_, scope)) = SERIES.iter().find(|(m, _)| *m == metric) else {
            let names: Vec<&str> = SERIES.iter().map(|(m, _)| *m).collect();
            return Err(invalid(format!("unknown metric `{metric}`; one of {}", names.join(", "))));
        };
        let org = view_of(who);
        if org.is_some() && *scope == SeriesScope::Platform {
            return Err(crate::Error::Forbidden(format!(
                "{metric} is platform-wide: it needs the scope platform:admin"
            )));
        }
        if let Some(bad) = filters.keys().find(|k| !TREND_FILTERS.contains(&k.as_str())) {
            return Err(invalid(format!(
                "unknown filter `{bad}`; one of {}",
                TREND_FILTERS.join(", ")
            )));
        }
        let span = window_span(window)?;
        let resolution: i64 = if span > chrono::Duration::hours(24) { 3600 } else { 60 };
        let default_step = if resolution == 3600 { "1h" } else { "1m" };
        let step_text = step.unwrap_or(default_step);
        let step_secs = agentyard_runtime::config::parse_duration(step_text)
            .map(|d| d.as_secs() as i64)
            .filter(|s| *s > 0 && s % resolution == 0)
            .ok_or_else(|| {
                invalid(format!(
                    "step `{step_text}` must be a whole number of {} for the window {window}",
                    if resolution == 3600 { "hours" } else { "minutes" }
                ))
            })?;
        if span.num_seconds() / step_secs > 1_500 {
            return Err(invalid(format!("step `{step_text}` gives too many points for {window}")));
        }
        let until = Utc::now();
        let since = until - span;
        let rows = self.store.buckets(metric, resolution as i32, org, since, until).await?;
        let keep = |key: &str| filters.iter().all(|(k, v)| key_value(key, k) == Some(v.as_str()));
        Ok(Trend {
            metric: metric.to_owned(),
            window: window.to_owned(),
            step_secs,
            since,
            until,
            points: points(&rows, since, until, step_secs, keep),
            filters,
        })
    }

    /// Alerts, newest first: every one for operators, else the caller's organization's.
    ///
    /// # Errors
    /// `invalid_query` for another status; database failures.
    pub async fn alerts(
        &self,
        who: &Principal,
        status: Option<&str>,
        limit: i64,
    ) -> crate::Result<Vec<AlertRow>> {
        let status = match status {
            None | Some("all") => None,
            Some(s @ ("open" | "resolved")) => Some(s),
            Some(_) => {
                return Err(crate::Error::invalid(
                    "invalid_query",
                    "status must be open, resolved or all",
                ));
            }
        };
        Ok(self.store.alerts(status, view_of(who), limit).await?)
    }

    /// An alert and its webhook deliveries.
    ///
    /// # Errors
    /// `alert_not_found` (also for another organization's); database failures.
    pub async fn alert(&self, who: &Principal, id: uuid::Uuid) -> crate::Result<AlertDetail> {
        let alert = self
            .store
            .alert(id, view_of(who))
            .await?
            .ok_or(crate::Error::NotFound(crate::Entity::Alert))?;
        // The webhooks are the operator's (their URLs may hold credentials).
        let deliveries = match view_of(who) {
            None => self.store.alert_deliveries(id).await?,
            Some(_) => Vec::new(),
        };
        Ok(AlertDetail { alert, deliveries })
    }

    /// Resolves an open alert by hand: it opens again only after its condition cleared.
    ///
    /// # Errors
    /// `alert_not_found`; `alert_resolved` when it is resolved already; database failures.
    pub async fn resolve_alert(&self, who: &Principal, id: uuid::Uuid) -> crate::Result<AlertRow> {
        let org = view_of(who);
        let by = match who.user_id {
            Some(u) => format!("user:{u}"),
            None => format!("token:{}", who.token_id),
        };
        let urls = self.alerts.webhook_urls();
        if let Some(row) = self.store.resolve_alert(id, org, &by, &urls).await? {
            return Ok(row);
        }
        match self.store.alert(id, org).await? {
            None => Err(crate::Error::NotFound(crate::Entity::Alert)),
            Some(_) => {
                Err(crate::Error::conflict("alert_resolved", "the alert is resolved already"))
            }
        }
    }
}

/// `GET /v1/system/alerts/{id}`.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct AlertDetail {
    #[serde(flatten)]
    pub alert: AlertRow,
    /// Each delivery to a webhook, with its attempts (operators only: the webhooks are theirs).
    pub deliveries: Vec<DeliveryRow>,
}
