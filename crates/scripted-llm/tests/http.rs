//! The scripted model over raw HTTP: endpoints, headers, the SSE framing and the test hooks.

use std::time::Duration;

use agentyard_scripted_llm::{Options, Script, Spawned, spawn};
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn server(script: &str) -> (Spawned, reqwest::Client) {
    // reqwest needs a process-wide rustls provider even for plain http://.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let script = Script::from_yaml_str(script).expect("test script parses");
    let model = "test-model".to_owned();
    let server = spawn(Options { script, model, ..Options::default() }).await.unwrap();
    (server, reqwest::Client::new())
}

fn chat(server: &Spawned) -> String {
    format!("{}/chat/completions", server.base_url)
}

fn admin(server: &Spawned) -> String {
    format!("http://{}/_scripted/requests", server.addr)
}

#[tokio::test]
async fn models_lists_the_configured_model() {
    let (server, http) = server("").await;
    let body: Value =
        http.get(format!("{}/models", server.base_url)).send().await.unwrap().json().await.unwrap();
    assert_eq!(
        body,
        json!({"object": "list", "data": [{"id": "test-model", "object": "model", "created": 0, "owned_by": "agentyard"}]})
    );
}

#[tokio::test]
async fn the_request_log_records_bodies_and_can_be_cleared() {
    let (server, http) = server("").await;
    let request = json!({
        "messages": [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "hi"}],
        "temperature": 0.25,
        "some_future_field": {"ignored": true},
    });
    let response = http.post(chat(&server)).json(&request).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let completion: Value = response.json().await.unwrap();
    assert_eq!(
        completion["model"], "test-model",
        "the configured model stands in for a missing one"
    );

    let log: Value = http.get(admin(&server)).send().await.unwrap().json().await.unwrap();
    assert_eq!(log, json!([request]));
    assert_eq!(log[0]["messages"][0]["content"], "You are terse.");
    assert_eq!(server.requests(), [request]);

    let cleared = http.delete(admin(&server)).send().await.unwrap();
    assert!(cleared.status().is_success());
    let log: Value = http.get(admin(&server)).send().await.unwrap().json().await.unwrap();
    assert_eq!(log, json!([]));
}

#[tokio::test]
async fn malformed_requests_get_an_openai_style_400() {
    let (server, http) = server("").await;
    for body in ["{not json", r#"{"model": "m"}"#, r#"{"messages": []}"#] {
        let response = http.post(chat(&server)).body(body).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{body}");
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"]["type"], "invalid_request_error");
        assert!(error["error"]["message"].as_str().is_some_and(|m| !m.is_empty()));
        assert!(error["error"]["code"].is_null());
    }
    assert!(server.requests().is_empty(), "rejected bodies are not recorded");
}

#[tokio::test]
async fn scripted_errors_carry_retry_after_and_the_sequence_advances() {
    let script = r#"
rules:
  - match: flaky
    responses:
      - error: { status: 429, retry_after: 1, message: "slow down" }
      - error: { status: 500 }
      - text: "recovered"
"#;
    let (server, http) = server(script).await;
    let body = json!({"model": "m", "messages": [{"role": "user", "content": "FLAKY please"}]});
    let send = || http.post(chat(&server)).json(&body).send();

    let first = send().await.unwrap();
    assert_eq!(first.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(first.headers()["retry-after"], "1");
    let error: Value = first.json().await.unwrap();
    assert_eq!(error["error"]["message"], "slow down");
    assert_eq!(error["error"]["code"], "rate_limit_exceeded");

    let second = send().await.unwrap();
    assert_eq!(second.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert!(second.headers().get("retry-after").is_none());

    for _ in 0..2 {
        let third: Value = send().await.unwrap().json().await.unwrap();
        assert_eq!(third["choices"][0]["message"]["content"], "recovered");
    }
}

#[tokio::test]
async fn the_sse_stream_starts_with_the_role_and_ends_with_done() {
    let (server, http) = server("").await;
    let body = json!({
        "model": "m",
        "stream": true,
        "stream_options": {"include_usage": true},
        "messages": [{"role": "user", "content": "one two"}],
    });
    let response = http.post(chat(&server)).json(&body).send().await.unwrap();
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let text = response.text().await.unwrap();
    let events: Vec<&str> = text.split_terminator("\n\n").collect();
    assert_eq!(events.last(), Some(&"data: [DONE]"));
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e.strip_prefix("data: ").expect("data line")).unwrap())
        .collect();
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    for chunk in &chunks {
        assert!(chunk["id"].as_str().unwrap().starts_with("chatcmpl-"));
        assert_eq!(chunk["object"], "chat.completion.chunk");
        assert!(chunk["created"].as_u64().unwrap() > 0);
        assert_eq!(chunk["model"], "m");
    }
    let usage = &chunks[chunks.len() - 1];
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"]["prompt_tokens"], 2);
    assert_eq!(chunks[chunks.len() - 2]["choices"][0]["finish_reason"], "stop");
}

#[tokio::test]
async fn shutdown_releases_hanging_requests() {
    let (server, http) = server("rules:\n  - responses: [{hang: true}]\n").await;
    let body = json!({"messages": [{"role": "user", "content": "anything"}]});
    let pending = tokio::spawn(http.post(chat(&server)).json(&body).send());
    while server.requests().is_empty() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(!pending.is_finished());
    drop(server);
    let response = tokio::time::timeout(Duration::from_secs(2), pending).await.unwrap().unwrap();
    assert_eq!(response.unwrap().status(), StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn unknown_paths_get_an_openai_style_404() {
    let (server, http) = server("").await;
    let response = http.get(format!("{}/embeddings", server.base_url)).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"]["type"], "invalid_request_error");
}
