//! Bad input answers a documented 4xx JSON error and writes nothing; idempotency keys.

use agentyard_e2e::TestApp;
use serde_json::json;

async fn totals(app: &TestApp) -> [i64; 4] {
    [
        app.count("SELECT count(*) FROM threads").await,
        app.count("SELECT count(*) FROM runs").await,
        app.count("SELECT count(*) FROM messages").await,
        app.count("SELECT count(*) FROM idempotency_keys").await,
    ]
}

#[tokio::test]
async fn bad_requests_get_the_documented_error_and_nothing_is_written() {
    let app = TestApp::spawn_with(agentyard_e2e::TestOptions {
        env: vec![("AY_MAX_INPUT_BYTES".into(), "1000".into())],
        ..Default::default()
    })
    .await;
    let (_, thread) = app.post("/v1/threads", json!({})).await;
    let tid = thread["id"].as_str().unwrap().to_owned();
    let read_only = app
        .store
        .create_token(app.org_id.parse().unwrap(), "ro", &[agentyard_core::Scope::RunsRead])
        .await
        .unwrap();
    let revoked = app
        .store
        .create_token(app.org_id.parse().unwrap(), "gone", &[agentyard_core::Scope::RunsWrite])
        .await
        .unwrap();
    app.store.revoke_token(app.org_id.parse().unwrap(), revoked.id).await.unwrap();
    let before = totals(&app).await;

    let url = |p: &str| format!("{}{p}", app.api_url);
    let post = |p: &str, token: Option<&str>, body: &str| {
        let mut r =
            app.http.post(url(p)).header("content-type", "application/json").body(body.to_owned());
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r
    };
    let runs = format!("/v1/threads/{tid}/runs");
    let t = Some(app.token.as_str());
    let big = json!({"input": "x".repeat(1001)}).to_string();
    let cases: Vec<(reqwest::RequestBuilder, u16, &str)> = vec![
        (post(&runs, t, r#"{"input": ""}"#), 422, "invalid_input"),
        (post(&runs, t, r#"{"input": "   "}"#), 422, "invalid_input"),
        (post(&runs, t, &big), 413, "input_too_large"),
        (post(&runs, t, r#"{"input": "hi""#), 400, "invalid_json"),
        (post(&runs, t, ""), 400, "invalid_json"),
        (post(&runs, t, r#"{"input": 42}"#), 422, "invalid_request"),
        (post(&runs, t, r#"{"input": "hi", "surprise": 1}"#), 422, "invalid_request"),
        (
            post(&runs, t, r#"{"input": "hi", "multitask_strategy": "shout"}"#),
            422,
            "invalid_request",
        ),
        (post(&runs, t, r#"{"input": "hi", "metadata": [1]}"#), 422, "invalid_metadata"),
        (
            post("/v1/threads/01a20028-1945-7532-a6c5-540668696e27/runs", t, r#"{"input": "hi"}"#),
            404,
            "thread_not_found",
        ),
        (post("/v1/threads/not-a-uuid/runs", t, r#"{"input": "hi"}"#), 404, "thread_not_found"),
        (
            post(
                "/v1/runs",
                t,
                r#"{"input": "hi", "thread_id": "01a20028-1945-7532-a6c5-540668696e27"}"#,
            ),
            404,
            "thread_not_found",
        ),
        (post(&runs, None, r#"{"input": "hi"}"#), 401, "missing_token"),
        (post(&runs, Some("ay_not_a_real_token"), r#"{"input": "hi"}"#), 401, "invalid_token"),
        (post(&runs, Some(&revoked.secret), r#"{"input": "hi"}"#), 401, "invalid_token"),
        (post(&runs, Some(&read_only.secret), r#"{"input": "hi"}"#), 403, "insufficient_scope"),
        (post("/v1/threads", Some(&read_only.secret), "{}"), 403, "insufficient_scope"),
        (
            app.http
                .get(url("/v1/runs/01a20028-1945-7532-a6c5-540668696e27"))
                .bearer_auth(&app.token),
            404,
            "run_not_found",
        ),
        (
            app.http
                .get(url(&format!("/v1/threads/{tid}/messages?limit=0")))
                .bearer_auth(&app.token),
            400,
            "invalid_query",
        ),
        (
            app.http
                .get(url("/v1/runs/01a20028-1945-7532-a6c5-540668696e27?wait=61"))
                .bearer_auth(&app.token),
            400,
            "invalid_query",
        ),
        (app.http.get(url("/v1/nope")).bearer_auth(&app.token), 404, "not_found"),
        (app.http.delete(url("/v1/runs")).bearer_auth(&app.token), 405, "method_not_allowed"),
        (post(&runs, t, &"x".repeat(100_000)), 413, "input_too_large"),
        // Postgres cannot store NUL in text or jsonb: named, never a 500.
        (post(&runs, t, r#"{"input": "a\u0000b"}"#), 422, "invalid_input"),
        (
            post(&runs, t, r#"{"input": "hi", "metadata": {"k": "a\u0000"}}"#),
            422,
            "invalid_metadata",
        ),
        (post(&runs, t, r#"{"input": "hi", "metadata": {"a\u0000": 1}}"#), 422, "invalid_metadata"),
        // A number too large for a double: a 400 naming the field (found by fuzzing).
        (post(&runs, t, r#"{"input": "hi", "metadata": {"n": -1e400}}"#), 400, "invalid_json"),
        // Invalid UTF-8, and JSON nested deeper than the parser follows.
        (
            app.http
                .post(url(&runs))
                .header("content-type", "application/json")
                .bearer_auth(&app.token)
                .body(b"{\"input\": \"\xff\xfe\"}".to_vec()),
            400,
            "invalid_json",
        ),
        (
            post(
                &runs,
                t,
                &format!(
                    r#"{{"input": "hi", "metadata": {{"deep": {}{}}}}}"#,
                    "[".repeat(200),
                    "]".repeat(200)
                ),
            ),
            400,
            "invalid_json",
        ),
    ];
    for (req, status, code) in cases {
        let resp = req.send().await.unwrap();
        let got = resp.status().as_u16();
        let body: serde_json::Value = resp.json().await.expect("a JSON error body");
        assert_eq!((got, body["error"]["code"].as_str().unwrap_or("?")), (status, code), "{body}");
        assert!(!body["error"]["message"].as_str().unwrap().is_empty());
    }
    assert_eq!(totals(&app).await, before, "a rejected request wrote something");
}

#[tokio::test]
async fn an_idempotency_key_makes_a_retried_post_return_the_same_run_and_publish_one_job() {
    let app = TestApp::spawn().await;
    let post = || {
        app.req(reqwest::Method::POST, "/v1/runs")
            .header("Idempotency-Key", "order-42")
            .json(&json!({"input": "only once please"}))
            .send()
    };
    let (a, b) = tokio::join!(post(), post());
    let (a, b): (serde_json::Value, serde_json::Value) =
        (a.unwrap().json().await.unwrap(), b.unwrap().json().await.unwrap());
    assert_eq!(a["id"], b["id"], "{a} {b}");
    let again: serde_json::Value = post().await.unwrap().json().await.unwrap();
    assert_eq!(again["id"], a["id"]);
    app.wait_terminal(a["id"].as_str().unwrap(), std::time::Duration::from_secs(30)).await;
    assert_eq!(app.count("SELECT count(*) FROM runs").await, 1);
    assert_eq!(app.count("SELECT count(*) FROM threads").await, 1);
    assert_eq!(app.llm.requests().len(), 1, "one job, one model call");

    // The same key with another body is refused.
    let (status, body) = {
        let r = app
            .req(reqwest::Method::POST, "/v1/runs")
            .header("Idempotency-Key", "order-42")
            .json(&json!({"input": "something else"}))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json::<serde_json::Value>().await.unwrap())
    };
    assert_eq!((status, body["error"]["code"].as_str().unwrap()), (422, "idempotency_key_reused"));
}
