//! The real `async-openai` client against the scripted model: proves the wire format parses.

use std::path::Path;
use std::time::{Duration, Instant};

use agentyard_scripted_llm::{Options, Script, Spawned, default_answer, spawn, tokenize};
use async_openai::Client;
use async_openai::config::OpenAIConfig;
use async_openai::error::OpenAIError;
use async_openai::types::chat::{
    ChatCompletionMessageToolCall, ChatCompletionMessageToolCalls,
    ChatCompletionRequestAssistantMessageArgs, ChatCompletionRequestMessage,
    ChatCompletionRequestSystemMessage, ChatCompletionRequestToolMessageArgs,
    ChatCompletionRequestUserMessage, ChatCompletionResponseStream, ChatCompletionStreamOptions,
    CreateChatCompletionRequest, CreateChatCompletionRequestArgs,
    CreateChatCompletionStreamResponse, FinishReason, FunctionCall, Role,
};
use futures::StreamExt;
use serde_json::{Value, json};

fn install_crypto() {
    // reqwest needs a process-wide rustls provider even for plain http://.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

async fn server(
    script: &str,
    first_token_ms: u64,
    token_delay_ms: u64,
) -> (Spawned, Client<OpenAIConfig>) {
    install_crypto();
    let script = Script::from_yaml_str(script).expect("test script parses");
    let options = Options { first_token_ms, token_delay_ms, script, ..Options::default() };
    let server = spawn(options).await.expect("server starts");
    let config = OpenAIConfig::new().with_api_base(&server.base_url).with_api_key("x");
    (server, Client::with_config(config))
}

fn user(text: &str) -> ChatCompletionRequestMessage {
    ChatCompletionRequestUserMessage::from(text).into()
}

fn request(
    messages: Vec<ChatCompletionRequestMessage>,
    usage: bool,
) -> CreateChatCompletionRequest {
    let mut args = CreateChatCompletionRequestArgs::default();
    args.model("gpt-test").messages(messages);
    if usage {
        args.stream_options(ChatCompletionStreamOptions {
            include_usage: Some(true),
            include_obfuscation: None,
        });
    }
    args.build().expect("request builds")
}

async fn collect(
    mut stream: ChatCompletionResponseStream,
) -> Vec<CreateChatCompletionStreamResponse> {
    let mut chunks = Vec::new();
    while let Some(chunk) = stream.next().await {
        chunks.push(chunk.expect("chunk parses"));
    }
    chunks
}

fn content(chunks: &[CreateChatCompletionStreamResponse]) -> String {
    let deltas = chunks.iter().flat_map(|c| &c.choices);
    deltas.filter_map(|c| c.delta.content.as_deref()).collect()
}

#[tokio::test]
async fn streamed_deltas_concatenate_to_the_default_answer_and_usage_comes_last() {
    let (_server, client) = server("", 0, 0).await;
    let messages =
        vec![ChatCompletionRequestSystemMessage::from("Be brief.").into(), user("hello there")];
    let as_json: Vec<Value> = messages.iter().map(|m| serde_json::to_value(m).unwrap()).collect();
    let stream = client.chat().create_stream(request(messages, true)).await.unwrap();
    let chunks = collect(stream).await;

    let expected = default_answer(&as_json);
    assert!(expected.starts_with("You said \"hello there\" (message 1 of this conversation)."));
    assert_eq!(content(&chunks), expected);
    assert_eq!(chunks[0].choices[0].delta.role, Some(Role::Assistant));
    assert!(chunks.iter().all(|c| c.id == chunks[0].id && c.object == "chat.completion.chunk"));
    assert!(chunks.iter().all(|c| c.model == "gpt-test" && c.created > 0));
    let finish = chunks.iter().flat_map(|c| &c.choices).filter_map(|c| c.finish_reason);
    assert_eq!(finish.collect::<Vec<_>>(), [FinishReason::Stop]);

    let last = chunks.last().unwrap();
    assert!(last.choices.is_empty());
    let usage = last.usage.as_ref().expect("usage in the last chunk");
    let chars = "Be brief.".len() + "hello there".len();
    assert_eq!(usage.prompt_tokens as usize, chars.div_ceil(4));
    assert_eq!(usage.completion_tokens as usize, tokenize(&expected).len());
    assert_eq!(usage.total_tokens, usage.prompt_tokens + usage.completion_tokens);
    assert!(chunks[..chunks.len() - 1].iter().all(|c| c.usage.is_none()));
}

/// Accumulates streamed tool-call fragments by index into (id, name, arguments).
fn tool_calls(chunks: &[CreateChatCompletionStreamResponse]) -> Vec<(String, String, String)> {
    let mut calls: Vec<(String, String, String)> = Vec::new();
    for delta in chunks.iter().flat_map(|c| &c.choices).filter_map(|c| c.delta.tool_calls.as_ref())
    {
        for part in delta {
            let index = part.index as usize;
            if calls.len() <= index {
                calls.resize(index + 1, Default::default());
            }
            if let Some(id) = &part.id {
                calls[index].0.push_str(id);
            }
            let function = part.function.as_ref().expect("function fragment");
            calls[index].1.push_str(function.name.as_deref().unwrap_or(""));
            calls[index].2.push_str(function.arguments.as_deref().unwrap_or(""));
        }
    }
    calls
}

#[tokio::test]
async fn tool_call_deltas_accumulate_into_the_scripted_calls_and_the_tool_turn_answers() {
    install_crypto();
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/script.yaml");
    let script = Script::from_file(&path).expect("example script parses");
    let server = spawn(Options { script, ..Options::default() }).await.unwrap();
    let client = Client::with_config(OpenAIConfig::new().with_api_base(&server.base_url));

    let ask = user("Please add a task to buy milk");
    let stream = client.chat().create_stream(request(vec![ask.clone()], false)).await.unwrap();
    let chunks = collect(stream).await;
    let calls = tool_calls(&chunks);
    assert_eq!(calls.len(), 2);
    assert_eq!((calls[0].1.as_str(), calls[1].1.as_str()), ("add_task", "list_tasks"));
    let args: Value = serde_json::from_str(&calls[0].2).unwrap();
    assert_eq!(args, json!({"title": "buy milk"}));
    assert_eq!(calls[1].2, "{}");
    assert!(calls[0].0.starts_with("call_") && calls[0].0 != calls[1].0);
    let fragments = chunks.iter().flat_map(|c| &c.choices).filter(|c| c.delta.tool_calls.is_some());
    assert!(fragments.count() >= 2 * 3, "each call streams a header and 2+ argument fragments");
    let finish = chunks.iter().flat_map(|c| &c.choices).find_map(|c| c.finish_reason);
    assert_eq!(finish, Some(FinishReason::ToolCalls));

    // Second turn: the tool results come back, and the `on: tool` rule answers.
    let assistant = ChatCompletionRequestAssistantMessageArgs::default()
        .tool_calls(
            calls
                .iter()
                .map(|(id, name, arguments)| {
                    ChatCompletionMessageToolCalls::Function(ChatCompletionMessageToolCall {
                        id: id.clone(),
                        function: FunctionCall { name: name.clone(), arguments: arguments.clone() },
                    })
                })
                .collect::<Vec<_>>(),
        )
        .build()
        .unwrap();
    let mut messages = vec![ask, assistant.into()];
    for ((id, _, _), content) in calls.iter().zip(["added", "1 task: buy milk"]) {
        let result = ChatCompletionRequestToolMessageArgs::default()
            .tool_call_id(id.clone())
            .content(content)
            .build()
            .unwrap();
        messages.push(result.into());
    }
    let stream = client.chat().create_stream(request(messages, false)).await.unwrap();
    assert_eq!(
        content(&collect(stream).await),
        "Done: I added \"buy milk\" (added). Your tasks: 1 task: buy milk\nAll results:\nadded\n1 \
         task: buy milk"
    );
}

#[tokio::test]
async fn non_streaming_requests_get_a_chat_completion_with_usage() {
    let script = "rules:\n  - match: add a task to (?P<t>.+)\n    responses:\n      - tool_calls: [{name: add_task, arguments: {title: $t}}]\n";
    let (_server, client) = server(script, 0, 0).await;
    let response = client.chat().create(request(vec![user("hi")], false)).await.unwrap();
    let answer = default_answer(&[json!({"role": "user", "content": "hi"})]);
    assert_eq!(response.object, "chat.completion");
    assert_eq!(response.choices[0].message.content.as_deref(), Some(answer.as_str()));
    assert_eq!(response.choices[0].finish_reason, Some(FinishReason::Stop));
    let usage = response.usage.expect("usage");
    assert_eq!(
        (usage.prompt_tokens, usage.completion_tokens as usize),
        (1, tokenize(&answer).len())
    );

    let response =
        client.chat().create(request(vec![user("add a task to X")], false)).await.unwrap();
    let choice = &response.choices[0];
    assert_eq!(choice.finish_reason, Some(FinishReason::ToolCalls));
    let Some([ChatCompletionMessageToolCalls::Function(call)]) =
        choice.message.tool_calls.as_deref()
    else {
        panic!("expected one function call: {choice:?}");
    };
    assert_eq!(call.function.name, "add_task");
    assert_eq!(call.function.arguments, r#"{"title":"X"}"#);
}

#[tokio::test]
async fn a_persistent_rate_limit_surfaces_as_an_api_error_after_client_retries() {
    let script =
        "rules:\n  - responses: [{error: {status: 429, retry_after: 0, message: slow down}}]\n";
    let (server, client) = server(script, 0, 0).await;
    let error = client.chat().create_stream(request(vec![user("hi")], false)).await.err();
    let Some(OpenAIError::ApiError(api)) = error else {
        panic!("expected an API error: {error:?}")
    };
    assert_eq!(api.status_code.as_u16(), 429);
    assert_eq!(api.api_error.message, "slow down");
    assert_eq!(server.requests().len(), 4, "async-openai retries a 429 three times");
}

#[tokio::test]
async fn sequences_advance_through_errors_to_the_scripted_text() {
    let script = "rules:\n  - match: flaky\n    responses:\n      - error: {status: 429, retry_after: 0}\n      - error: {status: 500}\n      - {text: recovered, usage: false}\n";
    let (server, client) = server(script, 0, 0).await;
    let stream =
        client.chat().create_stream(request(vec![user("a flaky one")], true)).await.unwrap();
    let chunks = collect(stream).await;
    assert_eq!(content(&chunks), "recovered");
    assert!(chunks.iter().all(|c| c.usage.is_none()), "usage: false omits usage");
    assert_eq!(server.requests().len(), 3);
}

#[tokio::test]
async fn hang_holds_the_request_until_the_client_gives_up() {
    let (server, _) =
        server("rules:\n  - match: hang\n    responses: [{hang: true}]\n", 0, 0).await;
    let http = reqwest::Client::builder().timeout(Duration::from_millis(300)).build().unwrap();
    let config = OpenAIConfig::new().with_api_base(&server.base_url);
    let client = Client::with_config(config).with_http_client(http);
    let started = Instant::now();
    let error = client.chat().create(request(vec![user("please hang")], false)).await.err();
    let Some(OpenAIError::Reqwest(e)) = error else { panic!("expected a timeout: {error:?}") };
    assert!(e.is_timeout(), "{e}");
    assert!(started.elapsed() >= Duration::from_millis(300));
}

#[tokio::test]
async fn a_stall_streams_some_tokens_then_holds_the_stream_open() {
    let script =
        "rules:\n  - responses: [{text: one two three four five six, stall_after_tokens: 3}]\n";
    let (_server, client) = server(script, 0, 0).await;
    let mut stream = client.chat().create_stream(request(vec![user("x")], false)).await.unwrap();
    let mut text = String::new();
    for _ in 0..4 {
        let chunk = stream.next().await.expect("chunk").expect("chunk parses");
        text.extend(chunk.choices.iter().filter_map(|c| c.delta.content.clone()));
    }
    assert_eq!(text, "one two three ");
    let next = tokio::time::timeout(Duration::from_millis(200), stream.next()).await;
    assert!(next.is_err(), "the stream should stall, got {next:?}");
}

#[tokio::test]
async fn delays_space_out_the_tokens() {
    let (_server, client) = server("", 100, 10).await;
    let started = Instant::now();
    let mut stream = client.chat().create_stream(request(vec![user("hi")], false)).await.unwrap();
    let mut first_content = None;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap();
        if first_content.is_none()
            && chunk
                .choices
                .iter()
                .any(|c| c.delta.content.as_deref().is_some_and(|t| !t.is_empty()))
        {
            first_content = Some(started.elapsed());
        }
    }
    let tokens =
        tokenize(&default_answer(&[json!({"role": "user", "content": "hi"})])).len() as u64;
    assert!(first_content.unwrap() >= Duration::from_millis(100));
    assert!(started.elapsed() >= Duration::from_millis(100 + 10 * (tokens - 1)));
}
