//! Organizations never see each other's threads and runs.

use std::time::Duration;

use agentyard_e2e::TestApp;
use serde_json::json;

#[tokio::test]
async fn another_orgs_token_cannot_read_list_stream_post_to_or_cancel_a_thread_or_run() {
    let app = TestApp::spawn().await;
    let run = app.start_run("org A's secret question").await;
    let (rid, tid) = (run["id"].as_str().unwrap(), run["thread_id"].as_str().unwrap());
    let (_, token_b) = app.new_org("org-b").await;
    let b = |m: reqwest::Method, p: String| {
        app.http.request(m, format!("{}{p}", app.api_url)).bearer_auth(&token_b)
    };
    use reqwest::Method as M;
    let attempts = [
        b(M::GET, format!("/v1/threads/{tid}")),
        b(M::GET, format!("/v1/threads/{tid}/messages")),
        b(M::POST, format!("/v1/threads/{tid}/runs")).json(&json!({"input": "hi"})),
        b(M::POST, "/v1/runs".into()).json(&json!({"input": "hi", "thread_id": tid})),
        b(M::GET, format!("/v1/runs/{rid}")),
        b(M::GET, format!("/v1/runs/{rid}?wait=1")),
        b(M::GET, format!("/v1/runs/{rid}/events")),
        b(M::POST, format!("/v1/runs/{rid}/cancel")),
    ];
    for req in attempts {
        let resp = req.send().await.unwrap();
        let url = resp.url().to_string();
        assert_eq!(resp.status(), 404, "{url}");
        let body = resp.text().await.unwrap();
        assert!(!body.contains("secret"), "{url} leaked: {body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert!(v["error"]["code"].as_str().unwrap().ends_with("not_found"), "{body}");
    }
    // Org A's run was not touched by B's cancel and finishes normally.
    let done = app.wait_terminal(rid, Duration::from_secs(30)).await;
    assert_eq!(done["status"], "completed");
    let threads_of_b = app.count("SELECT count(*) FROM threads t JOIN organizations o ON o.id = t.org_id WHERE o.name = 'org-b'").await;
    assert_eq!(threads_of_b, 0);
}
