//! The happy path: post, poll, stream, resume.

use std::time::Duration;

use agentyard_e2e::{TestApp, sse};
use serde_json::json;

const T: Duration = Duration::from_secs(30);

#[tokio::test]
async fn a_posted_message_completes_and_the_reply_is_stored_as_an_assistant_message() {
    let app = TestApp::spawn().await;
    let (status, thread) = app.post("/v1/threads", json!({"metadata": {"topic": "demo"}})).await;
    assert_eq!(status, 201);
    assert_eq!(thread["metadata"]["topic"], "demo");
    let tid = thread["id"].as_str().unwrap();
    let (status, run) =
        app.post(&format!("/v1/threads/{tid}/runs"), json!({"input": "Hello there"})).await;
    assert_eq!(status, 202, "{run}");
    assert_eq!(run["status"], "queued");
    assert_eq!(run["thread_id"], tid);

    let done = app.wait_terminal(run["id"].as_str().unwrap(), T).await;
    assert_eq!(done["status"], "completed", "{done}");
    let expected = agentyard_scripted_llm::default_answer(&[
        json!({"role": "user", "content": "Hello there"}),
    ]);
    assert_eq!(done["output"]["content"], expected);
    assert!(done["usage"]["total_tokens"].as_u64().unwrap() > 0);
    assert!(done["started_at"].is_string() && done["completed_at"].is_string());

    let (status, page) = app.get(&format!("/v1/threads/{tid}/messages")).await;
    assert_eq!(status, 200);
    let msgs = page["data"].as_array().unwrap();
    assert_eq!(msgs.len(), 2, "{page}");
    assert_eq!(msgs[0]["role"], "user");
    assert_eq!(msgs[0]["content"], "Hello there");
    assert_eq!(msgs[1]["role"], "assistant");
    assert_eq!(msgs[1]["content"], expected);
    assert_eq!(msgs[1]["run_id"], run["id"]);

    // The model got the default agent's instructions (config/agents.yaml), then the history.
    let sent = &app.llm.requests()[0];
    assert_eq!(sent["messages"][0]["role"], "system");
    assert!(sent["messages"][0]["content"].as_str().unwrap().contains("customer support agent"));
    assert_eq!(sent["messages"][1]["content"], "Hello there");
    assert_eq!(sent["temperature"], 0.3);
    assert_eq!(sent["max_tokens"], 1024);
}

#[tokio::test]
async fn message_pages_follow_the_cursor_oldest_first() {
    let app = TestApp::spawn().await;
    let run = app.start_run("first").await;
    let tid = run["thread_id"].as_str().unwrap().to_owned();
    app.wait_terminal(run["id"].as_str().unwrap(), T).await;
    let (_, r2) = app.post(&format!("/v1/threads/{tid}/runs"), json!({"input": "second"})).await;
    app.wait_terminal(r2["id"].as_str().unwrap(), T).await;

    let (_, p1) = app.get(&format!("/v1/threads/{tid}/messages?limit=3")).await;
    assert_eq!(p1["data"].as_array().unwrap().len(), 3);
    let after = p1["next_after"].as_i64().expect("a next page");
    let (_, p2) = app.get(&format!("/v1/threads/{tid}/messages?limit=3&after={after}")).await;
    let rest = p2["data"].as_array().unwrap();
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0]["seq"], 4);
    assert!(p2["next_after"].is_null());
}

#[tokio::test]
async fn a_streaming_client_gets_deltas_that_concatenate_to_the_final_content() {
    let app =
        TestApp::spawn_with(agentyard_e2e::TestOptions { token_delay_ms: 5, ..Default::default() })
            .await;
    let resp = app
        .req(reqwest::Method::POST, "/v1/runs")
        .json(&json!({"input": "stream this please", "stream": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let events = sse::read_all(resp, T).await;
    let kinds = sse::kinds(&events);
    assert_eq!(kinds.first(), Some(&"run.queued"));
    assert_eq!(kinds[1], "run.started");
    assert_eq!(kinds.last(), Some(&"run.completed"), "{kinds:?}");
    assert!(kinds.iter().filter(|k| **k == "message.delta").count() > 1, "{kinds:?}");
    let last: serde_json::Value = serde_json::from_str(&events.last().unwrap().data).unwrap();
    assert_eq!(sse::content(&events), last["run"]["output"]["content"].as_str().unwrap());
    // Every event has an increasing id.
    let ids: Vec<u64> = events.iter().map(|e| e.id.as_deref().unwrap().parse().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
}

#[tokio::test]
async fn a_client_resuming_with_last_event_id_misses_nothing_and_gets_nothing_twice() {
    let app = TestApp::spawn().await;
    let run = app.start_run("slow answer for resuming").await;
    let id = run["id"].as_str().unwrap();
    let events_url = format!("/v1/runs/{id}/events");

    // Read until the third delta, then drop the connection.
    let resp = app.req(reqwest::Method::GET, &events_url).send().await.unwrap();
    let mut deltas = 0;
    let first = sse::read(resp, T, |e| {
        deltas += usize::from(e.event == "message.delta");
        deltas == 3
    })
    .await;
    let last_id = first.last().unwrap().id.clone().unwrap();

    let resp = app
        .req(reqwest::Method::GET, &events_url)
        .header("Last-Event-ID", &last_id)
        .send()
        .await
        .unwrap();
    let rest = sse::read_all(resp, T).await;
    let all: Vec<_> = first.iter().chain(rest.iter()).cloned().collect();
    let ids: Vec<u64> = all.iter().map(|e| e.id.as_deref().unwrap().parse().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids repeat or go back: {ids:?}");
    assert_eq!(sse::kinds(&all).last(), Some(&"run.completed"));

    // A client connecting after the end gets the whole history, identical, then the end.
    let resp = app.req(reqwest::Method::GET, &events_url).send().await.unwrap();
    let replay = sse::read_all(resp, T).await;
    assert_eq!(replay, all);
    let done = app.wait_terminal(id, T).await;
    assert_eq!(sse::content(&all), done["output"]["content"].as_str().unwrap());

    // Resuming after the terminal event ends at once.
    let last = all.last().unwrap().id.clone().unwrap();
    let resp = app
        .req(reqwest::Method::GET, &events_url)
        .header("Last-Event-ID", last)
        .send()
        .await
        .unwrap();
    assert!(sse::read_all(resp, Duration::from_secs(5)).await.is_empty());
}

#[tokio::test]
async fn a_long_poll_answers_as_soon_as_the_run_ends() {
    let app = TestApp::spawn().await;
    let run = app.start_run("slow to finish").await;
    let id = run["id"].as_str().unwrap();
    let started = std::time::Instant::now();
    let (status, done) = app.get(&format!("/v1/runs/{id}?wait=30")).await;
    assert_eq!(status, 200);
    assert_eq!(done["status"], "completed", "{done}");
    assert!(started.elapsed() < Duration::from_secs(25));
    // wait=0 answers at once with the current state.
    let (status, _) = app.get(&format!("/v1/runs/{id}?wait=0")).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn health_readiness_and_the_openapi_document_are_served() {
    let app = TestApp::spawn().await;
    let get = |p: &str| app.http.get(format!("{}{p}", app.api_url)).send();
    assert_eq!(get("/healthz").await.unwrap().status(), 200);
    let ready: serde_json::Value = get("/readyz").await.unwrap().json().await.unwrap();
    assert_eq!(ready, json!({"nats": true, "postgres": true}));
    let spec: serde_json::Value = get("/openapi.json").await.unwrap().json().await.unwrap();
    let paths = spec["paths"].as_object().unwrap();
    for p in [
        "/healthz",
        "/readyz",
        "/v1/threads",
        "/v1/threads/{id}",
        "/v1/threads/{id}/messages",
        "/v1/threads/{id}/runs",
        "/v1/runs",
        "/v1/runs/{id}",
        "/v1/runs/{id}/events",
        "/v1/runs/{id}/cancel",
    ] {
        assert!(paths.contains_key(p), "{p} missing from /openapi.json");
    }
    assert_eq!(get("/docs").await.unwrap().status(), 200);
}

#[tokio::test]
async fn a_retried_streaming_post_replays_the_same_runs_events_from_the_start() {
    let app = TestApp::spawn().await;
    let post = || {
        app.req(reqwest::Method::POST, "/v1/runs")
            .header("Idempotency-Key", "stream-1")
            .json(&json!({"input": "stream me once", "stream": true}))
            .send()
    };
    let first = sse::read_all(post().await.unwrap(), T).await;
    let again = sse::read_all(post().await.unwrap(), T).await;
    assert_eq!(sse::kinds(&first).last(), Some(&"run.completed"));
    assert_eq!(first, again, "the replay is the same stream, ids included");
    assert_eq!(app.count("SELECT count(*) FROM runs").await, 1);
}
