//! The built-in rules: what the scripted model does with tools when no script rule answers.
//!
//! Most of them are a script, `builtin.yaml` (phrases like "add a task to \<title>" and their
//! `on: tool` follow-ups). The generic `call <name> <json>` rule is code, since it reads JSON
//! out of the message:
//!
//! - `call <name> <json object>` asks for one call of `<name>` with those arguments;
//!   `call <a> <json> and <b> <json>` (and so on) asks for several calls in one turn.
//!   `call` starts the message (case-insensitively); names are ASCII letters, digits, `_`
//!   and `-`. A name the request's `tools` do not offer gets the text
//!   ``The tool `<name>` is not available.``; arguments that are not a JSON object get a text
//!   saying so.
//! - After the tool results, it answers `Here is what I found:\n<results joined by newlines>`.
//!
//! Built-in rules from `builtin.yaml` that would call a tool the request does not offer are
//! skipped by [`plan`](crate::plan), so the default answer is given instead.

use std::borrow::Cow;
use std::sync::LazyLock;

use serde_json::{Map, Value};

use crate::answer;
use crate::plan::{PlannedCall, Reply, Turn};
use crate::script::Script;

/// The built-in script, parsed once.
pub(crate) fn script() -> &'static Script {
    static SCRIPT: LazyLock<Script> = LazyLock::new(|| {
        Script::from_yaml_str(include_str!("builtin.yaml")).expect("the built-in script is valid")
    });
    &SCRIPT
}

/// The reply of the `call <name> <json>` rule, or `None` when the last user message is not
/// such a request (or, in a tool turn, cannot be read).
pub(crate) fn call_rule<'s>(
    last_user: &str,
    ends_with_tool: bool,
    turn: Turn<'_>,
) -> Option<Reply<'s>> {
    let calls = parse_calls(last_user)?;
    if ends_with_tool {
        calls.ok()?;
        let results = answer::trailing_tool_results(turn.messages);
        return Some(text(format!("Here is what I found:\n{}", results.join("\n"))));
    }
    let calls = match calls {
        Ok(calls) => calls,
        Err(error) => return Some(text(format!("I could not read that tool call: {error}."))),
    };
    let mut missing: Vec<&str> = Vec::new();
    for (name, _) in &calls {
        if !turn.tools.contains(&name.as_str()) && !missing.contains(&name.as_str()) {
            missing.push(name);
        }
    }
    if let [name] = missing.as_slice() {
        return Some(text(format!("The tool `{name}` is not available.")));
    }
    if !missing.is_empty() {
        let names = missing.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ");
        return Some(text(format!("The tools {names} are not available.")));
    }
    Some(Reply::ToolCalls(
        calls
            .into_iter()
            .map(|(name, arguments)| PlannedCall {
                name: Cow::Owned(name),
                arguments: Cow::Owned(Value::Object(arguments).to_string()),
            })
            .collect(),
    ))
}

/// The prompt the built-in tool server sends (through MCP sampling) to have a ticket classified.
pub(crate) const CLASSIFY_PROMPT: &str = "Classify this support ticket";

/// The answer to a ticket-classification request: a JSON object with `category` and
/// `priority`, chosen by a few keywords (a real model reads the text).
pub(crate) fn classify_rule<'s>(last_user: &str) -> Option<Reply<'s>> {
    let lower = last_user.trim_start().strip_prefix(CLASSIFY_PROMPT)?.to_lowercase();
    let any = |words: &[&str]| words.iter().any(|w| lower.contains(w));
    let category = if any(&["refund", "invoice", "charge", "bill", "payment", "price"]) {
        "billing"
    } else if any(&["password", "login", "account", "email", "sign in"]) {
        "account"
    } else if any(&["error", "crash", "bug", "broken", "down", "fail", "slow", "fire"]) {
        "technical"
    } else {
        "general"
    };
    let priority = if any(&["urgent", "asap", "critical", "outage", "down", "fire", "immediately"])
    {
        "high"
    } else if any(&["whenever", "no rush", "minor", "question"]) {
        "low"
    } else {
        "medium"
    };
    Some(text(serde_json::json!({"category": category, "priority": priority}).to_string()))
}

fn text<'s>(s: String) -> Reply<'s> {
    Reply::Text(Cow::Owned(s))
}

/// Tool calls read from a message: (name, arguments), or why they could not be read.
type ParsedCalls = Result<Vec<(String, Map<String, Value>)>, String>;

/// Reads `call <name> <json> [and <name> <json>]...`: `None` when the text does not start
/// with `call <name> {`, an error when what follows is not JSON objects joined by `and`.
fn parse_calls(text: &str) -> Option<ParsedCalls> {
    let rest = strip_word(text.trim_start(), "call")?;
    let (name, rest) = split_name(rest);
    if name.is_empty() || !rest.starts_with('{') {
        return None;
    }
    let mut calls = Vec::new();
    let (mut name, mut rest) = (name, rest);
    loop {
        let mut objects =
            serde_json::Deserializer::from_str(rest).into_iter::<Map<String, Value>>();
        let arguments = match objects.next() {
            Some(Ok(arguments)) => arguments,
            Some(Err(error)) => {
                return Some(Err(format!(
                    "the arguments of `{name}` are not a JSON object ({error})"
                )));
            }
            None => return Some(Err(format!("`{name}` has no arguments"))),
        };
        rest = rest[objects.byte_offset()..].trim_start();
        calls.push((name.to_owned(), arguments));
        if rest.is_empty() {
            return Some(Ok(calls));
        }
        let Some(next) = strip_word(rest, "and") else {
            return Some(Err(format!("unexpected text after the arguments of `{name}`")));
        };
        (name, rest) = split_name(next);
        if name.is_empty() || !rest.starts_with('{') {
            return Some(Err("`and` must be followed by a tool name and a JSON object".to_owned()));
        }
    }
}

/// `text` after `word` (ASCII case-insensitive) and at least one whitespace, trimmed.
fn strip_word<'t>(text: &'t str, word: &str) -> Option<&'t str> {
    let head = text.get(..word.len())?;
    let rest = &text[word.len()..];
    let spaced = rest.starts_with(char::is_whitespace);
    (head.eq_ignore_ascii_case(word) && spaced).then(|| rest.trim_start())
}

/// A tool name at the start of `text`, and what follows it, trimmed.
fn split_name(text: &str) -> (&str, &str) {
    let end = text
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
        .unwrap_or(text.len());
    (&text[..end], text[end..].trim_start())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn parsed(text: &str) -> Option<Result<Vec<(String, Value)>, String>> {
        parse_calls(text)
            .map(|r| r.map(|calls| calls.into_iter().map(|(n, a)| (n, Value::Object(a))).collect()))
    }

    #[test]
    fn the_builtin_script_parses() {
        assert!(script().rule_count() >= 18);
    }

    #[test]
    fn call_requests_parse_into_calls() {
        assert_eq!(parsed("  CALL get_x-2 {}"), Some(Ok(vec![("get_x-2".into(), json!({}))])));
        let two = parsed(r#"call a {"x": "} and b {}"} and b {"y": [1, {"z": null}]}"#);
        let expected = vec![
            ("a".into(), json!({"x": "} and b {}"})),
            ("b".into(), json!({"y": [1, {"z": null}]})),
        ];
        assert_eq!(two, Some(Ok(expected)));
        for not_a_call in ["call me later", "please call a {}", "call {}", "calling a {}", "call"] {
            assert_eq!(parsed(not_a_call), None, "{not_a_call}");
        }
        for bad in ["call a {oops", "call a {} then", "call a {} and b", "call a {} and {}"] {
            assert!(matches!(parsed(bad), Some(Err(_))), "{bad}");
        }
    }
}

#[cfg(test)]
mod classify_tests {
    use super::*;

    #[test]
    fn ticket_classification_requests_get_a_json_answer() {
        let reply =
            classify_rule("Classify this support ticket:\n\nThe site is down, urgent!").unwrap();
        let Reply::Text(t) = reply else { panic!("not text") };
        let v: Value = serde_json::from_str(&t).unwrap();
        assert_eq!(
            (v["category"].as_str(), v["priority"].as_str()),
            (Some("technical"), Some("high"))
        );
        assert!(classify_rule("hello").is_none());
    }
}
