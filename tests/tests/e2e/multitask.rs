//! One run at a time per thread: enqueue, reject, interrupt; and cancel.

use std::time::Duration;

use agentyard_e2e::{TestApp, sse};
use serde_json::json;

const T: Duration = Duration::from_secs(60);

async fn post_on(
    app: &TestApp,
    tid: &str,
    input: &str,
    strategy: &str,
) -> (u16, serde_json::Value) {
    app.post(
        &format!("/v1/threads/{tid}/runs"),
        json!({"input": input, "multitask_strategy": strategy}),
    )
    .await
}

/// Waits until the run is generating (its first delta), so it is certainly in progress.
async fn until_generating(app: &TestApp, run_id: &str) {
    let resp =
        app.req(reqwest::Method::GET, &format!("/v1/runs/{run_id}/events")).send().await.unwrap();
    sse::read(resp, T, |e| e.event == "message.delta").await;
}

#[tokio::test]
async fn enqueued_runs_wait_their_turn_and_run_in_order() {
    let app = TestApp::spawn().await;
    let first = app.start_run("slow first").await;
    let tid = first["thread_id"].as_str().unwrap();
    let (s2, second) = post_on(&app, tid, "second", "enqueue").await;
    let (s3, third) = post_on(&app, tid, "third", "enqueue").await;
    assert_eq!((s2, s3), (202, 202));
    // Waiting runs stay queued while the first one works.
    let (_, r2) = app.get(&format!("/v1/runs/{}", second["id"].as_str().unwrap())).await;
    assert_eq!(r2["status"], "queued");

    let runs = [&first, &second, &third].map(|r| r["id"].as_str().unwrap().to_owned());
    let mut finished = Vec::new();
    for id in &runs {
        let done = app.wait_terminal(id, T).await;
        assert_eq!(done["status"], "completed", "{done}");
        finished.push((
            done["started_at"].as_str().unwrap().to_owned(),
            done["completed_at"].as_str().unwrap().to_owned(),
        ));
    }
    // Each started after the previous one completed.
    let parse = |s: &str| chrono_like(s);
    assert!(parse(&finished[1].0) >= parse(&finished[0].1), "{finished:?}");
    assert!(parse(&finished[2].0) >= parse(&finished[1].1), "{finished:?}");
    let (_, page) = app.get(&format!("/v1/threads/{tid}/messages?limit=100")).await;
    let roles: Vec<_> = page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].as_str().unwrap().split(' ').next().unwrap().to_owned())
        .collect();
    assert_eq!(roles.len(), 6);
    let users: Vec<_> = page["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "user")
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert_eq!(users, ["slow first", "second", "third"]);
    // Every id is a uuid v7, also those Postgres made when handing the thread over.
    for m in page["data"].as_array().unwrap() {
        let id: uuid::Uuid = m["id"].as_str().unwrap().parse().unwrap();
        assert_eq!(id.get_version_num(), 7, "{m}");
    }
}

/// RFC 3339 timestamps from Postgres and from Rust differ in form; compare as numbers.
fn chrono_like(s: &str) -> f64 {
    let t = s.replace('T', " ");
    let (date, rest) = t.split_once(' ').unwrap();
    let time = rest.trim_end_matches('Z').split(['+']).next().unwrap();
    let d: Vec<f64> = date.split('-').map(|x| x.parse().unwrap()).collect();
    let h: Vec<f64> = time.split(':').map(|x| x.parse().unwrap()).collect();
    ((d[0] * 400.0 + d[1]) * 40.0 + d[2]) * 86400.0 + h[0] * 3600.0 + h[1] * 60.0 + h[2]
}

#[tokio::test]
async fn reject_answers_409_while_the_thread_is_busy() {
    let app = TestApp::spawn().await;
    let first = app.start_run("slow and busy").await;
    let tid = first["thread_id"].as_str().unwrap();
    let (status, body) = post_on(&app, tid, "me too", "reject").await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "thread_busy");
    assert_eq!(app.count("SELECT count(*) FROM runs").await, 1);
    app.wait_terminal(first["id"].as_str().unwrap(), T).await;
    let (status, _) = post_on(&app, tid, "now it's free", "reject").await;
    assert_eq!(status, 202);
}

#[tokio::test]
async fn interrupt_cancels_the_active_run_and_starts_the_new_one() {
    let app = TestApp::spawn().await;
    let first = app.start_run("slow to be interrupted").await;
    let (fid, tid) = (first["id"].as_str().unwrap(), first["thread_id"].as_str().unwrap());
    until_generating(&app, fid).await;
    let (status, second) = post_on(&app, tid, "urgent", "interrupt").await;
    assert_eq!(status, 202);
    let old = app.wait_terminal(fid, T).await;
    assert_eq!(old["status"], "cancelled");
    let new = app.wait_terminal(second["id"].as_str().unwrap(), T).await;
    assert_eq!(new["status"], "completed");
    // The interrupted run never completes later, and left no answer.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (_, old) = app.get(&format!("/v1/runs/{fid}")).await;
    assert_eq!(old["status"], "cancelled");
    let assistants: Vec<_> =
        sqlx::query_scalar::<_, uuid::Uuid>("SELECT run_id FROM messages WHERE role = 'assistant'")
            .fetch_all(app.store.pool())
            .await
            .unwrap();
    assert_eq!(assistants.len(), 1);
    assert_eq!(assistants[0].to_string(), second["id"].as_str().unwrap());
}

#[tokio::test]
async fn a_queued_run_is_cancelled_at_once() {
    let app = TestApp::spawn().await;
    let first = app.start_run("slow blocker").await;
    let tid = first["thread_id"].as_str().unwrap();
    let (_, waiting) = post_on(&app, tid, "never mind", "enqueue").await;
    let wid = waiting["id"].as_str().unwrap();
    let (status, run) = app.post(&format!("/v1/runs/{wid}/cancel"), json!({})).await;
    assert_eq!(status, 200, "{run}");
    assert_eq!(run["status"], "cancelled");
    assert_eq!(run["error"]["code"], "cancelled");
    // Its stream ends with run.cancelled; cancelling again is a conflict.
    let resp =
        app.req(reqwest::Method::GET, &format!("/v1/runs/{wid}/events")).send().await.unwrap();
    assert_eq!(sse::kinds(&sse::read_all(resp, T).await), ["run.queued", "run.cancelled"]);
    let (status, body) = app.post(&format!("/v1/runs/{wid}/cancel"), json!({})).await;
    assert_eq!((status, body["error"]["code"].as_str().unwrap()), (409, "run_already_terminal"));
    // The blocker still finishes; the cancelled input never reached the thread.
    app.wait_terminal(first["id"].as_str().unwrap(), T).await;
    assert_eq!(app.count("SELECT count(*) FROM messages WHERE content = 'never mind'").await, 0);
}

#[tokio::test]
async fn an_in_progress_run_stops_within_a_second_and_never_completes() {
    let app = TestApp::spawn().await;
    let run = app.start_run("slow and then cancelled").await;
    let id = run["id"].as_str().unwrap();
    until_generating(&app, id).await;
    let started = std::time::Instant::now();
    let (status, cancelled) = app.post(&format!("/v1/runs/{id}/cancel"), json!({})).await;
    assert_eq!(status, 200);
    assert_eq!(cancelled["status"], "cancelled");
    // The model would have needed ~4 s more; the run stays cancelled and stores no answer.
    tokio::time::sleep(Duration::from_secs(5)).await;
    // The worker stopped generating: no delta was published a second after the cancel.
    let cancelled_at = std::time::SystemTime::now() - started.elapsed();
    let last_delta = last_delta_time(&app, id).await;
    assert!(
        last_delta < cancelled_at + Duration::from_secs(1),
        "deltas went on {:?} after the cancel",
        last_delta.duration_since(cancelled_at).unwrap_or_default()
    );
    let (_, after) = app.get(&format!("/v1/runs/{id}")).await;
    assert_eq!(after["status"], "cancelled");
    assert!(after["output"].is_null());
    assert_eq!(app.count("SELECT count(*) FROM messages WHERE role = 'assistant'").await, 0);
    // The thread is free again.
    let (status, next) = app
        .post(
            &format!("/v1/threads/{}/runs", run["thread_id"].as_str().unwrap()),
            json!({"input": "again", "multitask_strategy": "reject"}),
        )
        .await;
    assert_eq!(status, 202, "{next}");
}

/// When the last `message.delta` of a run was stored in the events stream.
async fn last_delta_time(app: &TestApp, run_id: &str) -> std::time::SystemTime {
    use futures::StreamExt;
    let js = async_nats::jetstream::new(async_nats::connect(&app.nats_url).await.unwrap());
    let subjects = agentyard_core::subjects::Subjects::new(app.prefix.clone());
    let stream = js.get_stream(subjects.events_stream()).await.unwrap();
    let consumer = stream
        .create_consumer(async_nats::jetstream::consumer::pull::Config {
            filter_subject: subjects
                .run_events(app.org_id.parse().unwrap(), run_id.parse().unwrap()),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut batch = consumer
        .fetch()
        .max_messages(1000)
        .expires(Duration::from_secs(1))
        .messages()
        .await
        .unwrap();
    let mut last = std::time::UNIX_EPOCH;
    while let Some(Ok(m)) = batch.next().await {
        let event: serde_json::Value = serde_json::from_slice(&m.payload).unwrap();
        if event["type"] == "message.delta" {
            let ts = m.info().unwrap().published.unix_timestamp_nanos();
            last = std::time::UNIX_EPOCH + Duration::from_nanos(u64::try_from(ts).unwrap());
        }
    }
    last
}
