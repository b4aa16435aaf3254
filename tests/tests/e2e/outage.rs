//! Outages of Postgres and NATS longer than any retry budget, on private servers the tests stop
//! and start (never the machine's own): nothing accepted is lost, stuck or doubled.

use std::time::Duration;

use agentyard_e2e::private::{PrivateNats, PrivatePostgres};
use agentyard_e2e::{TestApp, TestOptions};
use serde_json::{Value, json};

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

/// Every run's final state, asked until all are terminal (the API may answer 503 meanwhile).
async fn all_terminal(app: &TestApp, ids: &[String], within: Duration) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + within;
    let mut out = Vec::new();
    for id in ids {
        loop {
            let r = app.req(reqwest::Method::GET, &format!("/v1/runs/{id}?wait=5")).send().await;
            if let Ok(r) = r
                && r.status() == 200
            {
                let run: Value = r.json().await.unwrap();
                if ["completed", "failed", "cancelled", "expired"]
                    .contains(&run["status"].as_str().unwrap_or(""))
                {
                    out.push(run);
                    break;
                }
            }
            assert!(tokio::time::Instant::now() < deadline, "run {id} never ended");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    out
}

#[tokio::test]
async fn a_postgres_outage_longer_than_the_attempt_budget_loses_and_strands_nothing() {
    let pg = PrivatePostgres::start().await.expect("a private postgres");
    let app = TestApp::spawn_with(TestOptions {
        workers: 2,
        postgres_url: Some(pg.url()),
        // Two attempts, each waiting up to 5 s for a connection: the old budget was spent in 15 s.
        env: env(&[("AY_MAX_ATTEMPTS", "2"), ("AY_RETRY_MAX", "1s")]),
        ..Default::default()
    })
    .await;
    let mut ids = Vec::new();
    for i in 0..12 {
        // 4.5 s of streaming each: Postgres goes while they are mid-answer.
        ids.push(app.start_run(&format!("slow run {i}")).await["id"].as_str().unwrap().to_owned());
    }
    tokio::time::sleep(Duration::from_millis(150)).await;
    pg.down().await;
    let (s, e) = app.post("/v1/runs", json!({"input": "during the outage"})).await;
    assert_eq!((s, e["error"]["code"].as_str()), (503, Some("unavailable")), "{e}");
    tokio::time::sleep(Duration::from_secs(25)).await;
    pg.up().await.expect("postgres back");
    let runs = all_terminal(&app, &ids, Duration::from_secs(90)).await;
    for r in &runs {
        assert_eq!(r["status"], "completed", "{r}");
    }
    // The test's own pool lost its connections with the server: a fresh one.
    let db = sqlx::PgPool::connect(&app.database_url).await.unwrap();
    let answers: i64 = sqlx::query_scalar("SELECT count(*) FROM messages WHERE role = 'assistant'")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(answers, 12, "one answer per run");
    // And the system works on: a new run completes.
    let run = app.start_run("after the outage").await;
    let done = app.wait_terminal(run["id"].as_str().unwrap(), Duration::from_secs(60)).await;
    assert_eq!(done["status"], "completed", "{done}");
}

#[tokio::test]
async fn a_nats_outage_loses_nothing_and_streams_and_long_polls_work_after_it() {
    let mut nats = PrivateNats::start().await.expect("a private nats-server");
    let app = TestApp::spawn_with(TestOptions {
        workers: 1,
        nats_url: Some(nats.url()),
        env: env(&[("AY_MAX_ATTEMPTS", "2"), ("AY_RETRY_MAX", "1s")]),
        ..Default::default()
    })
    .await;
    let mut ids = Vec::new();
    for i in 0..8 {
        ids.push(app.start_run(&format!("slow run {i}")).await["id"].as_str().unwrap().to_owned());
    }
    tokio::time::sleep(Duration::from_millis(150)).await;
    nats.down().await;
    // Runs accepted while NATS is down wait in the outbox.
    for i in 0..4 {
        let (s, r) =
            app.post("/v1/runs", json!({"input": format!("while nats is down {i}")})).await;
        assert_eq!(s, 202, "{r}");
        ids.push(r["id"].as_str().unwrap().to_owned());
    }
    tokio::time::sleep(Duration::from_secs(20)).await;
    nats.up().await.expect("nats back");
    let runs = all_terminal(&app, &ids, Duration::from_secs(120)).await;
    for r in &runs {
        assert_eq!(r["status"], "completed", "{r}");
    }
    // The API's event reader is back: a stream and a long-poll of a new run end.
    let resp = app
        .req(reqwest::Method::POST, "/v1/runs")
        .json(&json!({"input": "streamed after the outage", "stream": true}))
        .send()
        .await
        .unwrap();
    let events = agentyard_e2e::sse::read_all(resp, Duration::from_secs(60)).await;
    assert_eq!(agentyard_e2e::sse::kinds(&events).last(), Some(&"run.completed"));
    let run = app.start_run("polled after the outage").await;
    let (s, done) = app.get(&format!("/v1/runs/{}?wait=30", run["id"].as_str().unwrap())).await;
    assert_eq!((s, &done["status"]), (200, &json!("completed")), "{done}");
}
