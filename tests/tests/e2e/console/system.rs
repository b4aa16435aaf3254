//! The console's system page in a real Chromium: see `tests/console/system.test.mjs`.
//!
//! It runs on the separate-roles stack of the harness (an API, an agent worker, the built-in
//! tool server and its worker, a monitor: one process each), not on `agentyard dev`: the test
//! stops the agent worker to raise an alert, and `dev` runs every role in one process, where
//! one role cannot be stopped alone.

use std::path::Path;
use std::time::{Duration, Instant};

use agentyard_core::Scope;
use agentyard_e2e::{TestApp, TestOptions};
use reqwest::Method;
use serde_json::{Value, json};

use super::{assert_screenshots, browser, shots_dir};

/// Heartbeats and probes every few hundred milliseconds (as in `monitoring.rs`), so a stopped
/// worker is seen within a second or two.
const FAST: [(&str, &str); 3] = [
    ("AY_HEARTBEAT_EVERY", "300ms"),
    ("AY_MONITOR_PROBE_EVERY", "300ms"),
    ("AY_MONITOR_SLOW_PROBE_EVERY", "600ms"),
];

async fn get(app: &TestApp, token: &str, path: &str) -> Value {
    let (code, body) = app.call(Method::GET, path, token, None).await;
    assert_eq!(code, 200, "{path}: {body}");
    body
}

#[tokio::test]
async fn an_alert_raised_by_stopping_a_worker_is_seen_and_resolved_on_the_system_page() {
    // `service_unavailable` opens as soon as a role has had no instance up for half a second
    // (the shipped rule waits 30 s).
    let dir = std::env::temp_dir().join(format!("ay-console-alerts-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("alerts.yaml"),
        "rules:\n  - {name: service_unavailable, metric: service.down_seconds, \
         comparison: '>', threshold: 0.5, for: 0s, severity: critical}\nwebhooks: []\n",
    )
    .unwrap();
    let dir_s = dir.display().to_string();
    let env = FAST
        .iter()
        .chain(&[("AY_CONFIG_DIR", dir_s.as_str())])
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    // Worker 0 is the agent worker; the tool server and its worker come next.
    let mut app = TestApp::spawn_with(TestOptions { tools: true, env, ..Default::default() }).await;
    app.wait_tools().await;
    app.start_role("monitor", &["worker", "monitor"]).expect("monitor");
    // The operator's token: the platform's view, and the organization's scopes to log in.
    let org = app.org_id.parse().unwrap();
    let ops = app.store.create_token(org, "ops", &Scope::ALL).await.unwrap();

    // One run, for the figures and the trend.
    let run = app.start_run("hello").await;
    let run = app.wait_terminal(run["id"].as_str().unwrap(), Duration::from_secs(60)).await;
    assert_eq!(run["status"], "completed", "{run}");

    // Everything up and probed, the run counted, no alert yet: what the page first shows.
    let deadline = Instant::now() + Duration::from_secs(40);
    let report = loop {
        let r = get(&app, &ops.secret, "/v1/system/health-report").await;
        let probes = r["dependencies"].as_array().unwrap();
        let counted = r["last_hour"]["runs_total"] == 1;
        if r["status"] == "ok" && probes.len() >= 5 && r["roles"]["monitor"]["up"] == 1 && counted {
            break r;
        }
        assert!(Instant::now() < deadline, "the stack never looked healthy: {r:#}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(get(&app, &ops.secret, "/v1/system/alerts").await, json!([]));
    let mut probes: Vec<&str> = report["dependencies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    probes.sort_unstable();
    // What the API answers an organization's admin for the operators' views.
    let (code, refused) = app.call(Method::GET, "/v1/system/status", &app.token, None).await;
    assert_eq!(code, 403, "{refused}");

    // The page is open and shows no alert; then the agent worker is killed, and the page,
    // refreshing itself, shows the alert and resolves it.
    let ready = shots_dir().join(format!("system-ready-{}", app.prefix));
    let _ = std::fs::remove_file(&ready);
    let (url, org_token) = (format!("{}/console", app.api_url), app.token.clone());
    let (ready_s, probes_s) = (ready.display().to_string(), probes.join(","));
    let vars = [
        ("AY_READY_FILE", ready_s.as_str()),
        ("AY_PROBES", &probes_s),
        ("AY_ORG_TOKEN", &org_token),
        ("AY_FORBIDDEN_MESSAGE", refused["error"]["message"].as_str().unwrap()),
    ];
    let page = browser("system", &url, &ops.secret, &vars);
    let stop = async {
        wait_file(&ready).await;
        app.kill_worker(0).await;
    };
    let (result, ()) = tokio::join!(page, stop);
    let _ = std::fs::remove_file(&ready);

    // The alert the page showed is the API's for the agent role, and it was resolved by the
    // page with the operator's token (not by itself: the worker is still down).
    let id = result["alertId"].as_str().unwrap();
    let alert = get(&app, &ops.secret, &format!("/v1/system/alerts/{id}")).await;
    assert_eq!(alert["subject"], "role:agent", "{alert:#}");
    assert_eq!(alert["rule"], "service_unavailable");
    assert_eq!(alert["status"], "resolved", "{alert:#}");
    assert_eq!(alert["resolved_by"], format!("token:{}", ops.id), "{alert:#}");
    assert_eq!(result["resolvedBy"], alert["resolved_by"], "{result}");
    assert!(
        !get(&app, &ops.secret, "/v1/system/alerts?status=open")
            .await
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["subject"] == "role:agent"),
        "resolved by hand, it does not open again while the worker is down"
    );
    // The agent role the page showed down is down.
    let status = get(&app, &ops.secret, "/v1/system/status").await;
    assert_eq!(status["roles"]["agent"]["up"], 0, "{status:#}");
    assert_eq!(result["agentUp"], "0", "{result}");
    // The figures and the trend the page showed are the API's.
    assert_eq!(result["runs"], "1 (completed 1)", "{result}");
    let trend =
        get(&app, &ops.secret, "/v1/system/performance-trends?metric=run.latency_ms&step=1m").await;
    let counted: i64 =
        trend["points"].as_array().unwrap().iter().map(|p| p["count"].as_i64().unwrap()).sum();
    assert_eq!(counted, 1, "{trend:#}");
    assert!(result["observed"].as_str().unwrap().ends_with("; 1 observation."), "{result}");
    // The organization's admin: the health report (its organization's) and its own alerts,
    // the operators' sections refused with the API's message.
    assert_eq!(result["orgScope"], "Organization", "{result}");
    assert_eq!(get(&app, &app.token, "/v1/system/alerts?status=open").await, json!([]));
    assert_screenshots(&["system", "system-alert", "system-375", "system-org"]);
    std::fs::remove_dir_all(dir).ok();
}

/// Waits until the browser script writes `path` (the page is open and shows no alert).
async fn wait_file(path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !path.exists() {
        assert!(Instant::now() < deadline, "the page never got ready ({})", path.display());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
