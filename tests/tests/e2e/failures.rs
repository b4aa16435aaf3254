//! Crashes and model failures.

use std::time::Duration;

use agentyard_e2e::{TestApp, sse};
use futures::StreamExt;

const T: Duration = Duration::from_secs(60);

#[tokio::test]
async fn a_worker_killed_mid_generation_leaves_a_run_that_completes_exactly_once() {
    let mut app = TestApp::spawn().await;
    let run = app.start_run("slow answer to survive a crash").await;
    let id = run["id"].as_str().unwrap().to_owned();
    // Wait until the worker is generating (first delta), then kill -9 it.
    let resp =
        app.req(reqwest::Method::GET, &format!("/v1/runs/{id}/events")).send().await.unwrap();
    sse::read(resp, T, |e| e.event == "message.delta").await;
    app.kill_worker(0).await;
    app.start_worker().unwrap();

    let done = app.wait_terminal(&id, T).await;
    assert_eq!(done["status"], "completed", "{done}");
    let assistants = app.count("SELECT count(*) FROM messages WHERE role = 'assistant'").await;
    assert_eq!(assistants, 1);
    // The replay tells clients to drop the partial answer, so the deltas still add up.
    let resp =
        app.req(reqwest::Method::GET, &format!("/v1/runs/{id}/events")).send().await.unwrap();
    let events = sse::read_all(resp, T).await;
    assert!(sse::kinds(&events).contains(&"message.reset"));
    assert_eq!(sse::content(&events), done["output"]["content"].as_str().unwrap());
}

#[tokio::test]
async fn a_model_answering_429_then_500_then_success_completes_the_run() {
    let app = TestApp::spawn().await;
    let run = app.start_run("flaky model please").await;
    let done = app.wait_terminal(run["id"].as_str().unwrap(), T).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["output"]["content"], "recovered after two failures");
    assert_eq!(app.llm.requests().len(), 3, "two failures, one success");
}

#[tokio::test]
async fn a_model_that_always_fails_fails_the_run_with_a_code_and_a_dead_letter() {
    let app = TestApp::spawn().await;
    let run = app.start_run("always fail").await;
    let id = run["id"].as_str().unwrap();
    let done = app.wait_terminal(id, T).await;
    assert_eq!(done["status"], "failed", "{done}");
    assert_eq!(done["error"]["code"], "llm_unavailable");
    assert!(done["error"]["message"].as_str().unwrap().contains("4 attempts"), "{done}");
    assert_eq!(app.llm.requests().len(), 4, "bounded attempts (AY_MAX_ATTEMPTS=4)");
    assert_dead_letter(&app, id).await;
}

#[tokio::test]
async fn a_model_rejecting_the_request_fails_the_run_at_once() {
    let app = TestApp::spawn().await;
    let run = app.start_run("bad request").await;
    let id = run["id"].as_str().unwrap();
    let done = app.wait_terminal(id, T).await;
    assert_eq!(done["status"], "failed", "{done}");
    assert_eq!(done["error"]["code"], "llm_bad_request");
    assert_eq!(app.llm.requests().len(), 1, "a 4xx is not retried");
    assert_dead_letter(&app, id).await;
}

async fn assert_dead_letter(app: &TestApp, run_id: &str) {
    let client = async_nats::connect(&app.nats_url).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let subjects = agentyard_core::subjects::Subjects::new(app.prefix.clone());
    let stream = js.get_stream(subjects.dlq_stream()).await.unwrap();
    let consumer = stream
        .create_consumer(async_nats::jetstream::consumer::pull::Config::default())
        .await
        .unwrap();
    let mut batch =
        consumer.fetch().max_messages(10).expires(Duration::from_secs(2)).messages().await.unwrap();
    let msg = batch.next().await.expect("a DLQ entry").unwrap();
    let job: serde_json::Value = serde_json::from_slice(&msg.payload).unwrap();
    assert_eq!(job["run_id"], run_id);
    let reason = msg.headers.as_ref().and_then(|h| h.get("Ay-Dlq-Reason")).unwrap().to_string();
    assert!(reason.starts_with("llm_"), "{reason}");
}

#[tokio::test]
async fn the_outbox_relay_publishes_jobs_a_crash_left_unsent() {
    let app = TestApp::spawn().await;
    // A run committed with its job row, as if the API crashed before publishing it.
    let run = app.create_run_unpublished("left in the outbox").await;
    let done = app.wait_terminal(&run.id.to_string(), T).await;
    assert_eq!(done["status"], "completed", "{done}");
    // Published rows are deleted.
    for _ in 0..50 {
        if app.store.outbox_len().await.unwrap() == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("outbox rows were not deleted after publishing");
}
