//! The built-in tools for any MCP client: the official MCP Python SDK (`mcp` from PyPI, run
//! from tests/mcp_client.py) talks to a real `agentyard mcp-server` with users' API tokens:
//! the token's org, user and scopes apply per tool, each call lands in the tool audit log
//! without a run, and a request without a valid token gets the 401 challenge and the
//! protected-resource metadata MCP clients discover.

use std::path::PathBuf;

use agentyard_e2e::TestApp;
use reqwest::Method;
use serde_json::{Value, json};

use crate::tools::tools_app;

/// The Python of a venv holding the MCP SDK (`mcp`, from PyPI).
fn sdk_python() -> PathBuf {
    agentyard_e2e::python_venv("AY_TEST_MCP_VENV", "mcp-venv", "mcp", "mcp").join("bin/python")
}

/// Runs tests/mcp_client.py: lists the tools and makes `calls` ([tool, arguments] pairs);
/// returns what it printed (`{"error"}` when it could not connect).
async fn client(app: &TestApp, token: &str, mode: &str, calls: Value) -> Value {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("mcp_client.py");
    let out = tokio::process::Command::new(sdk_python())
        .arg(&script)
        .args([app.mcp_url().as_str(), token, mode, calls.to_string().as_str()])
        .kill_on_drop(true)
        .output()
        .await
        .expect("run tests/mcp_client.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|_| {
        panic!("mcp_client.py printed {stdout:?}; stderr: {}", String::from_utf8_lossy(&out.stderr))
    })
}

/// A new user of the app's org with a token of `scopes`: (user id, token id, secret).
async fn user_token(app: &TestApp, email: &str, scopes: &[&str]) -> (String, String, String) {
    let (s, user) = app.post("/v1/users", json!({"name": email, "email": email})).await;
    assert_eq!(s, 201, "{user}");
    let (s, t) = app
        .post("/v1/tokens", json!({"user_id": user["id"], "name": "mcp", "scopes": scopes}))
        .await;
    assert_eq!(s, 201, "{t}");
    let id = |v: &Value| v.as_str().unwrap().to_owned();
    (id(&user["id"]), id(&t["id"]), id(&t["token"]))
}

/// A token of `user` with `scopes`: (token id, secret).
async fn another_token(app: &TestApp, user: &str, scopes: &[&str]) -> (String, String) {
    let (s, t) =
        app.post("/v1/tokens", json!({"user_id": user, "name": "mcp-ro", "scopes": scopes})).await;
    assert_eq!(s, 201, "{t}");
    (t["id"].as_str().unwrap().to_owned(), t["token"].as_str().unwrap().to_owned())
}

fn call(out: &Value, i: usize) -> (&Value, &str) {
    let c = &out["calls"][i];
    (&c["is_error"], c["text"].as_str().unwrap_or_default())
}

#[tokio::test]
async fn the_python_sdk_uses_the_built_in_tools_with_an_api_token_as_its_user() {
    let app = tools_app(&[]).await;
    let (ada, ada_token_id, ada_token) =
        user_token(&app, "ada@example.com", &["runs:read", "runs:write"]).await;

    // initialize, tools/list, a write tool twice and a read tool, over one session.
    let calls = json!([
        ["add_task", {"title": "Water the plants"}],
        ["add_task", {"title": "Water the plants"}],
        ["list_tasks", {}],
    ]);
    let out = client(&app, &ada_token, "legacy", calls).await;
    assert!(out.get("error").is_none(), "{out}");
    assert_eq!(out["server"], "agentyard", "{out}");
    let tools: Vec<&str> =
        out["tools"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
    assert_eq!(tools.len(), agentyard_core::tools::BUILTIN_TOOLS.len(), "every tool: {tools:?}");
    let (is_error, text) = call(&out, 0);
    assert_eq!(is_error, false, "{text}");
    assert!(text.starts_with("Added the task \"Water the plants\"."), "{text}");
    assert_eq!(call(&out, 1).0, false, "{out}");
    let (is_error, text) = call(&out, 2);
    assert_eq!(is_error, false, "{text}");
    let tasks: Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    let titles: Vec<&str> =
        tasks.as_array().unwrap().iter().map(|t| t["title"].as_str().unwrap()).collect();
    assert_eq!(titles, ["Water the plants", "Water the plants"], "a task per call: {text}");

    // The same through the SDK's own negotiation (the newest protocol both sides speak).
    let out =
        client(&app, &ada_token, "auto", json!([["list_tasks", {"status": "pending"}]])).await;
    assert!(out.get("error").is_none(), "{out}");
    assert_eq!(call(&out, 0).0, false, "{out}");
    assert!(call(&out, 0).1.starts_with("2 task(s): 2 pending"), "{out}");

    // Each call is a row of the audit log: Ada's, made with her token, no run.
    let (s, log) = app.get("/v1/tool-invocations?tool=add_task").await;
    assert_eq!(s, 200, "{log}");
    let rows = log["data"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{log}");
    assert_ne!(rows[0]["id"], rows[1]["id"], "an invocation per call");
    for row in rows {
        assert_eq!(row["run_id"], Value::Null, "{row}");
        assert_eq!(row["agent_id"], Value::Null, "{row}");
        assert_eq!(row["user_id"], ada.as_str(), "{row}");
        assert_eq!(row["token_id"], ada_token_id.as_str(), "{row}");
        assert_eq!((&row["status"], &row["is_error"]), (&json!("completed"), &json!(false)));
        assert_eq!(row["arguments"], json!({"title": "Water the plants"}), "{row}");
        assert!(row["result"].as_str().unwrap().starts_with("Added the task"), "{row}");
    }
    let (_, mine) = app.get(&format!("/v1/tool-invocations?user_id={ada}")).await;
    assert_eq!(mine["data"].as_array().unwrap().len(), 4, "add, add, list, list: {mine}");
}

#[tokio::test]
async fn a_token_s_scopes_and_org_bound_what_an_mcp_client_sees_and_may_call() {
    let app = tools_app(&[]).await;
    let (ada, _, ada_token) =
        user_token(&app, "ada@example.com", &["runs:read", "runs:write"]).await;
    let out = client(&app, &ada_token, "legacy", json!([["add_task", {"title": "Ours"}]])).await;
    assert_eq!(call(&out, 0).0, false, "{out}");

    // A read-only token of the same user: tools/list shows only what it may call, and a
    // write tool called anyway is refused with a result naming the missing scope.
    let (ro_id, read_only) = another_token(&app, &ada, &["runs:read"]).await;
    let calls = json!([["add_task", {"title": "Sneaky"}], ["list_tasks", {}]]);
    let out = client(&app, &read_only, "legacy", calls).await;
    assert!(out.get("error").is_none(), "{out}");
    let tools: Vec<&str> =
        out["tools"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
    let read_tools: Vec<&str> = agentyard_core::tools::BUILTIN_TOOLS
        .iter()
        .filter(|t| t.read_only)
        .map(|t| t.name)
        .collect();
    let mut expected = read_tools.clone();
    expected.sort_unstable();
    assert_eq!(tools, expected, "only the read-only tools");
    let (is_error, text) = call(&out, 0);
    assert_eq!(is_error, true, "{text}");
    assert!(text.contains("lacks the scope runs:write"), "{text}");
    let (is_error, text) = call(&out, 1);
    assert_eq!(is_error, false, "{text}");
    assert!(text.contains("\"Ours\"") && !text.contains("Sneaky"), "{text}");
    let (_, log) = app.get("/v1/tool-invocations?tool=add_task").await;
    let refused: Vec<&Value> = log["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["token_id"] == ro_id.as_str())
        .collect();
    assert_eq!(refused.len(), 1, "{log}");
    assert_eq!(refused[0]["is_error"], true, "{log}");

    // Another org's token sees its own org's data only, and writes there.
    let (_, other) = app.new_org("other").await;
    let calls = json!([["list_tasks", {}], ["add_task", {"title": "Theirs"}]]);
    let out = client(&app, &other, "legacy", calls).await;
    let (is_error, text) = call(&out, 0);
    assert_eq!(is_error, false, "{text}");
    assert!(text.starts_with("0 task(s)"), "none of org-a's: {text}");
    assert_eq!(call(&out, 1).0, false, "{out}");
    let out = client(&app, &ada_token, "legacy", json!([["list_tasks", {}]])).await;
    assert!(!call(&out, 0).1.contains("Theirs"), "{out}");
    let (_, log) = app.get("/v1/tool-invocations?tool=add_task").await;
    assert!(!log.to_string().contains("Theirs"), "the other org's call is not in ours: {log}");
}

#[tokio::test]
async fn without_a_valid_token_the_mcp_server_answers_the_challenge_and_serves_its_metadata() {
    let app = tools_app(&[]).await;
    let http = reqwest::Client::new();
    let url = app.mcp_url();
    let origin = url.trim_end_matches("/mcp");
    let metadata_url = format!("{origin}/.well-known/oauth-protected-resource/mcp");
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "curl", "version": "1"}}});
    let post = |token: Option<&str>| {
        let mut r =
            http.post(&url).header("Accept", "application/json, text/event-stream").json(&init);
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send()
    };

    let r = post(None).await.unwrap();
    assert_eq!(r.status(), 401);
    let challenge = r.headers()["www-authenticate"].to_str().unwrap().to_owned();
    assert_eq!(challenge, format!("Bearer resource_metadata=\"{metadata_url}\""));
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "missing_token", "{body}");

    let r = post(Some("ay_not_a_token")).await.unwrap();
    assert_eq!(r.status(), 401);
    let challenge = r.headers()["www-authenticate"].to_str().unwrap().to_owned();
    assert!(challenge.contains(&format!("resource_metadata=\"{metadata_url}\"")), "{challenge}");
    assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
    assert_eq!(r.json::<Value>().await.unwrap()["error"]["code"], "invalid_token");

    // The SDK with a bad token does not get in (it reports the refusal as a failed request).
    let out = client(&app, "ay_not_a_token", "legacy", json!([])).await;
    assert!(out["error"].is_string() && out.get("tools").is_none(), "{out}");

    // The metadata, without a token, at the path-suffixed and the host-only well-known URL.
    for at in [metadata_url.clone(), format!("{origin}/.well-known/oauth-protected-resource")] {
        let r = http.get(&at).send().await.unwrap();
        assert_eq!(r.status(), 200, "{at}");
        let doc: Value = r.json().await.unwrap();
        assert_eq!(doc["resource"], url.as_str(), "{doc}");
        assert_eq!(doc["bearer_methods_supported"], json!(["header"]), "{doc}");
        assert_eq!(doc["scopes_supported"], json!(["runs:read", "runs:write"]), "{doc}");
    }

    // An API token works (any case of the scheme) until it is revoked, then at once not.
    let (_, t) = app.post("/v1/tokens", json!({"name": "mcp", "scopes": ["runs:read"]})).await;
    let secret = t["token"].as_str().unwrap();
    let r = http
        .post(&url)
        .header("Accept", "application/json, text/event-stream")
        .header("Authorization", format!("BEARER {secret}"))
        .json(&init)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (s, _) = app
        .call(
            Method::DELETE,
            &format!("/v1/tokens/{}", t["id"].as_str().unwrap()),
            &app.token,
            None,
        )
        .await;
    assert_eq!(s, 204);
    assert_eq!(post(Some(secret)).await.unwrap().status(), 401, "revoked");
}
