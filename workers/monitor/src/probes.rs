//! Probing and alerting, every `AY_MONITOR_PROBE_EVERY`: Postgres and NATS, the job queues and
//! dead letters, the hosts (from the heartbeats), and every `AY_MONITOR_SLOW_PROBE_EVERY` the
//! model aliases (`GET /models`, which spends no tokens) and every MCP server (`tools/list`
//! within a timeout). The figures go to the series; then each alert rule is evaluated against
//! what was measured, and alerts open and resolve.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use agentyard_core::tools::BUILTIN_SERVER;
use agentyard_mcp::{Client, ServerConfig};
use agentyard_services::alerting::{Action, Reading, evaluate};
use agentyard_services::series::{Merged, key_value};
use agentyard_store::alerts::{AlertRow, ConditionRow};
use agentyard_store::series::ProbeResult;
use agentyard_store::tool_tokens::{self, ToolClaims};
use chrono::Utc;
use futures::StreamExt;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::Ctx;
use crate::counting::Tally;

/// How far back `run.latency_p95_seconds` and `tool.error_rate_pct` look.
const RECENT: chrono::TimeDelta = chrono::TimeDelta::minutes(5);
/// How far back `dead_letters.growth` looks.
const DEAD_LETTER_WINDOW: Duration = Duration::from_secs(600);
/// Tool calls in the recent window below which no error rate is computed.
const MIN_TOOL_CALLS: i64 = 10;

pub(crate) async fn run(ctx: Ctx, stop: CancellationToken) {
    let mut state = State::default();
    loop {
        round(&ctx, &mut state).await;
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(ctx.settings.monitor_probe_every) => {}
        }
    }
}

/// The slow probes (models, MCP servers), in a loop of their own: many slow servers never
/// delay the platform's probes and alerts.
pub(crate) async fn run_slow(ctx: Ctx, stop: CancellationToken) {
    let mut unwritten = Vec::new();
    loop {
        let mut results = probe_models(&ctx).await;
        results.extend(probe_mcp_servers(&ctx).await);
        let mut tally = Tally::default();
        if record(&ctx, &mut unwritten, results, &mut tally).await {
            forget_gone(&ctx).await;
        }
        if let Err(e) =
            ctx.store.add_buckets((crate::LEASE, &ctx.holder), None, &tally.drain()).await
        {
            tracing::warn!(error = %e, "cannot write the probes' figures");
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(ctx.settings.monitor_slow_probe_every) => {}
        }
    }
}

#[derive(Default)]
struct State {
    /// Outcomes not yet written (Postgres was down): written in order when it answers.
    unwritten: Vec<ProbeResult>,
    /// The dead-letter count over the last window.
    dead: VecDeque<(Instant, u64)>,
}

/// Writes the probes' outcomes (with those Postgres could not take before, in order) and their
/// latencies; false while Postgres does not take them.
async fn record(
    ctx: &Ctx,
    unwritten: &mut Vec<ProbeResult>,
    results: Vec<ProbeResult>,
    tally: &mut Tally,
) -> bool {
    for r in &results {
        if let Some(ms) = r.latency_ms {
            tally.observe("probe.latency_ms", r.at, Uuid::nil(), format!("probe={}", r.name), ms);
        }
    }
    unwritten.extend(results);
    let mut written = 0;
    for r in unwritten.iter() {
        match ctx.store.record_probe(r).await {
            Ok(Some(_)) => {
                if r.up {
                    tracing::info!(probe = r.name, "a probe answers: up");
                } else {
                    tracing::warn!(
                        probe = r.name,
                        error = r.error.as_deref().unwrap_or(""),
                        "a probe fails: down"
                    );
                }
                written += 1;
            }
            Ok(None) => written += 1,
            Err(e) => {
                tracing::warn!(error = %e, "cannot record the probes; kept for the next round");
                break;
            }
        }
    }
    unwritten.drain(..written);
    unwritten.is_empty()
}

/// Forgets the probes of MCP servers deleted and model aliases gone (or of no model at all).
async fn forget_gone(ctx: &Ctx) {
    let models: Vec<String> = if ctx.model.is_some() {
        ctx.catalog.models().keys().map(|a| format!("model:{a}")).collect()
    } else {
        Vec::new()
    };
    let mcp = mcp_probe_names(ctx).await;
    for (kind, keep) in [("mcp", mcp), ("model", models)] {
        if let Err(e) = ctx.store.forget_probes(kind, &keep).await {
            tracing::warn!(error = %e, kind, "cannot forget the probes of what is gone");
        }
    }
}

async fn timed<F: Future<Output = Result<(), String>>>(
    within: Duration,
    f: F,
) -> (Result<(), String>, f64) {
    let started = Instant::now();
    let r = match tokio::time::timeout(within, f).await {
        Ok(r) => r,
        Err(_) => Err(format!("no answer within {within:?}")),
    };
    (r, started.elapsed().as_secs_f64() * 1e3)
}

fn outcome(name: String, kind: &str, label: String, r: (Result<(), String>, f64)) -> ProbeResult {
    let (result, ms) = r;
    ProbeResult {
        name,
        kind: kind.to_owned(),
        org_id: None,
        label,
        up: result.is_ok(),
        at: Utc::now(),
        latency_ms: Some((ms * 100.0).round() / 100.0),
        error: result.err(),
    }
}

async fn round(ctx: &Ctx, state: &mut State) {
    let now = Utc::now();
    let nil = Uuid::nil();
    let mut tally = Tally::default();
    let mut readings: HashMap<&'static str, Vec<Reading>> = HashMap::new();
    let wait = Duration::from_secs(2);

    let store = ctx.store.clone();
    let pg = timed(wait, async move {
        if store.ping().await { Ok(()) } else { Err("Postgres does not answer".into()) }
    })
    .await;
    let bus = ctx.bus.clone();
    let nats = timed(wait, async move {
        if bus.ping().await { Ok(()) } else { Err("NATS does not answer".into()) }
    })
    .await;
    let results = vec![
        outcome("postgres".into(), "postgres", "Postgres".into(), pg),
        outcome("nats".into(), "nats", "NATS".into(), nats),
    ];
    if !record(ctx, &mut state.unwritten, results, &mut tally).await {
        return; // Postgres is down: nothing else can be read or written.
    }

    match ctx.bus.queue_states().await {
        Ok((queues, dead)) => {
            readings.entry("queue.oldest_pending_seconds").or_default();
            for q in queues {
                let key = format!("consumer={}", q.consumer);
                tally.observe("queue.pending", now, nil, key.clone(), q.pending as f64);
                let oldest = q.oldest_job_age_s.unwrap_or(0.0);
                tally.observe("queue.oldest_pending_seconds", now, nil, key, oldest);
                readings.entry("queue.oldest_pending_seconds").or_default().push(Reading {
                    subject: format!("queue:{}", q.consumer),
                    org_id: None,
                    value: oldest,
                });
            }
            tally.observe("dead_letters", now, nil, String::new(), dead as f64);
            state.dead.push_back((Instant::now(), dead));
            while state.dead.front().is_some_and(|(t, _)| t.elapsed() > DEAD_LETTER_WINDOW) {
                state.dead.pop_front();
            }
            let first = state.dead.front().map_or(dead, |(_, n)| *n);
            readings.entry("dead_letters.growth").or_default().push(Reading {
                subject: "dead_letters".into(),
                org_id: None,
                value: dead.saturating_sub(first) as f64,
            });
        }
        Err(e) => tracing::warn!(error = %e, "cannot read the queues"),
    }

    let fresh = ctx.settings.heartbeat_every * 3;
    let hosts: Vec<_> = {
        let hosts = ctx.hosts.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        hosts
            .iter()
            .filter(|(_, (_, seen))| seen.elapsed() <= fresh)
            .map(|(h, (s, _))| (h.clone(), s.clone()))
            .collect()
    };
    for metric in ["host.cpu_pct", "host.mem_pct", "host.disk_pct"] {
        readings.entry(metric).or_default();
    }
    for (host, s) in hosts {
        let key = format!("host={host}");
        let subject = format!("host:{host}");
        let mut gauge = |metric: &'static str, v: Option<f64>, alert: bool| {
            let Some(v) = v else { return };
            tally.observe(metric, now, nil, key.clone(), v);
            if alert {
                readings.entry(metric).or_default().push(Reading {
                    subject: subject.clone(),
                    org_id: None,
                    value: v,
                });
            }
        };
        gauge("host.cpu_pct", s.cpu_pct, true);
        gauge("host.mem_pct", Some(s.mem_pct), true);
        gauge("host.disk_pct", s.disk_pct, true);
        gauge("host.net_rx_bytes_per_s", s.net_rx_bytes_per_s, false);
        gauge("host.net_tx_bytes_per_s", s.net_tx_bytes_per_s, false);
    }

    recent_figures(ctx, now, &mut readings).await;
    // The open alerts first, then the conditions: an alert resolved by hand in between is
    // then seen open (no change) or acknowledged, never neither.
    let open = ctx.store.alerts(Some("open"), None, 10_000).await;
    if let Ok(open) = &open {
        services_down(ctx, now, open, &mut tally, &mut readings).await;
    }
    if let Err(e) = ctx.store.add_buckets((crate::LEASE, &ctx.holder), None, &tally.drain()).await {
        tracing::warn!(error = %e, "cannot write the probes' figures");
    }
    match (open, ctx.store.alert_conditions().await) {
        (Ok(open), Ok(conditions)) => alert(ctx, &readings, &conditions, &open, now).await,
        (Err(e), _) | (_, Err(e)) => tracing::warn!(error = %e, "cannot read the alerts"),
    }
}

/// `service.down_seconds`: each role seen in the last hour (or with an open alert) with no
/// instance up, and each probe down, with how long; and `instances.up` per role. Not measured
/// (no readings at all) when Postgres cannot say.
async fn services_down(
    ctx: &Ctx,
    now: chrono::DateTime<Utc>,
    open: &[AlertRow],
    tally: &mut Tally,
    readings: &mut HashMap<&'static str, Vec<Reading>>,
) {
    let (Ok(instances), Ok(probes)) = tokio::join!(
        ctx.store.instances(now - chrono::TimeDelta::hours(24)),
        ctx.store.probes(None)
    ) else {
        return;
    };
    let mut down = Vec::new();
    let mut roles: HashMap<&str, (usize, chrono::DateTime<Utc>)> = HashMap::new();
    for i in &instances {
        let r = roles.entry(i.role.as_str()).or_insert((0, i.status_since));
        if i.status == "up" {
            r.0 += 1;
        }
        r.1 = r.1.max(i.status_since);
    }
    let recent = now - chrono::TimeDelta::hours(1);
    for (role, (up, since)) in roles {
        let subject = format!("role:{role}");
        let alerted = open.iter().any(|a| a.subject == subject);
        if up > 0 || since >= recent || alerted {
            tally.observe("instances.up", now, Uuid::nil(), format!("role={role}"), up as f64);
        }
        if up == 0 && (since >= recent || alerted) {
            let secs = (now - since).num_milliseconds() as f64 / 1e3;
            down.push(Reading { subject, org_id: None, value: secs });
        }
    }
    for p in probes.into_iter().filter(|p| p.status == "down") {
        let secs = (now - p.status_since).num_milliseconds() as f64 / 1e3;
        down.push(Reading { subject: format!("probe:{}", p.name), org_id: p.org_id, value: secs });
    }
    readings.insert("service.down_seconds", down);
}

/// `run.latency_p95_seconds` and `tool.error_rate_pct` over the recent minutes, platform-wide.
async fn recent_figures(
    ctx: &Ctx,
    now: chrono::DateTime<Utc>,
    readings: &mut HashMap<&'static str, Vec<Reading>>,
) {
    let since = now - RECENT;
    if let Ok(rows) = ctx.store.buckets("run.latency_ms", 60, None, since, now).await {
        readings.entry("run.latency_p95_seconds").or_default();
        let mut m = Merged::default();
        rows.iter().for_each(|r| m.add(r));
        if let Some(p95) = m.quantile(0.95) {
            readings.entry("run.latency_p95_seconds").or_default().push(Reading {
                subject: "runs".into(),
                org_id: None,
                value: p95 / 1e3,
            });
        }
    }
    if let Ok(rows) = ctx.store.buckets("tool.latency_ms", 60, None, since, now).await {
        readings.entry("tool.error_rate_pct").or_default();
        let total: i64 = rows.iter().map(|r| r.count).sum();
        let errors: i64 = rows
            .iter()
            .filter(|r| key_value(&r.key, "outcome") == Some("error"))
            .map(|r| r.count)
            .sum();
        if total >= MIN_TOOL_CALLS {
            readings.entry("tool.error_rate_pct").or_default().push(Reading {
                subject: "tools".into(),
                org_id: None,
                value: 100.0 * errors as f64 / total as f64,
            });
        }
    }
}

/// Carries out what the rules decide.
async fn alert(
    ctx: &Ctx,
    readings: &HashMap<&'static str, Vec<Reading>>,
    conditions: &[ConditionRow],
    open: &[AlertRow],
    now: chrono::DateTime<Utc>,
) {
    let urls = ctx.alerts.webhook_urls();
    for action in evaluate(&ctx.alerts.rules, readings, conditions, open, now) {
        let done = match &action {
            Action::Note { rule, subject, since } => {
                ctx.store.note_condition(rule, subject, *since).await
            }
            Action::Clear { rule, subject } => ctx.store.clear_condition(rule, subject).await,
            Action::Open(a) => match ctx.store.open_alert(a, &urls).await {
                Ok(Some(row)) => {
                    tracing::warn!(alert = %row.id, rule = row.rule, subject = row.subject,
                        severity = row.severity, "alert opened: {}", row.message);
                    Ok(())
                }
                Ok(None) => Ok(()),
                Err(e) => Err(e),
            },
            Action::Resolve { id } => match ctx.store.resolve_alert(*id, None, "auto", &urls).await
            {
                Ok(Some(row)) => {
                    tracing::info!(alert = %row.id, rule = row.rule, subject = row.subject,
                        "alert resolved: its condition cleared");
                    Ok(())
                }
                Ok(None) => Ok(()),
                Err(e) => Err(e),
            },
        };
        if let Err(e) = done {
            tracing::warn!(error = %e, ?action, "cannot carry out an alert decision");
        }
    }
}

/// One `GET /models` for every alias: an alias is up when the server answers and lists the
/// model it names (or names none).
async fn probe_models(ctx: &Ctx) -> Vec<ProbeResult> {
    let Some(endpoint) = &ctx.model else { return Vec::new() };
    let started = Instant::now();
    let listed: Result<Vec<String>, String> = async {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| e.to_string())?;
        let mut req = client.get(format!("{}/models", endpoint.base_url.trim_end_matches('/')));
        if let Some(key) = &endpoint.api_key {
            req = req.bearer_auth(key);
        }
        let resp = req.send().await.map_err(|e| format!("cannot reach the model server: {e}"))?;
        if !resp.status().is_success() {
            return Err(format!("GET /models answered {}", resp.status()));
        }
        let v: serde_json::Value = resp.json().await.map_err(|e| e.to_string())?;
        Ok(v["data"]
            .as_array()
            .map(|a| a.iter().filter_map(|m| m["id"].as_str().map(str::to_owned)).collect())
            .unwrap_or_default())
    }
    .await;
    let ms = started.elapsed().as_secs_f64() * 1e3;
    ctx.catalog
        .models()
        .iter()
        .map(|(alias, m)| {
            let result = match (&listed, &m.model) {
                (Err(e), _) => Err(e.clone()),
                (Ok(ids), Some(name)) if !ids.is_empty() && !ids.contains(name) => {
                    Err(format!("the model server does not list `{name}`"))
                }
                (Ok(_), _) => Ok(()),
            };
            outcome(format!("model:{alias}"), "model", alias.clone(), (result, ms))
        })
        .collect()
}

async fn mcp_probe_names(ctx: &Ctx) -> Vec<String> {
    let mut names = vec![format!("mcp:{BUILTIN_SERVER}")];
    names.extend(ctx.mcp_servers.0.keys().map(|n| format!("mcp:{n}")));
    if let Ok(servers) = ctx.store.every_mcp_server().await {
        names.extend(servers.into_iter().map(|(id, ..)| format!("mcp:{id}")));
    }
    names
}

/// `tools/list` of the built-in server, the operator's servers and every organization's.
async fn probe_mcp_servers(ctx: &Ctx) -> Vec<ProbeResult> {
    let key = match ctx.store.tool_token_key().await {
        Ok(k) => k,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the tool token key");
            return Vec::new();
        }
    };
    let claims = ToolClaims::listing();
    let mut targets: Vec<(String, Option<Uuid>, String, ServerConfig)> = vec![(
        format!("mcp:{BUILTIN_SERVER}"),
        None,
        BUILTIN_SERVER.to_owned(),
        ServerConfig::Http {
            url: ctx.settings.mcp_url.clone(),
            bearer_token: Some(tool_tokens::mint(&key, &claims)),
        },
    )];
    for (name, config) in &ctx.mcp_servers.0 {
        targets.push((format!("mcp:{name}"), None, name.clone(), config.clone()));
    }
    match ctx.store.every_mcp_server().await {
        Ok(servers) => {
            for (id, org, name, url, bearer_token) in servers {
                let allow_private = ctx.settings.mcp_allow_private;
                let config = ServerConfig::Registered { url, bearer_token, allow_private };
                targets.push((format!("mcp:{id}"), Some(org.0), name, config));
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot read the organizations' MCP servers"),
    }
    let timeout = ctx.settings.tool_timeout.min(Duration::from_secs(5));
    futures::stream::iter(targets)
        .map(|(name, org, label, config)| async move {
            let r = timed(timeout + Duration::from_secs(1), async {
                let client = Client::connect(&config, None, None, timeout)
                    .await
                    .map_err(|e| e.to_string())?;
                let listed = client.list_tools().await;
                client.close().await;
                listed.map(|_| ()).map_err(|e| e.to_string())
            })
            .await;
            let mut p = outcome(name, "mcp", label, r);
            p.org_id = org;
            p
        })
        .buffer_unordered(8)
        .collect()
        .await
}
