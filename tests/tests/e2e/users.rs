//! Users inside an organization. Threads, runs, messages, tool invocations, tasks and workflow
//! executions belong to the user who created them: a token bound to a user (without
//! `org:admin`) reads and acts on its user's own only; an admin's token and a token bound to no
//! user (a service's) see the whole organization; another organization sees nothing. Agents,
//! MCP servers, tickets and integrations are the organization's, shared by its users.

use std::time::Duration;

use agentyard_e2e::{TestApp, TestOptions, sse};
use reqwest::Method;
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(30);
/// Every org scope but `org:admin`.
const MEMBER: [&str; 6] =
    ["runs:read", "runs:write", "agents:read", "agents:admin", "tools:admin", "workflows:run"];

/// Who asks, in the order of [`Sees`].
#[derive(Clone, Copy, Debug)]
enum Who {
    Ada,
    Bob,
    Admin,
    Service,
    Elsewhere,
}
const EVERYONE: [Who; 5] = [Who::Ada, Who::Bob, Who::Admin, Who::Service, Who::Elsewhere];

/// Which callers a route's subject is visible to.
#[derive(Clone, Copy, Debug)]
enum Sees {
    /// Ada's own: Ada, the admin and the service token; not Bob, not another org.
    Owner,
    /// The organization's: everyone in it; not another org.
    Org,
}

impl Sees {
    fn visible_to(self, who: Who) -> bool {
        !matches!((self, who), (_, Who::Elsewhere) | (Self::Owner, Who::Bob))
    }
}

struct Tokens {
    ada: String,
    ada_id: String,
    bob: String,
    bob_id: String,
    admin: String,
    service: String,
    elsewhere: String,
}

impl Tokens {
    fn of(&self, who: Who) -> &str {
        match who {
            Who::Ada => &self.ada,
            Who::Bob => &self.bob,
            Who::Admin => &self.admin,
            Who::Service => &self.service,
            Who::Elsewhere => &self.elsewhere,
        }
    }
}

pub(crate) async fn member(app: &TestApp, name: &str) -> (String, String) {
    let (s, user) = app.post("/v1/users", json!({"name": name})).await;
    assert_eq!(s, 201, "{user}");
    let body = json!({"user_id": user["id"], "name": name, "scopes": MEMBER});
    let (s, t) = app.post("/v1/tokens", body).await;
    assert_eq!(s, 201, "{t}");
    (user["id"].as_str().unwrap().to_owned(), t["token"].as_str().unwrap().to_owned())
}

/// Starts a run as `token` and waits for it to end.
pub(crate) async fn ask(app: &TestApp, token: &str, agent: &str, input: &str) -> Value {
    let body = json!({"input": input, "agent_id": agent});
    let (s, run) = app.call(Method::POST, "/v1/runs", token, Some(body)).await;
    assert_eq!(s, 202, "{run}");
    let id = run["id"].as_str().unwrap();
    let (s, done) = app.call(Method::GET, &format!("/v1/runs/{id}?wait=30"), token, None).await;
    assert_eq!(s, 200, "{done}");
    assert_eq!(done["status"], "completed", "{done}");
    done
}

fn ids(page: &Value) -> Vec<&str> {
    page["data"].as_array().unwrap().iter().map(|x| x["id"].as_str().unwrap()).collect()
}

#[tokio::test]
async fn every_route_keeps_a_users_own_to_that_user_its_admins_and_services() {
    let app =
        TestApp::spawn_with(TestOptions { tools: true, orchestrator: true, ..Default::default() })
            .await;
    app.wait_tools().await;
    let (ada_id, ada) = member(&app, "Ada").await;
    let (bob_id, bob) = member(&app, "Bob").await;
    let (s, svc) = app.post("/v1/tokens", json!({"name": "svc", "scopes": MEMBER})).await;
    assert_eq!(s, 201, "{svc}");
    let service = svc["token"].as_str().unwrap().to_owned();
    let (_, elsewhere) = app.new_org("elsewhere").await;
    let t = Tokens { ada, ada_id, bob, bob_id, admin: app.token.clone(), service, elsewhere };

    // The org's agent with the task tools; each user adds a task through it (the built-in
    // tool acts as the run's user) and Ada starts an approval workflow.
    let (s, agent) = app.post("/v1/agents", json!({"agent_type": "task_assistant"})).await;
    assert_eq!(s, 201, "{agent}");
    let agent = agent["id"].as_str().unwrap().to_owned();
    let run = ask(&app, &t.ada, &agent, r#"call add_task {"title": "ada's errand"}"#).await;
    let bobs = ask(&app, &t.bob, &agent, r#"call add_task {"title": "bob's errand"}"#).await;
    let (rid, tid) = (run["id"].as_str().unwrap(), run["thread_id"].as_str().unwrap());
    assert_eq!(run["user_id"].as_str(), Some(t.ada_id.as_str()), "{run}");
    let (s, _) = app
        .post(
            "/v1/workflows",
            json!({"id": "gate", "steps": [
                {"id": "ok", "approval": {"message": "Go on?", "timeout": "1h"}}
            ]}),
        )
        .await;
    assert_eq!(s, 201);
    let (s, exec) =
        app.call(Method::POST, "/v1/workflows/gate/executions", &t.ada, Some(json!({}))).await;
    assert_eq!(s, 202, "{exec}");
    let eid = exec["id"].as_str().unwrap().to_owned();

    // Every route that names one of Ada's things (or one of the org's), as each caller.
    let task = r#"{"input": "hi", "multitask_strategy": "enqueue"}"#;
    let routes: Vec<(Method, String, Option<Value>, Sees)> = vec![
        (Method::GET, format!("/v1/threads/{tid}"), None, Sees::Owner),
        (Method::GET, format!("/v1/threads/{tid}/messages"), None, Sees::Owner),
        (Method::GET, format!("/v1/runs/{rid}"), None, Sees::Owner),
        (Method::GET, format!("/v1/runs/{rid}?wait=1"), None, Sees::Owner),
        (Method::GET, format!("/v1/runs/{rid}/events"), None, Sees::Owner),
        (Method::GET, format!("/v1/runs/{rid}/tool-invocations"), None, Sees::Owner),
        (Method::POST, format!("/v1/runs/{rid}/cancel"), None, Sees::Owner),
        (
            Method::POST,
            format!("/v1/runs/{rid}/input"),
            Some(json!({"action": "accept"})),
            Sees::Owner,
        ),
        (
            Method::POST,
            format!("/v1/threads/{tid}/runs"),
            serde_json::from_str(task).ok(),
            Sees::Owner,
        ),
        (
            Method::POST,
            "/v1/runs".into(),
            Some(json!({"input": "hi", "thread_id": tid})),
            Sees::Owner,
        ),
        (Method::GET, format!("/v1/workflows/executions/{eid}"), None, Sees::Owner),
        (Method::GET, format!("/v1/workflows/executions/{eid}/events"), None, Sees::Owner),
        (Method::POST, format!("/v1/workflows/executions/{eid}/retry"), None, Sees::Owner),
        (
            Method::POST,
            format!("/v1/workflows/executions/{eid}/input"),
            Some(json!({"step_id": "nope", "action": "approve"})),
            Sees::Owner,
        ),
        (Method::GET, format!("/v1/agents/{agent}"), None, Sees::Org),
        (Method::GET, format!("/v1/agents/{agent}/tools"), None, Sees::Org),
        (Method::GET, "/v1/workflows/gate".into(), None, Sees::Org),
    ];
    for (method, path, body, sees) in &routes {
        for who in EVERYONE {
            let mut req = app
                .http
                .request(method.clone(), format!("{}{path}", app.api_url))
                .bearer_auth(t.of(who));
            if let Some(b) = body {
                req = req.json(b);
            }
            let resp = tokio::time::timeout(T, req.send()).await.expect("answered").unwrap();
            let status = resp.status().as_u16();
            let is_stream = resp
                .headers()
                .get("content-type")
                .is_some_and(|c| c.to_str().unwrap_or("").starts_with("text/event-stream"));
            // A stream's headers are its answer; its body may never end.
            let text = if is_stream { String::new() } else { resp.text().await.unwrap() };
            if sees.visible_to(who) {
                assert!(status < 500 && status != 404, "{who:?} {method} {path}: {status} {text}");
                assert_ne!(status, 403, "{who:?} {method} {path}: {text}");
            } else {
                assert_eq!(status, 404, "{who:?} {method} {path}: {text}");
                assert!(!text.contains("errand"), "{who:?} {method} {path} leaked: {text}");
                let v: Value = serde_json::from_str(&text).unwrap();
                assert!(v["error"]["code"].as_str().unwrap().ends_with("not_found"), "{text}");
            }
        }
    }

    // Lists: each user's own; the admin and the service see the org; another org nothing.
    let (bid, btid) = (bobs["id"].as_str().unwrap(), bobs["thread_id"].as_str().unwrap());
    let lists: [(&str, &str, &str); 3] = [
        ("/v1/threads", tid, btid),
        ("/v1/runs", rid, bid),
        ("/v1/workflows/executions", &eid, "-"),
    ];
    for (path, adas, bobs) in lists {
        for who in EVERYONE {
            let (s, page) = app.call(Method::GET, path, t.of(who), None).await;
            assert_eq!(s, 200, "{who:?} {path}: {page}");
            let seen = ids(&page);
            let (see_ada, see_bob) = match who {
                Who::Ada => (true, false),
                Who::Bob => (false, true),
                Who::Admin | Who::Service => (true, true),
                Who::Elsewhere => (false, false),
            };
            assert_eq!(seen.contains(&adas), see_ada, "{who:?} {path}: {page}");
            if bobs != "-" {
                assert_eq!(seen.contains(&bobs), see_bob, "{who:?} {path}: {page}");
            }
        }
    }
    let titles = |page: &Value| -> Vec<String> {
        page["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x["title"].as_str().unwrap().into())
            .collect()
    };
    let (_, tasks) = app.call(Method::GET, "/v1/tasks", &t.ada, None).await;
    assert_eq!(titles(&tasks), ["ada's errand"], "{tasks}");
    let (_, tasks) = app.call(Method::GET, "/v1/tasks", &t.admin, None).await;
    assert_eq!(titles(&tasks).len(), 2, "{tasks}");
    let (_, tasks) = app.call(Method::GET, "/v1/tasks", &t.elsewhere, None).await;
    assert_eq!(titles(&tasks).len(), 0, "{tasks}");

    // The tool audit log: Ada's own calls; asking for Bob's gives her nothing; the admin filters.
    let calls = |page: &Value| -> Vec<String> {
        page["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x["run_id"].as_str().unwrap().into())
            .collect()
    };
    let (_, log) = app.call(Method::GET, "/v1/tool-invocations", &t.ada, None).await;
    assert_eq!(calls(&log), [rid], "{log}");
    let bob_filter = format!("/v1/tool-invocations?user_id={}", t.bob_id);
    let (_, log) = app.call(Method::GET, &bob_filter, &t.ada, None).await;
    assert!(calls(&log).is_empty(), "{log}");
    let (_, log) = app.call(Method::GET, &bob_filter, &t.admin, None).await;
    assert_eq!(calls(&log), [bid], "{log}");

    // The built-in tools act as the run's user: Ada's list_tasks lists hers, her update of
    // Bob's task finds nothing, the admin's run lists both.
    let listed = ask(&app, &t.ada, &agent, "call list_tasks {}").await;
    let out = listed["output"]["content"].as_str().unwrap();
    assert!(out.contains("ada's errand") && !out.contains("bob's errand"), "{out}");
    let tried = ask(&app, &t.ada, &agent, r#"call complete_task {"title": "bob's errand"}"#).await;
    let out = tried["output"]["content"].as_str().unwrap();
    assert!(out.contains("no task"), "{out}");
    let pending: i64 = app.count("SELECT count(*) FROM tasks WHERE status = 'pending'").await;
    assert_eq!(pending, 2, "Bob's task is untouched");
    let listed = ask(&app, &t.admin, &agent, "call list_tasks {}").await;
    let out = listed["output"]["content"].as_str().unwrap();
    assert!(out.contains("ada's errand") && out.contains("bob's errand"), "{out}");

    // Ada's organization event stream carries her runs' events and none of Bob's.
    let resp = app
        .http
        .get(format!("{}/v1/events?after=0", app.api_url))
        .bearer_auth(&t.ada)
        .send()
        .await
        .unwrap();
    let final_ada = tried["id"].as_str().unwrap().to_owned();
    let events =
        sse::read(resp, T, |e| e.event == "run.completed" && e.data.contains(&final_ada)).await;
    let runs: Vec<String> = events
        .iter()
        .map(|e| serde_json::from_str::<Value>(&e.data).unwrap()["run_id"].as_str().unwrap().into())
        .collect();
    assert!(runs.iter().any(|r| r == rid), "Ada's first run is in her stream");
    assert!(!runs.iter().any(|r| r == bid), "Bob's run leaked into Ada's stream");
    assert!(!runs.iter().any(|r| r == listed["id"].as_str().unwrap()), "the admin's run leaked");

    // Idempotency keys are each user's own: Bob reusing Ada's key starts his own run.
    let key_post = |token: &str| {
        app.http
            .post(format!("{}/v1/runs", app.api_url))
            .bearer_auth(token.to_owned())
            .header("Idempotency-Key", "same-key")
            .json(&json!({"input": "keyed"}))
            .send()
    };
    let first: Value = key_post(&t.ada).await.unwrap().json().await.unwrap();
    let again: Value = key_post(&t.ada).await.unwrap().json().await.unwrap();
    let bobs_key: Value = key_post(&t.bob).await.unwrap().json().await.unwrap();
    assert_eq!(first["id"], again["id"]);
    assert_ne!(first["id"], bobs_key["id"], "{bobs_key}");
    assert_eq!(bobs_key["user_id"].as_str(), Some(t.bob_id.as_str()));
}
