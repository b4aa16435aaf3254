//! Workflows end to end: definitions, the orchestrator driving agent, tool, approval and wait
//! steps through the real workers, failures each way, cancel, kill -9 of the orchestrator,
//! versions, concurrency, and the three templates.

use std::time::{Duration, Instant};

use agentyard_e2e::{TestApp, TestOptions};
use chrono::{DateTime, Utc};
use reqwest::Method;
use serde_json::{Value, json};

async fn stack() -> TestApp {
    let app =
        TestApp::spawn_with(TestOptions { tools: true, orchestrator: true, ..Default::default() })
            .await;
    app.wait_tools().await;
    app
}

async fn define(app: &TestApp, def: Value) -> Value {
    let (status, body) = app.post("/v1/workflows", def).await;
    assert_eq!(status, 201, "{body}");
    body
}

async fn start(app: &TestApp, id: &str, inputs: Value) -> Value {
    let (status, body) =
        app.post(&format!("/v1/workflows/{id}/executions"), json!({ "inputs": inputs })).await;
    assert_eq!(status, 202, "{body}");
    body
}

/// The execution once terminal (polled); fails the test after `timeout`.
async fn wait_done(app: &TestApp, id: &str, timeout: Duration) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        let (status, e) = app.get(&format!("/v1/workflows/executions/{id}")).await;
        assert_eq!(status, 200, "{e}");
        let s = e["status"].as_str().unwrap_or_default();
        if ["completed", "failed", "cancelled"].contains(&s) {
            return e;
        }
        assert!(Instant::now() < deadline, "execution still {s} after {timeout:?}: {e:#}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls until `pred` holds for the execution.
async fn wait_until(app: &TestApp, id: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, e) = app.get(&format!("/v1/workflows/executions/{id}")).await;
        if pred(&e) {
            return e;
        }
        assert!(Instant::now() < deadline, "never {what}: {e:#}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn step<'a>(e: &'a Value, id: &str) -> &'a Value {
    e["steps"].as_array().unwrap().iter().find(|s| s["id"] == id).unwrap_or_else(|| panic!("{id}"))
}

fn at(v: &Value) -> DateTime<Utc> {
    v.as_str().and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("not a time: {v}"))
}

#[tokio::test]
async fn a_dag_runs_in_dependency_order_with_parallel_branches_and_a_skipped_step() {
    let app = stack().await;
    define(&app, json!({
        "id": "dag",
        "inputs": {"type": "object", "required": ["title"], "properties": {"title": {"type": "string"}, "extra": {"type": "boolean"}}},
        "steps": [
            {"id": "first", "tool": {"name": "add_task", "arguments": {"title": "{{ inputs.title }}"}}},
            {"id": "left", "depends_on": ["first"], "agent": {"type": "customer_support", "input": "busy left of {{ steps.first.output.title }}"}},
            {"id": "right", "depends_on": ["first"], "agent": {"type": "customer_support", "input": "busy right"}},
            {"id": "maybe", "depends_on": ["first"], "when": "has(inputs.extra) && inputs.extra", "tool": {"name": "add_task", "arguments": {"title": "extra"}}},
            {"id": "last", "depends_on": ["left", "right", "maybe"], "tool": {"name": "list_tasks"}}
        ]
    })).await;
    let e = start(&app, "dag", json!({"title": "Water the plants"})).await;
    assert_eq!(e["version"], 1);
    let id = e["id"].as_str().unwrap().to_owned();
    // Live: the execution's events as they happen, ending with its end.
    let path = format!("/v1/workflows/executions/{id}/events");
    let resp = app.req(Method::GET, &path).send().await.unwrap();
    let events = agentyard_e2e::sse::read_all(resp, Duration::from_secs(60)).await;
    let kinds = agentyard_e2e::sse::kinds(&events);
    assert_eq!(kinds.first(), Some(&"workflow.execution.running"), "{kinds:?}");
    assert_eq!(kinds.last(), Some(&"workflow.execution.completed"), "{kinds:?}");
    for s in ["first", "left", "right", "last"] {
        let of = |k: &str| {
            events.iter().position(|e| {
                e.event == k && serde_json::from_str::<Value>(&e.data).unwrap()["step"]["id"] == s
            })
        };
        let (run, done) = (of("workflow.step.running"), of("workflow.step.completed"));
        assert!(run.is_some() && run < done, "{s}: {kinds:?}");
    }
    assert!(kinds.contains(&"workflow.step.skipped"), "{kinds:?}");
    // Resumed after the third event: the rest, and the stream ends.
    let third = events[2].id.clone().unwrap();
    let resp = app.req(Method::GET, &path).header("Last-Event-ID", third).send().await.unwrap();
    let rest = agentyard_e2e::sse::read_all(resp, Duration::from_secs(10)).await;
    assert_eq!(agentyard_e2e::sse::kinds(&rest), kinds[3..].to_vec());
    let e = wait_done(&app, &id, Duration::from_secs(60)).await;
    assert_eq!(e["status"], "completed", "{e:#}");
    let (first, left, right, last) =
        (step(&e, "first"), step(&e, "left"), step(&e, "right"), step(&e, "last"));
    // Order: first before both branches, both before last; the branches overlap.
    assert!(at(&first["completed_at"]) <= at(&left["started_at"]));
    assert!(at(&first["completed_at"]) <= at(&right["started_at"]));
    assert!(
        at(&left["started_at"]) < at(&right["completed_at"]),
        "branches ran one after the other"
    );
    assert!(
        at(&right["started_at"]) < at(&left["completed_at"]),
        "branches ran one after the other"
    );
    assert!(at(&left["completed_at"]) <= at(&last["started_at"]));
    assert!(at(&right["completed_at"]) <= at(&last["started_at"]));
    assert_eq!(step(&e, "maybe")["status"], "skipped");
    assert_eq!(step(&e, "maybe")["skip_reason"], "condition");
    // Outputs flow: the tool's data, the template into the agent's input, the leaf as output.
    assert_eq!(first["output"]["title"], "Water the plants");
    let run_id = left["run_id"].as_str().unwrap();
    let (_, run) = app.get(&format!("/v1/runs/{run_id}")).await;
    assert_eq!(run["input"], "busy left of Water the plants");
    assert_eq!(run["metadata"]["workflow"]["execution_id"], e["id"]);
    assert_eq!(left["output"], run["output"]["content"]);
    assert!(e["output"]["last"].to_string().contains("Water the plants"), "{e:#}");
    // The tool step is an ordinary call in the audit log.
    let tool_run = first["run_id"].as_str().unwrap();
    let (_, calls) = app.get(&format!("/v1/runs/{tool_run}/tool-invocations")).await;
    assert_eq!(calls["data"][0]["tool"], "add_task", "{calls}");
    // Listed, newest first, filtered.
    let (_, page) = app.get("/v1/workflows/executions?status=completed&workflow_id=dag").await;
    assert_eq!(page["data"][0]["id"], e["id"]);
    let (_, page) = app.get("/v1/workflows/executions?status=failed").await;
    assert_eq!(page["data"], json!([]));
}

#[tokio::test]
async fn failures_retry_then_succeed_or_follow_on_failure_each_way() {
    let app = stack().await;
    let lookup = |on_failure: Value| {
        json!({"id": "lookup", "tool": {"name": "get_customer", "arguments": {"email": "nobody@example.com"}},
               "retry": {"max_attempts": 2, "backoff": "100ms"}, "on_failure": on_failure})
    };
    define(&app, json!({"id": "flaky", "steps": [
        {"id": "ask", "agent": {"type": "customer_support", "input": "json on the second try", "output": "json"},
         "retry": {"max_attempts": 3, "backoff": "100ms"}}
    ]})).await;
    define(
        &app,
        json!({"id": "go-on", "steps": [
            lookup(json!("continue")),
            {"id": "after", "depends_on": ["lookup"], "tool": {"name": "list_tasks"}}
        ]}),
    )
    .await;
    define(&app, json!({"id": "undo", "steps": [
        lookup(json!({"compensate": "revert"})),
        {"id": "after", "depends_on": ["lookup"], "tool": {"name": "list_tasks"}},
        {"id": "revert", "tool": {"name": "add_task", "arguments": {"title": "revert the lookup"}}}
    ]})).await;
    define(
        &app,
        json!({"id": "stop", "steps": [
            lookup(json!("fail")),
            {"id": "after", "depends_on": ["lookup"], "tool": {"name": "list_tasks"}}
        ]}),
    )
    .await;
    let ids: Vec<String> = futures::future::join_all(
        ["flaky", "go-on", "undo", "stop"].map(|w| start(&app, w, json!({}))),
    )
    .await
    .iter()
    .map(|e| e["id"].as_str().unwrap().to_owned())
    .collect();
    let done = futures::future::join_all(
        ids.iter().map(|id| wait_done(&app, id, Duration::from_secs(60))),
    )
    .await;
    // Retried once (the first answer was not JSON), then completed.
    let flaky = &done[0];
    assert_eq!(flaky["status"], "completed", "{flaky:#}");
    assert_eq!(step(flaky, "ask")["attempt"], 2);
    assert_eq!(step(flaky, "ask")["output"], json!({"ok": true}));
    // continue: the failed step stays failed, its dependent runs.
    let go_on = &done[1];
    assert_eq!(go_on["status"], "completed", "{go_on:#}");
    assert_eq!(step(go_on, "lookup")["status"], "failed");
    assert_eq!(step(go_on, "lookup")["attempt"], 2);
    assert_eq!(step(go_on, "lookup")["error"]["code"], "tool_error");
    assert_eq!(step(go_on, "after")["status"], "completed");
    // compensate: the compensation runs, the dependent does not, the execution fails.
    let undo = &done[2];
    assert_eq!(undo["status"], "failed", "{undo:#}");
    assert_eq!(step(undo, "revert")["status"], "completed");
    assert_eq!(step(undo, "after")["status"], "skipped");
    assert_eq!(step(undo, "after")["skip_reason"], "not_run");
    assert_eq!(undo["error"]["step"], "lookup");
    // fail: no compensation, failed.
    let stop = &done[3];
    assert_eq!(stop["status"], "failed", "{stop:#}");
    assert_eq!(stop["error"]["code"], "tool_error");
    // Retry runs the failed and not-run steps again (and fails again here).
    let (status, again) =
        app.post(&format!("/v1/workflows/executions/{}/retry", ids[3]), json!({})).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["status"], "running");
    assert_eq!(step(&again, "lookup")["attempt"], 0);
    let again = wait_done(&app, &ids[3], Duration::from_secs(30)).await;
    assert_eq!(again["status"], "failed");
    assert_eq!(step(&again, "lookup")["attempt"], 2);
    let (status, body) =
        app.post(&format!("/v1/workflows/executions/{}/retry", ids[0]), json!({})).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "execution_not_failed");
}

#[tokio::test]
async fn timeouts_approvals_and_cancel() {
    let app = stack().await;
    define(&app, json!({"id": "slow", "steps": [
        {"id": "think", "timeout": "1s", "agent": {"type": "customer_support", "input": "slow answer please"}}
    ]})).await;
    define(&app, json!({"id": "gate", "steps": [
        {"id": "ok", "approval": {"message": "Send the offer to {{ inputs.who }}?", "timeout": "1h"}},
        {"id": "send", "depends_on": ["ok"], "tool": {"name": "add_task", "arguments": {"title": "offer for {{ inputs.who }}"}}}
    ]})).await;
    define(
        &app,
        json!({"id": "long", "steps": [
            {"id": "pause", "wait": {"duration": "30s"}},
            {"id": "talk", "agent": {"type": "customer_support", "input": "slow talk"}},
            {"id": "after", "depends_on": ["pause", "talk"], "tool": {"name": "list_tasks"}}
        ]}),
    )
    .await;

    // A step timeout cancels the attempt's run and fails the step.
    let slow = start(&app, "slow", json!({})).await;
    let slow = wait_done(&app, slow["id"].as_str().unwrap(), Duration::from_secs(30)).await;
    assert_eq!(slow["status"], "failed");
    assert_eq!(step(&slow, "think")["error"]["code"], "step_timeout");
    let run = step(&slow, "think")["run_id"].as_str().unwrap().to_owned();
    let run = app.wait_terminal(&run, Duration::from_secs(10)).await;
    assert_eq!(run["status"], "cancelled");

    // An approval waits for the human; approved, the execution goes on.
    let g = start(&app, "gate", json!({"who": "Ada"})).await;
    let gid = g["id"].as_str().unwrap();
    let e = wait_until(&app, gid, "waiting", |e| step(e, "ok")["status"] == "waiting").await;
    assert_eq!(step(&e, "ok")["request"]["message"], "Send the offer to Ada?");
    let path = format!("/v1/workflows/executions/{gid}/input");
    let (status, body) = app.post(&path, json!({"step_id": "nope", "action": "approve"})).await;
    assert_eq!((status, body["error"]["code"].as_str()), (422, Some("unknown_step")), "{body}");
    let (status, _) = app.post(&path, json!({"action": "approve", "comment": "go"})).await;
    assert_eq!(status, 200);
    let (status, body) = app.post(&path, json!({"action": "approve"})).await;
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("step_not_waiting")));
    let e = wait_done(&app, gid, Duration::from_secs(30)).await;
    assert_eq!(e["status"], "completed", "{e:#}");
    assert_eq!(step(&e, "ok")["output"]["comment"], "go");
    // Denied, it fails.
    let d = start(&app, "gate", json!({"who": "Bob"})).await;
    let did = d["id"].as_str().unwrap();
    wait_until(&app, did, "waiting", |e| step(e, "ok")["status"] == "waiting").await;
    let (status, _) =
        app.post(&format!("/v1/workflows/executions/{did}/input"), json!({"action": "deny"})).await;
    assert_eq!(status, 200);
    let e = wait_done(&app, did, Duration::from_secs(30)).await;
    assert_eq!(e["status"], "failed");
    assert_eq!(step(&e, "ok")["error"]["code"], "approval_denied");
    assert_eq!(step(&e, "send")["status"], "skipped");

    // Cancel mid-execution: the running agent step's run is cancelled and nothing completes.
    let l = start(&app, "long", json!({})).await;
    let lid = l["id"].as_str().unwrap();
    let e = wait_until(&app, lid, "talking", |e| step(e, "talk")["run_id"].is_string()).await;
    let talk_run = step(&e, "talk")["run_id"].as_str().unwrap().to_owned();
    let (status, e) = app.post(&format!("/v1/workflows/executions/{lid}/cancel"), json!({})).await;
    assert_eq!(status, 200, "{e}");
    assert_eq!(e["status"], "cancelled");
    let run = app.wait_terminal(&talk_run, Duration::from_secs(10)).await;
    assert_eq!(run["status"], "cancelled");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (_, e) = app.get(&format!("/v1/workflows/executions/{lid}")).await;
    assert_eq!(e["status"], "cancelled");
    for s in e["steps"].as_array().unwrap() {
        assert_eq!(s["status"], "cancelled", "{s}");
    }
    let (status, body) =
        app.post(&format!("/v1/workflows/executions/{lid}/cancel"), json!({})).await;
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("execution_already_terminal")));
}

#[tokio::test]
async fn kill_9_of_the_orchestrator_mid_execution_runs_every_step_exactly_once() {
    let mut app = TestApp::spawn_with(TestOptions { tools: true, ..Default::default() }).await;
    app.wait_tools().await;
    let first = app.start_orchestrator().expect("orchestrator");
    let steps: Vec<Value> = (1..=6)
        .map(|i| {
            let mut s = json!({"id": format!("s{i}"), "tool": {"name": "add_task",
                "arguments": {"title": format!("{{{{ inputs.n }}}} step {i}")}}});
            if i > 1 {
                s["depends_on"] = json!([format!("s{}", i - 1)]);
            }
            s
        })
        .collect();
    define(&app, json!({"id": "chain", "steps": steps})).await;
    let mut ids = Vec::new();
    for n in 0..8 {
        let e = start(&app, "chain", json!({"n": n})).await;
        ids.push(e["id"].as_str().unwrap().to_owned());
    }
    tokio::time::sleep(Duration::from_millis(150)).await;
    app.kill_worker(first).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    app.start_orchestrator().expect("orchestrator");
    for id in &ids {
        let e = wait_done(&app, id, Duration::from_secs(60)).await;
        assert_eq!(e["status"], "completed", "{e:#}");
        for s in e["steps"].as_array().unwrap() {
            assert_eq!(s["attempt"], 1, "{s}");
        }
    }
    assert_eq!(app.count("SELECT count(*) FROM workflow_step_runs").await, 48);
    assert_eq!(
        app.count("SELECT count(DISTINCT (execution_id, step_id)) FROM workflow_step_runs").await,
        48
    );
    assert_eq!(app.count("SELECT count(*) FROM tasks").await, 48, "every step's task once");
}

#[tokio::test]
async fn versions_concurrency_and_invalid_definitions() {
    let app = stack().await;
    // Invalid definitions are 422 naming the path.
    let (status, body) = app
        .post(
            "/v1/workflows",
            json!({"id": "bad", "steps": [
                {"id": "a", "wait": {"duration": "1s"}},
                {"id": "b", "wait": {"duration": "1s"}, "depends_on": ["triage"]}
            ]}),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["code"], "invalid_workflow");
    assert_eq!(body["error"]["fields"][0]["field"], "steps[1].depends_on[0]");
    assert_eq!(body["error"]["fields"][0]["message"], "unknown step \"triage\"");
    let (status, body) = app.post("/v1/workflows", json!({"id": "bad", "stpes": []})).await;
    assert_eq!(status, 422, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("unknown field `stpes`"), "{body}");
    let (status, body) = app
        .post(
            "/v1/workflows",
            json!({"id": "cyc", "steps": [
                {"id": "a", "wait": {"duration": "1s"}, "depends_on": ["b"]},
                {"id": "b", "wait": {"duration": "1s"}, "depends_on": ["a"]}
            ]}),
        )
        .await;
    assert_eq!(status, 422);
    assert_eq!(body["error"]["fields"][0]["message"], "a cycle: a → b → a");
    let (status, _) = app.post("/v1/workflows/nope/executions", json!({})).await;
    assert_eq!(status, 404);

    // Versions: an execution keeps the version it started with.
    let v1 = define(&app, json!({"id": "pinned", "steps": [
        {"id": "pause", "wait": {"duration": "1s"}},
        {"id": "mark", "depends_on": ["pause"], "tool": {"name": "add_task", "arguments": {"title": "from v1"}}}
    ]})).await;
    assert_eq!(v1["version"], 1);
    let old = start(&app, "pinned", json!({})).await;
    let v2 = define(
        &app,
        json!({"id": "pinned", "steps": [
            {"id": "mark", "tool": {"name": "add_task", "arguments": {"title": "from v2"}}}
        ]}),
    )
    .await;
    assert_eq!(v2["version"], 2);
    let new = start(&app, "pinned", json!({})).await;
    assert_eq!(new["version"], 2);
    let old = wait_done(&app, old["id"].as_str().unwrap(), Duration::from_secs(30)).await;
    assert_eq!(old["version"], 1);
    assert_eq!(step(&old, "mark")["output"]["title"], "from v1");
    let new = wait_done(&app, new["id"].as_str().unwrap(), Duration::from_secs(30)).await;
    assert_eq!(step(&new, "mark")["output"]["title"], "from v2");
    let (_, w) = app.get("/v1/workflows/pinned").await;
    assert_eq!(w["versions"].as_array().unwrap().len(), 2);

    // Inputs are checked against the schema.
    define(&app, json!({"id": "typed",
        "inputs": {"type": "object", "required": ["email"], "properties": {"email": {"type": "string", "format": "email"}}},
        "concurrency": {"key": "{{ inputs.email }}", "limit": 1},
        "steps": [{"id": "pause", "wait": {"duration": "1s"}}]})).await;
    let (status, body) =
        app.post("/v1/workflows/typed/executions", json!({"inputs": {"email": "nope"}})).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["code"], "invalid_inputs");
    assert!(body["error"]["message"].as_str().unwrap().contains("inputs/email"), "{body}");

    // Concurrency: one at a time per key; the second waits, a third key runs at once.
    let a = start(&app, "typed", json!({"email": "a@example.com"})).await;
    let b = start(&app, "typed", json!({"email": "a@example.com"})).await;
    let c = start(&app, "typed", json!({"email": "c@example.com"})).await;
    assert_eq!(a["status"], "running");
    assert_eq!(b["status"], "queued");
    assert_eq!(c["status"], "running");
    let a = wait_done(&app, a["id"].as_str().unwrap(), Duration::from_secs(30)).await;
    let b = wait_done(&app, b["id"].as_str().unwrap(), Duration::from_secs(30)).await;
    assert!(at(&a["completed_at"]) <= at(&b["started_at"]), "b started before a ended");
    // reject: refused while one is live.
    define(
        &app,
        json!({"id": "solo", "concurrency": {"limit": 1, "on_limit": "reject"},
        "steps": [{"id": "pause", "wait": {"duration": "2s"}}]}),
    )
    .await;
    start(&app, "solo", json!({})).await;
    let (status, body) = app.post("/v1/workflows/solo/executions", json!({})).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("concurrency_limit")),
        "{body}"
    );
    // cancel_in_progress: the newer start cancels the live one.
    define(
        &app,
        json!({"id": "latest", "concurrency": {"limit": 1, "on_limit": "cancel_in_progress"},
        "steps": [{"id": "pause", "wait": {"duration": "30s"}}]}),
    )
    .await;
    let old = start(&app, "latest", json!({})).await;
    let new = start(&app, "latest", json!({})).await;
    assert_eq!(new["status"], "running");
    let (_, old) =
        app.get(&format!("/v1/workflows/executions/{}", old["id"].as_str().unwrap())).await;
    assert_eq!(old["status"], "cancelled", "{old:#}");
    assert_eq!(step(&old, "pause")["status"], "cancelled");
    // Idempotency-Key: the same start twice is one execution.
    let send = || {
        app.req(Method::POST, "/v1/workflows/pinned/executions")
            .header("Idempotency-Key", "k1")
            .json(&json!({}))
            .send()
    };
    let one: Value = send().await.unwrap().json().await.unwrap();
    let two: Value = send().await.unwrap().json().await.unwrap();
    assert_eq!(one["id"], two["id"]);
    // Another organization sees none of it.
    let (_, other) = app.new_org("org-b").await;
    let (status, _) = app
        .call(
            Method::GET,
            &format!("/v1/workflows/executions/{}", one["id"].as_str().unwrap()),
            &other,
            None,
        )
        .await;
    assert_eq!(status, 404);
    let (_, list) = app.call(Method::GET, "/v1/workflows", &other, None).await;
    assert_eq!(list["data"], json!([]));
}

#[tokio::test]
async fn the_three_templates_run_end_to_end() {
    let app = stack().await;
    let (status, t) = app.get("/v1/workflows/templates").await;
    assert_eq!(status, 200);
    let ids: Vec<&str> =
        t["data"].as_array().unwrap().iter().map(|w| w["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["customer_onboarding", "customer_support", "revenue_analysis"]);

    let (status, onboard) = app
        .post(
            "/v1/workflows/start/customer_onboarding",
            json!({"name": "Ada Lovelace", "email": "ada@example.com", "plan": "enterprise"}),
        )
        .await;
    assert_eq!(status, 202, "{onboard}");
    let (status, revenue) = app
        .post("/v1/workflows/start/revenue_analysis", json!({"from": "2026-01", "to": "2026-06"}))
        .await;
    assert_eq!(status, 202, "{revenue}");
    let (status, bad) =
        app.post("/v1/workflows/start/customer_onboarding", json!({"name": "x"})).await;
    assert_eq!((status, bad["error"]["code"].as_str()), (422, Some("invalid_inputs")), "{bad}");

    let onboard = wait_done(&app, onboard["id"].as_str().unwrap(), Duration::from_secs(60)).await;
    assert_eq!(onboard["status"], "completed", "{onboard:#}");
    assert_eq!(step(&onboard, "create_record")["output"]["email"], "ada@example.com");
    assert_eq!(step(&onboard, "kickoff")["status"], "completed", "enterprise gets a kickoff task");
    assert_eq!(step(&onboard, "send_welcome")["output"]["to"], "ada@example.com");
    // Support for the customer just onboarded.
    let (status, support) = app
        .post(
            "/v1/workflows/start/customer_support",
            json!({"email": "ada@example.com", "message": "How do I export my data?"}),
        )
        .await;
    assert_eq!(status, 202, "{support}");
    let support = wait_done(&app, support["id"].as_str().unwrap(), Duration::from_secs(60)).await;
    assert_eq!(support["status"], "completed", "{support:#}");
    assert_eq!(step(&support, "context")["output"]["name"], "Ada Lovelace");
    assert_eq!(step(&support, "analyze")["output"]["escalate"], false);
    assert_eq!(step(&support, "escalate")["status"], "skipped");
    assert_eq!(step(&support, "log")["status"], "completed");

    let revenue = wait_done(&app, revenue["id"].as_str().unwrap(), Duration::from_secs(60)).await;
    assert_eq!(revenue["status"], "completed", "{revenue:#}");
    assert!(step(&revenue, "fetch")["output"]["records"].as_array().is_some_and(|r| !r.is_empty()));
    assert_eq!(step(&revenue, "forecast")["output"]["outlook"], "steady");
    assert!(revenue["output"]["store"]["id"].is_string(), "{revenue:#}");
    assert_eq!(
        app.count("SELECT count(*) FROM reports").await,
        2,
        "the support log and the revenue report"
    );
    assert_eq!(app.count("SELECT count(*) FROM outgoing_messages").await, 2, "welcome and answer");
}

fn signature(secret: &str, ts: i64, body: &[u8]) -> String {
    let mut msg = format!("{ts}.").into_bytes();
    msg.extend_from_slice(body);
    let mac = agentyard_store::tool_tokens::hmac(secret.as_bytes(), &msg);
    format!("sha256={}", mac.iter().map(|b| format!("{b:02x}")).collect::<String>())
}

#[tokio::test]
async fn cron_fires_once_per_tick_across_two_orchestrators_and_a_restart() {
    let mut app = TestApp::spawn_with(TestOptions { tools: true, ..Default::default() }).await;
    app.wait_tools().await;
    let one = app.start_orchestrator().expect("orchestrator");
    app.start_orchestrator().expect("orchestrator");
    define(
        &app,
        json!({"id": "ticker",
        "schedule": {"cron": "*/2 * * * * *", "inputs": {"who": "cron"}},
        "steps": [{"id": "note", "tool": {"name": "list_tasks"}}]}),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(7)).await;
    app.kill_worker(one).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (_, page) = app.get("/v1/workflows/executions?workflow_id=ticker&limit=100").await;
    let mut ticks: Vec<DateTime<Utc>> = page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            assert_eq!(e["trigger"]["kind"], "cron");
            assert_eq!(e["inputs"], json!({"who": "cron"}));
            at(&e["trigger"]["scheduled_at"])
        })
        .collect();
    ticks.sort();
    let n = ticks.len();
    assert!(n >= 5, "only {n} ticks fired in 12 s: {ticks:?}");
    ticks.dedup();
    assert_eq!(ticks.len(), n, "a tick fired twice");
    for w in ticks.windows(2) {
        assert_eq!((w[1] - w[0]).num_seconds(), 2, "a tick was missed: {ticks:?}");
    }
}

#[tokio::test]
async fn event_triggers_event_waits_and_signed_webhooks() {
    let app = stack().await;
    define(&app, json!({"id": "on-done",
        "on": {"event": "run.completed", "where": "event.data.run.input.startsWith('notify')",
               "inputs": {"text": "{{ event.data.run.input }}"}},
        "inputs": {"type": "object", "required": ["text"]},
        "steps": [{"id": "note", "tool": {"name": "add_task", "arguments": {"title": "{{ inputs.text }}"}}}]})).await;
    // Triggers are read every 2 s; events are read once the orchestrators' consumer exists.
    let js = async_nats::jetstream::new(async_nats::connect(&app.nats_url).await.unwrap());
    let events = agentyard_core::subjects::Subjects::new(app.prefix.clone()).events_stream();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let stream = js.get_stream(&events).await.unwrap();
        if stream.consumer_info("workflow_triggers").await.is_ok() {
            break;
        }
        assert!(Instant::now() < deadline, "the event reader never started");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let other = app.start_run("just chatting").await;
    let run = app.start_run("notify the team").await;
    app.wait_terminal(other["id"].as_str().unwrap(), Duration::from_secs(20)).await;
    app.wait_terminal(run["id"].as_str().unwrap(), Duration::from_secs(20)).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let e = loop {
        let (_, page) = app.get("/v1/workflows/executions?workflow_id=on-done").await;
        if let Some(e) = page["data"].as_array().and_then(|d| d.first()).cloned() {
            break e;
        }
        assert!(Instant::now() < deadline, "the event started nothing");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(e["trigger"]["kind"], "event");
    assert_eq!(e["trigger"]["run_id"], run["id"]);
    let e = wait_done(&app, e["id"].as_str().unwrap(), Duration::from_secs(20)).await;
    assert_eq!(step(&e, "note")["output"]["title"], "notify the team");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (_, page) = app.get("/v1/workflows/executions?workflow_id=on-done").await;
    assert_eq!(
        page["data"].as_array().unwrap().len(),
        1,
        "once per event, and its own runs never trigger it"
    );

    // A step that waits for an event: only the matching one moves it.
    define(&app, json!({"id": "listen", "inputs": {"type": "object", "required": ["tag"]},
        "steps": [
            {"id": "hear", "wait": {"event": "run.completed", "where": "event.data.run.input == 'go ' + inputs.tag", "timeout": "1m"}},
            {"id": "note", "depends_on": ["hear"], "tool": {"name": "add_task", "arguments": {"title": "heard {{ steps.hear.output.data.run.input }}"}}}
        ]})).await;
    define(
        &app,
        json!({"id": "deaf", "steps": [
            {"id": "hear", "wait": {"event": "run.failed", "timeout": "1s"}}
        ]}),
    )
    .await;
    let l = start(&app, "listen", json!({"tag": "alpha"})).await;
    let lid = l["id"].as_str().unwrap();
    wait_until(&app, lid, "waiting", |e| step(e, "hear")["status"] == "waiting").await;
    let beta = app.start_run("go beta").await;
    app.wait_terminal(beta["id"].as_str().unwrap(), Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, e) = app.get(&format!("/v1/workflows/executions/{lid}")).await;
    assert_eq!(step(&e, "hear")["status"], "waiting", "a non-matching event moved it");
    app.start_run("go alpha").await;
    let e = wait_done(&app, lid, Duration::from_secs(30)).await;
    assert_eq!(e["status"], "completed", "{e:#}");
    assert_eq!(step(&e, "note")["output"]["title"], "heard go alpha");
    let d = start(&app, "deaf", json!({})).await;
    let d = wait_done(&app, d["id"].as_str().unwrap(), Duration::from_secs(30)).await;
    assert_eq!(step(&d, "hear")["error"]["code"], "wait_timed_out");

    // Webhooks.
    define(&app, json!({"id": "hooked", "inputs": {"type": "object", "required": ["order"]},
        "steps": [{"id": "note", "tool": {"name": "add_task", "arguments": {"title": "order {{ inputs.order }}"}}}]})).await;
    let (status, hook) = app.post("/v1/workflows/hooked/hooks", json!({})).await;
    assert_eq!(status, 201, "{hook}");
    let secret = hook["secret"].as_str().unwrap().to_owned();
    let url = format!("{}{}", app.api_url, hook["path"].as_str().unwrap());
    let body = br#"{"order": 42}"#.to_vec();
    let send = |ts: i64, sig: String, body: Vec<u8>| {
        app.http
            .post(&url)
            .header("X-Agentyard-Timestamp", ts.to_string())
            .header("X-Agentyard-Signature", sig)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let now = Utc::now().timestamp();
    // A bad signature, a stale timestamp, a tampered body: 401, nothing started.
    let r = send(now, signature("whsec_wrong", now, &body), body.clone()).await.unwrap();
    assert_eq!(r.status(), 401);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "invalid_signature", "{v}");
    let old = now - 600;
    let r = send(old, signature(&secret, old, &body), body.clone()).await.unwrap();
    assert_eq!(r.status(), 401);
    let r = send(now, signature(&secret, now, &body), br#"{"order": 43}"#.to_vec()).await.unwrap();
    assert_eq!(r.status(), 401);
    let (_, page) = app.get("/v1/workflows/executions?workflow_id=hooked").await;
    assert_eq!(page["data"], json!([]), "a rejected call started something");
    // Signed: started; the same signed request again is the same execution.
    let sig = signature(&secret, now, &body);
    let r = send(now, sig.clone(), body.clone()).await.unwrap();
    assert_eq!(r.status(), 202);
    let first: Value = r.json().await.unwrap();
    assert_eq!(first["trigger"]["kind"], "webhook");
    let again: Value = send(now, sig, body.clone()).await.unwrap().json().await.unwrap();
    assert_eq!(again["id"], first["id"]);
    let e = wait_done(&app, first["id"].as_str().unwrap(), Duration::from_secs(20)).await;
    assert_eq!(step(&e, "note")["output"]["title"], "order 42");
    // Revoked: gone.
    let hook_id = hook["id"].as_str().unwrap();
    let r = app.req(Method::DELETE, &format!("/v1/hooks/{hook_id}")).send().await.unwrap();
    assert_eq!(r.status(), 204);
    let later = Utc::now().timestamp();
    let r = send(later, signature(&secret, later, &body), body.clone()).await.unwrap();
    assert_eq!(r.status(), 404);
}
