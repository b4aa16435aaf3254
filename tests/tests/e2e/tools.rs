//! Tools over MCP: the step machine, the built-in tool server, external servers (streamable
//! HTTP and stdio), the audit log, elicitation, approval and failures. Real processes: API,
//! agent worker, tool worker, `agentyard mcp-server`, the scripted model, NATS and Postgres.

use std::time::Duration;

use agentyard_e2e::{TestApp, TestOptions};
use reqwest::Method;
use serde_json::{Value, json};

pub(crate) const T: Duration = Duration::from_secs(60);

pub(crate) async fn tools_app(env: &[(&str, &str)]) -> TestApp {
    let app = TestApp::spawn_with(TestOptions {
        tools: true,
        env: env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
        ..Default::default()
    })
    .await;
    app.wait_tools().await;
    app
}

pub(crate) async fn seed(app: &TestApp) {
    app.store.seed_demo(app.org_id.parse().unwrap()).await.unwrap();
}

/// Posts `input` to `agent` (the default agent when None) and waits for the end.
pub(crate) async fn ask(app: &TestApp, agent: Option<&str>, input: &str) -> Value {
    let mut body = json!({"input": input});
    if let Some(a) = agent {
        body["agent_id"] = json!(a);
    }
    let (s, run) = app.post("/v1/runs", body).await;
    assert_eq!(s, 202, "{run}");
    app.wait_terminal(run["id"].as_str().unwrap(), T).await
}

pub(crate) async fn invocations(app: &TestApp, run: &Value) -> Vec<Value> {
    let (s, list) =
        app.get(&format!("/v1/runs/{}/tool-invocations", run["id"].as_str().unwrap())).await;
    assert_eq!(s, 200, "{list}");
    list["data"].as_array().unwrap().clone()
}

pub(crate) async fn agent_of_type(app: &TestApp, agent_type: &str) -> String {
    let (s, a) = app.post("/v1/agents", json!({"agent_type": agent_type})).await;
    assert_eq!(s, 201, "{a}");
    a["id"].as_str().unwrap().to_owned()
}

pub(crate) async fn default_agent(app: &TestApp) -> String {
    let (_, list) = app.get("/v1/agents").await;
    list["data"][0]["id"].as_str().unwrap().to_owned()
}

pub(crate) async fn set_tools(app: &TestApp, agent: &str, enabled: &[&str], approval: &[&str]) {
    let (s, a) = app
        .call(
            Method::PUT,
            &format!("/v1/agents/{agent}/tools"),
            &app.token,
            Some(json!({"tools_enabled": enabled, "tools_require_approval": approval})),
        )
        .await;
    assert_eq!(s, 200, "{a}");
}

pub(crate) fn output(run: &Value) -> &str {
    run["output"]["content"].as_str().unwrap_or_default()
}

pub(crate) async fn event_types(app: &TestApp, run: &Value) -> Vec<String> {
    let url = format!("{}/v1/runs/{}/events", app.api_url, run["id"].as_str().unwrap());
    let text =
        app.http.get(url).bearer_auth(&app.token).send().await.unwrap().text().await.unwrap();
    text.lines().filter_map(|l| l.strip_prefix("event: ")).map(str::to_owned).collect()
}

pub(crate) async fn wait_status(app: &TestApp, run: &str, status: &str) -> Value {
    for _ in 0..300 {
        let (_, r) = app.get(&format!("/v1/runs/{run}")).await;
        if r["status"] == status {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("run {run} never reached {status}");
}

/// `agentyard_http_request_duration_seconds_count` of the built-in MCP server's `/mcp` route by
/// method, read from its `/metrics`.
async fn mcp_requests(app: &TestApp) -> std::collections::HashMap<String, f64> {
    let url = app.mcp_url().replace("/mcp", "/metrics");
    let text = app.http.get(url).send().await.unwrap().text().await.unwrap();
    let mut by_method = std::collections::HashMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("agentyard_http_request_duration_seconds_count{") else {
            continue;
        };
        if !rest.contains("route=\"/mcp\"") {
            continue;
        }
        let method = rest.split("method=\"").nth(1).and_then(|m| m.split('"').next()).unwrap();
        let n: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
        *by_method.entry(method.to_owned()).or_default() += n;
    }
    by_method
}

#[tokio::test]
async fn the_agent_worker_runs_the_built_in_calls_itself_each_as_its_own_run() {
    let mut app = tools_app(&[]).await;
    seed(&app).await;
    // No tool worker from here on (0: agent worker, 1: mcp-server, 2: tool worker): the
    // built-in calls never go to one.
    app.kill_worker(2).await;
    let run = ask(&app, None, "What integrations are active?").await;
    assert_eq!(run["status"], "completed", "{run}");
    assert_eq!(invocations(&app, &run).await[0]["status"], "completed", "{run}");
    let before = mcp_requests(&app).await;
    // Ten more, by two users: none is a request to the built-in server's process (the agent
    // worker runs the built-in tools itself, each call with its run's own token).
    let (s, agent) = app.post("/v1/agents", json!({"agent_type": "task_assistant"})).await;
    assert_eq!(s, 201, "{agent}");
    let agent = agent["id"].as_str().unwrap();
    let (_, ada) = crate::users::member(&app, "Ada").await;
    let (_, bob) = crate::users::member(&app, "Bob").await;
    for i in 0..10 {
        let token = if i % 2 == 0 { &ada } else { &bob };
        crate::users::ask(&app, token, agent, &format!("add a task to errand {i}")).await;
    }
    let after = mcp_requests(&app).await;
    let delta = |m: &str| after.get(m).unwrap_or(&0.0) - before.get(m).unwrap_or(&0.0);
    assert_eq!((delta("POST"), delta("DELETE")), (0.0, 0.0), "before {before:?}, after {after:?}");
    // Each call acted as its own run's user: each user lists only its five tasks.
    for token in [&ada, &bob] {
        let (_, tasks) = app.call(Method::GET, "/v1/tasks", token, None).await;
        assert_eq!(tasks["data"].as_array().unwrap().len(), 5, "{tasks}");
    }
    // The turn claimed each call (one attempt, no claim of its own), and each started after it
    // was stored and before its result: the start the agent worker saw.
    let calls: Vec<(i32, bool)> = sqlx::query_as(
        "SELECT attempt, created_at <= started_at AND started_at <= completed_at \
         FROM tool_invocations",
    )
    .fetch_all(app.store.pool())
    .await
    .unwrap();
    assert_eq!(calls, vec![(1, true); 11]);
}

#[tokio::test]
async fn what_integrations_are_active_is_answered_by_a_logged_tool_call() {
    let app = tools_app(&[]).await;
    seed(&app).await;
    let run = ask(&app, None, "What integrations are active?").await;
    assert_eq!(run["status"], "completed", "{run}");
    assert_eq!(run["tools_used"], json!(["get_active_integrations"]));
    let active: Vec<String> =
        sqlx::query_scalar("SELECT name FROM integrations WHERE is_active ORDER BY name")
            .fetch_all(app.store.pool())
            .await
            .unwrap();
    let inactive: Vec<String> =
        sqlx::query_scalar("SELECT name FROM integrations WHERE NOT is_active")
            .fetch_all(app.store.pool())
            .await
            .unwrap();
    assert!(!active.is_empty() && !inactive.is_empty());
    for name in &active {
        assert!(output(&run).contains(name.as_str()), "{name} missing from {}", output(&run));
    }
    for name in &inactive {
        assert!(!output(&run).contains(name.as_str()), "inactive {name} in {}", output(&run));
    }
    let calls = invocations(&app, &run).await;
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0]["tool"], "get_active_integrations");
    assert_eq!(calls[0]["server"], "builtin");
    assert_eq!(calls[0]["is_error"], false);
    assert!(calls[0]["duration_ms"].as_i64().is_some(), "{}", calls[0]);
    // The same data over REST: switching an integration off changes the next answer.
    let (_, list) = app.get("/v1/integrations").await;
    let slack =
        list["data"].as_array().unwrap().iter().find(|i| i["name"] == active[0]).unwrap().clone();
    let (s, patched) = app
        .patch(
            &format!("/v1/integrations/{}", slack["id"].as_str().unwrap()),
            json!({"is_active": false}),
        )
        .await;
    assert_eq!((s, &patched["is_active"]), (200, &json!(false)), "{patched}");
    let again = ask(&app, None, "What integrations are active?").await;
    assert!(!output(&again).contains(active[0].as_str()), "{again}");
    let (_, org_log) = app.get("/v1/tool-invocations?tool=get_active_integrations").await;
    assert_eq!(org_log["data"].as_array().unwrap().len(), 2);
    let agent = default_agent(&app).await;
    let (_, status) = app.get(&format!("/v1/agents/{agent}/status")).await;
    assert_eq!(status["tool_servers"], json!([{"name": "builtin", "reachable": true}]), "{status}");
    assert_eq!(status["tools_available"].as_array().unwrap().len(), 13);
    let events = event_types(&app, &run).await;
    for e in ["tool_call.created", "tool_call.completed", "run.completed"] {
        assert!(events.iter().any(|x| x == e), "{e} missing from {events:?}");
    }
}

#[tokio::test]
async fn tasks_are_added_listed_completed_and_deleted_through_chat() {
    let app = tools_app(&[]).await;
    let agent = agent_of_type(&app, "task_assistant").await;
    set_tools(&app, &agent, &["add_task", "list_tasks", "complete_task", "delete_task"], &[]).await;
    let run = ask(&app, Some(&agent), "add a task to buy groceries").await;
    assert_eq!(
        (&run["status"], &run["tools_used"]),
        (&json!("completed"), &json!(["add_task"])),
        "{run}"
    );
    let (title, status): (String, String) = sqlx::query_as("SELECT title, status FROM tasks")
        .fetch_one(app.store.pool())
        .await
        .unwrap();
    assert_eq!((title.as_str(), status.as_str()), ("buy groceries", "pending"));
    let (_, listed) = app.get("/v1/tasks").await;
    assert_eq!(listed["data"][0]["title"], "buy groceries", "{listed}");

    let run = ask(&app, Some(&agent), "list my tasks").await;
    assert!(output(&run).contains("buy groceries"), "{run}");
    let run = ask(&app, Some(&agent), "complete the task buy groceries").await;
    assert_eq!(run["tools_used"], json!(["complete_task"]), "{run}");
    let status: String =
        sqlx::query_scalar("SELECT status FROM tasks").fetch_one(app.store.pool()).await.unwrap();
    assert_eq!(status, "completed");
    let run = ask(&app, Some(&agent), "delete the task buy groceries").await;
    assert_eq!(run["tools_used"], json!(["delete_task"]), "{run}");
    assert_eq!(app.count("SELECT count(*) FROM tasks").await, 0);
    let (_, listed) = app.get("/v1/tasks").await;
    assert_eq!(listed["data"], json!([]));
}

#[tokio::test]
async fn two_calls_in_one_turn_both_run_and_the_next_step_is_enqueued_once() {
    let app = tools_app(&[]).await;
    let agent = agent_of_type(&app, "task_assistant").await;
    app.llm.clear_requests();
    let run = ask(&app, Some(&agent), "add tasks milk and bread").await;
    assert_eq!(run["status"], "completed", "{run}");
    assert_eq!(run["tools_used"], json!(["add_task", "add_task"]));
    let mut titles: Vec<String> =
        sqlx::query_scalar("SELECT title FROM tasks").fetch_all(app.store.pool()).await.unwrap();
    titles.sort();
    assert_eq!(titles, ["bread", "milk"]);
    // One model turn with the calls, one after both results: never a third.
    assert_eq!(app.llm.requests().len(), 2);
    let roles: Vec<String> =
        sqlx::query_scalar("SELECT role FROM messages WHERE run_id = $1::uuid ORDER BY seq")
            .bind(run["id"].as_str().unwrap())
            .fetch_all(app.store.pool())
            .await
            .unwrap();
    assert_eq!(roles, ["user", "assistant", "tool", "tool", "assistant"]);
    assert_eq!(invocations(&app, &run).await.len(), 2);
}

#[tokio::test]
async fn an_agent_worker_killed_during_a_built_in_call_leaves_it_to_a_tool_worker_and_one_ticket() {
    // A slow model: the call, which asks the model to classify the ticket (MCP sampling), is
    // still running when its worker is killed. Jobs not acked come back after 2 s.
    let mut app = TestApp::spawn_with(TestOptions {
        tools: true,
        token_delay_ms: 150,
        env: vec![("AY_ACK_WAIT".into(), "2s".into())],
        ..Default::default()
    })
    .await;
    app.wait_tools().await;
    let input = r#"call create_ticket_with_ai {"text": "I was charged twice this month. Please refund me, it is urgent."}"#;
    let (s, r) = app.post("/v1/runs", json!({"input": input})).await;
    assert_eq!(s, 202, "{r}");
    let id = r["id"].as_str().unwrap().to_owned();
    // The agent worker took the call itself (no tool worker got a job for it) and waits for
    // the model's classification.
    let started = "SELECT count(*) FROM tool_invocations WHERE attempt = 1 AND status = 'pending'";
    for _ in 0..3000 {
        if app.count(started).await == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(app.count(started).await, 1, "the call never started");
    app.kill_worker(0).await;
    assert_eq!(
        app.count("SELECT count(*) FROM tickets").await,
        0,
        "the call ended before the kill"
    );
    // The step's job comes back to a new agent worker, finds the step stored, and hands the
    // unfinished call to the tool worker, which runs it again.
    app.start_worker().unwrap();
    let done = app.wait_terminal(&id, T).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert!(output(&done).contains("The model chose category billing and priority high"), "{done}");
    assert_eq!(app.count("SELECT count(*) FROM tickets").await, 1, "exactly one ticket");
    let calls = invocations(&app, &done).await;
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(
        (calls[0]["status"].as_str(), calls[0]["attempt"].as_i64()),
        (Some("completed"), Some(2))
    );
}

#[tokio::test]
async fn another_orgs_agent_cannot_see_or_change_this_orgs_data() {
    let app = tools_app(&[]).await;
    seed(&app).await;
    let (s, _) = app.post("/v1/tasks", json!({"title": "secret plan"})).await;
    assert_eq!(s, 201);
    let (_, b_token) = app.new_org("b").await;
    let as_b = |method: Method, path: &str, body: Option<Value>| {
        let t = b_token.clone();
        let app = &app;
        let path = path.to_owned();
        async move { app.call(method, &path, &t, body).await }
    };
    let (_, b_agent) =
        as_b(Method::POST, "/v1/agents", Some(json!({"agent_type": "task_assistant"}))).await;
    let b_agent = b_agent["id"].as_str().unwrap().to_owned();
    let mut outputs = Vec::new();
    for (agent, input) in [
        (Some(b_agent.as_str()), "list my tasks"),
        (Some(b_agent.as_str()), "complete the task secret plan"),
        (None, "What integrations are active?"),
        (None, "show ticket stats"),
    ] {
        let mut body = json!({"input": input});
        if let Some(a) = agent {
            body["agent_id"] = json!(a);
        }
        let (s, r) = as_b(Method::POST, "/v1/runs", Some(body)).await;
        assert_eq!(s, 202, "{r}");
        let path = format!("/v1/runs/{}?wait=30", r["id"].as_str().unwrap());
        let (_, done) = as_b(Method::GET, &path, None).await;
        assert_eq!(done["status"], "completed", "{done}");
        outputs.push(output(&done).to_owned());
    }
    let all = outputs.join("\n");
    assert!(!outputs[0].contains("secret plan"), "{}", outputs[0]);
    for name in ["Slack", "Salesforce", "GitHub"] {
        assert!(!all.contains(name), "org B saw {name}: {all}");
    }
    let status: String = sqlx::query_scalar("SELECT status FROM tasks WHERE title = 'secret plan'")
        .fetch_one(app.store.pool())
        .await
        .unwrap();
    assert_eq!(status, "pending", "org B changed nothing");
    let (_, b_tasks) = as_b(Method::GET, "/v1/tasks", None).await;
    assert_eq!(b_tasks["data"], json!([]));
    let (_, b_integrations) = as_b(Method::GET, "/v1/integrations", None).await;
    assert_eq!(b_integrations["data"], json!([]));
    let (_, b_tickets) = as_b(Method::GET, "/v1/tickets", None).await;
    assert_eq!(b_tickets["data"], json!([]));
}

#[tokio::test]
async fn a_disabled_tool_or_a_missing_scope_gets_an_error_result_and_nothing_runs() {
    let app = tools_app(&[]).await;
    seed(&app).await;
    // The default agent (customer support) has no task tools; the model calls one anyway.
    let run = ask(&app, None, "rogue add sneaky").await;
    assert_eq!(run["status"], "completed", "{run}");
    assert!(output(&run).contains("not enabled"), "{run}");
    assert_eq!(app.count("SELECT count(*) FROM tasks").await, 0);
    let calls = invocations(&app, &run).await;
    assert_eq!(
        (&calls[0]["is_error"], &calls[0]["attempt"]),
        (&json!(true), &json!(0)),
        "{calls:?}"
    );

    // A token that may start runs but not read: the read-only tool is refused.
    let write_only = app
        .store
        .create_token(app.org_id.parse().unwrap(), "w", &[agentyard_core::Scope::RunsWrite])
        .await
        .unwrap()
        .secret;
    let (s, r) = app
        .call(
            Method::POST,
            "/v1/runs",
            &write_only,
            Some(json!({"input": "What integrations are active?"})),
        )
        .await;
    assert_eq!(s, 202, "{r}");
    let done = app.wait_terminal(r["id"].as_str().unwrap(), T).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert!(output(&done).contains("scope runs:read"), "{done}");
    for name in ["Slack", "Salesforce"] {
        assert!(!output(&done).contains(name), "{done}");
    }
    let calls = invocations(&app, &done).await;
    assert_eq!(calls[0]["is_error"], true);
}

#[tokio::test]
async fn create_ticket_without_a_description_asks_the_user() {
    let app = tools_app(&[]).await;
    let (s, r) = app
        .post(
            "/v1/runs",
            json!({"input": "create a ticket titled Printer on fire without a description"}),
        )
        .await;
    assert_eq!(s, 202, "{r}");
    let id = r["id"].as_str().unwrap().to_owned();
    let waiting = wait_status(&app, &id, "requires_input").await;
    let asked = &waiting["required_input"];
    assert_eq!(asked["kind"], "elicitation", "{waiting}");
    assert!(asked["requested_schema"]["properties"]["description"].is_object(), "{asked}");
    assert!(asked["message"].as_str().is_some_and(|m| !m.is_empty()));
    let (s, e) = app
        .post(
            &format!("/v1/runs/{id}/input"),
            json!({"action": "accept", "content": {"description": 42}}),
        )
        .await;
    assert_eq!((s, e["error"]["code"].as_str()), (422, Some("invalid_content")), "{e}");
    let (s, e) = app.post(&format!("/v1/runs/{id}/input"), json!({"action": "approve"})).await;
    assert_eq!(s, 422, "{e}");
    let (s, r2) = app
        .post(
            &format!("/v1/runs/{id}/input"),
            json!({"action": "accept", "content": {"description": "Smoke from tray 2"}}),
        )
        .await;
    assert_eq!(s, 200, "{r2}");
    let done = app.wait_terminal(&id, T).await;
    assert_eq!(done["status"], "completed", "{done}");
    let (title, description): (String, String) =
        sqlx::query_as("SELECT title, description FROM tickets")
            .fetch_one(app.store.pool())
            .await
            .unwrap();
    assert_eq!((title.as_str(), description.as_str()), ("Printer on fire", "Smoke from tray 2"));
    let events = event_types(&app, &done).await;
    assert!(events.iter().any(|e| e == "run.requires_input"), "{events:?}");
    let (s, _) = app.post(&format!("/v1/runs/{id}/input"), json!({"action": "decline"})).await;
    assert_eq!(s, 409, "a finished run waits for nothing");

    // Declined: the model is told, no ticket, the run still completes.
    let (_, r) = app
        .post("/v1/runs", json!({"input": "create a ticket titled Second without a description"}))
        .await;
    let id = r["id"].as_str().unwrap().to_owned();
    wait_status(&app, &id, "requires_input").await;
    let (s, _) = app.post(&format!("/v1/runs/{id}/input"), json!({"action": "decline"})).await;
    assert_eq!(s, 200);
    let done = app.wait_terminal(&id, T).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert!(output(&done).to_lowercase().contains("declin"), "{done}");
    assert_eq!(app.count("SELECT count(*) FROM tickets").await, 1);
}

#[tokio::test]
async fn an_answer_given_while_the_tool_worker_is_down_is_used_by_the_redelivered_call() {
    let mut app = tools_app(&[]).await;
    let (_, r) = app
        .post("/v1/runs", json!({"input": "create a ticket titled Crashy without a description"}))
        .await;
    let id = r["id"].as_str().unwrap().to_owned();
    wait_status(&app, &id, "requires_input").await;
    app.kill_worker(2).await; // the tool worker, which would take the answered call
    let (s, _) = app
        .post(
            &format!("/v1/runs/{id}/input"),
            json!({"action": "accept", "content": {"description": "kept across a crash"}}),
        )
        .await;
    assert_eq!(s, 200);
    app.start_tool_worker().unwrap();
    let done = app.wait_terminal(&id, T).await;
    assert_eq!(done["status"], "completed", "{done}");
    let descriptions: Vec<String> = sqlx::query_scalar("SELECT description FROM tickets")
        .fetch_all(app.store.pool())
        .await
        .unwrap();
    assert_eq!(descriptions, ["kept across a crash"], "one ticket, with the answer given once");
}

#[tokio::test]
async fn create_ticket_with_ai_lets_the_model_pick_category_and_priority() {
    let app = tools_app(&[]).await;
    app.llm.clear_requests();
    let input = r#"call create_ticket_with_ai {"text": "I was charged twice this month. Please refund me, it is urgent."}"#;
    let run = ask(&app, None, input).await;
    assert_eq!(run["status"], "completed", "{run}");
    assert!(output(&run).contains("The model chose category billing and priority high"), "{run}");
    let (category, priority): (String, String) =
        sqlx::query_as("SELECT category, priority FROM tickets")
            .fetch_one(app.store.pool())
            .await
            .unwrap();
    assert_eq!((category.as_str(), priority.as_str()), ("billing", "high"));
    // The tool server asked the platform's model through the tool worker (MCP sampling).
    let asked = app.llm.requests().iter().any(|r| {
        r["messages"].as_array().unwrap().iter().any(|m| {
            m["content"].as_str().is_some_and(|c| c.starts_with("Classify this support ticket"))
        })
    });
    assert!(asked, "the model was not asked");
}

#[tokio::test]
async fn no_answer_in_time_counts_as_decline() {
    let app = tools_app(&[("AY_INPUT_TIMEOUT", "1s")]).await;
    let (_, r) = app
        .post("/v1/runs", json!({"input": "create a ticket titled Ignored without a description"}))
        .await;
    let id = r["id"].as_str().unwrap().to_owned();
    wait_status(&app, &id, "requires_input").await;
    let done = app.wait_terminal(&id, T).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert!(output(&done).to_lowercase().contains("declin"), "{done}");
    assert_eq!(app.count("SELECT count(*) FROM tickets").await, 0);
}

#[tokio::test]
async fn a_delete_waits_for_approval_and_runs_once_or_never() {
    let app = tools_app(&[]).await;
    seed(&app).await;
    let tickets: Vec<uuid::Uuid> =
        sqlx::query_scalar("SELECT id FROM tickets ORDER BY created_at LIMIT 2")
            .fetch_all(app.store.pool())
            .await
            .unwrap();
    let before = app.count("SELECT count(*) FROM tickets").await;
    // Approved: the ticket is deleted, once.
    let input = format!("call delete_ticket {{\"ticket_id\": \"{}\"}}", tickets[0]);
    let (_, r) = app.post("/v1/runs", json!({"input": input})).await;
    let id = r["id"].as_str().unwrap().to_owned();
    let waiting = wait_status(&app, &id, "requires_input").await;
    assert_eq!(waiting["required_input"]["kind"], "tool_approval", "{waiting}");
    assert_eq!(waiting["required_input"]["tool"], "delete_ticket");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        app.count("SELECT count(*) FROM tickets").await,
        before,
        "nothing ran before approval"
    );
    let (s, _) = app.post(&format!("/v1/runs/{id}/input"), json!({"action": "approve"})).await;
    assert_eq!(s, 200);
    let done = app.wait_terminal(&id, T).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(app.count("SELECT count(*) FROM tickets").await, before - 1);
    let calls = invocations(&app, &done).await;
    assert_eq!((calls.len(), &calls[0]["is_error"]), (1, &json!(false)), "{calls:?}");

    // Denied: it never runs.
    let input = format!("call delete_ticket {{\"ticket_id\": \"{}\"}}", tickets[1]);
    let (_, r) = app.post("/v1/runs", json!({"input": input})).await;
    let id = r["id"].as_str().unwrap().to_owned();
    wait_status(&app, &id, "requires_input").await;
    let (s, _) = app.post(&format!("/v1/runs/{id}/input"), json!({"action": "deny"})).await;
    assert_eq!(s, 200);
    let done = app.wait_terminal(&id, T).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert!(output(&done).contains("did not approve"), "{done}");
    assert_eq!(
        app.count("SELECT count(*) FROM tickets").await,
        before - 1,
        "the denied delete never ran"
    );
}

#[tokio::test]
async fn a_run_past_max_steps_fails_with_max_steps_exceeded() {
    let app = tools_app(&[]).await;
    let agent = agent_of_type(&app, "task_assistant").await;
    let (s, _) =
        app.patch(&format!("/v1/agents/{agent}"), json!({"configuration": {"max_steps": 3}})).await;
    assert_eq!(s, 200);
    let run = ask(&app, Some(&agent), "keep calling tools").await;
    assert_eq!(run["status"], "failed", "{run}");
    assert_eq!(run["error"]["code"], "max_steps_exceeded");
    assert_eq!(invocations(&app, &run).await.len(), 3, "three turns, each with a call");
}

#[tokio::test]
async fn an_unreachable_server_is_retried_then_answered_with_an_error_and_the_run_completes() {
    let app = tools_app(&[("AY_MCP_ALLOW_PRIVATE", "1"), ("AY_TOOL_TIMEOUT", "2s")]).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let (s, server) = app
        .post(
            "/v1/mcp-servers",
            json!({"name": "down", "url": format!("http://127.0.0.1:{port}/mcp")}),
        )
        .await;
    assert_eq!(s, 201, "{server}");
    assert!(server["last_error"].as_str().is_some(), "{server}");
    let agent = default_agent(&app).await;
    set_tools(&app, &agent, &["list_tickets", "down__*"], &[]).await;
    let run = ask(&app, None, "rogue call down__echo").await;
    assert_eq!(run["status"], "completed", "{run}");
    assert!(output(&run).contains("could not be reached"), "{run}");
    let calls = invocations(&app, &run).await;
    assert_eq!(calls[0]["is_error"], true);
    assert!(calls[0]["attempt"].as_i64().unwrap() >= 2, "retried: {}", calls[0]);
}

#[tokio::test]
async fn bad_registrations_are_refused_with_json_errors() {
    let app = TestApp::spawn_with(TestOptions { workers: 0, ..Default::default() }).await;
    for (body, status, code) in [
        (json!({"name": "x", "url": "not a url"}), 422, "invalid_url"),
        (json!({"name": "x", "url": "ftp://example.com/mcp"}), 422, "invalid_url"),
        (json!({"name": "x", "url": "http://127.0.0.1:9/mcp"}), 422, "invalid_url"),
        (json!({"name": "x", "url": "http://10.0.0.7/mcp"}), 422, "invalid_url"),
        (json!({"name": "Bad Name", "url": "https://93.184.216.34/mcp"}), 422, "invalid_name"),
        (json!({"name": "a__b", "url": "https://93.184.216.34/mcp"}), 422, "invalid_name"),
        (
            json!({"name": "x", "url": "https://93.184.216.34/mcp", "command": "rm"}),
            422,
            "invalid_request",
        ),
    ] {
        let (s, e) = app.post("/v1/mcp-servers", body.clone()).await;
        assert_eq!((s, e["error"]["code"].as_str()), (status, Some(code)), "{body}: {e}");
    }
    assert_eq!(app.count("SELECT count(*) FROM mcp_servers").await, 0, "nothing stored");
    let agent = default_agent(&app).await;
    let (s, e) = app
        .call(
            Method::PUT,
            &format!("/v1/agents/{agent}/tools"),
            &app.token,
            Some(json!({"tools_enabled": ["nosuch__echo"]})),
        )
        .await;
    assert_eq!(s, 422, "a tool of an unknown server: {e}");
    assert!(e["error"]["message"].as_str().unwrap().contains("nosuch"), "{e}");
    let app2 = TestApp::spawn_with(TestOptions {
        workers: 0,
        env: vec![("AY_MCP_ALLOW_PRIVATE".into(), "1".into())],
        ..Default::default()
    })
    .await;
    let (s, first) = app2
        .post(
            "/v1/mcp-servers",
            json!({"name": "local", "url": "http://127.0.0.1:9/mcp", "bearer_token": "s3cret"}),
        )
        .await;
    assert_eq!(s, 201, "allowed by the operator: {first}");
    assert!(!first.to_string().contains("s3cret"), "the token is never returned");
    let (s, e) = app2
        .post("/v1/mcp-servers", json!({"name": "local", "url": "http://127.0.0.1:10/mcp"}))
        .await;
    assert_eq!((s, e["error"]["code"].as_str()), (409, Some("server_exists")), "{e}");
    let (_, list) = app2.get("/v1/mcp-servers").await;
    assert!(!list.to_string().contains("s3cret"));
    assert_eq!(list["data"][0]["has_token"], true);
}

/// `@modelcontextprotocol/server-everything`, installed by `.ci/run` (or here when missing).
pub(crate) fn everything_js() -> std::path::PathBuf {
    let dir = std::env::var("AY_TEST_NPM_DIR").map(std::path::PathBuf::from).unwrap_or_else(|_| {
        std::path::PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/agentyard/npm")
    });
    let js = dir.join("node_modules/@modelcontextprotocol/server-everything/dist/index.js");
    if !js.exists() {
        std::fs::create_dir_all(&dir).unwrap();
        let ok = std::process::Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "@modelcontextprotocol/server-everything"])
            .current_dir(&dir)
            .status()
            .expect("npm");
        assert!(ok.success(), "npm install @modelcontextprotocol/server-everything failed");
    }
    js
}

#[tokio::test]
async fn external_servers_over_streamable_http_and_stdio_are_listed_called_and_logged() {
    let js = everything_js();
    // The operator's stdio server, from config/mcp-servers.yaml.
    let dir = std::env::temp_dir().join(format!("ay-mcp-config-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("mcp-servers.yaml"),
        format!(
            "servers:\n  every-stdio:\n    command: node\n    args: [\"{}\", stdio]\n",
            js.display()
        ),
    )
    .unwrap();
    let app =
        tools_app(&[("AY_MCP_ALLOW_PRIVATE", "1"), ("AY_CONFIG_DIR", dir.to_str().unwrap())]).await;
    // The streamable HTTP one, registered by the org.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut http = tokio::process::Command::new("node")
        .arg(&js)
        .arg("streamableHttp")
        .env("PORT", port.to_string())
        .kill_on_drop(true)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut up = false;
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(up, "server-everything did not listen on {port}");
    let (s, server) = app
        .post(
            "/v1/mcp-servers",
            json!({"name": "every-http", "url": format!("http://127.0.0.1:{port}/mcp")}),
        )
        .await;
    assert_eq!(s, 201, "{server}");
    assert!(server["last_error"].is_null(), "{server}");
    let id = server["id"].as_str().unwrap();
    let (_, tools) = app.get(&format!("/v1/mcp-servers/{id}/tools")).await;
    assert!(tools.as_array().unwrap().iter().any(|t| t["name"] == "echo"), "{tools}");
    // The stdio server's tools, listed by the tool worker.
    for _ in 0..200 {
        if app.count("SELECT count(*) FROM platform_tools WHERE server = 'every-stdio'").await > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let agent = default_agent(&app).await;
    set_tools(&app, &agent, &["every-http__echo", "every-stdio__echo"], &[]).await;
    tokio::time::sleep(Duration::from_secs(6)).await; // the agent workers' tool cache
    for (server, words) in [("every-http", "over http"), ("every-stdio", "over stdio")] {
        let input = format!("call {server}__echo {{\"message\": \"{words}\"}}");
        let run = ask(&app, None, &input).await;
        assert_eq!(run["status"], "completed", "{run}");
        assert_eq!(run["tools_used"], json!([format!("{server}__echo")]), "{run}");
        assert!(output(&run).contains(words), "{run}");
        let calls = invocations(&app, &run).await;
        assert_eq!(
            (&calls[0]["server"], &calls[0]["is_error"]),
            (&json!(server), &json!(false)),
            "{calls:?}"
        );
    }
    // The stdio server's process is kept for the next calls of the organization; another
    // organization gets a process of its own.
    let stdio = || {
        let pattern = format!("{} stdio", js.display());
        let out = std::process::Command::new("pgrep").args(["-f", &pattern]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect::<Vec<_>>()
    };
    let first = stdio();
    assert_eq!(first.len(), 1, "one process kept for the org: {first:?}");
    for n in 0..3 {
        let run =
            ask(&app, None, &format!("call every-stdio__echo {{\"message\": \"again {n}\"}}"))
                .await;
        assert!(output(&run).contains(&format!("again {n}")), "{run}");
    }
    assert_eq!(stdio(), first, "the same process served the org's next calls");
    let (_, other) = app.new_org("other").await;
    let (_, agents) = app.call(Method::GET, "/v1/agents", &other, None).await;
    let theirs = agents["data"][0]["id"].as_str().unwrap().to_owned();
    let tools = json!({"tools_enabled": ["every-stdio__echo"], "tools_require_approval": []});
    let (s, a) =
        app.call(Method::PUT, &format!("/v1/agents/{theirs}/tools"), &other, Some(tools)).await;
    assert_eq!(s, 200, "{a}");
    tokio::time::sleep(Duration::from_secs(6)).await; // the agent workers' tool cache
    let body = json!({"input": "call every-stdio__echo {\"message\": \"from elsewhere\"}"});
    let (s, run) = app.call(Method::POST, "/v1/runs", &other, Some(body)).await;
    assert_eq!(s, 202, "{run}");
    let wait = format!("/v1/runs/{}?wait=30", run["id"].as_str().unwrap());
    let (_, run) = app.call(Method::GET, &wait, &other, None).await;
    assert!(output(&run).contains("from elsewhere"), "{run}");
    let both = stdio();
    assert_eq!(both.len(), 2, "a process per organization: {both:?}");
    assert!(both.contains(&first[0]), "{both:?}");
    let _ = http.kill().await;
}

#[tokio::test]
async fn the_audit_log_is_filtered_by_user() {
    let app = tools_app(&[]).await;
    seed(&app).await;
    let (s, ada) = app.post("/v1/users", json!({"name": "Ada"})).await;
    assert_eq!(s, 201, "{ada}");
    let (s, t) = app
        .post(
            "/v1/tokens",
            json!({"user_id": ada["id"], "name": "ada's", "scopes": ["runs:read", "runs:write"]}),
        )
        .await;
    assert_eq!(s, 201, "{t}");
    let ada_token = t["token"].as_str().unwrap().to_owned();
    let input = json!({"input": "What integrations are active?"});
    let (s, run) = app.call(Method::POST, "/v1/runs", &ada_token, Some(input)).await;
    assert_eq!(s, 202, "{run}");
    assert_eq!(app.wait_terminal(run["id"].as_str().unwrap(), T).await["status"], "completed");
    assert_eq!(ask(&app, None, "What integrations are active?").await["status"], "completed");

    let (_, all) = app.get("/v1/tool-invocations").await;
    assert_eq!(all["data"].as_array().unwrap().len(), 2, "{all}");
    assert!(all["next_cursor"].is_null(), "{all}");
    let ada_id = ada["id"].as_str().unwrap();
    let (s, mine) = app.get(&format!("/v1/tool-invocations?user_id={ada_id}")).await;
    assert_eq!(s, 200, "{mine}");
    let mine = mine["data"].as_array().unwrap();
    assert_eq!(mine.len(), 1, "{mine:?}");
    assert_eq!(mine[0]["user_id"], ada["id"]);
    assert_eq!(mine[0]["run_id"], run["id"]);
    let (s, e) = app.get("/v1/tool-invocations?user_id=nobody").await;
    assert_eq!(s, 422, "{e}");
}

/// The ids of the calls `GET /v1/tool-invocations?{query}` answers, and its `next_cursor`.
async fn log_page(app: &TestApp, token: &str, query: &str) -> (Vec<String>, Value) {
    let (s, page) =
        app.call(Method::GET, &format!("/v1/tool-invocations?{query}"), token, None).await;
    assert_eq!(s, 200, "{query}: {page}");
    let ids = page["data"].as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap().to_owned());
    (ids.collect(), page["next_cursor"].clone())
}

/// Every call of the log matching `filter`, following `next_cursor` with pages of `limit`:
/// each page at most `limit` long, every one but the last full.
async fn every_page(app: &TestApp, token: &str, filter: &str, limit: usize) -> Vec<String> {
    let mut all = Vec::new();
    let mut cursor = Value::Null;
    loop {
        let mut query = format!("{filter}&limit={limit}");
        if let Some(c) = cursor.as_str() {
            query.push_str(&format!("&cursor={c}"));
        }
        let (ids, next) = log_page(app, token, &query).await;
        assert!(ids.len() <= limit, "{query}: {ids:?}");
        all.extend(ids.iter().cloned());
        assert!(all.len() <= 100, "{filter}: the pages never end");
        if next.is_null() {
            return all;
        }
        assert_eq!(ids.len(), limit, "{query}: a page before the last is full");
        assert_eq!(next.as_str(), ids.last().map(String::as_str), "the cursor is the last call");
        cursor = next;
    }
}

#[tokio::test]
async fn the_audit_log_pages_newest_first_and_filters_by_server_outcome_and_time() {
    let app = TestApp::spawn_with(TestOptions { workers: 0, ..Default::default() }).await;
    let org: agentyard_core::OrgId = app.org_id.parse().unwrap();
    let t0: chrono::DateTime<chrono::Utc> = "2026-01-01T00:00:00Z".parse().unwrap();
    let at = |secs: i64| t0 + chrono::Duration::seconds(secs);
    let rfc = |secs: i64| at(secs).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    // Calls as an MCP client makes them (no run behind them), written as stored: two pairs
    // made at the same instant, so the id orders them.
    // (name, server, tool, status, is_error, error, seconds after t0)
    type S = &'static str;
    type Row = (S, S, S, S, Option<bool>, Option<S>, i64);
    let rows: [Row; 7] = [
        ("a", "builtin", "list_tasks", "completed", Some(false), None, 0),
        ("b", "builtin", "list_tasks", "completed", Some(true), Some("boom"), 1),
        ("c", "docs", "search", "completed", Some(false), Some("the server timed out"), 2),
        ("d", "docs", "search", "pending", None, None, 2),
        ("e", "builtin", "add_task", "requires_input", None, None, 3),
        ("f", "docs", "search", "completed", Some(false), None, 4),
        ("g", "builtin", "list_tasks", "completed", Some(false), None, 4),
    ];
    let mut stored = Vec::new();
    for (i, (name, server, tool, status, is_error, error, secs)) in rows.iter().enumerate() {
        let id = uuid::Uuid::now_v7();
        sqlx::query(
            "INSERT INTO tool_invocations(id, org_id, token_id, step, call_index, call_id, \
                server, tool, arguments, status, is_error, error, created_at) \
             VALUES ($1, $2, $3, 0, $4, 'call', $5, $6, '{}', $7, $8, $9, $10)",
        )
        .bind(id)
        .bind(org)
        .bind(uuid::Uuid::now_v7())
        .bind(i32::try_from(i).unwrap())
        .bind(server)
        .bind(tool)
        .bind(status)
        .bind(is_error)
        .bind(error)
        .bind(at(*secs))
        .execute(app.store.pool())
        .await
        .unwrap();
        stored.push((*secs, id, *name));
    }
    // Newest first: by time, then by id.
    stored.sort_by_key(|s| std::cmp::Reverse((s.0, s.1)));
    let ids = |names: &str| -> Vec<String> {
        stored.iter().filter(|s| names.contains(s.2)).map(|s| s.1.to_string()).collect()
    };
    let token = app.token.clone();

    // Pages of 2 give every call once, newest first; so does a filtered log paged by 1.
    assert_eq!(every_page(&app, &token, "", 2).await, ids("abcdefg"));
    assert_eq!(every_page(&app, &token, "outcome=ok", 1).await, ids("afg"));
    assert_eq!(every_page(&app, &token, "server=builtin", 3).await, ids("abeg"));
    // A page holding the last call has no next one.
    let (all, next) = log_page(&app, &token, "limit=7").await;
    assert_eq!((all, next), (ids("abcdefg"), Value::Null));

    for (query, expected) in [
        ("server=docs".to_owned(), "cdf"),
        ("server=builtin".to_owned(), "abeg"),
        ("server=nosuch".to_owned(), ""),
        ("outcome=ok".to_owned(), "afg"),
        ("outcome=error".to_owned(), "bc"),
        ("outcome=pending".to_owned(), "de"),
        ("server=builtin&outcome=ok&tool=list_tasks".to_owned(), "ag"),
        (format!("since={}", rfc(2)), "cdefg"),
        (format!("until={}", rfc(2)), "ab"),
        (format!("since={}&until={}", rfc(1), rfc(4)), "bcde"),
        (format!("since={}&until={}&outcome=error", rfc(2), rfc(3)), "c"),
    ] {
        assert_eq!(log_page(&app, &token, &query).await.0, ids(expected), "{query}");
    }

    // Bad values: the API's own codes.
    for (query, status, code) in [
        ("outcome=done", 422, "invalid_query"),
        ("outcome=OK", 422, "invalid_query"),
        ("until=tomorrow", 422, "invalid_query"),
        ("since=2026-13-01T00:00:00Z", 422, "invalid_query"),
        ("cursor=nope", 422, "invalid_cursor"),
        ("cursor=", 422, "invalid_cursor"),
        ("limit=0", 400, "invalid_query"),
        ("limit=501", 400, "invalid_query"),
    ] {
        let (s, e) = app.get(&format!("/v1/tool-invocations?{query}")).await;
        assert_eq!((s, e["error"]["code"].as_str()), (status, Some(code)), "{query}: {e}");
    }

    // Another org sees none of it, not even through a cursor of this org's.
    let (other_org, other_token) = app.new_org("other").await;
    let (theirs, next) = log_page(&app, &other_token, "").await;
    assert_eq!((theirs.len(), next), (0, Value::Null));
    let cursor = ids("abcdefg")[0].clone();
    assert!(log_page(&app, &other_token, &format!("cursor={cursor}")).await.0.is_empty());

    // One server: as the list shows it; another org's (or none) is 404.
    let ours = app
        .store
        .create_mcp_server(org, "docs", "https://mcp.example.com/mcp", None)
        .await
        .unwrap()
        .unwrap();
    let theirs = app
        .store
        .create_mcp_server(other_org.parse().unwrap(), "docs", "https://mcp.example.org/mcp", None)
        .await
        .unwrap()
        .unwrap();
    let (s, one) = app.get(&format!("/v1/mcp-servers/{}", ours.id)).await;
    assert_eq!(s, 200, "{one}");
    let (_, list) = app.get("/v1/mcp-servers").await;
    let listed = list["data"].as_array().unwrap().iter().find(|s| s["id"] == one["id"]);
    assert_eq!(Some(&one), listed, "{list}");
    assert_eq!((&one["name"], &one["source"]), (&json!("docs"), &json!("org")));
    for (token, id) in [
        (&token, theirs.id.to_string()),
        (&other_token, ours.id.to_string()),
        (&token, uuid::Uuid::now_v7().to_string()),
        (&token, "nope".to_owned()),
    ] {
        let (s, e) = app.call(Method::GET, &format!("/v1/mcp-servers/{id}"), token, None).await;
        assert_eq!((s, e["error"]["code"].as_str()), (404, Some("server_not_found")), "{id}: {e}");
    }
    let (s, mine) =
        app.call(Method::GET, &format!("/v1/mcp-servers/{}", theirs.id), &other_token, None).await;
    assert_eq!((s, &mine["url"]), (200, &json!("https://mcp.example.org/mcp")), "{mine}");
}
