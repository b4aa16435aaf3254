//! The monitor's figures, probes and alerts, with real processes: the health report matches a
//! known workload exactly (and still does after the monitor is killed mid-count and another
//! takes over), each organization sees its own; a stopped worker and a stopped MCP server
//! raise alerts that signed webhooks hear of, retried, and that resolve by themselves or by
//! hand.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agentyard_e2e::{TestApp, TestOptions};
use reqwest::Method;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const FAST: [(&str, &str); 3] = [
    ("AY_HEARTBEAT_EVERY", "300ms"),
    ("AY_MONITOR_PROBE_EVERY", "300ms"),
    ("AY_MONITOR_SLOW_PROBE_EVERY", "600ms"),
];

fn env(extra: &[(&str, &str)]) -> Vec<(String, String)> {
    FAST.iter().chain(extra).map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

async fn platform_token(app: &TestApp) -> String {
    let org = app.org_id.parse().unwrap();
    app.store
        .create_token(org, "ops", &[agentyard_core::Scope::PlatformAdmin])
        .await
        .unwrap()
        .secret
}

async fn get(app: &TestApp, token: &str, path: &str) -> Value {
    let (code, body) = app.call(Method::GET, path, token, None).await;
    assert_eq!(code, 200, "{path}: {body}");
    body
}

async fn wait_for(
    app: &TestApp,
    token: &str,
    path: &str,
    what: &str,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let v = get(app, token, path).await;
        if pred(&v) {
            return v;
        }
        assert!(Instant::now() < deadline, "never {what}: {v:#}");
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}

async fn ask(app: &TestApp, token: &str, input: &str) -> Value {
    let (code, run) =
        app.call(Method::POST, "/v1/runs", token, Some(json!({"input": input}))).await;
    assert_eq!(code, 202, "{run}");
    let id = run["id"].as_str().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let run = get(app, token, &format!("/v1/runs/{id}?wait=5")).await;
        if ["completed", "failed", "cancelled", "expired"]
            .contains(&run["status"].as_str().unwrap())
        {
            return run;
        }
        assert!(Instant::now() < deadline, "{run}");
    }
}

async fn sum(app: &TestApp, sql: &'static str) -> f64 {
    sqlx::query_scalar::<_, f64>(sql).fetch_one(app.store.pool()).await.expect(sql)
}

fn probe<'a>(report: &'a Value, name: &str) -> Option<&'a Value> {
    report["dependencies"].as_array().unwrap().iter().find(|p| p["name"] == name)
}

#[tokio::test]
async fn the_health_report_counts_a_known_workload_exactly_and_each_org_sees_its_own() {
    let mut app =
        TestApp::spawn_with(TestOptions { tools: true, env: env(&[]), ..Default::default() }).await;
    app.wait_tools().await;
    app.store.seed_demo(app.org_id.parse().unwrap()).await.unwrap();
    let monitor = app.start_role("monitor", &["worker", "monitor"]).expect("monitor");
    let platform = platform_token(&app).await;
    let (_, other) = app.new_org("org-b").await;

    // Org A: four plain runs, one that fails, one with a tool call; org B: two runs.
    for i in 0..4 {
        assert_eq!(ask(&app, &app.token, &format!("hello {i}")).await["status"], "completed");
    }
    assert_eq!(ask(&app, &app.token, "always fail").await["status"], "failed");
    let tool_run = ask(&app, &app.token, "What integrations are active?").await;
    assert_eq!(tool_run["tools_used"], json!(["get_active_integrations"]), "{tool_run}");
    // The monitor is killed once it counted org A's runs; another takes over (when the lease
    // lapses) and counts from the position both share: nothing is counted twice or missed.
    wait_for(&app, &platform, "/v1/system/health-report", "org A's runs counted", |r| {
        r["last_hour"]["runs_total"] == 6
    })
    .await;
    app.kill_worker(monitor).await;
    for i in 0..2 {
        assert_eq!(ask(&app, &other, &format!("from b {i}")).await["status"], "completed");
    }
    app.start_role("monitor", &["worker", "monitor"]).expect("monitor");

    let total = app.count("SELECT count(*) FROM runs").await;
    assert_eq!(total, 8);
    let report = wait_for(&app, &platform, "/v1/system/health-report", "every run counted", |r| {
        r["last_hour"]["runs_total"] == total && r["last_hour"]["tool_calls"] == 1
    })
    .await;
    let hour = &report["last_hour"];
    assert_eq!(report["scope"], "platform");
    assert_eq!(hour["runs"], json!({"completed": 7, "failed": 1}), "{hour:#}");
    let tokens_in = sum(&app, "SELECT sum((usage->>'prompt_tokens')::float8) FROM runs").await;
    let tokens_out = sum(&app, "SELECT sum((usage->>'completion_tokens')::float8) FROM runs").await;
    let cost = sum(&app, "SELECT sum((usage->>'cost_usd')::float8) FROM runs").await;
    assert_eq!(hour["input_tokens"].as_f64(), Some(tokens_in), "{hour:#}");
    assert_eq!(hour["output_tokens"].as_f64(), Some(tokens_out), "{hour:#}");
    assert!((hour["cost_usd"].as_f64().unwrap() - cost).abs() < 1e-6, "{hour:#} vs {cost}");
    assert_eq!(hour["run_latency_ms"]["count"], 8);
    let p95 = hour["run_latency_ms"]["p95"].as_f64().unwrap();
    assert!(p95 > 0.0 && p95 <= hour["run_latency_ms"]["max"].as_f64().unwrap(), "{hour:#}");
    // Every run that streamed an answer has a time to first token (the failed one did not).
    assert_eq!(hour["time_to_first_token_ms"]["count"], 7, "{hour:#}");
    assert_eq!(hour["queue_wait_ms"]["count"], 8, "{hour:#}");
    let tool = &hour["tools"][0];
    assert_eq!(
        (&tool["tool"], &tool["server"], &tool["calls"], &tool["errors"]),
        (&json!("get_active_integrations"), &json!("builtin"), &json!(1), &json!(0)),
        "{hour:#}"
    );
    // The probes: every dependency answers.
    let report = wait_for(&app, &platform, "/v1/system/health-report", "every probe up", |r| {
        ["postgres", "nats", "model:primary", "model:fast", "mcp:builtin"]
            .iter()
            .all(|n| probe(r, n).is_some_and(|p| p["status"] == "up"))
    })
    .await;
    assert!(report["roles"]["agent"]["up"] == 1, "{report:#}");
    assert!(report["queues"].as_array().is_some_and(|q| !q.is_empty()), "{report:#}");
    let hosts = report["hosts"].as_array().unwrap();
    assert!(
        hosts.iter().any(|h| h["mem_pct"].as_f64().is_some_and(|m| m > 0.0 && m < 100.0)),
        "{report:#}"
    );

    // An organization sees its own runs, and nothing of the platform's.
    let mine = get(&app, &other, "/v1/system/health-report").await;
    assert_eq!(mine["scope"], "organization");
    assert_eq!(mine["last_hour"]["runs"], json!({"completed": 2}), "{mine:#}");
    assert!(mine.get("queues").is_none() && mine.get("hosts").is_none(), "{mine:#}");
    let (code, e) = app
        .call(Method::GET, "/v1/system/performance-trends?metric=host.cpu_pct", &other, None)
        .await;
    assert_eq!(code, 403, "{e}");

    // Trends: the runs per minute add up; filters narrow them; bad queries are named.
    let t =
        get(&app, &platform, "/v1/system/performance-trends?metric=run.latency_ms&window=1h").await;
    assert_eq!(t["step_secs"], 60);
    assert!(t["points"].as_array().unwrap().len() >= 60, "{t:#}");
    let counted: i64 =
        t["points"].as_array().unwrap().iter().map(|p| p["count"].as_i64().unwrap()).sum();
    assert_eq!(counted, 8);
    let failed = get(
        &app,
        &app.token,
        "/v1/system/performance-trends?metric=run.latency_ms&window=24h&step=1h&status=failed",
    )
    .await;
    let failed: i64 =
        failed["points"].as_array().unwrap().iter().map(|p| p["count"].as_i64().unwrap()).sum();
    assert_eq!(failed, 1);
    for (query, needle) in [
        ("metric=run.nope", "unknown metric `run.nope`"),
        ("metric=run.latency_ms&window=2y", "window must be"),
        ("metric=run.latency_ms&window=7d&step=5m", "whole number of hours"),
        ("metric=run.latency_ms&colour=red", "unknown filter `colour`"),
    ] {
        let (code, e) = app
            .call(Method::GET, &format!("/v1/system/performance-trends?{query}"), &platform, None)
            .await;
        assert_eq!(code, 422, "{query}: {e}");
        assert!(e["error"]["message"].as_str().unwrap().contains(needle), "{query}: {e}");
    }
    // Counted once each, whatever the monitors did.
    let stored: i64 = sqlx::query_scalar(
        "SELECT sum(count)::bigint FROM metric_buckets WHERE metric = 'run.latency_ms' \
         AND step_secs = 3600",
    )
    .fetch_one(app.store.pool())
    .await
    .unwrap();
    assert_eq!(stored, 8);
}

/// A request as received: its headers (names in lower case) and body.
type Request = (Vec<(String, String)>, Vec<u8>);

/// A webhook receiver: answers 500 to the first `alert.opened`, then 200; keeps every request.
struct Receiver {
    url: String,
    got: Arc<Mutex<Vec<Request>>>,
}

async fn receiver() -> Receiver {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/alerts", listener.local_addr().unwrap());
    let got: Arc<Mutex<Vec<_>>> = Arc::default();
    let kept = got.clone();
    tokio::spawn(async move {
        let mut failed_once = false;
        while let Ok((mut sock, _)) = listener.accept().await {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            let (headers, body) = loop {
                let n = sock.read(&mut chunk).await.unwrap_or(0);
                if n == 0 {
                    break (Vec::new(), Vec::new());
                }
                buf.extend_from_slice(&chunk[..n]);
                let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else { continue };
                let head = String::from_utf8_lossy(&buf[..end]).to_string();
                let headers: Vec<(String, String)> = head
                    .lines()
                    .skip(1)
                    .filter_map(|l| l.split_once(':'))
                    .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
                    .collect();
                let len: usize = headers
                    .iter()
                    .find(|(k, _)| k == "content-length")
                    .and_then(|(_, v)| v.parse().ok())
                    .unwrap_or(0);
                if buf.len() >= end + 4 + len {
                    break (headers, buf[end + 4..end + 4 + len].to_vec());
                }
            };
            let opened =
                serde_json::from_slice::<Value>(&body).is_ok_and(|v| v["event"] == "alert.opened");
            let status = if opened && !failed_once {
                failed_once = true;
                "500 Internal Server Error"
            } else {
                "200 OK"
            };
            kept.lock().unwrap().push((headers, body));
            let reply =
                format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
            let _ = sock.write_all(reply.as_bytes()).await;
        }
    });
    Receiver { url, got }
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> &'a str {
    headers.iter().find(|(k, _)| k == name).map_or("", |(_, v)| v.as_str())
}

#[tokio::test]
async fn stopped_processes_raise_alerts_that_signed_webhooks_hear_of_and_that_resolve() {
    let hook = receiver().await;
    let dir = std::env::temp_dir().join(format!("ay-alerts-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("alerts.yaml"),
        format!(
            "rules:\n  - {{name: service_unavailable, metric: service.down_seconds, \
             comparison: '>', threshold: 0.5, for: 0s, severity: critical}}\n\
             webhooks:\n  - {{url: '{}', secret_env: AY_ALERT_WEBHOOK_SECRET}}\n",
            hook.url
        ),
    )
    .unwrap();
    let dir_s = dir.display().to_string();
    let mut app = TestApp::spawn_with(TestOptions {
        tools: true,
        env: env(&[("AY_CONFIG_DIR", &dir_s), ("AY_ALERT_WEBHOOK_SECRET", "s3cret")]),
        ..Default::default()
    })
    .await;
    app.wait_tools().await;
    app.start_role("monitor", &["worker", "monitor"]).expect("monitor");
    let platform = platform_token(&app).await;
    let alerts = "/v1/system/alerts?status=all";
    wait_for(&app, &platform, "/v1/system/health-report", "the built-in server probed", |r| {
        probe(r, "mcp:builtin").is_some_and(|p| p["status"] == "up")
    })
    .await;
    // The monitor counts a role down only once it has heard an instance of it: its first
    // heartbeats may have gone out before the monitor listened.
    wait_for(&app, &platform, "/v1/system/status", "the agent worker seen up", |s| {
        s["roles"]["agent"]["up"] == 1
    })
    .await;
    assert_eq!(get(&app, &platform, alerts).await, json!([]));

    // The agent worker is killed: its role is down, an alert opens once.
    app.kill_worker(0).await;
    let open = wait_for(&app, &platform, alerts, "an alert for the agent role", |a| {
        a.as_array().unwrap().iter().any(|a| a["subject"] == "role:agent" && a["status"] == "open")
    })
    .await;
    let alert = open.as_array().unwrap().iter().find(|a| a["subject"] == "role:agent").unwrap();
    assert_eq!(alert["rule"], "service_unavailable");
    assert_eq!(alert["severity"], "critical");
    let id = alert["id"].as_str().unwrap().to_owned();
    // An organization's admin sees none of the platform's alerts.
    assert_eq!(get(&app, &app.token, alerts).await, json!([]));
    let (code, _) =
        app.call(Method::GET, &format!("/v1/system/alerts/{id}"), &app.token, None).await;
    assert_eq!(code, 404);

    // A new worker: the alert resolves by itself.
    app.start_worker().unwrap();
    let detail = wait_for(&app, &platform, &format!("/v1/system/alerts/{id}"), "resolved", |a| {
        a["status"] == "resolved"
            && a["deliveries"]
                .as_array()
                .is_some_and(|d| d.len() == 2 && d.iter().all(|d| d["status"] == "delivered"))
    })
    .await;
    assert_eq!(detail["resolved_by"], "auto");
    let opened = &detail["deliveries"][0];
    assert_eq!(opened["event"], "alert.opened");
    // The receiver failed the first attempt: retried, then delivered.
    assert_eq!(opened["attempts"], 2, "{detail:#}");
    assert_eq!(opened["last_status"], 200);
    assert_eq!(detail["deliveries"][1]["event"], "alert.resolved");
    let opened_again = get(&app, &platform, alerts).await;
    assert_eq!(
        opened_again.as_array().unwrap().iter().filter(|a| a["subject"] == "role:agent").count(),
        1,
        "one alert while it held, not one per check"
    );

    // Each request is signed: sha256=HMAC(secret, "<timestamp>.<body>").
    let got = hook.got.lock().unwrap().clone();
    let mine: Vec<_> = got
        .iter()
        .filter(|(_, b)| serde_json::from_slice::<Value>(b).is_ok_and(|v| v["alert"]["id"] == id))
        .collect();
    assert_eq!(mine.len(), 3, "a failed attempt, a retry and the resolve");
    for (headers, body) in &mine {
        let ts = header(headers, "x-agentyard-timestamp");
        let mut msg = format!("{ts}.").into_bytes();
        msg.extend_from_slice(body);
        let mac = agentyard_store::tool_tokens::hmac(b"s3cret", &msg);
        let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(header(headers, "x-agentyard-signature"), format!("sha256={hex}"));
    }
    // The retry is the same delivery (one id: a receiver drops duplicates by it).
    let mut events: Vec<(String, String)> = mine
        .iter()
        .map(|(h, b)| {
            let v = serde_json::from_slice::<Value>(b).unwrap();
            (v["event"].as_str().unwrap().to_owned(), header(h, "x-agentyard-delivery").to_owned())
        })
        .collect();
    events.sort();
    assert_eq!(events[0], events[1], "{events:?}");
    let events: Vec<&str> = events.iter().map(|(e, _)| e.as_str()).collect();
    assert_eq!(events, ["alert.opened", "alert.opened", "alert.resolved"]);

    // The built-in MCP server is stopped: its probe turns red and an alert opens; resolved by
    // hand it stays resolved while the server is still down.
    app.kill_worker(1).await; // the `mcp-server` process (started before the tool worker)
    let report = wait_for(&app, &platform, "/v1/system/health-report", "the probe red", |r| {
        probe(r, "mcp:builtin").is_some_and(|p| p["status"] == "down")
    })
    .await;
    assert!(probe(&report, "mcp:builtin").unwrap()["error"].as_str().is_some(), "{report:#}");
    assert_eq!(report["status"], "degraded");
    let open = wait_for(&app, &platform, "/v1/system/alerts?status=open", "an MCP alert", |a| {
        a.as_array().unwrap().iter().any(|a| a["subject"] == "probe:mcp:builtin")
    })
    .await;
    // (The server's process stopped beating too: `role:mcp-server` has its own alert.)
    let of_probe = |a: &Value| a["subject"] == "probe:mcp:builtin";
    let mcp_alert = open.as_array().unwrap().iter().find(|a| of_probe(a)).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let resolve = format!("/v1/system/alerts/{mcp_alert}/resolve");
    let (code, r) = app.call(Method::POST, &resolve, &platform, None).await;
    assert_eq!(code, 200, "{r}");
    assert!(r["resolved_by"].as_str().unwrap().starts_with("token:"), "{r}");
    let (code, e) = app.call(Method::POST, &resolve, &platform, None).await;
    assert_eq!(code, 409, "{e}");
    assert_eq!(e["error"]["code"], "alert_resolved");
    let (code, e) =
        app.call(Method::POST, "/v1/system/alerts/not-an-id/resolve", &platform, None).await;
    assert_eq!(code, 404, "{e}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let open = get(&app, &platform, "/v1/system/alerts?status=open").await;
    assert!(
        !open.as_array().unwrap().iter().any(of_probe),
        "acknowledged: not opened again while the server is down: {open:#}"
    );
    assert!(open.as_array().unwrap().iter().any(|a| a["subject"] == "role:mcp-server"));
    let (code, e) = app.call(Method::GET, "/v1/system/alerts?status=maybe", &platform, None).await;
    assert_eq!(code, 422, "{e}");
    // Availability counts the probes too.
    let a = get(&app, &platform, "/v1/system/availability?window=1h").await;
    assert_eq!(a["dependencies"]["postgres"]["availability_pct"], 100.0, "{a:#}");
    let mcp = a["dependencies"]["mcp:builtin"]["availability_pct"].as_f64().unwrap();
    assert!(mcp < 100.0, "{a:#}");
    std::fs::remove_dir_all(dir).ok();
}
