//! The OpenAI Chat Completions wire format: request fields we read, and the JSON we write
//! (`chat.completion`, `chat.completion.chunk` SSE lines, error bodies, the model list).
//!
//! Output types borrow everything, so writing a chunk allocates nothing beyond the buffer.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::plan::{PlannedCall, Reply};

/// The request fields the server reads; everything else is accepted and ignored.
#[derive(Debug, Deserialize)]
pub(crate) struct ChatRequest {
    /// Echoed back in responses when present.
    #[serde(default)]
    pub(crate) model: Option<String>,
    /// The conversation.
    pub(crate) messages: Vec<Value>,
    /// Whether to answer with SSE chunks.
    #[serde(default)]
    pub(crate) stream: Option<bool>,
    /// `include_usage` asks for a final usage chunk.
    #[serde(default)]
    pub(crate) stream_options: Option<StreamOptions>,
    /// The tools the model may call; only function tools' names are read.
    #[serde(default)]
    pub(crate) tools: Option<Vec<Value>>,
}

impl ChatRequest {
    /// The names of the function tools offered (`{"type": "function", "function": {"name"}}`).
    pub(crate) fn tool_names(&self) -> Vec<&str> {
        let tools = self.tools.iter().flatten();
        let functions = tools.filter(|t| t.get("type").is_none_or(|k| k == "function"));
        functions.filter_map(|t| t.get("function")?.get("name")?.as_str()).collect()
    }
}

/// `stream_options` of a request.
#[derive(Debug, Deserialize)]
pub(crate) struct StreamOptions {
    /// Send a final chunk with `choices: []` and `usage`.
    #[serde(default)]
    pub(crate) include_usage: Option<bool>,
}

/// What every completion object and chunk repeats.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Head<'a> {
    /// `chatcmpl-<n>`.
    pub(crate) id: &'a str,
    /// Unix seconds.
    pub(crate) created: u64,
    /// The model name.
    pub(crate) model: &'a str,
}

/// Token counts, as OpenAI reports them.
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct Usage {
    /// Estimated from the prompt's characters.
    pub(crate) prompt_tokens: u32,
    /// The number of content chunks.
    pub(crate) completion_tokens: u32,
    /// The sum of both.
    pub(crate) total_tokens: u32,
}

impl Usage {
    /// Usage with `total_tokens` filled in.
    pub(crate) fn new(prompt_tokens: u32, completion_tokens: u32) -> Self {
        let total_tokens = prompt_tokens.saturating_add(completion_tokens);
        Self { prompt_tokens, completion_tokens, total_tokens }
    }
}

/// The `delta` of a streamed choice.
#[derive(Debug, Default, Serialize)]
pub(crate) struct Delta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) tool_calls: Option<[ToolCallDelta<'a>; 1]>,
}

/// One tool-call fragment; the first one of a call carries `id`, `type` and `name`.
#[derive(Debug, Serialize)]
pub(crate) struct ToolCallDelta<'a> {
    pub(crate) index: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) id: Option<&'a str>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub(crate) kind: Option<&'static str>,
    pub(crate) function: FunctionDelta<'a>,
}

/// The `function` of a tool-call fragment.
#[derive(Debug, Serialize)]
pub(crate) struct FunctionDelta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) name: Option<&'a str>,
    pub(crate) arguments: &'a str,
}

#[derive(Serialize)]
struct Chunk<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: &'a [StreamChoice<'a>],
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<Usage>,
}

#[derive(Serialize)]
struct StreamChoice<'a> {
    index: u32,
    delta: Delta<'a>,
    logprobs: Option<()>,
    finish_reason: Option<&'static str>,
}

/// The SSE terminator.
pub(crate) const DONE: &[u8] = b"data: [DONE]\n\n";

fn write_event(buf: &mut Vec<u8>, chunk: &Chunk<'_>) {
    buf.extend_from_slice(b"data: ");
    // Writing plain structs of strings and numbers into a Vec cannot fail.
    serde_json::to_writer(&mut *buf, chunk).expect("chunk serializes");
    buf.extend_from_slice(b"\n\n");
}

/// Appends one `data: {chunk}` event with a single choice.
pub(crate) fn write_chunk(
    buf: &mut Vec<u8>,
    head: Head<'_>,
    delta: Delta<'_>,
    finish_reason: Option<&'static str>,
) {
    let choices = [StreamChoice { index: 0, delta, logprobs: None, finish_reason }];
    let chunk = Chunk {
        id: head.id,
        object: "chat.completion.chunk",
        created: head.created,
        model: head.model,
        choices: &choices,
        usage: None,
    };
    write_event(buf, &chunk);
}

/// Appends the final usage event (`choices: []`).
pub(crate) fn write_usage_chunk(buf: &mut Vec<u8>, head: Head<'_>, usage: Usage) {
    let chunk = Chunk {
        id: head.id,
        object: "chat.completion.chunk",
        created: head.created,
        model: head.model,
        choices: &[],
        usage: Some(usage),
    };
    write_event(buf, &chunk);
}

/// Splits JSON arguments into 2 to 4 fragments on character boundaries (one fragment when the
/// text has a single character), as a real model streams them.
pub(crate) fn split_arguments(arguments: &str) -> Vec<&str> {
    let chars = arguments.chars().count();
    let pieces = (chars / 8).clamp(2, 4).min(chars.max(1));
    let per_piece = chars.div_ceil(pieces);
    let mut out = Vec::with_capacity(pieces);
    let mut rest = arguments;
    while !rest.is_empty() {
        let cut = rest.char_indices().nth(per_piece).map_or(rest.len(), |(i, _)| i);
        out.push(&rest[..cut]);
        rest = &rest[cut..];
    }
    if out.is_empty() {
        out.push("");
    }
    out
}

#[derive(Serialize)]
struct Completion<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: [Choice<'a>; 1],
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<Usage>,
}

#[derive(Serialize)]
struct Choice<'a> {
    index: u32,
    message: Message<'a>,
    logprobs: Option<()>,
    finish_reason: &'static str,
}

#[derive(Serialize)]
struct Message<'a> {
    role: &'static str,
    content: Option<&'a str>,
    refusal: Option<()>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tool_calls: Vec<ToolCallOut<'a>>,
}

#[derive(Serialize)]
struct ToolCallOut<'a> {
    id: String,
    #[serde(rename = "type")]
    kind: &'static str,
    function: FunctionOut<'a>,
}

#[derive(Serialize)]
struct FunctionOut<'a> {
    name: &'a str,
    arguments: &'a str,
}

/// The non-streaming `chat.completion` body. `call_id` names the n-th tool call.
pub(crate) fn completion_body(
    head: Head<'_>,
    reply: &Reply<'_>,
    usage: Option<Usage>,
    mut call_id: impl FnMut() -> String,
) -> Vec<u8> {
    let (content, calls, finish_reason): (_, &[PlannedCall<'_>], _) = match reply {
        Reply::Text(text) => (Some(text.as_ref()), &[], "stop"),
        Reply::ToolCalls(calls) => (None, calls.as_slice(), "tool_calls"),
        Reply::Error(_) | Reply::Hang => (None, &[], "stop"),
    };
    let tool_calls = calls
        .iter()
        .map(|c| ToolCallOut {
            id: call_id(),
            kind: "function",
            function: FunctionOut { name: &c.name, arguments: &c.arguments },
        })
        .collect();
    let message = Message { role: "assistant", content, refusal: None, tool_calls };
    let body = Completion {
        id: head.id,
        object: "chat.completion",
        created: head.created,
        model: head.model,
        choices: [Choice { index: 0, message, logprobs: None, finish_reason }],
        usage,
    };
    serde_json::to_vec(&body).expect("completion serializes")
}

#[derive(Serialize)]
struct ErrorEnvelope<'a> {
    error: ErrorOut<'a>,
}

#[derive(Serialize)]
struct ErrorOut<'a> {
    message: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    param: Option<&'a str>,
    code: Option<&'a str>,
}

/// An OpenAI-style error body: `{"error":{"message","type","param","code"}}`.
pub(crate) fn error_body(
    message: &str,
    kind: &str,
    param: Option<&str>,
    code: Option<&str>,
) -> Vec<u8> {
    let body = ErrorEnvelope { error: ErrorOut { message, kind, param, code } };
    serde_json::to_vec(&body).expect("error serializes")
}

/// The `GET /v1/models` body.
pub(crate) fn models_body(model: &str) -> Value {
    serde_json::json!({
        "object": "list",
        "data": [{"id": model, "object": "model", "created": 0, "owned_by": "agentyard"}],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_split_into_two_to_four_fragments_that_concatenate() {
        for args in
            ["{}", r#"{"title":"buy milk"}"#, r#"{"a":"ééééééééééééééééééééééééééééééééééé"}"#]
        {
            let parts = split_arguments(args);
            assert!((2..=4).contains(&parts.len()), "{args}: {parts:?}");
            assert_eq!(parts.concat(), args);
        }
        assert_eq!(split_arguments("1"), ["1"]);
    }

    #[test]
    fn chunks_are_sse_data_lines_with_the_common_fields() {
        let head = Head { id: "chatcmpl-1", created: 5, model: "m" };
        let mut buf = Vec::new();
        write_chunk(&mut buf, head, Delta { content: Some("hi"), ..Delta::default() }, None);
        let text = String::from_utf8(buf).unwrap();
        let json: Value = serde_json::from_str(text.strip_prefix("data: ").unwrap()).unwrap();
        assert!(text.ends_with("\n\n"));
        assert_eq!(json["object"], "chat.completion.chunk");
        assert_eq!(json["choices"][0]["delta"]["content"], "hi");
        assert_eq!(json["choices"][0]["finish_reason"], Value::Null);
    }
}
