//! The script: rules that decide what the scripted model answers, parsed from YAML or JSON.
//!
//! Parsing happens in two steps so that every error can name the rule (and response) it comes
//! from: the document is first read into loose JSON values, then each rule and each response
//! is decoded and validated on its own. Regexes are compiled here, once; a request only runs
//! them. A `Script` holds no mutable state: the response cursors live in the server, so one
//! script can be cloned into several servers without them sharing sequences.

use std::path::Path;
use std::sync::Arc;

use regex::{Regex, RegexBuilder};
use serde::Deserialize;
use serde_json::Value;

pub use error::ScriptError;

mod error;

/// Delays in milliseconds; `None` means "inherit from the level above".
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Timing {
    /// Delay before the first content chunk.
    pub(crate) first_token_ms: Option<u64>,
    /// Delay between two content chunks.
    pub(crate) token_delay_ms: Option<u64>,
}

/// Which kind of turn a rule answers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Trigger {
    /// Any turn that does not end with a tool result (normally: the user just spoke).
    #[default]
    User,
    /// A turn that ends with a tool result.
    Tool,
}

/// A scripted HTTP error.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ErrorSpec {
    /// HTTP status, 400..=599.
    pub(crate) status: u16,
    /// Seconds for the `Retry-After` header.
    pub(crate) retry_after: Option<u64>,
    /// The `error.message`; a default per status when absent.
    pub(crate) message: Option<String>,
    /// The `error.type`; a default per status when absent.
    #[serde(rename = "type")]
    pub(crate) kind: Option<String>,
    /// The `error.code`.
    pub(crate) code: Option<String>,
}

/// A scripted tool call.
#[derive(Debug, Clone)]
pub(crate) struct ToolCall {
    /// The function name.
    pub(crate) name: String,
    /// The arguments object; string values may hold `$name` references.
    pub(crate) arguments: Value,
    /// `arguments` serialized once, used when nothing needs expanding.
    pub(crate) arguments_json: String,
}

/// What a response does.
#[derive(Debug, Clone)]
pub(crate) enum Kind {
    /// Answer with this content.
    Text(String),
    /// Ask for these tool calls.
    ToolCalls(Vec<ToolCall>),
    /// Fail with this HTTP error.
    Error(ErrorSpec),
    /// Never answer.
    Hang,
}

/// One scripted response, validated.
#[derive(Debug, Clone)]
pub(crate) struct Response {
    /// What to do.
    pub(crate) kind: Kind,
    /// Per-response delays, overriding the script defaults.
    pub(crate) timing: Timing,
    /// `false` omits usage even when the client asks for it.
    pub(crate) usage: bool,
    /// Stream this many content chunks, then hang.
    pub(crate) stall_after_tokens: Option<usize>,
    /// Stream this many content chunks, then end the stream with no finish reason and no
    /// `[DONE]` (a cut-off answer; 0: an empty stream, as llama.cpp sends when the context
    /// overflows).
    pub(crate) cut_after_tokens: Option<usize>,
    /// Whether some string holds a `$`, so references must be expanded (see `expand`).
    pub(crate) expands: bool,
}

/// One rule, validated, with its pattern compiled.
#[derive(Debug, Clone)]
pub(crate) struct Rule {
    /// Searched (case-insensitively) in the last user message; `None` matches anything.
    pub(crate) pattern: Option<Regex>,
    /// Which turns the rule answers.
    pub(crate) on: Trigger,
    /// Served in order; the last one repeats. Never empty.
    pub(crate) responses: Vec<Response>,
}

impl Rule {
    /// Whether the rule answers a turn whose last user message is `last_user`.
    pub(crate) fn applies(&self, last_user: &str, ends_with_tool: bool) -> bool {
        let on = if ends_with_tool { Trigger::Tool } else { Trigger::User };
        self.on == on && self.pattern.as_ref().is_none_or(|p| p.is_match(last_user))
    }
}

#[derive(Debug, Default)]
struct Inner {
    defaults: Timing,
    rules: Vec<Rule>,
}

/// A parsed, validated script. The default script has no rules, so every request goes to the
/// built-in rules, then the [`default_answer`](crate::default_answer). Cloning is cheap
/// (shared, immutable).
///
/// The format (`crates/scripted-llm/examples/script.yaml` shows all of it):
/// ```yaml
/// defaults: { first_token_ms: 0, token_delay_ms: 0 }   # optional
/// rules:                       # tried in order; the first that fits answers
///   - match: "add a task to (?P<title>.+)"  # case-insensitive regex on the last user message
///     on: user                 # `user` (default) or `tool` (the turn ends with a tool result)
///     responses:               # one per matching request; the last one repeats
///       - tool_calls: [{ name: add_task, arguments: { title: "$title" } }]
///       - text: "Added $title" # also: first_token_ms, token_delay_ms, usage: false,
///                              #       stall_after_tokens: N
///                              #       cut_after_tokens: N (end, no finish reason)
///       - error: { status: 429, retry_after: 1, message: "slow down" }  # type, code
///       - hang: true
///   - match: "add a task to (?P<title>.+)"
///     on: tool
///     responses:
///       - text: "Added $title:\n$tool_results"
/// ```
/// In `text` and in argument strings, `$name`, `${name}` and `$1` expand the captures of
/// `match`; `$tool_results` expands to the contents of the tool results that end the
/// conversation, joined with newlines, and `$tool_result_1`, `$tool_result_2`, ... to one
/// of them. Unknown names expand to nothing; write `$$` for a literal `$`.
#[derive(Debug, Clone, Default)]
pub struct Script {
    inner: Arc<Inner>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScript {
    #[serde(default)]
    defaults: Timing,
    #[serde(default)]
    rules: Vec<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    #[serde(rename = "match")]
    pattern: Option<String>,
    #[serde(default)]
    on: Trigger,
    responses: Vec<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawResponse {
    text: Option<String>,
    tool_calls: Option<Vec<RawToolCall>>,
    error: Option<ErrorSpec>,
    #[serde(default)]
    hang: bool,
    first_token_ms: Option<u64>,
    token_delay_ms: Option<u64>,
    usage: Option<bool>,
    stall_after_tokens: Option<usize>,
    cut_after_tokens: Option<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawToolCall {
    name: String,
    #[serde(default)]
    arguments: Option<Value>,
}

impl Script {
    /// Parses a script from YAML. JSON is accepted too (a document starting with `{` is read
    /// as JSON); an empty document gives the empty script.
    ///
    /// # Errors
    /// [`ScriptError`] naming the rule (and response) at fault, for unknown keys, wrong
    /// types, invalid regexes, or responses that are not exactly one of `text`,
    /// `tool_calls`, `error`, `hang`.
    pub fn from_yaml_str(s: &str) -> Result<Script, ScriptError> {
        let trimmed = s.trim_start();
        if trimmed.is_empty() {
            return Ok(Script::default());
        }
        // JSON first for JSON documents (YAML parsers can trip on JSON's tab indentation);
        // a `{` document that is not JSON syntax is a YAML flow mapping.
        let json = trimmed.starts_with('{').then(|| serde_json::from_str::<RawScript>(s));
        let raw = match json {
            Some(Ok(raw)) => raw,
            Some(Err(e)) if !(e.is_syntax() || e.is_eof()) => {
                return Err(ScriptError::Document(Box::new(e)));
            }
            _ => {
                // YAML 1.1 booleans would turn `text: yes` or `match: on` into `true`.
                let mut options = serde_saphyr::Options::default();
                options.strict_booleans = true;
                serde_saphyr::from_str_with_options(s, options)
                    .map_err(|e| ScriptError::Document(Box::new(e)))?
            }
        };
        let rules = raw.rules.into_iter().enumerate().map(|(i, v)| compile_rule(i, v));
        let inner = Inner { defaults: raw.defaults, rules: rules.collect::<Result<_, _>>()? };
        Ok(Script { inner: Arc::new(inner) })
    }

    /// Reads and parses a script file (YAML or JSON).
    ///
    /// # Errors
    /// [`ScriptError::Read`] when the file cannot be read, otherwise as
    /// [`Script::from_yaml_str`].
    pub fn from_file(path: &Path) -> Result<Script, ScriptError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ScriptError::Read { path: path.to_owned(), source })?;
        Script::from_yaml_str(&text)
    }

    /// How many rules the script has.
    pub fn rule_count(&self) -> usize {
        self.inner.rules.len()
    }

    pub(crate) fn rules(&self) -> &[Rule] {
        &self.inner.rules
    }

    pub(crate) fn defaults(&self) -> Timing {
        self.inner.defaults
    }
}

fn compile_rule(rule: usize, value: Value) -> Result<Rule, ScriptError> {
    let raw: RawRule =
        serde_json::from_value(value).map_err(|source| ScriptError::Rule { rule, source })?;
    let pattern = raw
        .pattern
        .map(|p| RegexBuilder::new(&p).case_insensitive(true).build())
        .transpose()
        .map_err(|source| ScriptError::Pattern { rule, source })?;
    if raw.responses.is_empty() {
        let reason = "`responses` must not be empty".to_owned();
        return Err(ScriptError::Invalid { rule, reason });
    }
    let responses = raw
        .responses
        .into_iter()
        .enumerate()
        .map(|(response, v)| compile_response(rule, response, v))
        .collect::<Result<_, _>>()?;
    Ok(Rule { pattern, on: raw.on, responses })
}

fn compile_response(rule: usize, response: usize, value: Value) -> Result<Response, ScriptError> {
    let raw: RawResponse = serde_json::from_value(value)
        .map_err(|source| ScriptError::ResponseDecode { rule, response, source })?;
    let invalid =
        |what: &str| ScriptError::Invalid { rule, reason: format!("response {response} {what}") };
    let kinds = [raw.text.is_some(), raw.tool_calls.is_some(), raw.error.is_some(), raw.hang];
    if kinds.iter().filter(|k| **k).count() != 1 {
        return Err(invalid(
            "must have exactly one of `text`, `tool_calls`, `error`, `hang: true`",
        ));
    }
    let kind = if let Some(text) = raw.text {
        Kind::Text(text)
    } else if let Some(calls) = raw.tool_calls {
        if calls.is_empty() || calls.iter().any(|c| c.name.is_empty()) {
            return Err(invalid("needs at least one tool call, each with a non-empty `name`"));
        }
        Kind::ToolCalls(calls.into_iter().map(compile_tool_call).collect())
    } else if let Some(error) = raw.error {
        if !(400..=599).contains(&error.status) {
            return Err(invalid("has an error `status` outside 400..=599"));
        }
        Kind::Error(error)
    } else {
        Kind::Hang
    };
    if (raw.stall_after_tokens.is_some() || raw.cut_after_tokens.is_some())
        && matches!(kind, Kind::Error(_) | Kind::Hang)
    {
        return Err(invalid(
            "uses `stall_after_tokens` or `cut_after_tokens` without `text` or `tool_calls`",
        ));
    }
    let expands = mentions_dollar(&kind);
    Ok(Response {
        kind,
        timing: Timing { first_token_ms: raw.first_token_ms, token_delay_ms: raw.token_delay_ms },
        usage: raw.usage.unwrap_or(true),
        stall_after_tokens: raw.stall_after_tokens,
        cut_after_tokens: raw.cut_after_tokens,
        expands,
    })
}

fn compile_tool_call(raw: RawToolCall) -> ToolCall {
    let arguments = match raw.arguments {
        None | Some(Value::Null) => Value::Object(serde_json::Map::new()),
        Some(v) => v,
    };
    let arguments_json = arguments.to_string();
    ToolCall { name: raw.name, arguments, arguments_json }
}

fn mentions_dollar(kind: &Kind) -> bool {
    fn in_value(v: &Value) -> bool {
        match v {
            Value::String(s) => s.contains('$'),
            Value::Array(items) => items.iter().any(in_value),
            Value::Object(map) => map.values().any(in_value),
            _ => false,
        }
    }
    match kind {
        Kind::Text(t) => t.contains('$'),
        Kind::ToolCalls(calls) => {
            calls.iter().any(|c| c.name.contains('$') || in_value(&c.arguments))
        }
        Kind::Error(_) | Kind::Hang => false,
    }
}

#[cfg(test)]
mod tests;
