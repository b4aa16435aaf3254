//! Prometheus metrics: every role, as its own process, serves `GET /metrics` (the API and the
//! MCP server on their listeners, the workers on `AY_METRICS_ADDR`, announced in heartbeats);
//! the values match what the test did, `promtool check metrics` accepts every scrape, and a real
//! Prometheus server scrapes them all. Needs `prometheus` and `promtool` on PATH (Debian
//! package `prometheus`; `.ci/run` installs it).

use std::collections::HashMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

use agentyard_core::heartbeat::Heartbeat;
use agentyard_e2e::{TestApp, TestOptions};
use futures::StreamExt;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

const T: Duration = Duration::from_secs(60);
const ROLES: [&str; 6] = ["api", "agent", "tool", "orchestrator", "monitor", "mcp-server"];

#[tokio::test]
async fn every_role_serves_metrics_that_promtool_accepts_and_prometheus_scrapes() {
    for tool in ["promtool", "prometheus"] {
        let found = std::process::Command::new(tool).arg("--version").output().is_ok();
        assert!(found, "`{tool}` is not installed: apt-get install prometheus (see .ci/run)");
    }
    let mut app = TestApp::spawn_with(TestOptions {
        tools: true,
        orchestrator: true,
        env: vec![("AY_HEARTBEAT_EVERY".into(), "1s".into())],
        ..Default::default()
    })
    .await;
    app.start_role("monitor", &["worker", "monitor"]).unwrap();
    let addrs = metrics_addrs(&app).await;
    app.wait_tools().await;

    // Three chats and one run with a tool call: five model calls, four completed runs.
    let mut run_ids = Vec::new();
    for i in 0..3 {
        let run = app.start_run(&format!("Hello metrics {i}")).await;
        run_ids.push(run["id"].as_str().unwrap().to_owned());
    }
    let (s, agent) = app.post("/v1/agents", json!({"agent_type": "task_assistant"})).await;
    assert_eq!(s, 201, "{agent}");
    let body = json!({"input": "add a task to buy milk", "agent_id": agent["id"]});
    let (s, run) = app.post("/v1/runs", body).await;
    assert_eq!(s, 202, "{run}");
    run_ids.push(run["id"].as_str().unwrap().to_owned());
    // And one the model keeps failing: AY_MAX_ATTEMPTS (4) calls answered 500.
    let failing = app.start_run("always fail").await["id"].as_str().unwrap().to_owned();
    for id in &run_ids {
        let run = app.wait_terminal(id, T).await;
        assert_eq!(run["status"], "completed", "{run}");
    }
    assert_eq!(app.wait_terminal(&run_ids[3], T).await["tools_used"], json!(["add_task"]));
    let run = app.wait_terminal(&failing, T).await;
    assert_eq!(
        (&run["status"], &run["error"]["code"]),
        (&json!("failed"), &json!("llm_unavailable"))
    );
    run_ids.push(failing);

    // The counters are bumped when JetStream acks the terminal event, which may come a moment
    // after a client saw it: poll.
    let (app_ref, addrs_ref) = (&app, &addrs);
    let scrapes = eventually("the metrics to match the runs", || async move {
        let mut all = HashMap::new();
        for role in ROLES {
            all.insert(role, scrape(app_ref, &addrs_ref[role]).await);
        }
        let completed: f64 =
            all.values().map(|t| sum(t, "agentyard_runs_total", &[("status", "completed")])).sum();
        let chats = sum(
            &all["agent"],
            "gen_ai_client_operation_duration_seconds_count",
            &[("gen_ai_operation_name", "chat"), ("error_type", "")],
        );
        let failed: f64 =
            all.values().map(|t| sum(t, "agentyard_runs_total", &[("status", "failed")])).sum();
        let tool_calls = sum(&all["agent"], "agentyard_tool_calls_total", &[]);
        (completed == 4.0 && failed == 1.0 && chats == 5.0 && tool_calls == 1.0).then_some(all)
    })
    .await;

    for (role, text) in &scrapes {
        promtool_accepts(role, text).await;
        assert!(sum(text, "process_resident_memory_bytes", &[]) > 0.0, "{role}: {text}");
        assert!(has(text, "process_cpu_seconds_total", &[]), "{role}");
        for id in &run_ids {
            assert!(!text.contains(id.as_str()), "{role} shows a run id: {text}");
        }
        for status in ["cancelled", "expired"] {
            assert_eq!(sum(text, "agentyard_runs_total", &[("status", status)]), 0.0, "{role}");
        }
    }

    let agent = &scrapes["agent"];
    let chat =
        [("gen_ai_operation_name", "chat"), ("gen_ai_provider_name", "openai"), ("error_type", "")];
    for name in [
        "gen_ai_client_operation_duration_seconds_count",
        "gen_ai_client_operation_time_to_first_chunk_seconds_count",
    ] {
        assert_eq!(sum(agent, name, &chat), 5.0, "{name}: {agent}");
    }
    for kind in ["input", "output"] {
        let labels = [("gen_ai_token_type", kind), ("gen_ai_operation_name", "chat")];
        assert_eq!(sum(agent, "gen_ai_client_token_usage_count", &labels), 5.0, "{agent}");
        assert!(sum(agent, "gen_ai_client_token_usage_sum", &labels) >= 5.0, "{agent}");
    }
    // Every call names the model asked for; one that answered, the model that answered.
    let calls = labels_of(agent, "gen_ai_client_operation_duration_seconds_count");
    assert!(calls.iter().all(|l| l.contains_key("gen_ai_request_model")), "{calls:?}");
    let answered: Vec<_> = calls.iter().filter(|l| !l.contains_key("error_type")).collect();
    assert!(!answered.is_empty(), "{calls:?}");
    assert!(answered.iter().all(|l| l.contains_key("gen_ai_response_model")), "{calls:?}");
    let failed = [("gen_ai_operation_name", "chat"), ("error_type", "500")];
    assert_eq!(sum(agent, "gen_ai_client_operation_duration_seconds_count", &failed), 4.0);
    assert_eq!(sum(agent, "gen_ai_client_token_usage_count", &failed[..1]), 10.0, "{agent}");
    let completed = [("status", "completed")];
    assert_eq!(sum(agent, "agentyard_runs_total", &completed), 4.0, "{agent}");
    assert_eq!(sum(agent, "agentyard_runs_total", &[("status", "failed")]), 1.0, "{agent}");
    assert_eq!(sum(agent, "agentyard_run_duration_seconds_count", &completed), 4.0);
    assert!(sum(agent, "agentyard_run_duration_seconds_sum", &completed) > 0.0);
    assert_eq!(sum(agent, "agentyard_jobs_in_flight", &[("kind", "agent_step")]), 0.0);
    for consumer in ["agent-high", "agent-normal", "agent-low"] {
        let c = [("consumer", consumer)];
        assert!(has(agent, "agentyard_queue_pending_jobs", &c), "{consumer}: {agent}");
        assert!(has(agent, "agentyard_queue_oldest_job_age_seconds", &c), "{consumer}");
    }

    // The built-in call ran in the agent worker; the tool worker ran none.
    let ok = [("tool", "add_task"), ("outcome", "ok")];
    assert_eq!(sum(agent, "agentyard_tool_calls_total", &ok), 1.0, "{agent}");
    assert_eq!(sum(agent, "agentyard_tool_call_duration_seconds_count", &ok), 1.0);
    let tool = &scrapes["tool"];
    assert_eq!(sum(tool, "agentyard_tool_calls_total", &[]), 0.0, "{tool}");
    assert!(has(tool, "agentyard_jobs_in_flight", &[("kind", "tool_call")]), "{tool}");
    assert!(has(tool, "agentyard_queue_pending_jobs", &[("consumer", "tool")]), "{tool}");

    let orchestrator = &scrapes["orchestrator"];
    let workflow = [("kind", "workflow_advance")];
    assert!(has(orchestrator, "agentyard_jobs_in_flight", &workflow), "{orchestrator}");
    let c = [("consumer", "workflow")];
    assert!(has(orchestrator, "agentyard_queue_pending_jobs", &c), "{orchestrator}");

    let api = &scrapes["api"];
    let posted = [("route", "/v1/runs"), ("method", "POST"), ("status", "202")];
    assert_eq!(sum(api, "agentyard_http_requests_total", &posted), 5.0, "{api}");
    assert_eq!(sum(api, "agentyard_http_request_duration_seconds_count", &posted), 5.0);
    let polled = [("route", "/v1/runs/{id}"), ("method", "GET"), ("status", "200")];
    assert!(sum(api, "agentyard_http_requests_total", &polled) >= 4.0, "{api}");

    // The built-in server's endpoint serves MCP clients (the tool worker runs the built-in
    // tools in its own process): one request of an MCP client.
    let listing = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"});
    let r = app.http.post(app.mcp_url()).bearer_auth(&app.token).json(&listing).send().await;
    assert!(r.is_ok(), "{r:?}");
    let mcp = scrape(&app, &addrs["mcp-server"]).await;
    let calls = [("route", "/mcp"), ("method", "POST")];
    assert!(sum(&mcp, "agentyard_http_requests_total", &calls) >= 1.0, "{mcp}");

    prometheus_scrapes_every_role(&app, &addrs).await;
}

#[tokio::test]
async fn metrics_off_records_nothing_and_serves_no_endpoint() {
    let app = TestApp::spawn_with(TestOptions {
        env: vec![("AY_METRICS".into(), "off".into()), ("AY_HEARTBEAT_EVERY".into(), "1s".into())],
        ..Default::default()
    })
    .await;
    let run = app.start_run("Hello without metrics").await;
    let run = app.wait_terminal(run["id"].as_str().unwrap(), T).await;
    assert_eq!(run["status"], "completed", "{run}");
    let r = app.http.get(format!("{}/metrics", app.api_url)).send().await.unwrap();
    assert_eq!(r.status(), 404);
    // The agent worker beats without a metrics address: it opened no listener.
    let nats = async_nats::connect(&app.nats_url).await.unwrap();
    let mut beats = nats.subscribe(format!("{}.heartbeat.agent", app.prefix)).await.unwrap();
    let msg = tokio::time::timeout(T, beats.next()).await.unwrap().unwrap();
    let beat: Heartbeat = serde_json::from_slice(&msg.payload).unwrap();
    assert_eq!(beat.metrics_addr, None);
}

/// Each role's metrics address, from its heartbeats.
async fn metrics_addrs(app: &TestApp) -> HashMap<&'static str, String> {
    let nats = async_nats::connect(&app.nats_url).await.unwrap();
    let mut beats = nats.subscribe(format!("{}.heartbeat.>", app.prefix)).await.unwrap();
    let mut addrs = HashMap::new();
    let deadline = Instant::now() + T;
    while addrs.len() < ROLES.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        let msg = tokio::time::timeout(left, beats.next()).await;
        let Ok(Some(msg)) = msg else {
            panic!("heartbeats with a metrics address came only from {addrs:?}");
        };
        let Ok(beat) = serde_json::from_slice::<Heartbeat>(&msg.payload) else { continue };
        if let (Some(role), Some(addr)) =
            (ROLES.iter().find(|r| **r == beat.role), beat.metrics_addr)
        {
            addrs.insert(*role, addr);
        }
    }
    addrs
}

async fn scrape(app: &TestApp, addr: &str) -> String {
    let r = app.http.get(format!("http://{addr}/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 200, "{addr}");
    let ct = r.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
    r.text().await.unwrap()
}

/// Polls `f` until it gives something, for at most [`T`].
async fn eventually<R, F: std::future::Future<Output = Option<R>>>(
    what: &str,
    mut f: impl FnMut() -> F,
) -> R {
    let deadline = Instant::now() + T;
    loop {
        if let Some(r) = f().await {
            return r;
        }
        assert!(Instant::now() < deadline, "waited {T:?} for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The samples of `name` whose labels include `want` (a label wanted empty must be absent).
fn samples(text: &str, name: &str, want: &[(&str, &str)]) -> Vec<(HashMap<String, String>, f64)> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (n, labels) = match series.split_once('{') {
                Some((n, rest)) => (n, parse_labels(rest.strip_suffix('}')?)),
                None => (series, HashMap::new()),
            };
            let matches = n == name
                && want
                    .iter()
                    .all(|(k, v)| labels.get(*k).map_or(v.is_empty(), |x| !v.is_empty() && x == v));
            matches.then(|| (labels, value.parse().unwrap_or(f64::NAN)))
        })
        .collect()
}

fn sum(text: &str, name: &str, want: &[(&str, &str)]) -> f64 {
    samples(text, name, want).iter().map(|(_, v)| v).sum()
}

fn has(text: &str, name: &str, want: &[(&str, &str)]) -> bool {
    !samples(text, name, want).is_empty()
}

fn labels_of(text: &str, name: &str) -> Vec<HashMap<String, String>> {
    samples(text, name, &[]).into_iter().map(|(l, _)| l).collect()
}

/// `a="x",b="y \"q\""` into a map (values unescaped).
fn parse_labels(s: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut rest = s;
    while let Some((key, after)) = rest.split_once("=\"") {
        let mut value = String::new();
        let mut chars = after.char_indices();
        let mut end = after.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c)) => value.push(c),
                    None => {}
                },
                '"' => {
                    end = i + 1;
                    break;
                }
                c => value.push(c),
            }
        }
        out.insert(key.trim_start_matches(',').to_owned(), value);
        rest = &after[end..];
    }
    out
}

async fn promtool_accepts(role: &str, text: &str) {
    let mut child = tokio::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(text.as_bytes()).await.unwrap();
    drop(stdin);
    let out = child.wait_with_output().await.unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics rejects the {role} metrics: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A Prometheus server of the test's own scrapes every role: every target is up, and it reads
/// the runs the test made.
async fn prometheus_scrapes_every_role(app: &TestApp, addrs: &HashMap<&'static str, String>) {
    let dir = std::env::temp_dir().join(format!("ay-prometheus-{}", app.prefix));
    std::fs::create_dir_all(&dir).unwrap();
    let mut config = String::from(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: agentyard\n    static_configs:\n",
    );
    for (role, addr) in addrs {
        config.push_str(&format!(
            "      - targets: ['{addr}']\n        labels: {{role: '{role}'}}\n"
        ));
    }
    let config_file = dir.join("prometheus.yml");
    std::fs::write(&config_file, config).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let prometheus = tokio::process::Command::new("prometheus")
        .arg(format!("--config.file={}", config_file.display()))
        .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("prometheus.log")).unwrap())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let query = |q: &'static str| {
        let url = format!("http://127.0.0.1:{port}/api/v1/query?query={}", url_encode(q));
        let req = app.http.get(url);
        async move {
            let body: Value = req.send().await.ok()?.json().await.ok()?;
            body["data"]["result"].as_array().cloned()
        }
    };
    let query = &query;
    let up = eventually("Prometheus to find every target up", || async move {
        let result = query("up").await?;
        let all_up = result.len() == ROLES.len() && result.iter().all(|r| r["value"][1] == "1");
        all_up.then_some(result)
    })
    .await;
    let mut roles: Vec<&str> = up.iter().filter_map(|r| r["metric"]["role"].as_str()).collect();
    roles.sort_unstable();
    let mut expected = ROLES.to_vec();
    expected.sort_unstable();
    assert_eq!(roles, expected);
    eventually("Prometheus to read the completed runs", || async move {
        let result = query("sum(agentyard_runs_total{status=\"completed\"})").await?;
        (result.first()?["value"][1] == "4").then_some(())
    })
    .await;
    eventually("Prometheus to read the model calls", || async move {
        let q = "sum(gen_ai_client_token_usage_count{gen_ai_token_type=\"output\"})";
        let result = query(q).await?;
        (result.first()?["value"][1] == "5").then_some(())
    })
    .await;
    drop(prometheus);
    let _ = std::fs::remove_dir_all(&dir);
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'.' => (b as char).to_string(),
            b => format!("%{b:02X}"),
        })
        .collect()
}
