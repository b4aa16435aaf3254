//! Secrets at rest: MCP bearer tokens and the platform's keys are sealed in Postgres under
//! `AY_SECRET_KEY` (a dump reveals none of them, the servers still get their tokens), the key
//! rotates with `agentyard admin rotate-secrets`, plaintext from before is sealed at start, and a
//! missing or wrong key is a clear error.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use agentyard_e2e::{TestApp, TestOptions};
use agentyard_store::secrets::Keyring;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{tool, tool_router};
use serde_json::{Value, json};

use crate::tools::{ask, default_agent, output, set_tools};

/// An MCP server with one tool, `ping`, that refuses (401) every request without its token.
#[derive(Clone, Debug)]
struct Guarded;

#[tool_router(server_handler)]
impl Guarded {
    #[tool(description = "Answers pong")]
    fn ping(&self) -> String {
        "pong from the guarded server".to_owned()
    }
}

/// Requests the guarded server let in and turned away.
#[derive(Default)]
struct Seen {
    token: String,
    accepted: AtomicUsize,
    refused: AtomicUsize,
}

async fn check_bearer(State(seen): State<Arc<Seen>>, req: Request, next: Next) -> Response {
    let sent = req.headers().get("authorization").and_then(|h| h.to_str().ok());
    if sent == Some(format!("Bearer {}", seen.token).as_str()) {
        seen.accepted.fetch_add(1, Ordering::SeqCst);
        next.run(req).await
    } else {
        seen.refused.fetch_add(1, Ordering::SeqCst);
        (StatusCode::UNAUTHORIZED, "wrong or missing bearer token").into_response()
    }
}

/// Serves [`Guarded`] on a free loopback port; returns its URL and what it saw.
async fn guarded_server(token: &str) -> (String, Arc<Seen>) {
    let seen = Arc::new(Seen { token: token.to_owned(), ..Default::default() });
    let mcp = StreamableHttpService::new(
        || Ok(Guarded),
        Arc::new(LocalSessionManager::default()),
        StreamableHttpServerConfig::default(),
    );
    let app = axum::Router::new()
        .route_service("/mcp", mcp)
        .route_layer(axum::middleware::from_fn_with_state(seen.clone(), check_bearer));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/mcp", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, seen)
}

/// Registers the guarded server as `guarded` and lets the default agent call its tool.
async fn register(app: &TestApp, url: &str, token: &str) -> Value {
    let (s, server) = app
        .post("/v1/mcp-servers", json!({"name": "guarded", "url": url, "bearer_token": token}))
        .await;
    assert_eq!(s, 201, "{server}");
    assert!(server["last_error"].is_null(), "the API listed its tools with the token: {server}");
    assert!(server.get("bearer_token").is_none(), "{server}");
    let agent = default_agent(app).await;
    set_tools(app, &agent, &["guarded__ping"], &[]).await;
    server
}

/// A run that calls `guarded__ping` completes with its answer.
async fn ping_through_a_run(app: &TestApp, seen: &Seen) {
    let accepted = seen.accepted.load(Ordering::SeqCst);
    let run = ask(app, None, "call guarded__ping {}").await;
    assert_eq!(run["status"], "completed", "{run}");
    assert!(output(&run).contains("pong from the guarded server"), "{run}");
    assert!(seen.accepted.load(Ordering::SeqCst) > accepted, "the call reached the server");
    assert_eq!(seen.refused.load(Ordering::SeqCst), 0, "a request came without the token");
}

fn key_id(encoded: &str) -> String {
    Keyring::from_vars(Some(encoded), None).unwrap().unwrap().current_id().to_owned()
}

/// `pg_dump` of the test's database, data and schema.
async fn dump(app: &TestApp) -> String {
    let out = tokio::process::Command::new("pg_dump")
        .args(["--no-owner", "-d", &app.database_url])
        .output()
        .await
        .expect("pg_dump");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("a text dump")
}

#[tokio::test]
async fn a_database_dump_reveals_no_bearer_token_and_the_server_still_gets_it() {
    let app = TestApp::spawn_with(TestOptions {
        tools: true,
        env: vec![("AY_MCP_ALLOW_PRIVATE".into(), "1".into())],
        ..Default::default()
    })
    .await;
    app.wait_tools().await;
    let token = format!("tok-{}", uuid::Uuid::now_v7().simple());
    let (url, seen) = guarded_server(&token).await;
    register(&app, &url, &token).await;
    tokio::time::sleep(Duration::from_secs(6)).await; // the agent workers' tool cache
    ping_through_a_run(&app, &seen).await;

    let dump = dump(&app).await;
    assert!(dump.contains("COPY public.mcp_servers"), "the dump holds the servers");
    assert!(!dump.contains(&token), "the bearer token is in the dump");
    let key = app.store.tool_token_key().await.unwrap();
    let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
    assert!(!dump.contains(&hex), "the tool-token key is in the dump");
    let stored: String = sqlx::query_scalar("SELECT bearer_token FROM mcp_servers")
        .fetch_one(app.store.pool())
        .await
        .unwrap();
    assert!(stored.starts_with(&format!("aysec1:{}:", app.store.keys().unwrap().current_id())));
    let sealed: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM platform_secrets WHERE position('aysec1:'::bytea in value) = 1",
    )
    .fetch_one(app.store.pool())
    .await
    .unwrap();
    let all = app.count("SELECT count(*) FROM platform_secrets").await;
    assert!(all >= 1 && sealed == all, "{sealed} of {all} platform secrets sealed");
}

#[tokio::test]
async fn a_service_without_a_key_or_with_a_bad_one_refuses_to_start_naming_the_variable() {
    let app = TestApp::spawn_with(TestOptions { workers: 0, ..Default::default() }).await;
    for role in [&["api"][..], &["worker", "agent"], &["worker", "tool"], &["mcp-server"]] {
        let out = app
            .command("no-key", role)
            .env_remove("AY_SECRET_KEY")
            .env("AY_HTTP_ADDR", "127.0.0.1:0")
            .stderr(std::process::Stdio::piped())
            .output()
            .await
            .unwrap();
        assert!(!out.status.success(), "{role:?} started without a key");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("AY_SECRET_KEY is not set"), "{role:?}: {err}");
    }
    for (var, value, says) in [
        ("AY_SECRET_KEY", "too-short", "AY_SECRET_KEY:"),
        ("AY_SECRET_KEY_OLD", "not base64!", "AY_SECRET_KEY_OLD:"),
    ] {
        let out = app
            .command("bad-key", &["api"])
            .env(var, value)
            .env("AY_HTTP_ADDR", "127.0.0.1:0")
            .stderr(std::process::Stdio::piped())
            .output()
            .await
            .unwrap();
        assert!(!out.status.success(), "{var}={value} accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{var}: {err}");
    }
}

/// `agentyard admin rotate-secrets --json` with `env`: (success, stdout JSON, stderr).
async fn rotate(app: &TestApp, env: &[(&str, &str)]) -> (bool, Value, String) {
    let mut cmd = app.command("rotate", &["admin", "rotate-secrets", "--json"]);
    cmd.env_remove("AY_SECRET_KEY_OLD");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .output()
        .await
        .unwrap();
    let json = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out.status.success(), json, String::from_utf8_lossy(&out.stderr).into_owned())
}

fn signature(secret: &str, ts: i64, body: &[u8]) -> String {
    let mut msg = format!("{ts}.").into_bytes();
    msg.extend_from_slice(body);
    let mac = agentyard_store::tool_tokens::hmac(secret.as_bytes(), &msg);
    format!("sha256={}", mac.iter().map(|b| format!("{b:02x}")).collect::<String>())
}

/// Posts a signed `{"order": n}` to the hook; the execution once done.
async fn fire_hook(app: &TestApp, path: &str, secret: &str, order: u32) -> Value {
    let body = format!("{{\"order\": {order}}}").into_bytes();
    let ts = Utc::now().timestamp();
    let r = app
        .http
        .post(format!("{}{path}", app.api_url))
        .header("X-Agentyard-Timestamp", ts.to_string())
        .header("X-Agentyard-Signature", signature(secret, ts, &body))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let e: Value = r.json().await.unwrap();
    let id = e["id"].as_str().unwrap().to_owned();
    for _ in 0..300 {
        let (_, e) = app.get(&format!("/v1/workflows/executions/{id}")).await;
        if ["completed", "failed", "cancelled"].contains(&e["status"].as_str().unwrap_or("")) {
            return e;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("execution {id} did not end");
}

async fn sealed_token(app: &TestApp) -> String {
    sqlx::query_scalar("SELECT bearer_token FROM mcp_servers WHERE name = 'guarded'")
        .fetch_one(app.store.pool())
        .await
        .unwrap()
}

#[tokio::test]
async fn secrets_rotate_to_a_new_key_and_tool_calls_and_hooks_still_work() {
    let (a, b) = (Keyring::generate_encoded(), Keyring::generate_encoded());
    let mut app = TestApp::spawn_with(TestOptions {
        tools: true,
        orchestrator: true,
        env: vec![("AY_MCP_ALLOW_PRIVATE".into(), "1".into()), ("AY_SECRET_KEY".into(), a.clone())],
        ..Default::default()
    })
    .await;
    app.wait_tools().await;
    let token = format!("tok-{}", uuid::Uuid::now_v7().simple());
    let (url, seen) = guarded_server(&token).await;
    register(&app, &url, &token).await;
    let (s, _) = app
        .post(
            "/v1/workflows",
            json!({"id": "hooked", "inputs": {"type": "object"},
            "steps": [{"id": "note", "tool": {"name": "add_task",
                "arguments": {"title": "order {{ inputs.order }}"}}}]}),
        )
        .await;
    assert_eq!(s, 201);
    let (s, hook) = app.post("/v1/workflows/hooked/hooks", json!({})).await;
    assert_eq!(s, 201, "{hook}");
    let (path, secret) = (hook["path"].as_str().unwrap(), hook["secret"].as_str().unwrap());
    assert_eq!(fire_hook(&app, path, secret, 1).await["status"], "completed");

    // A token stored before sealing existed is sealed when a process starts.
    sqlx::query("UPDATE mcp_servers SET bearer_token = $1")
        .bind(&token)
        .execute(app.store.pool())
        .await
        .unwrap();
    app.start_api().await;
    assert!(sealed_token(&app).await.starts_with(&format!("aysec1:{}:", key_id(&a))));

    // Rotate to B with every process stopped (it is also safe while they run).
    app.kill_api().await;
    app.kill_workers().await;
    let (ok, _, err) = rotate(&app, &[("AY_SECRET_KEY", &Keyring::generate_encoded())]).await;
    assert!(!ok, "a key that sealed nothing here was accepted");
    assert!(err.contains(&key_id(&a)) && err.contains("AY_SECRET_KEY_OLD"), "{err}");
    let (ok, done, err) = rotate(&app, &[("AY_SECRET_KEY", &b), ("AY_SECRET_KEY_OLD", &a)]).await;
    assert!(ok, "{err}");
    assert_eq!(done["key_id"], json!(key_id(&b)), "{done}");
    // The tool-token key, the webhook key and the server's token.
    assert_eq!((done["examined"].as_u64(), done["resealed"].as_u64()), (Some(3), Some(3)));
    let (ok, again, err) = rotate(&app, &[("AY_SECRET_KEY", &b), ("AY_SECRET_KEY_OLD", &a)]).await;
    assert!(ok, "{err}");
    assert_eq!(again["resealed"], 0, "a second pass has nothing to do: {again}");
    assert!(sealed_token(&app).await.starts_with(&format!("aysec1:{}:", key_id(&b))));

    // Everything again with B only.
    app.set_env("AY_SECRET_KEY", Some(&b));
    app.start_api().await;
    app.start_worker().unwrap();
    app.start_tools().await.unwrap();
    app.start_orchestrator().unwrap();
    tokio::time::sleep(Duration::from_secs(6)).await; // the agent worker's tool cache
    ping_through_a_run(&app, &seen).await;
    let e = fire_hook(&app, path, secret, 2).await;
    assert_eq!(e["status"], "completed", "{e}");
    assert_eq!(e["steps"][0]["output"]["title"], "order 2", "{e}");
}
