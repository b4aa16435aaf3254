//! Reading a conversation: message text, the default answer, tokens and usage counts.
//!
//! Everything here is pure and deterministic, so tests in other crates can predict what the
//! scripted model will say (`default_answer`) and how it will be streamed (`tokenize`).

use std::borrow::Cow;

use serde_json::Value;

/// The role of a message, or `None` when the message has no string `role`.
pub(crate) fn role(message: &Value) -> Option<&str> {
    message.get("role").and_then(Value::as_str)
}

/// The text of a message's `content`.
///
/// A string is returned as is; an array of content parts yields the concatenated `text` of its
/// parts; anything else (null, missing) is empty.
pub(crate) fn content_text(message: &Value) -> Cow<'_, str> {
    match message.get("content") {
        Some(Value::String(s)) => Cow::Borrowed(s.as_str()),
        Some(Value::Array(parts)) => {
            let mut texts = parts.iter().filter_map(|p| p.get("text").and_then(Value::as_str));
            match (texts.next(), texts.next()) {
                (None, _) => Cow::Borrowed(""),
                (Some(only), None) => Cow::Borrowed(only),
                (Some(first), Some(second)) => {
                    let mut all = String::from(first);
                    all.push_str(second);
                    texts.for_each(|t| all.push_str(t));
                    Cow::Owned(all)
                }
            }
        }
        _ => Cow::Borrowed(""),
    }
}

/// The text of the last `user` message (empty when there is none).
pub(crate) fn last_user_text(messages: &[Value]) -> Cow<'_, str> {
    messages.iter().rev().find(|m| role(m) == Some("user")).map_or(Cow::Borrowed(""), content_text)
}

/// Whether the conversation ends with a tool result, i.e. the model is asked to use tool output.
pub(crate) fn ends_with_tool_result(messages: &[Value]) -> bool {
    messages.last().and_then(role) == Some("tool")
}

/// The contents of the tool results that end the conversation (after the last message that is
/// not a tool result), in order; empty when the conversation does not end with a tool result.
pub(crate) fn trailing_tool_results(messages: &[Value]) -> Vec<Cow<'_, str>> {
    let first_tool = messages.iter().rposition(|m| role(m) != Some("tool")).map_or(0, |i| i + 1);
    messages[first_tool..].iter().map(content_text).collect()
}

/// The answer the scripted model gives when no rule (of the script, or built in) answers.
///
/// When the last message is a tool result, the answer quotes the trailing tool results:
/// `Here is what the tools returned: <contents joined by "; ">`. Otherwise it echoes the last
/// user message and counts the user messages:
/// `You said "<text>" (message <n> of this conversation). I am the scripted model, and this
/// answer is derived from what you wrote.`
pub fn default_answer(messages: &[Value]) -> String {
    if ends_with_tool_result(messages) {
        let results = trailing_tool_results(messages);
        return format!("Here is what the tools returned: {}", results.join("; "));
    }
    let count = messages.iter().filter(|m| role(m) == Some("user")).count();
    format!(
        "You said \"{}\" (message {count} of this conversation). I am the scripted model, and \
         this answer is derived from what you wrote.",
        last_user_text(messages)
    )
}

/// Splits text into streamed tokens: each word keeps the whitespace that follows it, and leading
/// whitespace stays with the first word, so concatenating the tokens gives back `text` exactly.
pub fn tokenize(text: &str) -> Vec<&str> {
    let mut tokens = Vec::with_capacity(text.len() / 5 + 1);
    let mut start = 0;
    let mut prev_ws = false;
    let mut seen_word = false;
    for (i, c) in text.char_indices() {
        let ws = c.is_whitespace();
        if !ws {
            if prev_ws && seen_word {
                tokens.push(&text[start..i]);
                start = i;
            }
            seen_word = true;
        }
        prev_ws = ws;
    }
    if start < text.len() {
        tokens.push(&text[start..]);
    }
    tokens
}

/// The prompt token estimate: a quarter of the characters of all message contents, rounded up,
/// and at least 1.
pub(crate) fn prompt_tokens(messages: &[Value]) -> u32 {
    let chars: usize = messages.iter().map(|m| content_text(m).chars().count()).sum();
    u32::try_from(chars.div_ceil(4)).unwrap_or(u32::MAX).max(1)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn tokens_concatenate_to_the_original_text() {
        for text in ["one two  three", "  lead", "trail  ", "", "single", "a\nb\tc d"] {
            assert_eq!(tokenize(text).concat(), text);
        }
        assert_eq!(tokenize("one two  three"), ["one ", "two  ", "three"]);
        assert_eq!(tokenize("  lead on"), ["  lead ", "on"]);
        assert!(tokenize("").is_empty());
    }

    #[test]
    fn default_answer_echoes_the_last_user_message_and_counts_them() {
        let messages = [
            json!({"role": "system", "content": "be nice"}),
            json!({"role": "user", "content": "hi"}),
            json!({"role": "assistant", "content": "hello"}),
            json!({"role": "user", "content": [{"type": "text", "text": "what "}, {"type": "text", "text": "now?"}]}),
        ];
        assert_eq!(
            default_answer(&messages),
            "You said \"what now?\" (message 2 of this conversation). I am the scripted model, \
             and this answer is derived from what you wrote."
        );
    }

    #[test]
    fn default_answer_after_tool_results_quotes_them() {
        let messages = [
            json!({"role": "user", "content": "add"}),
            json!({"role": "assistant", "content": null, "tool_calls": []}),
            json!({"role": "tool", "tool_call_id": "call_1", "content": "added"}),
            json!({"role": "tool", "tool_call_id": "call_2", "content": "3 tasks"}),
        ];
        assert_eq!(default_answer(&messages), "Here is what the tools returned: added; 3 tasks");
    }

    #[test]
    fn prompt_tokens_round_up_and_are_at_least_one() {
        assert_eq!(prompt_tokens(&[]), 1);
        assert_eq!(prompt_tokens(&[json!({"role": "user", "content": "12345"})]), 2);
    }
}
