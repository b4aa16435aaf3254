//! Org-scoped agents: provisioning, lifecycle, configuration reaching the model, validation,
//! delegation with priorities, stats and usage.

use std::time::Duration;

use agentyard_e2e::{TestApp, TestOptions};
use reqwest::Method;
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(60);

async fn platform_token(app: &TestApp) -> String {
    let org = app.org_id.parse().unwrap();
    app.store
        .create_token(org, "platform", &[agentyard_core::Scope::PlatformAdmin])
        .await
        .unwrap()
        .secret
}

fn ids(list: &Value) -> Vec<String> {
    list["data"].as_array().unwrap().iter().map(|a| a["id"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn a_new_org_gets_its_default_agent_and_one_that_lost_it_gets_it_back() {
    let app = TestApp::spawn().await;
    let platform = platform_token(&app).await;
    let (status, created) =
        app.call(Method::POST, "/v1/organizations", &platform, Some(json!({"name": "acme"}))).await;
    assert_eq!(status, 201, "{created}");
    let token = created["admin_token"]["token"].as_str().unwrap().to_owned();
    let org = created["organization"]["id"].as_str().unwrap().to_owned();
    let (_, list) = app.call(Method::GET, "/v1/agents", &token, None).await;
    let agents = list["data"].as_array().unwrap();
    assert_eq!(agents.len(), 1, "{list}");
    assert_eq!(agents[0]["agent_type"], "customer_support");
    assert_eq!(agents[0]["is_default"], true);
    assert_eq!(agents[0]["id"], created["default_agent_id"]);
    let first = agents[0]["id"].as_str().unwrap().to_owned();

    // Deleted through the API: listing brings the same agent back.
    let (s, _) = app.call(Method::DELETE, &format!("/v1/agents/{first}"), &token, None).await;
    assert_eq!(s, 204);
    let (_, list) = app.call(Method::GET, "/v1/agents", &token, None).await;
    assert_eq!(ids(&list), std::slice::from_ref(&first), "{list}");

    // Gone from the database altogether: listing provisions a new one.
    sqlx::query("DELETE FROM agents WHERE org_id = $1::uuid")
        .bind(&org)
        .execute(app.store.pool())
        .await
        .unwrap();
    let (_, list) = app.call(Method::GET, "/v1/agents", &token, None).await;
    let again = ids(&list);
    assert_eq!(again.len(), 1, "{list}");
    assert_ne!(again[0], first);
    assert_eq!(list["data"][0]["is_default"], true);

    // The org itself, to its admin and to the platform admin; not to another org.
    let (s, o) = app.call(Method::GET, &format!("/v1/organizations/{org}"), &token, None).await;
    assert_eq!((s, o["name"].as_str()), (200, Some("acme")));
    let (s, _) = app.call(Method::GET, &format!("/v1/organizations/{org}"), &platform, None).await;
    assert_eq!(s, 200);
    let (s, _) = app.get(&format!("/v1/organizations/{org}")).await;
    assert_eq!(s, 404, "another org's admin sees nothing");
}

#[tokio::test]
async fn the_full_agent_lifecycle() {
    let app = TestApp::spawn().await;
    let (s, agent) = app.post("/v1/agents", json!({"agent_type": "data_analyst"})).await;
    assert_eq!(s, 201, "{agent}");
    let id = agent["id"].as_str().unwrap().to_owned();
    assert_eq!(agent["name"], "Data analyst");
    let (s, dup) = app.post("/v1/agents", json!({"agent_type": "data_analyst"})).await;
    assert_eq!((s, dup["error"]["code"].as_str()), (409, Some("agent_exists")), "{dup}");

    let (s, patched) = app
        .patch(
            &format!("/v1/agents/{id}"),
            json!({"configuration": {"temperature": 0.9, "max_steps": 3}}),
        )
        .await;
    assert_eq!(s, 200, "{patched}");
    assert_eq!(patched["configuration"]["temperature"], 0.9);
    assert_eq!(patched["overrides"], json!({"temperature": 0.9, "max_steps": 3}));
    let (_, source) = app.get(&format!("/v1/agents/{id}/config-source")).await;
    let mut custom: Vec<&str> = source
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, v)| v["source"] == "custom")
        .map(|(k, _)| k.as_str())
        .collect();
    custom.sort_unstable();
    assert_eq!(custom, ["max_steps", "temperature"], "{source}");
    assert_eq!(source["max_steps"]["value"], 3);

    let (s, reset) = app.post(&format!("/v1/agents/{id}/reset-config"), json!({})).await;
    assert_eq!((s, &reset["overrides"]), (200, &json!({})));
    let (_, source) = app.get(&format!("/v1/agents/{id}/config-source")).await;
    assert!(source.as_object().unwrap().values().all(|v| v["source"] == "default"), "{source}");

    let (s, off) = app.post(&format!("/v1/agents/{id}/deactivate"), json!({})).await;
    assert_eq!((s, &off["is_active"]), (200, &json!(false)));
    let (s, err) = app.post("/v1/runs", json!({"input": "hello", "agent_id": id})).await;
    assert_eq!((s, err["error"]["code"].as_str()), (409, Some("agent_inactive")), "{err}");
    let (s, on) = app.post(&format!("/v1/agents/{id}/activate"), json!({})).await;
    assert_eq!((s, &on["is_active"]), (200, &json!(true)));
    let (s, run) = app.post("/v1/runs", json!({"input": "hello", "agent_id": id})).await;
    assert_eq!(s, 202, "{run}");
    assert_eq!(run["agent_id"], id.as_str());
    let done = app.wait_terminal(run["id"].as_str().unwrap(), T).await;
    assert_eq!(done["status"], "completed", "{done}");

    let (s, _) = app.call(Method::DELETE, &format!("/v1/agents/{id}"), &app.token, None).await;
    assert_eq!(s, 204);
    let (s, _) = app.get(&format!("/v1/agents/{id}")).await;
    assert_eq!(s, 404);
    let (s, err) = app.post("/v1/runs", json!({"input": "hello", "agent_id": id})).await;
    assert_eq!((s, err["error"]["code"].as_str()), (404, Some("agent_not_found")), "{err}");

    let (s, back) = app.post(&format!("/v1/agents/{id}/recreate"), json!({})).await;
    assert_eq!(s, 200, "{back}");
    assert_eq!(back["id"], id.as_str(), "recreate keeps the id");
    assert_eq!((&back["is_active"], &back["overrides"]), (&json!(true), &json!({})));
    let (s, _) = app.get(&format!("/v1/agents/{id}")).await;
    assert_eq!(s, 200);
    let (s, status) = app.get(&format!("/v1/agents/{id}/status")).await;
    assert_eq!(s, 200, "{status}");
    assert_eq!(
        (&status["workers"], &status["model_reachable"], &status["ready"]),
        (&json!(1), &json!(true), &json!(true)),
        "{status}"
    );
}

#[tokio::test]
async fn a_patched_prompt_and_temperature_reach_the_model_on_the_next_run() {
    let app = TestApp::spawn().await; // the worker starts before the patch
    let run = app.start_run("before the patch").await;
    app.wait_terminal(run["id"].as_str().unwrap(), T).await;
    let (_, list) = app.get("/v1/agents").await;
    let id = list["data"][0]["id"].as_str().unwrap().to_owned();
    let prompt = "You are a pirate. Answer like one.";
    let (s, body) = app
        .patch(
            &format!("/v1/agents/{id}"),
            json!({"configuration": {"system_prompt": prompt, "temperature": 1.1}}),
        )
        .await;
    assert_eq!(s, 200, "{body}");
    app.llm.clear_requests();
    let run = app.start_run("after the patch").await;
    let done = app.wait_terminal(run["id"].as_str().unwrap(), T).await;
    assert_eq!(done["status"], "completed");
    let requests = app.llm.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0]["messages"][0]["role"], "system");
    assert_eq!(requests[0]["messages"][0]["content"], prompt);
    assert!((requests[0]["temperature"].as_f64().unwrap() - 1.1).abs() < 1e-6, "{}", requests[0]);
}

#[tokio::test]
async fn bad_configurations_name_every_bad_field_and_store_nothing() {
    let app = TestApp::spawn_with(TestOptions { workers: 0, ..Default::default() }).await;
    let (_, list) = app.get("/v1/agents").await;
    let id = list["data"][0]["id"].as_str().unwrap().to_owned();
    let (_, before) = app.get(&format!("/v1/agents/{id}")).await;
    let (s, err) = app
        .patch(
            &format!("/v1/agents/{id}"),
            json!({"configuration": {"temperature": 3, "max_tokens": 0, "timeout_seconds": 9999,
                   "tools_enabled": ["frobnicate"], "model": "gpt-9"}}),
        )
        .await;
    assert_eq!((s, err["error"]["code"].as_str()), (422, Some("invalid_configuration")), "{err}");
    let fields: Vec<&str> = err["error"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["field"].as_str().unwrap())
        .collect();
    for f in ["temperature", "max_tokens", "timeout_seconds", "tools_enabled", "model"] {
        assert!(fields.contains(&format!("configuration.{f}").as_str()), "{f} not named: {err}");
    }
    let message = err["error"]["message"].as_str().unwrap();
    assert!(message.contains("frobnicate") && message.contains("gpt-9"), "{message}");
    let (_, after) = app.get(&format!("/v1/agents/{id}")).await;
    assert_eq!(before, after, "nothing stored");

    let (s, err) =
        app.patch(&format!("/v1/agents/{id}"), json!({"configuration": {"temprature": 1}})).await;
    assert_eq!(s, 422);
    assert!(err["error"]["message"].as_str().unwrap().contains("temprature"), "{err}");
    let (s, err) = app.patch(&format!("/v1/agents/{id}"), json!({"name": ""})).await;
    assert_eq!((s, err["error"]["code"].as_str()), (422, Some("invalid_name")));

    let (s, err) = app
        .post(
            "/v1/agents",
            json!({"agent_type": "task_assistant", "configuration": {"max_steps": 0}}),
        )
        .await;
    assert_eq!(s, 422, "{err}");
    assert!(err["error"]["message"].as_str().unwrap().contains("max_steps"), "{err}");
    let (s, err) = app.post("/v1/agents", json!({"agent_type": "astronaut"})).await;
    assert_eq!((s, err["error"]["code"].as_str()), (422, Some("unknown_agent_type")));
    let (_, list) = app.get("/v1/agents").await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1, "no agent was created: {list}");
    let (s, err) = app
        .call(
            Method::PUT,
            &format!("/v1/agents/{id}/tools"),
            &app.token,
            Some(json!({"tools_enabled": ["list_tickets", "nope"]})),
        )
        .await;
    assert_eq!(s, 422, "{err}");
    assert!(err["error"]["message"].as_str().unwrap().contains("nope"));
}

async fn finished_at(app: &TestApp, run: &str) -> chrono::DateTime<chrono::Utc> {
    let done = app.wait_terminal(run, T).await;
    assert_eq!(done["status"], "completed", "{done}");
    done["completed_at"].as_str().unwrap().parse().unwrap()
}

#[tokio::test]
async fn delegation_picks_the_agent_with_the_capability_and_high_priority_goes_first() {
    let app = TestApp::spawn_with(TestOptions {
        env: vec![("AY_AGENT_CONCURRENCY".into(), "1".into())],
        ..Default::default()
    })
    .await;
    let (s, d) = app
        .post("/v1/agents/delegate", json!({"capability": "data_analysis", "input": "summarize"}))
        .await;
    assert_eq!(s, 202, "{d}");
    assert_eq!(d["agent"]["agent_type"], "data_analyst", "provisioned from its type");
    assert_eq!(d["run"]["agent_id"], d["agent"]["id"]);
    assert_eq!(d["run"]["metadata"]["delegation"]["capability"], "data_analysis");
    app.wait_terminal(d["run"]["id"].as_str().unwrap(), T).await;
    let (s, again) =
        app.post("/v1/agents/delegate", json!({"capability": "data_analysis", "input": "x"})).await;
    assert_eq!((s, &again["agent"]["id"]), (202, &d["agent"]["id"]), "the same agent answers");
    app.wait_terminal(again["run"]["id"].as_str().unwrap(), T).await;
    let (s, err) =
        app.post("/v1/agents/delegate", json!({"capability": "juggling", "input": "x"})).await;
    assert_eq!((s, err["error"]["code"].as_str()), (422, Some("unknown_capability")), "{err}");

    // Saturate the one slot with low-priority runs, then post high-priority ones.
    let mut low = Vec::new();
    for i in 0..6 {
        let (s, r) = app.post("/v1/agents/delegate", json!({"capability": "data_analysis", "input": format!("busy low {i}"), "priority": "low"})).await;
        assert_eq!(s, 202, "{r}");
        assert_eq!(r["run"]["priority"], "low");
        low.push(r["run"]["id"].as_str().unwrap().to_owned());
    }
    let mut high = Vec::new();
    for i in 0..3 {
        let (s, r) = app.post("/v1/agents/delegate", json!({"capability": "data_analysis", "input": format!("busy high {i}"), "priority": "high"})).await;
        assert_eq!(s, 202, "{r}");
        high.push(r["run"]["id"].as_str().unwrap().to_owned());
    }
    let mut high_done = Vec::new();
    for r in &high {
        high_done.push(finished_at(&app, r).await);
    }
    let mut low_done = Vec::new();
    for r in &low {
        low_done.push(finished_at(&app, r).await);
    }
    let last_high = *high_done.iter().max().unwrap();
    // At most the low run already running and the one already read ahead finish first.
    let overtaken = low_done.iter().filter(|t| **t > last_high).count();
    assert!(overtaken >= 4, "high runs finished after {} of 6 earlier low runs", 6 - overtaken);
}

#[tokio::test]
async fn stats_and_usage_match_the_runs_exactly() {
    let app = TestApp::spawn().await;
    let (_, list) = app.get("/v1/agents").await;
    let support = list["data"][0]["id"].as_str().unwrap().to_owned();
    let (_, tasks) = app.post("/v1/agents", json!({"agent_type": "task_assistant"})).await;
    let tasks = tasks["id"].as_str().unwrap().to_owned();
    let mut runs = Vec::new();
    for (agent, input) in [
        (&support, "one"),
        (&support, "two"),
        (&support, "three"),
        (&tasks, "four"),
        (&tasks, "five"),
        (&support, "always fail"),
    ] {
        let (s, r) = app.post("/v1/runs", json!({"input": input, "agent_id": agent})).await;
        assert_eq!(s, 202);
        runs.push(app.wait_terminal(r["id"].as_str().unwrap(), T).await);
    }
    let sum = |agent: Option<&str>, key: &str| -> f64 {
        runs.iter()
            .filter(|r| agent.is_none_or(|a| r["agent_id"] == a))
            .map(|r| r["usage"][key].as_f64().unwrap_or(0.0))
            .sum()
    };
    let (s, stats) = app.get(&format!("/v1/agents/{support}/stats?period=hour")).await;
    assert_eq!(s, 200, "{stats}");
    assert_eq!(stats["runs"], 4, "{stats}");
    assert_eq!(stats["successful_runs"], 3);
    assert_eq!(stats["failed_runs"], 1);
    assert_eq!(stats["messages"], 7, "4 user messages and 3 answers: {stats}");
    assert_eq!(stats["tools_called"], 0);
    assert_eq!(stats["total_tokens"].as_f64().unwrap(), sum(Some(&support), "total_tokens"));
    assert_eq!(stats["prompt_tokens"].as_f64().unwrap(), sum(Some(&support), "prompt_tokens"));
    assert!(stats["avg_response_ms"].as_f64().unwrap() > 0.0);
    assert!(
        stats["p95_response_ms"].as_f64().unwrap()
            >= stats["avg_response_ms"].as_f64().unwrap() * 0.5
    );
    let (s, bad) = app.get(&format!("/v1/agents/{support}/stats?period=week")).await;
    assert_eq!(s, 422, "{bad}");

    let (s, usage) = app.get("/v1/usage").await;
    assert_eq!(s, 200, "{usage}");
    assert_eq!(usage["totals"]["runs"], 6);
    assert_eq!(usage["totals"]["total_tokens"].as_f64().unwrap(), sum(None, "total_tokens"));
    assert!((usage["totals"]["cost_usd"].as_f64().unwrap() - sum(None, "cost_usd")).abs() < 1e-9);
    assert!(sum(None, "cost_usd") > 0.0, "runs are priced");
    let by_model: Vec<(&str, i64)> = usage["by_model"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["model"].as_str().unwrap(), m["runs"].as_i64().unwrap()))
        .collect();
    assert_eq!(by_model, [("fast", 2), ("primary", 3), ("unknown", 1)], "{usage}");
    assert_eq!(usage["by_agent"].as_array().unwrap().len(), 2);
    let (_, perf) = app.get(&format!("/v1/agents/{tasks}/performance")).await;
    assert_eq!(perf["totals"]["completed"], 2, "{perf}");
    assert_eq!(perf["success_rate"], 1.0);
    let (s, _) = app.get("/v1/usage?from=2030-01-01T00:00:00Z&to=2029-01-01T00:00:00Z").await;
    assert_eq!(s, 422);
}

#[tokio::test]
async fn rate_limits_and_quotas_answer_429_and_lose_nothing() {
    let app = TestApp::spawn_with(TestOptions {
        env: vec![
            ("AY_RATE_LIMIT".into(), "5".into()),
            ("AY_RATE_BURST".into(), "5".into()),
            ("AY_ORG_MAX_ACTIVE_RUNS".into(), "2".into()),
        ],
        ..Default::default()
    })
    .await;
    let mut limited = None;
    for _ in 0..20 {
        let r = app.req(Method::GET, "/v1/agents").send().await.unwrap();
        if r.status() == 429 {
            limited = Some(r);
            break;
        }
    }
    let r = limited.expect("20 quick requests at 5/s are limited");
    let retry: u64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry), "{retry}");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limited");

    // The quota, with a fresh token (the first one is out of budget for a moment).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (_, token) = (
        0,
        app.store
            .create_token(
                app.org_id.parse().unwrap(),
                "q",
                &[agentyard_core::Scope::RunsWrite, agentyard_core::Scope::RunsRead],
            )
            .await
            .unwrap()
            .secret,
    );
    let posts = (0..5).map(|i| {
        app.call(Method::POST, "/v1/runs", &token, Some(json!({"input": format!("busy {i}")})))
    });
    let answers = futures::future::join_all(posts).await;
    let accepted: Vec<&Value> = answers.iter().filter(|(s, _)| *s == 202).map(|(_, b)| b).collect();
    let refused: Vec<&Value> = answers.iter().filter(|(s, _)| *s == 429).map(|(_, b)| b).collect();
    assert_eq!(accepted.len(), 2, "{answers:?}");
    assert_eq!(refused.len(), 3, "{answers:?}");
    assert!(refused.iter().all(|b| b["error"]["code"] == "quota_exceeded"), "{refused:?}");
    assert_eq!(app.count("SELECT count(*) FROM runs").await, 2, "no half-created run");
    assert_eq!(app.count("SELECT count(*) FROM threads").await, 2, "no orphan thread");
    for run in accepted {
        let done = app.wait_terminal(run["id"].as_str().unwrap(), T).await;
        assert_eq!(done["status"], "completed");
    }
    assert_eq!(app.count("SELECT count(*) FROM live_runs").await, 0);
    let (s, r) = app.call(Method::POST, "/v1/runs", &token, Some(json!({"input": "after"}))).await;
    assert_eq!(s, 202, "the quota frees up as runs end: {r}");
}

/// Found by fuzzing: a NUL character in an agent's name was a 500 (Postgres refuses it in
/// `text` and `jsonb`); one in its configuration, or a number `jsonb` cannot give back, would
/// have been too, or stored and broken every later read.
#[tokio::test]
async fn an_agent_name_or_configuration_postgres_cannot_store_is_a_named_422() {
    let app = TestApp::spawn_with(TestOptions { workers: 0, ..Default::default() }).await;
    let (status, list) = app.get("/v1/agents").await;
    assert_eq!(status, 200, "{list}");
    let id = ids(&list)[0].clone();
    let before = app.count("SELECT count(*) FROM agents").await;

    let (status, e) =
        app.post("/v1/agents", json!({"agent_type": "task_assistant", "name": "a\u{0}b"})).await;
    assert_eq!((status, e["error"]["code"].as_str()), (422, Some("invalid_name")), "{e}");
    assert!(e["error"]["message"].as_str().unwrap().contains("NUL"), "{e}");

    let bad_prompt = json!({"agent_type": "task_assistant",
        "configuration": {"system_prompt": "be\u{0}terse"}});
    let (status, e) = app.post("/v1/agents", bad_prompt).await;
    assert_eq!((status, e["error"]["code"].as_str()), (422, Some("invalid_configuration")), "{e}");
    assert_eq!(e["error"]["fields"][0]["field"], "configuration.system_prompt", "{e}");

    let path = format!("/v1/agents/{id}");
    let (status, e) = app.patch(&path, json!({"name": "x\u{0}"})).await;
    assert_eq!((status, e["error"]["code"].as_str()), (422, Some("invalid_name")), "{e}");
    let huge = json!({"configuration": {"metadata_note": {"n": 1.797_693_134_862_315_7e308}}});
    let (status, e) = app.patch(&path, huge).await;
    assert_eq!((status, e["error"]["code"].as_str()), (422, Some("invalid_configuration")), "{e}");
    assert_eq!(e["error"]["fields"][0]["field"], "configuration.metadata_note.n", "{e}");

    // Nothing was stored: the agents read back as before.
    assert_eq!(app.count("SELECT count(*) FROM agents").await, before);
    let (status, agent) = app.get(&path).await;
    assert_eq!(status, 200, "{agent}");
    assert_ne!(agent["name"], "x\u{0}");
}
