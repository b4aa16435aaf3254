//! Tools end to end, through real HTTP clients: the streamed tool-call wire format, the
//! built-in tool rules (which only call offered tools), `$tool_results` expansion, and
//! whole agent-style loops (ask, call tools, send the results back, get the answer).

use agentyard_scripted_llm::{Options, Script, Spawned, default_answer, spawn};
use async_openai::Client;
use async_openai::config::OpenAIConfig;
use async_openai::types::chat::{
    ChatCompletionMessageToolCall, ChatCompletionMessageToolCalls,
    ChatCompletionRequestAssistantMessageArgs, ChatCompletionRequestMessage,
    ChatCompletionRequestToolMessageArgs, ChatCompletionRequestUserMessage,
    ChatCompletionStreamOptions, ChatCompletionTool, ChatCompletionTools,
    CreateChatCompletionRequest, CreateChatCompletionRequestArgs, FinishReason, FunctionCall,
    FunctionObject, FunctionType,
};
use futures::StreamExt;
use serde_json::{Value, json};

/// The tools an agent like the demo one offers.
const ALL_TOOLS: &[&str] = &[
    "get_active_integrations",
    "add_task",
    "list_tasks",
    "complete_task",
    "delete_task",
    "create_ticket",
    "get_ticket_stats",
];

async fn server(script: &str, builtin_rules: bool) -> (Spawned, Client<OpenAIConfig>) {
    // reqwest needs a process-wide rustls provider even for plain http://.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let script = Script::from_yaml_str(script).expect("test script parses");
    let server = spawn(Options { script, builtin_rules, ..Options::default() }).await.unwrap();
    let config = OpenAIConfig::new().with_api_base(&server.base_url).with_api_key("x");
    (server, Client::with_config(config))
}

fn user(text: &str) -> ChatCompletionRequestMessage {
    ChatCompletionRequestUserMessage::from(text).into()
}

fn tool_defs(names: &[&str]) -> Vec<ChatCompletionTools> {
    let def = |name: &&str| {
        ChatCompletionTools::Function(ChatCompletionTool {
            function: FunctionObject {
                name: (*name).to_owned(),
                description: Some(format!("The {name} tool.")),
                parameters: Some(json!({"type": "object", "properties": {}})),
                strict: None,
            },
        })
    };
    names.iter().map(def).collect()
}

fn request(
    messages: Vec<ChatCompletionRequestMessage>,
    tools: &[&str],
) -> CreateChatCompletionRequest {
    let mut args = CreateChatCompletionRequestArgs::default();
    args.model("gpt-test").messages(messages).stream_options(ChatCompletionStreamOptions {
        include_usage: Some(true),
        include_obfuscation: None,
    });
    if !tools.is_empty() {
        args.tools(tool_defs(tools));
    }
    args.build().expect("request builds")
}

/// A tool call as the client assembles it.
#[derive(Debug, Clone, PartialEq)]
struct Call {
    id: String,
    name: String,
    arguments: String,
}

impl Call {
    fn args(&self) -> Value {
        serde_json::from_str(&self.arguments).expect("arguments are JSON")
    }
}

/// One streamed answer, put together.
#[derive(Debug)]
struct Answer {
    text: String,
    calls: Vec<Call>,
    finish: Option<FinishReason>,
    /// Chunks that carried a tool-call fragment.
    fragments: usize,
    completion_tokens: u32,
}

impl Answer {
    fn named(&self) -> Vec<(&str, Value)> {
        self.calls.iter().map(|c| (c.name.as_str(), c.args())).collect()
    }
}

async fn ask(
    client: &Client<OpenAIConfig>,
    messages: Vec<ChatCompletionRequestMessage>,
    tools: &[&str],
) -> Answer {
    let mut stream = client.chat().create_stream(request(messages, tools)).await.unwrap();
    let mut answer = Answer {
        text: String::new(),
        calls: Vec::new(),
        finish: None,
        fragments: 0,
        completion_tokens: 0,
    };
    let mut usage_seen = false;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.expect("chunk parses");
        assert!(!usage_seen, "the usage chunk comes last");
        if let Some(usage) = chunk.usage {
            assert!(chunk.choices.is_empty());
            answer.completion_tokens = usage.completion_tokens;
            usage_seen = true;
        }
        for choice in chunk.choices {
            if let Some(reason) = choice.finish_reason {
                assert!(answer.finish.is_none(), "one finish_reason");
                answer.finish = Some(reason);
            }
            answer.text.push_str(choice.delta.content.as_deref().unwrap_or(""));
            let Some(parts) = choice.delta.tool_calls else { continue };
            answer.fragments += 1;
            for part in parts {
                let index = part.index as usize;
                let function = part.function.expect("a function fragment");
                if index == answer.calls.len() {
                    // The first fragment of a call carries its id, type and name.
                    assert_eq!(part.r#type, Some(FunctionType::Function));
                    answer.calls.push(Call {
                        id: part.id.expect("the first fragment has the id"),
                        name: function.name.expect("the first fragment has the name"),
                        arguments: String::new(),
                    });
                } else {
                    assert!(part.id.is_none() && function.name.is_none(), "{index}");
                }
                answer.calls[index].arguments.push_str(function.arguments.as_deref().unwrap_or(""));
            }
        }
    }
    assert!(usage_seen, "usage was asked for");
    answer
}

/// `messages` followed by the assistant's `calls` and one tool message per call.
fn with_results(
    mut messages: Vec<ChatCompletionRequestMessage>,
    calls: &[Call],
    results: &[&str],
) -> Vec<ChatCompletionRequestMessage> {
    assert_eq!(calls.len(), results.len());
    let tool_calls = calls
        .iter()
        .map(|c| {
            ChatCompletionMessageToolCalls::Function(ChatCompletionMessageToolCall {
                id: c.id.clone(),
                function: FunctionCall { name: c.name.clone(), arguments: c.arguments.clone() },
            })
        })
        .collect::<Vec<_>>();
    let assistant = ChatCompletionRequestAssistantMessageArgs::default()
        .tool_calls(tool_calls)
        .build()
        .unwrap();
    messages.push(assistant.into());
    for (call, result) in calls.iter().zip(results) {
        let message = ChatCompletionRequestToolMessageArgs::default()
            .tool_call_id(call.id.clone())
            .content(*result)
            .build()
            .unwrap();
        messages.push(message.into());
    }
    messages
}

#[tokio::test]
async fn several_tool_calls_stream_as_indexed_fragments_with_tool_calls_finish_and_usage() {
    let (_server, client) = server("", true).await;
    let text = r#"call add_task {"title": "buy milk", "tags": ["home", "urgent"]} and list_tasks {"status": "open"}"#;
    let answer = ask(&client, vec![user(text)], ALL_TOOLS).await;
    assert_eq!(
        answer.named(),
        [
            ("add_task", json!({"title": "buy milk", "tags": ["home", "urgent"]})),
            ("list_tasks", json!({"status": "open"})),
        ]
    );
    assert!(answer.calls.iter().all(|c| c.id.starts_with("call_")));
    assert_ne!(answer.calls[0].id, answer.calls[1].id);
    assert_eq!(answer.finish, Some(FinishReason::ToolCalls));
    assert_eq!(answer.text, "");
    // Each call: a header fragment, then its arguments split over 2 to 4 chunks.
    assert!(answer.fragments >= 2 * 3, "{answer:?}");
    assert_eq!(answer.completion_tokens as usize, answer.fragments);
}

#[tokio::test]
async fn the_raw_sse_stream_of_tool_calls_looks_like_openai() {
    let (server, _) = server("", true).await;
    let http = reqwest::Client::new();
    let body = json!({
        "model": "m",
        "stream": true,
        "stream_options": {"include_usage": true},
        "messages": [{"role": "user", "content": "call get_ticket_stats {} and add_task {\"title\": \"x\"}"}],
        "tools": [
            {"type": "function", "function": {"name": "get_ticket_stats", "parameters": {"type": "object"}}},
            {"type": "function", "function": {"name": "add_task"}},
        ],
    });
    let response =
        http.post(format!("{}/chat/completions", server.base_url)).json(&body).send().await;
    let text = response.unwrap().text().await.unwrap();
    let events: Vec<&str> = text.split_terminator("\n\n").collect();
    assert_eq!(events.last(), Some(&"data: [DONE]"));
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e.strip_prefix("data: ").unwrap()).unwrap())
        .collect();
    assert_eq!(chunks[0]["choices"][0]["delta"], json!({"role": "assistant"}));
    let deltas: Vec<&Value> =
        chunks.iter().filter_map(|c| c["choices"][0]["delta"].get("tool_calls")).collect();
    let headers: Vec<&Value> =
        deltas.iter().map(|d| &d[0]).filter(|d| d.get("id").is_some()).collect();
    assert_eq!(headers.len(), 2);
    for (index, header) in headers.iter().enumerate() {
        assert_eq!(header["index"], index);
        assert_eq!(header["type"], "function");
        assert_eq!(header["function"]["arguments"], "");
    }
    assert_eq!(headers[0]["function"]["name"], "get_ticket_stats");
    assert_eq!(headers[1]["function"]["name"], "add_task");
    let arguments = |index: usize| -> String {
        let parts = deltas.iter().map(|d| &d[0]).filter(|d| d["index"] == index);
        parts.map(|d| d["function"]["arguments"].as_str().unwrap()).collect()
    };
    assert_eq!(arguments(0), "{}");
    assert_eq!(arguments(1), r#"{"title":"x"}"#);
    let finish = &chunks[chunks.len() - 2]["choices"][0];
    assert_eq!((&finish["finish_reason"], &finish["delta"]), (&json!("tool_calls"), &json!({})));
    let usage = &chunks[chunks.len() - 1];
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"]["completion_tokens"], deltas.len());
}

#[tokio::test]
async fn every_builtin_phrase_calls_its_tools_then_reports_the_results() {
    let (_server, client) = server("", true).await;
    let cases: Vec<(&str, Vec<(&str, Value)>)> = vec![
        ("What integrations are active?", vec![("get_active_integrations", json!({}))]),
        ("Please add a task to buy milk.", vec![("add_task", json!({"title": "buy milk"}))]),
        ("ADD A TASK TO \"Call Bob\"", vec![("add_task", json!({"title": "Call Bob"}))]),
        (
            "add tasks buy milk and walk the dog",
            vec![
                ("add_task", json!({"title": "buy milk"})),
                ("add_task", json!({"title": "walk the dog"})),
            ],
        ),
        ("list my tasks", vec![("list_tasks", json!({"status": "all"}))]),
        ("Complete the task buy milk", vec![("complete_task", json!({"title": "buy milk"}))]),
        (
            "delete the task 'walk the dog'!",
            vec![("delete_task", json!({"title": "walk the dog"}))],
        ),
        (
            "Create a ticket about the login page being slow",
            vec![(
                "create_ticket",
                json!({"title": "the login page being slow", "description": "the login page being slow"}),
            )],
        ),
        (
            "create a ticket titled Broken build without a description",
            vec![("create_ticket", json!({"title": "Broken build"}))],
        ),
        ("Show ticket stats", vec![("get_ticket_stats", json!({}))]),
    ];
    for (text, expected) in cases {
        let answer = ask(&client, vec![user(text)], ALL_TOOLS).await;
        assert_eq!(answer.named(), expected, "{text}");
        assert_eq!(answer.finish, Some(FinishReason::ToolCalls), "{text}");

        let results: Vec<String> =
            (1..=answer.calls.len()).map(|i| format!("result {i}")).collect();
        let results: Vec<&str> = results.iter().map(String::as_str).collect();
        let messages = with_results(vec![user(text)], &answer.calls, &results);
        let follow_up = ask(&client, messages, ALL_TOOLS).await;
        assert!(follow_up.calls.is_empty(), "{text}");
        assert_eq!(follow_up.finish, Some(FinishReason::Stop));
        assert_eq!(follow_up.text, format!("Here is what I found:\n{}", results.join("\n")));
    }
}

#[tokio::test]
async fn builtin_rules_fall_back_to_the_default_answer_without_the_tool() {
    let (_server, client) = server("", true).await;
    for (text, tools) in [
        ("add a task to buy milk", &["list_tasks"][..]),
        ("add tasks a and b", &[][..]),
        ("list my tasks", &["list_task", "add_task"][..]),
        ("show ticket stats", &["get_ticket_statistics"][..]),
    ] {
        let answer = ask(&client, vec![user(text)], tools).await;
        assert!(answer.calls.is_empty(), "{text}");
        assert_eq!(answer.text, default_answer(&[json!({"role": "user", "content": text})]));
        assert_eq!(answer.finish, Some(FinishReason::Stop));
    }
}

#[tokio::test]
async fn the_generic_call_rule_checks_names_and_arguments() {
    let (_server, client) = server("", true).await;
    let answer = ask(&client, vec![user(r#"call my-tool_2 {"n": 1}"#)], &["my-tool_2"]).await;
    assert_eq!(answer.named(), [("my-tool_2", json!({"n": 1}))]);

    let answer = ask(&client, vec![user("call missing {}")], ALL_TOOLS).await;
    assert_eq!(answer.text, "The tool `missing` is not available.");
    assert_eq!(answer.finish, Some(FinishReason::Stop));
    let answer = ask(&client, vec![user("call add_task {} and nope {}")], &[]).await;
    assert_eq!(answer.text, "The tools `add_task`, `nope` are not available.");
    let answer = ask(&client, vec![user("call add_task {title: x}")], ALL_TOOLS).await;
    assert!(answer.text.starts_with("I could not read that tool call:"), "{}", answer.text);
    assert!(answer.calls.is_empty());

    // Not a call request at all: the default answer.
    let answer = ask(&client, vec![user("call me later")], ALL_TOOLS).await;
    assert!(answer.text.starts_with("You said \"call me later\""), "{}", answer.text);
}

#[tokio::test]
async fn keep_calling_tools_never_stops() {
    let (_server, client) = server("", true).await;
    let mut messages = vec![user("Keep calling tools, please")];
    for step in 0..4 {
        let answer = ask(&client, messages.clone(), ALL_TOOLS).await;
        assert_eq!(answer.named(), [("list_tasks", json!({"status": "all"}))], "step {step}");
        messages = with_results(messages, &answer.calls, &["[]"]);
    }
}

#[tokio::test]
async fn script_rules_come_first_and_can_use_the_tool_results() {
    let script = r#"
rules:
  - match: "add a task to (?P<title>.+)"
    responses:
      - tool_calls: [{ name: add_task, arguments: { title: "$title!" } }, { name: list_tasks }]
  - match: "add a task to (?P<title>.+)"
    on: tool
    responses:
      - text: "Added $title: $tool_result_1; then ${tool_result_2}.\nAll:\n$tool_results$tool_result_3 $$"
"#;
    let (server, client) = server(script, true).await;
    let ask_text = "add a task to sleep";
    // The script answers even when the request offers no tools.
    let answer = ask(&client, vec![user(ask_text)], &[]).await;
    assert_eq!(
        answer.named(),
        [("add_task", json!({"title": "sleep!"})), ("list_tasks", json!({}))]
    );
    let messages = with_results(vec![user(ask_text)], &answer.calls, &["added", "1 task"]);
    let answer = ask(&client, messages, &[]).await;
    assert_eq!(answer.text, "Added sleep: added; then 1 task.\nAll:\nadded\n1 task $");

    // Built-in rules still answer what the script does not.
    let answer = ask(&client, vec![user("list my tasks")], ALL_TOOLS).await;
    assert_eq!(answer.named(), [("list_tasks", json!({"status": "all"}))]);
    let sent = server.requests();
    assert_eq!(sent.last().unwrap()["tools"][0]["function"]["name"], "get_active_integrations");
}

#[tokio::test]
async fn builtin_rules_can_be_turned_off() {
    let (_server, client) = server("", false).await;
    for text in ["list my tasks", "call list_tasks {}"] {
        let answer = ask(&client, vec![user(text)], ALL_TOOLS).await;
        assert!(answer.calls.is_empty());
        assert_eq!(answer.text, default_answer(&[json!({"role": "user", "content": text})]));
    }
}

#[tokio::test]
async fn non_streaming_requests_get_the_builtin_tool_calls_too() {
    let (_server, client) = server("", true).await;
    let mut request = request(vec![user("add tasks a and b")], ALL_TOOLS);
    request.stream_options = None;
    let response = client.chat().create(request).await.unwrap();
    let choice = &response.choices[0];
    assert_eq!(choice.finish_reason, Some(FinishReason::ToolCalls));
    let calls: Vec<(&str, &str)> = choice
        .message
        .tool_calls
        .iter()
        .flatten()
        .map(|c| match c {
            ChatCompletionMessageToolCalls::Function(f) => {
                (f.function.name.as_str(), f.function.arguments.as_str())
            }
            other => panic!("unexpected tool call {other:?}"),
        })
        .collect();
    assert_eq!(calls, [("add_task", r#"{"title":"a"}"#), ("add_task", r#"{"title":"b"}"#)]);
    assert!(response.usage.is_some_and(|u| u.completion_tokens > 0));
}
