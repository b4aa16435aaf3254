//! The monitor: every process's heartbeat, a killed worker seen down within three heartbeats,
//! a new one seen up; the status is for operators only.

use std::time::{Duration, Instant};

use agentyard_e2e::{TestApp, TestOptions};
use reqwest::Method;
use serde_json::Value;

async fn status(app: &TestApp, token: &str) -> Value {
    let (code, body) = app.call(Method::GET, "/v1/system/status", token, None).await;
    assert_eq!(code, 200, "{body}");
    body
}

async fn wait_for(app: &TestApp, token: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = status(app, token).await;
        if pred(&s) {
            return s;
        }
        assert!(Instant::now() < deadline, "never {what}: {s:#}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_killed_worker_is_down_within_three_heartbeats_and_a_new_one_is_up() {
    let mut app = TestApp::spawn_with(TestOptions {
        orchestrator: true,
        env: vec![("AY_HEARTBEAT_EVERY".into(), "300ms".into())],
        ..Default::default()
    })
    .await;
    app.start_role("monitor", &["worker", "monitor"]).expect("monitor");
    let org = app.org_id.parse().unwrap();
    let platform = app
        .store
        .create_token(org, "ops", &[agentyard_core::Scope::PlatformAdmin])
        .await
        .unwrap()
        .secret;
    // Operators only.
    let (code, _) = app.call(Method::GET, "/v1/system/status", &app.token, None).await;
    assert_eq!(code, 403);

    let up = |role: &'static str, n: u64| move |s: &Value| s["roles"][role]["up"] == n;
    let s = wait_for(&app, &platform, "every role up", |s| {
        ["api", "agent", "orchestrator", "monitor"].iter().all(|r| s["roles"][r]["up"] == 1)
    })
    .await;
    assert_eq!(s["status"], "ok", "{s:#}");
    assert_eq!(s["dependencies"]["postgres"], "up");
    assert_eq!(s["dependencies"]["nats"], "up");
    let agent = s["instances"].as_array().unwrap().iter().find(|i| i["role"] == "agent").unwrap();
    assert!(agent["capacity"].as_u64().is_some_and(|c| c > 0), "{agent}");
    assert_eq!(agent["in_flight"], 0, "{agent}");
    let api = s["instances"].as_array().unwrap().iter().find(|i| i["role"] == "api").unwrap();
    assert!(api["in_flight"].is_null(), "the API runs no jobs: {api}");

    let queue = |s: &Value, name: &str| {
        s["queues"].as_array().unwrap().iter().find(|q| q["consumer"] == name).cloned().unwrap()
    };
    assert_eq!(queue(&s, "agent-normal")["pending"], 0, "{s:#}");

    // kill -9 of the agent worker (index 0): down within three heartbeats (0.9 s) plus a scan.
    app.kill_worker(0).await;
    let killed = Instant::now();
    let s = wait_for(&app, &platform, "the agent down", |s| {
        s["roles"]["agent"]["up"] == 0 && s["roles"]["agent"]["down"] == 1
    })
    .await;
    assert!(killed.elapsed() < Duration::from_secs(3), "seen down after {:?}", killed.elapsed());
    assert_eq!(s["status"], "degraded");
    // With no agent worker, jobs wait: the queue and its oldest job's age grow.
    for i in 0..3 {
        app.start_run(&format!("queued {i}")).await;
    }
    tokio::time::sleep(Duration::from_millis(600)).await;
    let s = status(&app, &platform).await;
    let q = queue(&s, "agent-normal");
    assert_eq!(q["pending"], 3, "{q}");
    assert!(q["oldest_job_age_s"].as_f64().is_some_and(|a| a >= 0.5), "{q}");
    // A new worker: up again, the old one still listed as down, the queue drained.
    app.start_worker().expect("worker");
    let s = wait_for(&app, &platform, "a new agent up", up("agent", 1)).await;
    assert_eq!(s["roles"]["agent"]["down"], 1);
    assert_eq!(s["status"], "ok");
    let s = wait_for(&app, &platform, "the queue drained", |s| {
        queue(s, "agent-normal")["pending"] == 0
            && queue(s, "agent-normal")["oldest_job_age_s"].is_null()
    })
    .await;
    assert_eq!(s["dead_letters"], 0);
    let events = app.count("SELECT count(*) FROM instance_events WHERE role = 'agent'").await;
    assert_eq!(events, 3, "up, down, up: each counted once");
    // Availability: the agent role had one outage; the API none.
    let (code, a) =
        app.call(Method::GET, "/v1/system/availability?window=1h", &platform, None).await;
    assert_eq!(code, 200, "{a}");
    assert_eq!(a["roles"]["agent"]["outages"], 1, "{a:#}");
    let pct = a["roles"]["agent"]["availability_pct"].as_f64().unwrap();
    assert!(pct > 0.0 && pct < 100.0, "{a:#}");
    assert_eq!(a["roles"]["api"]["availability_pct"], 100.0, "{a:#}");
    let (code, _) =
        app.call(Method::GET, "/v1/system/availability?window=2y", &platform, None).await;
    assert_eq!(code, 422);
}
