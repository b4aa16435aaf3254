//! The client against real wire traffic: the scripted model (what it receives, usage, errors)
//! and a hand-written server that behaves like some self-hosted ones (repeated tool-call ids and
//! names, no usage).

use std::time::Duration;

use agentyard_llm::{ChatMessage, ChatRequest, Llm, Provider, Role, ToolCall};
use agentyard_scripted_llm::{Options, Script};

fn request(messages: Vec<ChatMessage>) -> ChatRequest {
    ChatRequest {
        messages,
        temperature: Some(0.3),
        max_tokens: 77,
        model: None,
        timeout: None,
        tools: Vec::new(),
        tool_choice: None,
    }
}

async fn scripted(script: &str) -> (agentyard_scripted_llm::Spawned, Llm) {
    let options = Options { script: Script::from_yaml_str(script).unwrap(), ..Default::default() };
    let server = agentyard_scripted_llm::spawn(options).await.unwrap();
    let llm = Llm::new(&Provider::scripted(server.base_url.clone(), None), Duration::from_secs(5));
    (server, llm)
}

#[tokio::test]
async fn a_streamed_answer_arrives_whole_with_usage_and_the_request_carries_max_tokens() {
    let (server, llm) = scripted("rules: []").await;
    let mut assistant = ChatMessage::new(Role::Assistant, "");
    assistant.tool_calls =
        vec![ToolCall { id: "call_1".into(), name: "lookup".into(), arguments: "{}".into() }];
    let mut tool = ChatMessage::new(Role::Tool, "42");
    tool.tool_call_id = Some("call_1".into());
    let messages = vec![
        ChatMessage::new(Role::System, "be brief"),
        ChatMessage::new(Role::User, "hello"),
        assistant,
        tool,
    ];
    let mut stream = llm.stream_chat(&request(messages)).await.unwrap();
    let mut deltas = String::new();
    while let Some(d) = stream.next_delta().await.unwrap() {
        deltas.push_str(&d);
    }
    let done = stream.finish().await.unwrap();
    assert_eq!(deltas, done.content);
    assert!(!done.usage.estimated);
    assert!(done.usage.completion_tokens > 0);

    let sent = &server.requests()[0];
    assert_eq!(sent["max_tokens"], 77);
    assert_eq!(sent["stream"], true);
    assert_eq!(sent["stream_options"]["include_usage"], true);
    assert_eq!(sent["messages"][2]["content"], "", "assistant with tool calls sends content \"\"");
    assert_eq!(sent["messages"][2]["tool_calls"][0]["function"]["name"], "lookup");
    assert_eq!(sent["messages"][3]["tool_call_id"], "call_1");
}

#[tokio::test]
async fn errors_are_classified_and_retry_after_is_kept() {
    let script = r#"
rules:
  - match: "^limit"
    responses: [{ error: { status: 429, retry_after: 7 } }]
  - match: "^broken"
    responses: [{ error: { status: 503 } }]
  - match: "^refused"
    responses: [{ error: { status: 400, message: "bad field" } }]
"#;
    let (_server, llm) = scripted(script).await;
    let call = |text: &str| {
        let req = request(vec![ChatMessage::new(Role::User, text)]);
        let llm = llm.clone();
        async move { llm.stream_chat(&req).await.expect_err("an error") }
    };
    let e = call("limit").await;
    assert!(e.is_transient());
    assert_eq!(e.retry_after(), Some(Duration::from_secs(7)));
    let e = call("broken").await;
    assert!(e.is_transient());
    assert_eq!(e.code(), "llm_unavailable");
    let e = call("refused").await;
    assert!(!e.is_transient());
    assert_eq!(e.code(), "llm_bad_request");
    assert!(e.to_string().contains("bad field"), "{e}");
}

#[tokio::test]
async fn a_server_that_never_answers_times_out() {
    let (_server, _) = scripted("rules: [{ responses: [{ hang: true }] }]").await;
    let llm =
        Llm::new(&Provider::scripted(_server.base_url.clone(), None), Duration::from_millis(300));
    let req = request(vec![ChatMessage::new(Role::User, "anything")]);
    let e = llm.stream_chat(&req).await.expect_err("a timeout");
    assert!(e.is_transient(), "{e}");
}

/// A server like some self-hosted ones: tool-call chunks repeat `id` and `name`, no usage.
async fn quirky_server() -> String {
    use axum::routing::post;
    let chunk = |delta: serde_json::Value, finish: Option<&str>| {
        let c = serde_json::json!({"id": "x", "object": "chat.completion.chunk", "created": 0,
            "model": "m", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
        format!("data: {c}\n\n")
    };
    let tc = |args: &str| {
        serde_json::json!({"tool_calls": [{"index": 0, "id": "call_9", "type": "function",
            "function": {"name": "get_weather", "arguments": args}}]})
    };
    let body = [
        chunk(serde_json::json!({"role": "assistant", "content": ""}), None),
        chunk(tc("{\"city\":"), None),
        chunk(tc("\"Paris\"}"), None),
        chunk(serde_json::json!({}), Some("tool_calls")),
        "data: [DONE]\n\n".to_owned(),
    ]
    .concat();
    let app = axum::Router::new().route(
        "/v1/chat/completions",
        post(move || {
            let body = body.clone();
            async move { ([("content-type", "text/event-stream")], body) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/v1")
}

#[tokio::test]
async fn repeated_tool_call_ids_and_names_are_not_doubled_and_missing_usage_is_estimated() {
    let base = quirky_server().await;
    let llm = Llm::new(&Provider::scripted(base, Some("m")), Duration::from_secs(5));
    let req = request(vec![ChatMessage::new(Role::User, "weather in Paris?")]);
    let done = llm.stream_chat(&req).await.unwrap().finish().await.unwrap();
    assert_eq!(
        done.tool_calls,
        [ToolCall {
            id: "call_9".into(),
            name: "get_weather".into(),
            arguments: r#"{"city":"Paris"}"#.into()
        }]
    );
    assert_eq!(done.finish_reason.as_deref(), Some("tool_calls"));
    assert!(done.usage.estimated);
    assert!(done.usage.prompt_tokens > 0);
}

/// The value of the sample of `name` whose labels include every one of `labels`.
fn sample(name: &str, labels: &[&str]) -> Option<f64> {
    agentyard_metrics::encode().lines().find_map(|l| {
        let (series, value) = l.rsplit_once(' ')?;
        let matches = series.split('{').next() == Some(name)
            && labels.iter().all(|want| series.contains(want));
        matches.then(|| value.parse().unwrap())
    })
}

#[tokio::test]
async fn every_call_is_measured_as_the_genai_conventions_say() {
    let script = r#"
rules:
  - match: "^broken"
    responses: [{ error: { status: 503 } }]
  - match: "^slow"
    responses: [{ text: "one two three four five six", token_delay_ms: 200 }]
"#;
    let options = Options { script: Script::from_yaml_str(script).unwrap(), ..Default::default() };
    let server = agentyard_scripted_llm::spawn(options).await.unwrap();
    let llm = Llm::new(&Provider::scripted(server.base_url.clone(), None), Duration::from_secs(5));
    let call = |model: &str, text: &str| ChatRequest {
        model: Some(model.to_owned()),
        ..request(vec![ChatMessage::new(Role::User, text)])
    };

    let done = llm.stream_chat(&call("m-ok", "hello")).await.unwrap().finish().await.unwrap();
    let ok = [
        "gen_ai_operation_name=\"chat\"",
        "gen_ai_provider_name=\"scripted\"",
        "gen_ai_request_model=\"m-ok\"",
    ];
    assert_eq!(sample("gen_ai_client_operation_duration_seconds_count", &ok), Some(1.0));
    assert_eq!(sample("gen_ai_client_operation_time_to_first_chunk_seconds_count", &ok), Some(1.0));
    let input = [ok[2], "gen_ai_token_type=\"input\""];
    let output = [ok[2], "gen_ai_token_type=\"output\""];
    let tokens = "gen_ai_client_token_usage_sum";
    assert_eq!(sample(tokens, &input), Some(f64::from(done.usage.prompt_tokens)));
    assert_eq!(sample(tokens, &output), Some(f64::from(done.usage.completion_tokens)));
    let line = agentyard_metrics::encode();
    let line = line.lines().find(|l| l.contains("m-ok") && l.contains("duration")).unwrap();
    assert!(line.contains("gen_ai_response_model=") && !line.contains("error_type"), "{line}");

    llm.stream_chat(&call("m-broken", "broken")).await.expect_err("503");
    let failed = ["gen_ai_request_model=\"m-broken\"", "error_type=\"503\""];
    assert_eq!(sample("gen_ai_client_operation_duration_seconds_count", &failed), Some(1.0));
    assert_eq!(sample(tokens, &["m-broken"]), None, "no tokens for a failed call");

    // A stream given up half-way (the run was cancelled).
    let mut stream = llm.stream_chat(&call("m-cancel", "slow")).await.unwrap();
    stream.next_delta().await.unwrap();
    drop(stream);
    let cancelled = ["gen_ai_request_model=\"m-cancel\"", "error_type=\"cancelled\""];
    assert_eq!(sample("gen_ai_client_operation_duration_seconds_count", &cancelled), Some(1.0));
}
