//! Dead letters for operators: a run whose model always fails dead-letters its job; the API
//! (`platform:admin` only) and `agentyard dlq` list it with its reason and counts, show it,
//! replay it (once the cause is fixed the run completes, exactly once) and drop it.

use std::time::{Duration, Instant};

use agentyard_core::Scope;
use agentyard_e2e::TestApp;
use reqwest::Method;
use serde_json::Value;

const T: Duration = Duration::from_secs(60);

/// A failed run's id, once its job is in the dead-letter stream.
async fn dead_lettered_run(app: &TestApp, ops: &str) -> String {
    dead_lettered(app, ops, "always fail").await
}

async fn dead_lettered(app: &TestApp, ops: &str, input: &str) -> String {
    let run = app.start_run(input).await;
    let id = run["id"].as_str().unwrap().to_owned();
    assert_eq!(app.wait_terminal(&id, T).await["status"], "failed");
    let deadline = Instant::now() + T;
    loop {
        let (s, all) = app.call(Method::GET, "/v1/admin/dlq", ops, None).await;
        assert_eq!(s, 200, "{all}");
        if all["data"].as_array().unwrap().iter().any(|d| d["job"]["run_id"] == id.as_str()) {
            return id;
        }
        assert!(Instant::now() < deadline, "run {id} was never dead-lettered: {all}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn dlq_cli(app: &TestApp, args: &[&str]) -> (bool, String, String) {
    let args: Vec<&str> = std::iter::once("dlq").chain(args.iter().copied()).collect();
    let out = app
        .command("dlq", &args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .output()
        .await
        .unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.success(), text(&out.stdout), text(&out.stderr))
}

#[tokio::test]
async fn dead_letters_are_listed_with_their_reason_shown_and_dropped_by_operators_only() {
    let app = TestApp::spawn().await;
    let org = app.org_id.parse().unwrap();
    let ops = app.store.create_token(org, "ops", &[Scope::PlatformAdmin]).await.unwrap().secret;
    let first = dead_lettered_run(&app, &ops).await;
    let second = dead_lettered_run(&app, &ops).await;

    // Listed, newest first, with the reason and counts by kind and reason.
    let (_, all) = app.call(Method::GET, "/v1/admin/dlq", &ops, None).await;
    assert_eq!(all["total"], 2, "{all}");
    assert_eq!(all["data"][0]["job"]["run_id"], second.as_str(), "{all}");
    let d = &all["data"][1];
    assert_eq!(
        (d["kind"].as_str(), d["code"].as_str()),
        (Some("agent_step"), Some("llm_unavailable"))
    );
    assert!(d["reason"].as_str().unwrap().contains("4 attempts"), "{d}");
    assert_eq!(all["counts"][0]["count"], 2, "{all}");
    assert_eq!(all["counts"][0]["code"], "llm_unavailable", "{all}");
    let (_, one) = app.call(Method::GET, "/v1/admin/dlq?limit=1", &ops, None).await;
    assert_eq!((one["data"].as_array().unwrap().len(), &one["total"]), (1, &Value::from(2)));

    // Shown and dropped through the API.
    let id = d["id"].as_u64().unwrap();
    let (s, shown) = app.call(Method::GET, &format!("/v1/admin/dlq/{id}"), &ops, None).await;
    assert_eq!((s, &shown["job"]["run_id"]), (200, &Value::from(first.as_str())), "{shown}");
    let (s, _) = app.call(Method::DELETE, &format!("/v1/admin/dlq/{id}"), &ops, None).await;
    assert_eq!(s, 204);
    for method in [Method::GET, Method::DELETE] {
        let (s, e) = app.call(method, &format!("/v1/admin/dlq/{id}"), &ops, None).await;
        assert_eq!((s, &e["error"]["code"]), (404, &Value::from("dead_letter_not_found")));
    }

    // An organization's admin token sees none of it.
    for (method, path) in [
        (Method::GET, "/v1/admin/dlq".to_owned()),
        (Method::GET, format!("/v1/admin/dlq/{id}")),
        (Method::DELETE, format!("/v1/admin/dlq/{id}")),
    ] {
        let (s, e) = app.call(method, &path, &app.token, None).await;
        assert_eq!((s, &e["error"]["code"]), (403, &Value::from("insufficient_scope")), "{path}");
    }

    // The command line: list, show, drop.
    let (ok, out, err) = dlq_cli(&app, &["list", "--json"]).await;
    assert!(ok, "{err}");
    let listed: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(listed["total"], 1, "{listed}");
    let left = listed["data"][0]["id"].as_u64().unwrap().to_string();
    let (ok, out, err) = dlq_cli(&app, &["list"]).await;
    assert!(ok && out.contains("llm_unavailable") && out.contains(&second), "{out}{err}");
    let (ok, out, _) = dlq_cli(&app, &["show", &left]).await;
    assert!(ok && out.contains(&second), "{out}");
    let (ok, _, err) = dlq_cli(&app, &["drop", &left]).await;
    assert!(ok, "{err}");
    let (ok, _, err) = dlq_cli(&app, &["drop", &left]).await;
    assert!(!ok && err.contains("dead letter not found"), "{err}");
    let (_, all) = app.call(Method::GET, "/v1/admin/dlq", &ops, None).await;
    assert_eq!((&all["total"], all["data"].as_array().map(Vec::len)), (&Value::from(0), Some(0)));
}

/// The id of the newest dead letter of `run`.
async fn dead_letter_id(app: &TestApp, ops: &str, run: &str) -> Option<u64> {
    let (_, all) = app.call(Method::GET, "/v1/admin/dlq", ops, None).await;
    let d = all["data"].as_array().unwrap().iter().find(|d| d["job"]["run_id"] == run);
    d.and_then(|d| d["id"].as_u64())
}

async fn dead_letter_of(app: &TestApp, ops: &str, run: &str) -> u64 {
    dead_letter_id(app, ops, run).await.expect("a dead letter of the run")
}

#[tokio::test]
async fn a_replayed_step_completes_its_run_exactly_once_and_a_second_replay_does_nothing() {
    let app = TestApp::spawn().await;
    let org = app.org_id.parse().unwrap();
    let ops = app.store.create_token(org, "ops", &[Scope::PlatformAdmin]).await.unwrap().secret;
    // The model fails four times (AY_MAX_ATTEMPTS): the run fails, its job is dead-lettered.
    let run = dead_lettered(&app, &ops, "fails four times").await;
    assert_eq!(app.llm.requests().len(), 4);
    let id = dead_letter_of(&app, &ops, &run).await;

    // The cause is gone (the model answers now); two operators replay at once.
    let path = format!("/v1/admin/dlq/{id}/replay");
    let (a, b) = tokio::join!(
        app.call(Method::POST, &path, &ops, None),
        app.call(Method::POST, &path, &ops, None)
    );
    let outcomes: Vec<(u16, Value)> = vec![a, b];
    let replayed = outcomes.iter().filter(|(s, r)| *s == 200 && r["outcome"] == "replayed");
    assert_eq!(replayed.count(), 1, "{outcomes:?}");
    for (s, r) in &outcomes {
        let skipped = *s == 200 && r["outcome"] == "skipped";
        let gone = *s == 404 && r["error"]["code"] == "dead_letter_not_found";
        assert!(r["outcome"] == "replayed" || skipped || gone, "{s} {r}");
    }
    let done = app.wait_terminal(&run, T).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["output"]["content"], "back on the fifth try", "{done}");
    assert!(done["error"].is_null(), "{done}");
    assert_eq!(app.llm.requests().len(), 5, "one more model call, not two");
    let (_, messages) =
        app.get(&format!("/v1/threads/{}/messages", done["thread_id"].as_str().unwrap())).await;
    let replies = messages["data"].as_array().unwrap().iter().filter(|m| m["role"] == "assistant");
    assert_eq!(replies.count(), 1, "{messages}");

    // Its terminal event went out (not taken for a duplicate of `run.failed`).
    let js = async_nats::jetstream::new(async_nats::connect(&app.nats_url).await.unwrap());
    let subjects = agentyard_core::subjects::Subjects::new(app.prefix.clone());
    let events = js.get_stream(subjects.events_stream()).await.unwrap();
    let subject = subjects.run_events(org, run.parse().unwrap());
    let last = events.get_last_raw_message_by_subject(&subject).await.unwrap();
    let last: Value = serde_json::from_slice(&last.payload).unwrap();
    assert_eq!(last["type"], "run.completed", "{last}");

    // Replayed again: the dead letter is gone; nothing runs.
    let (s, e) = app.call(Method::POST, &path, &ops, None).await;
    assert_eq!((s, &e["error"]["code"]), (404, &Value::from("dead_letter_not_found")));
    let (s, e) = app.call(Method::POST, &path, &app.token, None).await;
    assert_eq!((s, &e["error"]["code"]), (403, &Value::from("insufficient_scope")));
    assert_eq!(app.llm.requests().len(), 5);

    // From the command line, while the cause is still there: the step runs again as a new
    // attempt (AY_MAX_ATTEMPTS more model calls), fails again and is dead-lettered again.
    let second = dead_lettered_run(&app, &ops).await;
    let calls = app.llm.requests().len();
    let id = dead_letter_of(&app, &ops, &second).await;
    let (ok, out, err) = dlq_cli(&app, &["replay", &id.to_string()]).await;
    assert!(ok, "{err}");
    let r: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (&r["outcome"], &r["run"]["status"]),
        (&Value::from("replayed"), &Value::from("queued"))
    );
    let again = app.wait_terminal(&second, T).await;
    assert_eq!(again["error"]["code"], "llm_unavailable", "{again}");
    assert_eq!(app.llm.requests().len(), calls + 4);
    let deadline = Instant::now() + T;
    while dead_letter_id(&app, &ops, &second).await.is_none_or(|new| new == id) {
        assert!(Instant::now() < deadline, "the replayed step was not dead-lettered again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
