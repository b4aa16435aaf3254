//! Users, tokens, scopes and organization isolation on every route of the tenancy and agent
//! APIs; the OpenAPI document covers every route the router serves.

use agentyard_e2e::TestApp;
use reqwest::Method;
use serde_json::{Value, json};

const ORG_SCOPES: &[&str] = &[
    "runs:read",
    "runs:write",
    "agents:read",
    "agents:admin",
    "tools:admin",
    "workflows:run",
    "org:admin",
];

async fn token(app: &TestApp, org: &str, scopes: &[&str]) -> String {
    let scopes: Vec<agentyard_core::Scope> =
        scopes.iter().map(|s| s.parse().expect("a scope")).collect();
    app.store.create_token(org.parse().unwrap(), "t", &scopes).await.unwrap().secret
}

/// Every scope but `scope`.
async fn token_without(app: &TestApp, org: &str, scope: &str) -> String {
    let scopes: Vec<&str> = ORG_SCOPES.iter().copied().filter(|s| *s != scope).collect();
    token(app, org, &scopes).await
}

#[tokio::test]
async fn users_and_tokens_are_managed_by_org_admins_and_revocation_is_immediate() {
    let app = TestApp::spawn().await;
    let (s, user) = app.post("/v1/users", json!({"name": "Ada", "email": "ada@example.com"})).await;
    assert_eq!(s, 201, "{user}");
    let (_, users) = app.get("/v1/users").await;
    assert_eq!(users["data"].as_array().unwrap().len(), 2, "the admin and Ada: {users}");

    let (s, t) = app
        .post(
            "/v1/tokens",
            json!({"user_id": user["id"], "name": "ada's", "scopes": ["runs:read", "runs:write"]}),
        )
        .await;
    assert_eq!(s, 201, "{t}");
    let secret = t["token"].as_str().unwrap().to_owned();
    let (s, run) = app.call(Method::POST, "/v1/runs", &secret, Some(json!({"input": "hi"}))).await;
    assert_eq!(s, 202, "{run}");
    let stored_user: Option<uuid::Uuid> =
        sqlx::query_scalar("SELECT user_id FROM runs WHERE id = $1::uuid")
            .bind(run["id"].as_str().unwrap())
            .fetch_one(app.store.pool())
            .await
            .unwrap();
    assert_eq!(
        stored_user.map(|u| u.to_string()).as_deref(),
        user["id"].as_str(),
        "the run is Ada's"
    );

    let (_, list) = app.get("/v1/tokens").await;
    let listed = list["data"].as_array().unwrap();
    assert!(listed.iter().any(|x| x["id"] == t["id"]));
    assert!(!list.to_string().contains(&secret), "no secret in the list");
    assert!(listed.iter().all(|x| x.get("token").is_none() && x.get("token_sha256").is_none()));

    // Warm the API's auth cache, revoke, and the very next request is refused.
    let (s, _) = app
        .call(Method::GET, &format!("/v1/runs/{}", run["id"].as_str().unwrap()), &secret, None)
        .await;
    assert_eq!(s, 200);
    let (s, _) = app
        .call(
            Method::DELETE,
            &format!("/v1/tokens/{}", t["id"].as_str().unwrap()),
            &app.token,
            None,
        )
        .await;
    assert_eq!(s, 204);
    let (s, _) = app
        .call(Method::GET, &format!("/v1/runs/{}", run["id"].as_str().unwrap()), &secret, None)
        .await;
    assert_eq!(s, 401, "revoked at once");

    // No escalation, no unknown scopes, no platform scope, no users of other orgs.
    let narrow = token(&app, &app.org_id, &["org:admin", "runs:read"]).await;
    let (s, e) = app
        .call(
            Method::POST,
            "/v1/tokens",
            &narrow,
            Some(json!({"name": "x", "scopes": ["runs:write"]})),
        )
        .await;
    assert_eq!((s, e["error"]["code"].as_str()), (403, Some("insufficient_scope")), "{e}");
    let (s, e) = app.post("/v1/tokens", json!({"name": "x", "scopes": ["runs:fly"]})).await;
    assert_eq!((s, e["error"]["code"].as_str()), (422, Some("invalid_scopes")), "{e}");
    let (s, _) = app.post("/v1/tokens", json!({"name": "x", "scopes": ["platform:admin"]})).await;
    assert_eq!(s, 403);
    let (_, other_token) = app.new_org("other").await;
    let (_, other_user) =
        app.call(Method::POST, "/v1/users", &other_token, Some(json!({"name": "Bob"}))).await;
    let (s, e) = app
        .post(
            "/v1/tokens",
            json!({"name": "x", "scopes": ["runs:read"], "user_id": other_user["id"]}),
        )
        .await;
    assert_eq!((s, e["error"]["code"].as_str()), (404, Some("user_not_found")), "{e}");
    let (s, e) = app
        .post(
            "/v1/tokens",
            json!({"name": "x", "scopes": ["runs:read"], "expires_at": "2001-01-01T00:00:00Z"}),
        )
        .await;
    assert_eq!(s, 422, "{e}");
    let (s, e) = app
        .post(
            "/v1/tokens",
            json!({"name": "soon", "scopes": ["runs:read"], "expires_at": "2100-01-01T00:00:00Z"}),
        )
        .await;
    assert_eq!((s, e["expires_at"].as_str().is_some()), (201, true), "{e}");
}

#[tokio::test]
async fn every_route_checks_its_scope_and_never_reaches_another_org() {
    let app =
        TestApp::spawn_with(agentyard_e2e::TestOptions { workers: 0, ..Default::default() }).await;
    let a = app.org_id.clone();
    let (_, list) = app.get("/v1/agents").await;
    let agent = list["data"][0]["id"].as_str().unwrap().to_owned();
    let (_, user) = app.post("/v1/users", json!({"name": "u"})).await;
    let (_, t) = app.post("/v1/tokens", json!({"name": "victim", "scopes": ["runs:read"]})).await;
    let victim = t["id"].as_str().unwrap().to_owned();
    let (b, _) = app.new_org("b").await;
    let b_all = token(&app, &b, ORG_SCOPES).await;
    let (_, before) = app.get(&format!("/v1/agents/{agent}")).await;

    // (method, path, scope it needs, body, whether the path names an object of org A)
    let routes: Vec<(Method, String, &str, Option<Value>, bool)> = vec![
        (Method::GET, "/v1/agents".into(), "agents:read", None, false),
        (
            Method::POST,
            "/v1/agents".into(),
            "agents:admin",
            Some(json!({"agent_type": "content_creator"})),
            false,
        ),
        (Method::GET, "/v1/agent-types".into(), "agents:read", None, false),
        (Method::GET, format!("/v1/agents/{agent}"), "agents:read", None, true),
        (
            Method::PATCH,
            format!("/v1/agents/{agent}"),
            "agents:admin",
            Some(json!({"name": "stolen"})),
            true,
        ),
        (Method::DELETE, format!("/v1/agents/{agent}"), "agents:admin", None, true),
        (Method::POST, format!("/v1/agents/{agent}/recreate"), "agents:admin", None, true),
        (Method::POST, format!("/v1/agents/{agent}/activate"), "agents:admin", None, true),
        (Method::POST, format!("/v1/agents/{agent}/deactivate"), "agents:admin", None, true),
        (Method::POST, format!("/v1/agents/{agent}/reset-config"), "agents:admin", None, true),
        (Method::GET, format!("/v1/agents/{agent}/status"), "agents:read", None, true),
        (Method::GET, format!("/v1/agents/{agent}/configuration"), "agents:read", None, true),
        (Method::GET, format!("/v1/agents/{agent}/config-source"), "agents:read", None, true),
        (Method::GET, format!("/v1/agents/{agent}/tools"), "agents:read", None, true),
        (
            Method::PUT,
            format!("/v1/agents/{agent}/tools"),
            "agents:admin",
            Some(json!({"tools_enabled": []})),
            true,
        ),
        (Method::GET, format!("/v1/agents/{agent}/stats"), "agents:read", None, true),
        (Method::GET, format!("/v1/agents/{agent}/performance"), "agents:read", None, true),
        (
            Method::POST,
            "/v1/agents/delegate".into(),
            "runs:write",
            Some(json!({"capability": "content_creation", "input": "x"})),
            false,
        ),
        (Method::POST, "/v1/users".into(), "org:admin", Some(json!({"name": "x"})), false),
        (Method::GET, "/v1/users".into(), "org:admin", None, false),
        (
            Method::POST,
            "/v1/tokens".into(),
            "org:admin",
            Some(json!({"name": "x", "scopes": ["runs:read"]})),
            false,
        ),
        (Method::GET, "/v1/tokens".into(), "org:admin", None, false),
        (Method::DELETE, format!("/v1/tokens/{victim}"), "org:admin", None, true),
        (Method::GET, "/v1/usage".into(), "org:admin", None, false),
        (Method::GET, format!("/v1/organizations/{a}"), "org:admin", None, true),
        (
            Method::POST,
            "/v1/organizations".into(),
            "platform:admin",
            Some(json!({"name": "x"})),
            false,
        ),
    ];
    for (method, path, scope, body, names_object) in &routes {
        let without = if *scope == "platform:admin" {
            token(&app, &a, ORG_SCOPES).await
        } else {
            token_without(&app, &a, scope).await
        };
        let (s, e) = app.call(method.clone(), path, &without, body.clone()).await;
        assert_eq!(s, 403, "{method} {path} without {scope}: {e}");
        assert_eq!(e["error"]["code"], "insufficient_scope", "{method} {path}");
        if *names_object {
            let (s, e) = app.call(method.clone(), path, &b_all, body.clone()).await;
            assert_eq!(s, 404, "{method} {path} from another org: {e}");
        }
        let (s, _) = app.call(method.clone(), path, "ay_not_a_token", body.clone()).await;
        assert_eq!(s, 401, "{method} {path} without a valid token");
    }
    // Org B changed nothing of org A.
    let (_, after) = app.get(&format!("/v1/agents/{agent}")).await;
    assert_eq!(before, after);
    let (s, _) = app.call(Method::GET, "/v1/users", &b_all, None).await;
    assert_eq!(s, 200);
    let (_, b_users) = app.call(Method::GET, "/v1/users", &b_all, None).await;
    assert!(!b_users.to_string().contains(user["id"].as_str().unwrap()), "{b_users}");
    let (_, b_tokens) = app.call(Method::GET, "/v1/tokens", &b_all, None).await;
    assert!(!b_tokens.to_string().contains(&victim), "{b_tokens}");
    let (_, b_agents) = app.call(Method::GET, "/v1/agents", &b_all, None).await;
    assert!(!b_agents.to_string().contains(&agent), "{b_agents}");
    let revoked: i64 =
        sqlx::query_scalar("SELECT count(*) FROM api_tokens WHERE revoked_at IS NOT NULL")
            .fetch_one(app.store.pool())
            .await
            .unwrap();
    assert_eq!(revoked, 0, "org B revoked nothing");
}

/// Every `.route(...)` of crates/api/src/routes/mod.rs, as (METHOD, path).
fn served_routes() -> Vec<(String, String)> {
    let src = include_str!("../../../crates/api/src/routes/mod.rs");
    let flat: String = src.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut out = Vec::new();
    for part in flat.split(".route(").skip(1) {
        let path = part.split('"').nth(1).unwrap().to_owned();
        let rest = &part[part.find(',').unwrap()..];
        let end = rest.find(".route(").unwrap_or(rest.len());
        for m in ["get", "post", "put", "patch", "delete"] {
            let called = [format!(" {m}("), format!(".{m}("), format!("::{m}("), format!(",{m}(")];
            if called.iter().any(|c| rest[..end].contains(c.as_str())) {
                out.push((m.to_uppercase(), path.clone()));
            }
        }
    }
    out
}

#[tokio::test]
async fn every_served_route_is_in_the_openapi_document() {
    let app =
        TestApp::spawn_with(agentyard_e2e::TestOptions { workers: 0, ..Default::default() }).await;
    let spec: Value = app
        .http
        .get(format!("{}/openapi.json", app.api_url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let routes = served_routes();
    assert!(routes.len() > 35, "the route parser found {routes:?}");
    for (method, path) in &routes {
        // Pages for people, not API operations: the reference and the web console.
        if path == "/openapi.json" || path == "/docs" || path.starts_with("/console") {
            continue;
        }
        let op = &spec["paths"][path][method.to_lowercase()];
        assert!(op.is_object(), "{method} {path} is served but not in /openapi.json");
        assert!(
            op["responses"].as_object().is_some_and(|r| !r.is_empty()),
            "{method} {path} has no responses"
        );
    }
    // And the other way: every documented operation is served (not the 404/405 fallbacks).
    for (path, ops) in spec["paths"].as_object().unwrap() {
        for method in ops.as_object().unwrap().keys() {
            let url =
                format!("{}{}", app.api_url, path.replace("{id}", &uuid::Uuid::nil().to_string()));
            let r =
                app.http.request(method.to_uppercase().parse().unwrap(), url).send().await.unwrap();
            let status = r.status().as_u16();
            let body: Value = r.json().await.unwrap_or(Value::Null);
            assert!(
                !(status == 404 && body["error"]["code"] == "not_found") && status != 405,
                "{method} {path} is documented but not served ({status} {body})"
            );
        }
    }
    // The reference page works offline: it names the routes and loads nothing from elsewhere.
    let docs = app.http.get(format!("{}/docs", app.api_url)).send().await.unwrap();
    assert_eq!(docs.status(), 200);
    let page = docs.text().await.unwrap();
    for (_, path) in routes.iter().filter(|(_, p)| p.starts_with("/v1/")) {
        assert!(page.contains(&format!("<code>{path}</code>")), "/docs does not show {path}");
    }
    assert!(!page.contains("<script"), "/docs loads a script");
    assert!(!page.contains("src=\"http"), "/docs loads something from elsewhere");
}

#[tokio::test]
async fn administrative_acts_are_in_an_append_only_audit_log_of_their_org() {
    let app = TestApp::spawn_with(agentyard_e2e::TestOptions {
        env: vec![("AY_MCP_ALLOW_PRIVATE".into(), "1".into())],
        ..Default::default()
    })
    .await;
    let (_, user) = app.post("/v1/users", json!({"name": "Ada"})).await;
    let (s, t) = app
        .post(
            "/v1/tokens",
            json!({"user_id": user["id"], "name": "ada's", "scopes": ["runs:read"]}),
        )
        .await;
    assert_eq!(s, 201, "{t}");
    let (s, _) = app
        .call(
            Method::DELETE,
            &format!("/v1/tokens/{}", t["id"].as_str().unwrap()),
            &app.token,
            None,
        )
        .await;
    assert_eq!(s, 204);
    let (s, agent) = app.post("/v1/agents", json!({"agent_type": "task_assistant"})).await;
    assert_eq!(s, 201, "{agent}");
    let a = agent["id"].as_str().unwrap().to_owned();
    let (s, _) = app.patch(&format!("/v1/agents/{a}"), json!({"name": "Renamed"})).await;
    assert_eq!(s, 200);
    for step in ["deactivate", "activate", "reset-config"] {
        let (s, body) = app.post(&format!("/v1/agents/{a}/{step}"), json!({})).await;
        assert_eq!(s, 200, "{step}: {body}");
    }
    let (s, _) = app.call(Method::DELETE, &format!("/v1/agents/{a}"), &app.token, None).await;
    assert_eq!(s, 204);
    let (s, server) = app
        .post(
            "/v1/mcp-servers",
            json!({"name": "nowhere", "url": "http://127.0.0.1:9/mcp", "bearer_token": "s3cret"}),
        )
        .await;
    assert_eq!(s, 201, "{server}");
    let sid = server["id"].as_str().unwrap().to_owned();
    let (s, _) =
        app.call(Method::DELETE, &format!("/v1/mcp-servers/{sid}"), &app.token, None).await;
    assert_eq!(s, 204);

    let (s, log) = app.get("/v1/audit-log").await;
    assert_eq!(s, 200, "{log}");
    let entries = log["data"].as_array().unwrap();
    let actions: Vec<&str> = entries.iter().rev().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(
        actions,
        [
            "user.created",
            "token.created",
            "token.revoked",
            "agent.created",
            "agent.updated",
            "agent.deactivated",
            "agent.activated",
            "agent.reset",
            "agent.deleted",
            "mcp_server.registered",
            "mcp_server.deleted",
        ],
        "{log:#}"
    );
    // Who did it and on what; the new token's secret and the server's bearer token are absent.
    let token_created = &entries[entries.len() - 2];
    assert_eq!(token_created["target_id"], t["id"]);
    assert_eq!(token_created["details"]["name"], "ada's");
    assert!(token_created["actor_token_id"].is_string());
    assert!(
        !log.to_string().contains("s3cret")
            && !log.to_string().contains(t["token"].as_str().unwrap())
    );
    assert_eq!(entries[1]["details"]["name"], "nowhere");
    // Pages.
    let (_, first) = app.get("/v1/audit-log?limit=4").await;
    let cursor = first["next_cursor"].as_str().unwrap();
    let (_, second) = app.get(&format!("/v1/audit-log?limit=4&cursor={cursor}")).await;
    assert_eq!(second["data"][0]["id"], entries[4]["id"]);
    // Only org admins, only their org; append-only.
    let (_, other) = app.new_org("org-b").await;
    let (_, theirs) = app.call(Method::GET, "/v1/audit-log", &other, None).await;
    assert_eq!(theirs["data"], json!([]));
    let (_, reader) =
        app.post("/v1/tokens", json!({"name": "reader", "scopes": ["runs:read"]})).await;
    let (s, _) =
        app.call(Method::GET, "/v1/audit-log", reader["token"].as_str().unwrap(), None).await;
    assert_eq!(s, 403);
    for sql in
        ["UPDATE audit_log SET action = 'nothing'", "DELETE FROM audit_log", "TRUNCATE audit_log"]
    {
        let err = sqlx::query(sql).execute(app.store.pool()).await.unwrap_err();
        assert!(err.to_string().contains("append-only"), "{sql}: {err}");
    }
}
