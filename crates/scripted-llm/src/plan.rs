//! Choosing the reply to one request: the first applicable script rule's next response, else
//! the first applicable built-in rule (see [`crate::builtin`]), else the default
//! answer. `$` references in the chosen response are expanded (see [`crate::expand`]).
//!
//! Delays resolve from the most specific level down: the response, then the script's
//! `defaults`, then the server [`Options`](crate::Options).

use std::borrow::Cow;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::Value;

use crate::answer;
use crate::builtin;
use crate::expand::{self, Context};
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
    pub(crate) name: Cow<'s, str>,
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

/// Which rule answered, for logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    /// The script rule with this index.
    Script(usize),
    /// The built-in rule with this index (`builtin.yaml`).
    Builtin(usize),
    /// The built-in `call <name> <json>` rule.
    BuiltinCall,
    /// No rule: the default answer.
    Default,
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
    /// Stop after this many content chunks and end the stream with no finish reason.
    pub(crate) cut_after: Option<usize>,
    /// The rule that answered.
    pub(crate) source: Source,
}

/// Server-level delays in milliseconds, the fallback for scripts that set none.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BaseTiming {
    /// See [`Options::first_token_ms`](crate::Options::first_token_ms).
    pub(crate) first_token_ms: u64,
    /// See [`Options::token_delay_ms`](crate::Options::token_delay_ms).
    pub(crate) token_delay_ms: u64,
}

/// The rules a server answers from.
#[derive(Debug)]
pub(crate) struct Rules {
    /// The user's script, tried first.
    pub(crate) script: Script,
    /// Its response cursors.
    pub(crate) cursors: Cursors,
    /// The built-in rules' cursors; `None` turns the built-in rules off.
    pub(crate) builtin: Option<Cursors>,
    /// The server-level delays.
    pub(crate) base: BaseTiming,
}

impl Rules {
    /// `script`, then the built-in rules when `builtin` is set.
    pub(crate) fn new(script: Script, builtin: bool, base: BaseTiming) -> Self {
        let cursors = Cursors::new(script.rule_count());
        let builtin = builtin.then(|| Cursors::new(builtin::script().rule_count()));
        Self { script, cursors, builtin, base }
    }
}

/// What one request brings.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Turn<'r> {
    /// The conversation.
    pub(crate) messages: &'r [Value],
    /// The names of the function tools the request offers.
    pub(crate) tools: &'r [&'r str],
}

/// Picks the reply to `turn`.
pub(crate) fn plan<'s>(rules: &'s Rules, turn: Turn<'_>) -> Plan<'s> {
    let defaults = rules.script.defaults();
    let first_ms = defaults.first_token_ms.unwrap_or(rules.base.first_token_ms);
    let delay_ms = defaults.token_delay_ms.unwrap_or(rules.base.token_delay_ms);
    let last_user = answer::last_user_text(turn.messages);
    let ends_with_tool = answer::ends_with_tool_result(turn.messages);
    let plain = |reply: Reply<'s>, source: Source| Plan {
        reply,
        first_token: Duration::from_millis(first_ms),
        token_delay: Duration::from_millis(delay_ms),
        usage: true,
        stall_after: None,
        cut_after: None,
        source,
    };
    let from_response = |response: &'s Response, reply: Reply<'s>, source: Source| Plan {
        reply,
        first_token: Duration::from_millis(response.timing.first_token_ms.unwrap_or(first_ms)),
        token_delay: Duration::from_millis(response.timing.token_delay_ms.unwrap_or(delay_ms)),
        usage: response.usage,
        stall_after: response.stall_after_tokens,
        cut_after: response.cut_after_tokens,
        source,
    };

    if let Some((index, rule)) = find(&rules.script, &last_user, ends_with_tool) {
        let response = &rule.responses[rules.cursors.advance(index, rule.responses.len())];
        let reply = reply(rule, response, &last_user, turn.messages);
        return from_response(response, reply, Source::Script(index));
    }
    if let Some(cursors) = &rules.builtin {
        if let Some(reply) = builtin::call_rule(&last_user, ends_with_tool, turn) {
            return plain(reply, Source::BuiltinCall);
        }
        if let Some(reply) = builtin::classify_rule(&last_user) {
            return plain(reply, Source::BuiltinCall);
        }
        let script = builtin::script();
        if let Some((index, rule)) = find(script, &last_user, ends_with_tool) {
            let response = &rule.responses[cursors.advance(index, rule.responses.len())];
            let reply = reply(rule, response, &last_user, turn.messages);
            // Built-in rules only call tools the request offers.
            let offered = |call: &PlannedCall<'_>| turn.tools.contains(&call.name.as_ref());
            if !matches!(&reply, Reply::ToolCalls(calls) if !calls.iter().all(offered)) {
                return from_response(response, reply, Source::Builtin(index));
            }
        }
    }
    plain(Reply::Text(Cow::Owned(answer::default_answer(turn.messages))), Source::Default)
}

fn find<'s>(
    script: &'s Script,
    last_user: &str,
    ends_with_tool: bool,
) -> Option<(usize, &'s Rule)> {
    script.rules().iter().enumerate().find(|(_, rule)| rule.applies(last_user, ends_with_tool))
}

/// The reply `response` gives, with its `$` references expanded when it has any.
fn reply<'s>(
    rule: &Rule,
    response: &'s Response,
    last_user: &str,
    messages: &[Value],
) -> Reply<'s> {
    let captures = if response.expands {
        rule.pattern.as_ref().and_then(|p| p.captures(last_user))
    } else {
        None
    };
    let tool_results =
        if response.expands { answer::trailing_tool_results(messages) } else { Vec::new() };
    let context = Context { captures: captures.as_ref(), tool_results: &tool_results };
    match &response.kind {
        Kind::Text(text) => Reply::Text(if response.expands {
            Cow::Owned(expand::expand(text, &context))
        } else {
            Cow::Borrowed(text.as_str())
        }),
        Kind::ToolCalls(calls) => Reply::ToolCalls(
            calls
                .iter()
                .map(|call| PlannedCall {
                    name: if response.expands && call.name.contains('$') {
                        Cow::Owned(expand::expand(&call.name, &context))
                    } else {
                        Cow::Borrowed(&call.name)
                    },
                    arguments: if response.expands {
                        Cow::Owned(expand::expand_value(&call.arguments, &context).to_string())
                    } else {
                        Cow::Borrowed(call.arguments_json.as_str())
                    },
                })
                .collect(),
        ),
        Kind::Error(spec) => Reply::Error(spec),
        Kind::Hang => Reply::Hang,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const BASE: BaseTiming = BaseTiming { first_token_ms: 7, token_delay_ms: 3 };

    fn rules(yaml: &str, builtin: bool) -> Rules {
        Rules::new(Script::from_yaml_str(yaml).unwrap(), builtin, BASE)
    }

    fn user(text: &str) -> Vec<Value> {
        vec![json!({"role": "user", "content": text})]
    }

    fn ask<'s>(rules: &'s Rules, messages: &[Value], tools: &[&str]) -> Plan<'s> {
        plan(rules, Turn { messages, tools })
    }

    fn calls(reply: &Reply<'_>) -> Vec<(String, Value)> {
        let Reply::ToolCalls(calls) = reply else { panic!("expected tool calls: {reply:?}") };
        let parse = |c: &PlannedCall<'_>| serde_json::from_str(&c.arguments).unwrap();
        calls.iter().map(|c| (c.name.to_string(), parse(c))).collect()
    }

    fn text(reply: Reply<'_>) -> String {
        let Reply::Text(text) = reply else { panic!("expected text: {reply:?}") };
        text.into_owned()
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
        let rules = rules(yaml, false);
        let messages = user("Please Add a task to buy milk");
        let got = calls(&ask(&rules, &messages, &[]).reply);
        let args = json!({"title": "buy milk", "tags": ["buy milk!"]});
        assert_eq!(got, [("add_task".to_owned(), args)]);
        assert_eq!(text(ask(&rules, &messages, &[]).reply), "Added buy milk at $5");
    }

    #[test]
    fn tool_results_expand_in_tool_turns_even_without_a_match() {
        let yaml = "rules:\n  - on: tool\n    responses: [{text: \"Got:\\n$tool_results ($tool_result_2)\"}]\n";
        let rules = rules(yaml, false);
        let messages = [
            json!({"role": "user", "content": "go"}),
            json!({"role": "assistant", "content": null, "tool_calls": []}),
            json!({"role": "tool", "tool_call_id": "a", "content": "one"}),
            json!({"role": "tool", "tool_call_id": "b", "content": [{"type": "text", "text": "two"}]}),
        ];
        assert_eq!(text(ask(&rules, &messages, &[]).reply), "Got:\none\ntwo (two)");
    }

    #[test]
    fn sequences_advance_then_repeat_the_last_response() {
        let rules = rules("rules:\n  - responses: [{error: {status: 500}}, {text: ok}]\n", false);
        let kinds: Vec<bool> =
            (0..4).map(|_| matches!(ask(&rules, &user("x"), &[]).reply, Reply::Error(_))).collect();
        assert_eq!(kinds, [true, false, false, false]);
    }

    #[test]
    fn delays_resolve_response_then_defaults_then_options() {
        let yaml = "defaults: {first_token_ms: 50}\nrules:\n  - match: slow\n    responses: [{text: a, token_delay_ms: 9}]\n";
        let rules = rules(yaml, true);
        let p = ask(&rules, &user("slow please"), &[]);
        assert_eq!((p.first_token.as_millis(), p.token_delay.as_millis()), (50, 9));
        let p = ask(&rules, &user("other"), &[]);
        assert_eq!((p.first_token.as_millis(), p.token_delay.as_millis()), (50, 3));
        assert_eq!(p.source, Source::Default);
    }

    #[test]
    fn script_rules_come_before_builtin_rules_which_need_the_tools() {
        let yaml = "rules:\n  - match: list my tasks\n    responses: [{text: scripted}]\n";
        let tools = ["list_tasks", "add_task"];
        let with_script = rules(yaml, true);
        let p = ask(&with_script, &user("list my tasks"), &tools);
        assert_eq!((text(p.reply), p.source), ("scripted".to_owned(), Source::Script(0)));

        let builtin = rules("", true);
        let p = ask(&builtin, &user("Please add a task to buy milk."), &tools);
        assert!(matches!(p.source, Source::Builtin(_)));
        assert_eq!(calls(&p.reply), [("add_task".to_owned(), json!({"title": "buy milk"}))]);
        // Without the tool in the request, the default answer.
        let messages = user("Please add a task to buy milk.");
        let p = ask(&builtin, &messages, &["list_tasks"]);
        assert_eq!(text(p.reply), answer::default_answer(&messages));
        // Built-in rules can be turned off.
        let off = rules("", false);
        assert_eq!(ask(&off, &messages, &tools).source, Source::Default);
    }
}
