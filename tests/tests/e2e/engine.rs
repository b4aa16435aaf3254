//! The engine under every consumer: the organization's event stream, the list routes, a tool
//! job given up, runs that stop moving, and human waits that hold no worker slot.

use std::time::Duration;

use agentyard_e2e::{TestApp, TestOptions, sse};
use serde_json::{Value, json};

use crate::tools::{T, agent_of_type, ask, invocations, set_tools, tools_app, wait_status};

fn data(e: &agentyard_e2e::SseEvent) -> Value {
    serde_json::from_str(&e.data).unwrap()
}

async fn org_stream(
    app: &TestApp,
    token: &str,
    query: &str,
    last_id: Option<&str>,
) -> reqwest::Response {
    let mut req = app.http.get(format!("{}/v1/events{query}", app.api_url)).bearer_auth(token);
    if let Some(id) = last_id {
        req = req.header("Last-Event-ID", id);
    }
    let resp = req.send().await.unwrap();
    assert_eq!(resp.status(), 200);
    resp
}

#[tokio::test]
async fn the_org_event_stream_carries_every_run_of_the_org_and_nothing_of_another() {
    let app = TestApp::spawn().await;
    let (_, other_token) = app.new_org("org-b").await;
    let all = org_stream(&app, &app.token, "", None).await;
    let done_only = org_stream(&app, &app.token, "?kind=run.completed,run.failed", None).await;
    // Give the API a moment to register both streams before the runs start.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (s, theirs) = app
        .call(reqwest::Method::POST, "/v1/runs", &other_token, Some(json!({"input": "theirs"})))
        .await;
    assert_eq!(s, 202, "{theirs}");
    let ours = app.start_run("ours").await;
    let ours_id = ours["id"].as_str().unwrap().to_owned();
    let id = ours_id.clone();
    let events =
        sse::read(all, T, move |e| e.event == "run.completed" && data(e)["run_id"] == id.as_str())
            .await;
    assert!(
        events.iter().all(|e| data(e)["run_id"] == ours_id.as_str()),
        "another org's event: {events:?}"
    );
    let kinds = sse::kinds(&events);
    for k in ["run.queued", "run.started", "message.delta", "message.completed", "run.completed"] {
        assert!(kinds.contains(&k), "{k} missing from {kinds:?}");
    }
    let last = events.last().unwrap();
    assert_eq!(data(last)["run"]["id"], ours_id.as_str());
    // The filtered stream has only the end.
    let id = ours_id.clone();
    let ends = sse::read(done_only, T, move |e| data(e)["run_id"] == id.as_str()).await;
    assert_eq!(sse::kinds(&ends), ["run.completed"]);
    // Resuming after run.queued replays the rest, and nothing before it.
    let queued = events.iter().find(|e| e.event == "run.queued").unwrap();
    let resumed = org_stream(&app, &app.token, "", queued.id.as_deref()).await;
    let id = ours_id.clone();
    let replay = sse::read(resumed, T, move |e| {
        e.event == "run.completed" && data(e)["run_id"] == id.as_str()
    })
    .await;
    assert_eq!(sse::kinds(&replay)[0], "run.started", "{:?}", sse::kinds(&replay));
    assert_eq!(sse::content(&replay), sse::content(&events));
    // A bad kind is a 422 naming it.
    let (s, e) = app.get("/v1/events?kind=run.finished").await;
    assert_eq!((s, e["error"]["code"].as_str()), (422, Some("invalid_query")), "{e}");
}

#[tokio::test]
async fn threads_and_runs_are_listed_newest_first_page_by_page_and_filtered() {
    let app = TestApp::spawn().await;
    let (s, thread) = app.post("/v1/threads", json!({})).await;
    assert_eq!(s, 201);
    let thread_id = thread["id"].as_str().unwrap().to_owned();
    let mut ids = Vec::new();
    for i in 0..3 {
        let (s, r) = app
            .post(&format!("/v1/threads/{thread_id}/runs"), json!({"input": format!("hello {i}")}))
            .await;
        assert_eq!(s, 202, "{r}");
        ids.push(r["id"].as_str().unwrap().to_owned());
    }
    let failed = app.start_run("bad request please").await;
    let other = app.start_run("another thread").await;
    for id in ids.iter().chain([
        &failed["id"].as_str().unwrap().to_owned(),
        &other["id"].as_str().unwrap().to_owned(),
    ]) {
        app.wait_terminal(id, T).await;
    }
    // Pages of two, newest first, every run once.
    let (mut seen, mut cursor) = (Vec::new(), None::<String>);
    loop {
        let q = cursor.as_ref().map_or_else(String::new, |c| format!("&cursor={c}"));
        let (s, page) = app.get(&format!("/v1/runs?limit=2{q}")).await;
        assert_eq!(s, 200, "{page}");
        for r in page["data"].as_array().unwrap() {
            seen.push((
                r["created_at"].as_str().unwrap().to_owned(),
                r["id"].as_str().unwrap().to_owned(),
            ));
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 5, "{seen:?}");
    let mut sorted = seen.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(seen, sorted, "not newest first");
    let (_, by_thread) = app.get(&format!("/v1/runs?thread_id={thread_id}")).await;
    let listed: Vec<&str> =
        by_thread["data"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(listed, ids.iter().rev().map(String::as_str).collect::<Vec<_>>());
    let (_, by_status) = app.get("/v1/runs?status=failed").await;
    assert_eq!(by_status["data"].as_array().unwrap().len(), 1, "{by_status}");
    assert_eq!(by_status["data"][0]["id"], failed["id"]);
    let agent = failed["agent_id"].as_str().unwrap();
    let (_, by_agent) = app.get(&format!("/v1/runs?agent_id={agent}&status=completed")).await;
    assert_eq!(by_agent["data"].as_array().unwrap().len(), 4, "{by_agent}");
    // By creation time: `since` is inclusive, `until` exclusive (RFC 3339, `+` escaped).
    let (oldest, newest) = (&sorted[4].0, &sorted[0].0);
    let at = |t: &str| t.replace('+', "%2B");
    let (_, from_newest) = app.get(&format!("/v1/runs?since={}", at(newest))).await;
    assert_eq!(from_newest["data"].as_array().unwrap().len(), 1, "{from_newest}");
    assert_eq!(from_newest["data"][0]["id"].as_str(), Some(sorted[0].1.as_str()));
    let (_, before_newest) =
        app.get(&format!("/v1/runs?since={}&until={}", at(oldest), at(newest))).await;
    assert_eq!(before_newest["data"].as_array().unwrap().len(), 4, "{before_newest}");
    let (_, future) = app.get("/v1/runs?since=2999-01-01T00:00:00Z").await;
    assert_eq!(future["data"], json!([]));
    // Threads, newest first.
    let (_, threads) = app.get("/v1/threads?limit=2").await;
    assert_eq!(threads["data"].as_array().unwrap().len(), 2);
    let cursor = threads["next_cursor"].as_str().unwrap();
    let (_, rest) = app.get(&format!("/v1/threads?limit=2&cursor={cursor}")).await;
    assert_eq!(rest["data"].as_array().unwrap().len(), 1, "{rest}");
    assert!(rest["next_cursor"].is_null());
    // Another org sees none of it; bad queries are 422 (a number out of range: 400).
    let (_, token_b) = app.new_org("org-b").await;
    let (_, theirs) = app.call(reqwest::Method::GET, "/v1/runs", &token_b, None).await;
    assert_eq!(theirs["data"], json!([]));
    let (_, theirs) = app.call(reqwest::Method::GET, "/v1/threads", &token_b, None).await;
    assert_eq!(theirs["data"], json!([]));
    for (q, status, code) in [
        ("?status=done", 422, "invalid_query"),
        ("?cursor=nope", 422, "invalid_cursor"),
        ("?since=yesterday", 422, "invalid_query"),
        ("?limit=0", 400, "invalid_query"),
    ] {
        let (s, e) = app.get(&format!("/v1/runs{q}")).await;
        assert_eq!((s, e["error"]["code"].as_str()), (status, Some(code)), "{q}: {e}");
    }
}

#[tokio::test]
async fn a_tool_job_given_up_ends_its_call_with_an_error_the_model_sees() {
    // One delivery per job: the first retry of the unreachable server is already one too many.
    let app = tools_app(&[
        ("AY_MCP_ALLOW_PRIVATE", "1"),
        ("AY_MAX_DELIVERIES", "1"),
        ("AY_TOOL_TIMEOUT", "2s"),
    ])
    .await;
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let (s, server) = app
        .post(
            "/v1/mcp-servers",
            json!({"name": "gone", "url": format!("http://127.0.0.1:{port}/mcp")}),
        )
        .await;
    assert_eq!(s, 201, "{server}");
    let agent = agent_of_type(&app, "task_assistant").await;
    set_tools(&app, &agent, &["gone__*"], &[]).await;
    let run = ask(&app, Some(&agent), "rogue call gone__echo").await;
    assert_eq!(run["status"], "completed", "{run}");
    let calls = invocations(&app, &run).await;
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0]["is_error"], true);
    let result = calls[0]["result"].as_str().unwrap();
    assert!(
        result.contains("could not be completed") && result.contains("max_deliveries_exceeded"),
        "{result}"
    );
    assert!(run["output"]["content"].as_str().unwrap().contains("could not be completed"), "{run}");
    // The job went to the dead letters, under its kind.
    let js = async_nats::jetstream::new(async_nats::connect(&app.nats_url).await.unwrap());
    let subjects = agentyard_core::subjects::Subjects::new(app.prefix.clone());
    let dlq = js.get_stream(subjects.dlq_stream()).await.unwrap();
    let msg = dlq.get_last_raw_message_by_subject(&subjects.dlq("tool_call")).await.unwrap();
    let job: Value = serde_json::from_slice(&msg.payload).unwrap();
    assert_eq!(job["invocation_id"], calls[0]["id"]);
}

#[tokio::test]
async fn runs_whose_jobs_are_lost_or_never_taken_expire_with_a_reason() {
    let mut app = TestApp::spawn_with(TestOptions {
        env: [
            ("AY_MAX_ATTEMPTS", "2"),
            ("AY_RETRY_MAX", "500ms"),
            ("AY_TOOL_TIMEOUT", "1s"),
            ("AY_ACK_WAIT", "1s"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect(),
        ..Default::default()
    })
    .await;
    // One model call of 1 s: the run may go 1×2 + 0.5×2 + 1×2 + 2×1 = 7 s without progress.
    let (_, agents) = app.get("/v1/agents").await;
    let agent = agents["data"][0]["id"].as_str().unwrap().to_owned();
    let (s, a) = app
        .patch(&format!("/v1/agents/{agent}"), json!({"configuration": {"timeout_seconds": 1, "tools_enabled": ["add_task"], "tools_require_approval": []}}))
        .await;
    assert_eq!(s, 200, "{a}");
    // A call to another server's tool, which no tool worker ever takes (none runs here).
    let stuck_tool = app.start_run("rogue call elsewhere__lookup").await;
    wait_status(&app, stuck_tool["id"].as_str().unwrap(), "in_progress").await;
    // Runs whose agent jobs are lost: no worker while they are posted, the jobs purged.
    app.kill_worker(0).await;
    let mut lost = Vec::new();
    for i in 0..3 {
        lost.push(app.start_run(&format!("lost {i}")).await);
    }
    let js = async_nats::jetstream::new(async_nats::connect(&app.nats_url).await.unwrap());
    let subjects = agentyard_core::subjects::Subjects::new(app.prefix.clone());
    let jobs = js.get_stream(subjects.jobs_stream()).await.unwrap();
    jobs.purge().filter(subjects.all_agent_jobs()).await.unwrap();
    app.start_worker().unwrap();
    for run in lost.iter().chain([&stuck_tool]) {
        let done = app.wait_terminal(run["id"].as_str().unwrap(), T).await;
        assert_eq!(done["status"], "expired", "{done}");
        assert_eq!(done["error"]["code"], "run_expired");
        let message = done["error"]["message"].as_str().unwrap();
        assert!(message.contains("no progress") && message.contains("allows"), "{message}");
    }
    // The thread is free again: a new run on it completes.
    let thread = stuck_tool["thread_id"].as_str().unwrap();
    let (s, next) =
        app.post(&format!("/v1/threads/{thread}/runs"), json!({"input": "and now?"})).await;
    assert_eq!(s, 202, "{next}");
    let done = app.wait_terminal(next["id"].as_str().unwrap(), T).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(app.count("SELECT count(*) FROM live_runs").await, 0);
}

#[tokio::test]
async fn runs_waiting_for_approval_hold_no_worker_slot() {
    // The approval is asked for by the agent worker (the call's first round) and the answered
    // call runs in the tool worker (its next round): two slots each.
    let app = tools_app(&[("AY_TOOL_CONCURRENCY", "2"), ("AY_AGENT_CONCURRENCY", "2")]).await;
    let agent = agent_of_type(&app, "task_assistant").await;
    set_tools(&app, &agent, &["add_task", "list_tasks", "delete_task"], &["delete_task"]).await;
    let mut waiting = Vec::new();
    for i in 0..5 {
        let input = format!("call delete_task {{\"title\": \"task {i}\"}}");
        let (s, r) = app.post("/v1/runs", json!({"input": input, "agent_id": agent})).await;
        assert_eq!(s, 202, "{r}");
        waiting.push(r["id"].as_str().unwrap().to_owned());
    }
    for id in &waiting {
        let r = wait_status(&app, id, "requires_input").await;
        assert_eq!(r["required_input"]["kind"], "tool_approval", "{r}");
    }
    // Two slots, five waits: an ordinary call still goes through.
    let sixth = ask(&app, Some(&agent), "call list_tasks {}").await;
    assert_eq!(sixth["status"], "completed", "{sixth}");
    assert_eq!(sixth["tools_used"], json!(["list_tasks"]));
    // An answer enqueues the call again and the run ends.
    let (s, _) =
        app.post(&format!("/v1/runs/{}/input", waiting[0]), json!({"action": "deny"})).await;
    assert_eq!(s, 200);
    let done = app.wait_terminal(&waiting[0], T).await;
    assert_eq!(done["status"], "completed", "{done}");
    for id in &waiting[1..] {
        let (s, r) = app.post(&format!("/v1/runs/{id}/cancel"), json!({})).await;
        assert_eq!(s, 200, "{r}");
    }
    // A cancelled run's wait is closed in the audit log.
    let open: i64 =
        app.count("SELECT count(*) FROM tool_invocations WHERE status = 'requires_input'").await;
    assert_eq!(open, 0);
}
