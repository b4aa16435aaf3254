//! Choosing the reply to one request: the first applicable rule's next response (with regex
//! captures expanded), or the default answer.
//!
//! Delays resolve from the most specific level down: the response, then the script's
//! `defaults`, then the server [`Options`](crate::Options).

use std::borrow::Cow;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use regex::Captures;
use serde_json::Value;

use crate::answer;
use crate::script::{ErrorSpec, Kind, Response, Rule, Script};

/// One response cursor per rule: how many times the rule has answered.
#[derive(Debug)]
pub(crate) struct Cursors(Box<[AtomicUsize]>);

impl Cursors {
    /// Cursors at the start of every rule's sequence.
    pub(crate) fn new(rules: usize) -> Self {
        Self((0..rules).map(|_| AtomicUsize::new(0)).collect())
    }

    /// Takes the next response index of `rule`; after the last response, the last repeats.
    fn advance(&self, rule: usize, len: usize) -> usize {
        self.0[rule].fetch_add(1, Ordering::Relaxed).min(len - 1)
    }
}

/// A tool call ready to be sent.
#[derive(Debug)]
pub(crate) struct PlannedCall<'s> {
    /// The function name.
    pub(crate) name: &'s str,
    /// The JSON-encoded arguments.
    pub(crate) arguments: Cow<'s, str>,
}

/// What the server answers.
#[derive(Debug)]
pub(crate) enum Reply<'s> {
    /// Assistant content.
    Text(Cow<'s, str>),
    /// Tool calls (`finish_reason: tool_calls`).
    ToolCalls(Vec<PlannedCall<'s>>),
    /// An HTTP error.
    Error(&'s ErrorSpec),
    /// No answer at all.
    Hang,
}

/// The reply and how to deliver it.
#[derive(Debug)]
pub(crate) struct Plan<'s> {
    /// What to answer.
    pub(crate) reply: Reply<'s>,
    /// Delay before the first content chunk.
    pub(crate) first_token: Duration,
    /// Delay between content chunks.
    pub(crate) token_delay: Duration,
    /// Whether usage may be reported (the client must also ask for it when streaming).
    pub(crate) usage: bool,
    /// Stop after this many content chunks and hang.
    pub(crate) stall_after: Option<usize>,
    /// Index of the rule that answered, for logs.
    pub(crate) rule: Option<usize>,
}

/// Server-level delays in milliseconds, the fallback for scripts that set none.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BaseTiming {
    /// See [`Options::first_token_ms`](crate::Options::first_token_ms).
    pub(crate) first_token_ms: u64,
    /// See [`Options::token_delay_ms`](crate::Options::token_delay_ms).
    pub(crate) token_delay_ms: u64,
}

/// Picks the reply to `messages`.
pub(crate) fn plan<'s>(
    script: &'s Script,
    cursors: &Cursors,
    base: BaseTiming,
    messages: &[Value],
) -> Plan<'s> {
    let defaults = script.defaults();
    let first_ms = defaults.first_token_ms.unwrap_or(base.first_token_ms);
    let delay_ms = defaults.token_delay_ms.unwrap_or(base.token_delay_ms);
    let last_user = answer::last_user_text(messages);
    let ends_with_tool = answer::ends_with_tool_result(messages);
    let found = script
        .rules()
        .iter()
        .enumerate()
        .find(|(_, rule)| rule.applies(&last_user, ends_with_tool));
    let Some((index, rule)) = found else {
        return Plan {
            reply: Reply::Text(Cow::Owned(answer::default_answer(messages))),
            first_token: Duration::from_millis(first_ms),
            token_delay: Duration::from_millis(delay_ms),
            usage: true,
            stall_after: None,
            rule: None,
        };
    };
    let response = &rule.responses[cursors.advance(index, rule.responses.len())];
    let captures = if response.expands { captures(rule, &last_user) } else { None };
    Plan {
        reply: reply(response, captures.as_ref()),
        first_token: Duration::from_millis(response.timing.first_token_ms.unwrap_or(first_ms)),
        token_delay: Duration::from_millis(response.timing.token_delay_ms.unwrap_or(delay_ms)),
        usage: response.usage,
        stall_after: response.stall_after_tokens,
        rule: Some(index),
    }
}

fn captures<'t>(rule: &Rule, text: &'t str) -> Option<Captures<'t>> {
    rule.pattern.as_ref().and_then(|p| p.captures(text))
}

fn reply<'s>(response: &'s Response, captures: Option<&Captures<'_>>) -> Reply<'s> {
    match &response.kind {
        Kind::Text(text) => Reply::Text(match captures {
            Some(caps) => Cow::Owned(expand(caps, text)),
            None => Cow::Borrowed(text.as_str()),
        }),
        Kind::ToolCalls(calls) => Reply::ToolCalls(
            calls
                .iter()
                .map(|call| PlannedCall {
                    name: &call.name,
                    arguments: match captures {
                        Some(caps) => Cow::Owned(expand_value(caps, &call.arguments).to_string()),
                        None => Cow::Borrowed(call.arguments_json.as_str()),
                    },
                })
                .collect(),
        ),
        Kind::Error(spec) => Reply::Error(spec),
        Kind::Hang => Reply::Hang,
    }
}

/// Replaces `$name`, `${name}` and `$1` with the captured text (`$$` is a literal `$`).
fn expand(caps: &Captures<'_>, template: &str) -> String {
    let mut out = String::with_capacity(template.len());
    caps.expand(template, &mut out);
    out
}

fn expand_value(caps: &Captures<'_>, value: &Value) -> Value {
    match value {
        Value::String(s) if s.contains('$') => Value::String(expand(caps, s)),
        Value::Array(items) => Value::Array(items.iter().map(|v| expand_value(caps, v)).collect()),
        Value::Object(map) => {
            Value::Object(map.iter().map(|(k, v)| (k.clone(), expand_value(caps, v))).collect())
        }
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const BASE: BaseTiming = BaseTiming { first_token_ms: 7, token_delay_ms: 3 };

    fn user(text: &str) -> Vec<Value> {
        vec![json!({"role": "user", "content": text})]
    }

    #[test]
    fn captures_expand_inside_tool_arguments_and_text() {
        let yaml = r#"
rules:
  - match: "add a task to (?P<title>.+)"
    responses:
      - tool_calls: [{name: add_task, arguments: {title: "$title", tags: ["${title}!"]}}]
      - text: "Added $title at $$5"
"#;
        let script = Script::from_yaml_str(yaml).unwrap();
        let cursors = Cursors::new(script.rule_count());
        let messages = user("Please Add a task to buy milk");
        let Reply::ToolCalls(calls) = plan(&script, &cursors, BASE, &messages).reply else {
            panic!("expected tool calls");
        };
        assert_eq!(calls[0].name, "add_task");
        let args: Value = serde_json::from_str(&calls[0].arguments).unwrap();
        assert_eq!(args, json!({"title": "buy milk", "tags": ["buy milk!"]}));
        let Reply::Text(text) = plan(&script, &cursors, BASE, &messages).reply else {
            panic!("expected text");
        };
        assert_eq!(text, "Added buy milk at $5");
    }

    #[test]
    fn sequences_advance_then_repeat_the_last_response() {
        let yaml = "rules:\n  - responses: [{error: {status: 500}}, {text: ok}]\n";
        let script = Script::from_yaml_str(yaml).unwrap();
        let cursors = Cursors::new(script.rule_count());
        let kinds: Vec<bool> = (0..4)
            .map(|_| matches!(plan(&script, &cursors, BASE, &user("x")).reply, Reply::Error(_)))
            .collect();
        assert_eq!(kinds, [true, false, false, false]);
    }

    #[test]
    fn delays_resolve_response_then_defaults_then_options() {
        let yaml = "defaults: {first_token_ms: 50}\nrules:\n  - match: slow\n    responses: [{text: a, token_delay_ms: 9}]\n";
        let script = Script::from_yaml_str(yaml).unwrap();
        let cursors = Cursors::new(script.rule_count());
        let p = plan(&script, &cursors, BASE, &user("slow please"));
        assert_eq!((p.first_token.as_millis(), p.token_delay.as_millis()), (50, 9));
        let p = plan(&script, &cursors, BASE, &user("other"));
        assert_eq!((p.first_token.as_millis(), p.token_delay.as_millis()), (50, 3));
        assert!(p.rule.is_none());
    }
}
