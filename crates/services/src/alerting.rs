//! Alert rules (`config/alerts.yaml`) and what they decide: given what the monitor measured
//! now, which conditions start, which alerts open and which resolve. The decision is pure
//! ([`evaluate`]); the monitor carries it out through the store.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::Duration;

use agentyard_store::alerts::{AlertRow, ConditionRow, NewAlert};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use uuid::Uuid;

/// What stands for a secret a process without it does not need.
const NO_SECRET: &str = "(not set in this process)";

/// The compiled-in `config/alerts.yaml`.
pub const DEFAULT_FILE: &str = include_str!("../../../config/alerts.yaml");

/// Every metric a rule may watch.
pub const METRICS: [&str; 8] = [
    "host.cpu_pct",
    "host.mem_pct",
    "host.disk_pct",
    "service.down_seconds",
    "run.latency_p95_seconds",
    "tool.error_rate_pct",
    "queue.oldest_pending_seconds",
    "dead_letters.growth",
];

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, serde::Serialize, utoipa::ToSchema)]
pub enum Comparison {
    #[serde(rename = ">")]
    Above,
    #[serde(rename = ">=")]
    AtLeast,
    #[serde(rename = "<")]
    Below,
    #[serde(rename = "<=")]
    AtMost,
}

impl Comparison {
    fn holds(self, value: f64, threshold: f64) -> bool {
        match self {
            Self::Above => value > threshold,
            Self::AtLeast => value >= threshold,
            Self::Below => value < threshold,
            Self::AtMost => value <= threshold,
        }
    }

    fn symbol(self) -> &'static str {
        match self {
            Self::Above => ">",
            Self::AtLeast => ">=",
            Self::Below => "<",
            Self::AtMost => "<=",
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: String,
    metric: String,
    comparison: Comparison,
    threshold: f64,
    #[serde(default, rename = "for")]
    for_: Option<String>,
    #[serde(default)]
    severity: Option<String>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebhook {
    url: String,
    secret_env: String,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    rules: Vec<RawRule>,
    #[serde(default)]
    webhooks: Vec<RawWebhook>,
}

/// A rule.
#[derive(Clone, Debug, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct Rule {
    pub name: String,
    pub metric: String,
    pub comparison: Comparison,
    pub threshold: f64,
    /// How long the condition holds before the alert opens, in seconds.
    pub for_secs: u64,
    pub severity: String,
}

/// A webhook alerts go to, with its secret.
#[derive(Clone, PartialEq)]
pub struct Webhook {
    pub url: String,
    pub secret: String,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook").field("url", &self.url).finish_non_exhaustive()
    }
}

/// `config/alerts.yaml`, checked.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AlertConfig {
    pub rules: Vec<Rule>,
    pub webhooks: Vec<Webhook>,
}

impl AlertConfig {
    /// `<dir>/alerts.yaml` when `dir` holds one, else the compiled-in file; webhook secrets
    /// are read from the environment through `env`.
    ///
    /// # Errors
    /// Every problem, with the file's name and the rule's.
    pub fn load(dir: Option<&Path>, env: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        match dir.map(|d| d.join("alerts.yaml")).filter(|p| p.exists()) {
            None => Self::parse("config/alerts.yaml", DEFAULT_FILE, env),
            Some(path) => {
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                Self::parse(&path.display().to_string(), &text, env)
            }
        }
    }

    /// As [`AlertConfig::load`] for a process that only queues deliveries (the API): the
    /// webhooks' secrets, which only the monitor needs, may be absent (empty).
    ///
    /// # Errors
    /// Every other problem.
    pub fn load_without_secrets(dir: Option<&Path>) -> Result<Self, String> {
        Self::load(dir, |k| Some(std::env::var(k).unwrap_or_else(|_| NO_SECRET.to_owned())))
    }

    /// Parses and checks a file's text; `name` is used in messages.
    ///
    /// # Errors
    /// As [`AlertConfig::load`].
    pub fn parse(
        name: &str,
        yaml: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, String> {
        let file: RawFile = serde_saphyr::from_str(yaml).map_err(|e| format!("{name}: {e}"))?;
        let mut problems = Vec::new();
        let mut rules = Vec::new();
        let mut seen = std::collections::BTreeSet::new();
        for (i, r) in file.rules.into_iter().enumerate() {
            let at = format!("rules[{i}] ({})", r.name);
            if r.name.is_empty()
                || !r.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                problems.push(format!("{at}.name: letters, digits, _ and - only"));
            }
            if !seen.insert(r.name.clone()) {
                problems.push(format!("{at}.name: another rule has this name"));
            }
            if !METRICS.contains(&r.metric.as_str()) {
                problems.push(format!(
                    "{at}.metric: unknown metric `{}` (one of {})",
                    r.metric,
                    METRICS.join(", ")
                ));
            }
            if !r.threshold.is_finite() {
                problems.push(format!("{at}.threshold: not a number"));
            }
            let for_secs = match r.for_.as_deref() {
                None => 0,
                Some(v) => match agentyard_runtime::config::parse_duration(v) {
                    Some(d) => d.as_secs(),
                    None => {
                        problems.push(format!("{at}.for: `{v}` is not a duration like 30s or 2m"));
                        0
                    }
                },
            };
            let severity = r.severity.unwrap_or_else(|| "warning".to_owned());
            if !["info", "warning", "critical"].contains(&severity.as_str()) {
                problems.push(format!("{at}.severity: one of info, warning, critical"));
            }
            rules.push(Rule {
                name: r.name,
                metric: r.metric,
                comparison: r.comparison,
                threshold: r.threshold,
                for_secs,
                severity,
            });
        }
        let mut webhooks = Vec::new();
        for (i, w) in file.webhooks.into_iter().enumerate() {
            let at = format!("webhooks[{i}]");
            match reqwest::Url::parse(&w.url) {
                Ok(u) if matches!(u.scheme(), "http" | "https") => {}
                _ => problems.push(format!("{at}.url: `{}` is not an http(s) URL", w.url)),
            }
            match env(&w.secret_env) {
                Some(secret) if !secret.is_empty() => webhooks.push(Webhook { url: w.url, secret }),
                _ => problems.push(format!(
                    "{at}.secret_env: the environment variable {} is not set",
                    w.secret_env
                )),
            }
        }
        if problems.is_empty() {
            Ok(Self { rules, webhooks })
        } else {
            Err(format!("{name}: {}", problems.join("; ")))
        }
    }

    /// The webhooks' URLs.
    pub fn webhook_urls(&self) -> Vec<String> {
        self.webhooks.iter().map(|w| w.url.clone()).collect()
    }

    /// The secret of the webhook at `url`.
    pub fn secret_of(&self, url: &str) -> Option<&str> {
        self.webhooks.iter().find(|w| w.url == url).map(|w| w.secret.as_str())
    }
}

/// A metric's value for one subject, now.
#[derive(Clone, Debug, PartialEq)]
pub struct Reading {
    pub subject: String,
    /// The organization the subject belongs to (its MCP server).
    pub org_id: Option<Uuid>,
    pub value: f64,
}

/// What to do.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// The condition holds from now on; the alert waits for the rule's `for`.
    Note {
        rule: String,
        subject: String,
        since: DateTime<Utc>,
    },
    /// The condition no longer holds.
    Clear {
        rule: String,
        subject: String,
    },
    Open(NewAlert),
    /// The condition of an open alert cleared.
    Resolve {
        id: Uuid,
    },
}

/// Decides, for every rule and subject, what changes at `now` given the `readings` per metric,
/// the conditions noted and the open alerts. A metric absent from `readings` was not measured
/// (its source failed): its rules change nothing; one present with no readings holds of no
/// subject.
pub fn evaluate(
    rules: &[Rule],
    readings: &HashMap<&str, Vec<Reading>>,
    conditions: &[ConditionRow],
    open: &[AlertRow],
    now: DateTime<Utc>,
) -> Vec<Action> {
    let conditions: HashMap<(&str, &str), &ConditionRow> =
        conditions.iter().map(|c| ((c.rule.as_str(), c.subject.as_str()), c)).collect();
    let open: HashMap<(&str, &str), &AlertRow> =
        open.iter().map(|a| ((a.rule.as_str(), a.subject.as_str()), a)).collect();
    let mut actions = Vec::new();
    for rule in rules {
        let Some(measured) = readings.get(rule.metric.as_str()) else { continue };
        let holding: BTreeMap<&str, &Reading> = measured
            .iter()
            .filter(|r| rule.comparison.holds(r.value, rule.threshold))
            .map(|r| (r.subject.as_str(), r))
            .collect();
        for (subject, reading) in &holding {
            let key = (rule.name.as_str(), *subject);
            if open.contains_key(&key) {
                continue;
            }
            let since = match conditions.get(&key) {
                Some(c) if c.acknowledged => continue,
                Some(c) => c.since,
                None => now,
            };
            if (now - since).num_milliseconds() >= i64::try_from(rule.for_secs * 1000).unwrap_or(0)
            {
                actions.push(Action::Open(NewAlert {
                    rule: rule.name.clone(),
                    subject: (*subject).to_owned(),
                    org_id: reading.org_id,
                    severity: rule.severity.clone(),
                    message: format!(
                        "{} of {subject} is {} ({} {})",
                        rule.metric,
                        round(reading.value),
                        rule.comparison.symbol(),
                        rule.threshold
                    ),
                    value: reading.value,
                    threshold: rule.threshold,
                }));
            } else if !conditions.contains_key(&key) {
                actions.push(Action::Note {
                    rule: rule.name.clone(),
                    subject: (*subject).to_owned(),
                    since: now,
                });
            }
        }
        for ((r, subject), alert) in &open {
            if *r == rule.name && !holding.contains_key(subject) {
                actions.push(Action::Resolve { id: alert.id });
            }
        }
        for (r, subject) in conditions.keys() {
            if *r == rule.name && !holding.contains_key(subject) {
                actions.push(Action::Clear { rule: rule.name.clone(), subject: (*subject).into() });
            }
        }
    }
    actions
}

fn round(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

/// How long to wait after `attempts` failed delivery attempts: 1 s doubling to 5 minutes;
/// None after the 10th (given up).
pub fn delivery_backoff(attempts: i32) -> Option<Duration> {
    (attempts < 10)
        .then(|| Duration::from_secs(1u64 << (attempts - 1).clamp(0, 9)).min(MAX_BACKOFF))
}

const MAX_BACKOFF: Duration = Duration::from_secs(300);

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap()
    }

    fn rule(for_secs: u64) -> Rule {
        Rule {
            name: "cpu".into(),
            metric: "host.cpu_pct".into(),
            comparison: Comparison::Above,
            threshold: 80.0,
            for_secs,
            severity: "warning".into(),
        }
    }

    fn reading(subject: &str, value: f64) -> Reading {
        Reading { subject: subject.into(), org_id: None, value }
    }

    fn alert(id: Uuid, subject: &str) -> AlertRow {
        AlertRow {
            id,
            rule: "cpu".into(),
            subject: subject.into(),
            org_id: None,
            severity: "warning".into(),
            status: "open".into(),
            message: String::new(),
            value: 90.0,
            threshold: 80.0,
            opened_at: t(0),
            resolved_at: None,
            resolved_by: None,
        }
    }

    #[test]
    fn the_default_file_is_valid() {
        let c = AlertConfig::parse("config/alerts.yaml", DEFAULT_FILE, |_| None).unwrap();
        assert_eq!(c.rules.len(), 8);
        assert!(c.webhooks.is_empty());
        let cpu = c.rules.iter().find(|r| r.metric == "host.cpu_pct").unwrap();
        assert_eq!((cpu.threshold, cpu.for_secs), (80.0, 120));
    }

    #[test]
    fn every_problem_is_named() {
        let yaml = "rules:\n  - {name: a, metric: host.cpu, comparison: '>', threshold: 1, for: soon}\n  \
                    - {name: a, metric: host.mem_pct, comparison: '>', threshold: 1, severity: loud}\n\
                    webhooks:\n  - {url: 'ftp://x', secret_env: NOPE}\n";
        let e = AlertConfig::parse("alerts.yaml", yaml, |_| None).unwrap_err();
        for part in [
            "rules[0] (a).metric: unknown metric `host.cpu`",
            "rules[0] (a).for: `soon`",
            "rules[1] (a).name: another rule",
            "rules[1] (a).severity",
            "webhooks[0].url",
            "webhooks[0].secret_env: the environment variable NOPE is not set",
        ] {
            assert!(e.contains(part), "{part} missing from {e}");
        }
        let bad_field = "rules:\n  - {name: a, metric: host.cpu_pct, comparison: '>', threshold: 1, \
                         above: 3}\n";
        assert!(AlertConfig::parse("alerts.yaml", bad_field, |_| None).is_err());
        let with_secret = "webhooks:\n  - {url: 'http://127.0.0.1:9/x', secret_env: S}\n";
        let c = AlertConfig::parse("a", with_secret, |k| (k == "S").then(|| "s3".into())).unwrap();
        assert_eq!(c.secret_of("http://127.0.0.1:9/x"), Some("s3"));
    }

    #[test]
    fn an_alert_waits_for_its_rule_then_opens_once_and_resolves() {
        let rules = [rule(60)];
        let hot = HashMap::from([("host.cpu_pct", vec![reading("host:a", 95.0)])]);
        // First seen: noted, not opened.
        let a = evaluate(&rules, &hot, &[], &[], t(0));
        assert_eq!(a, [Action::Note { rule: "cpu".into(), subject: "host:a".into(), since: t(0) }]);
        let noted = ConditionRow {
            rule: "cpu".into(),
            subject: "host:a".into(),
            since: t(0),
            acknowledged: false,
        };
        assert!(evaluate(&rules, &hot, std::slice::from_ref(&noted), &[], t(30)).is_empty());
        let a = evaluate(&rules, &hot, std::slice::from_ref(&noted), &[], t(60));
        assert!(matches!(&a[..], [Action::Open(n)] if n.subject == "host:a" && n.value == 95.0));
        // Open: nothing more while it holds.
        let id = Uuid::now_v7();
        assert!(evaluate(&rules, &hot, &[], &[alert(id, "host:a")], t(90)).is_empty());
        // Cleared: resolved.
        let cool = HashMap::from([("host.cpu_pct", vec![reading("host:a", 20.0)])]);
        assert_eq!(
            evaluate(&rules, &cool, &[], &[alert(id, "host:a")], t(100)),
            [Action::Resolve { id }]
        );
        // A subject no longer reported resolves too; a condition that cleared is forgotten.
        let none = HashMap::from([("host.cpu_pct", vec![])]);
        assert_eq!(
            evaluate(&rules, &none, std::slice::from_ref(&noted), &[], t(100)),
            [Action::Clear { rule: "cpu".into(), subject: "host:a".into() }]
        );
        // A metric not measured this round (its source failed) changes nothing.
        let open = [alert(id, "host:a")];
        assert!(evaluate(&rules, &HashMap::new(), &[noted], &open, t(100)).is_empty());
    }

    #[test]
    fn a_hand_resolved_alert_stays_resolved_while_its_condition_holds() {
        let rules = [rule(0)];
        let hot = HashMap::from([("host.cpu_pct", vec![reading("host:a", 95.0)])]);
        assert!(matches!(&evaluate(&rules, &hot, &[], &[], t(0))[..], [Action::Open(_)]));
        let acked = ConditionRow {
            rule: "cpu".into(),
            subject: "host:a".into(),
            since: t(0),
            acknowledged: true,
        };
        assert!(evaluate(&rules, &hot, std::slice::from_ref(&acked), &[], t(10)).is_empty());
        let cool = HashMap::from([("host.cpu_pct", vec![reading("host:a", 10.0)])]);
        assert_eq!(
            evaluate(&rules, &cool, &[acked], &[], t(20)),
            [Action::Clear { rule: "cpu".into(), subject: "host:a".into() }]
        );
    }

    #[test]
    fn deliveries_back_off_then_give_up() {
        assert_eq!(delivery_backoff(1), Some(Duration::from_secs(1)));
        assert_eq!(delivery_backoff(4), Some(Duration::from_secs(8)));
        assert_eq!(delivery_backoff(9), Some(Duration::from_secs(256)));
        assert_eq!(delivery_backoff(10), None);
    }
}
