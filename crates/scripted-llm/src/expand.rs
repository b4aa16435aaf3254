//! Expanding `$` references in scripted text and tool-call argument strings.
//!
//! The syntax follows the `regex` crate's replacement strings, with two reserved names:
//! - `$tool_results`: the contents of the tool results that end the conversation, joined
//!   with newlines (empty when the turn does not end with tool results);
//! - `$tool_result_1`, `$tool_result_2`, ...: one of those results, counted from 1 (empty
//!   when there is no such result);
//! - `$name` or `$1`: a named or numbered capture group of the rule's `match` (empty when
//!   the group did not take part in the match, or the rule has no `match`);
//! - `${name}` delimits a name (`${title}s`); `$$` is a literal `$`, and so is a `$` that no
//!   name follows.
//!
//! A name is the longest run of ASCII letters, digits and `_` after the `$`.

use std::borrow::Cow;

use regex::Captures;
use serde_json::Value;

/// What references expand to.
#[derive(Debug)]
pub(crate) struct Context<'c, 't> {
    /// The captures of the rule's `match`, when it has one and it matched.
    pub(crate) captures: Option<&'c Captures<'t>>,
    /// The trailing tool results, oldest first.
    pub(crate) tool_results: &'c [Cow<'t, str>],
}

impl Context<'_, '_> {
    fn push_value(&self, name: &str, out: &mut String) {
        if name == "tool_results" {
            for (i, result) in self.tool_results.iter().enumerate() {
                if i > 0 {
                    out.push('\n');
                }
                out.push_str(result);
            }
        } else if let Some(n) = name.strip_prefix("tool_result_") {
            let index = n.parse::<usize>().ok().and_then(|n| n.checked_sub(1));
            if let Some(result) = index.and_then(|i| self.tool_results.get(i)) {
                out.push_str(result);
            }
        } else if let Some(caps) = self.captures {
            let group = match name.parse::<usize>() {
                Ok(index) => caps.get(index),
                Err(_) => caps.name(name),
            };
            if let Some(group) = group {
                out.push_str(group.as_str());
            }
        }
    }
}

/// `template` with its references replaced.
pub(crate) fn expand(template: &str, context: &Context<'_, '_>) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        rest = &rest[at + 1..];
        if let Some(after) = rest.strip_prefix('$') {
            out.push('$');
            rest = after;
            continue;
        }
        let (name, after) = match rest.strip_prefix('{') {
            Some(braced) => match braced.find('}') {
                Some(end) => (&braced[..end], &braced[end + 1..]),
                None => ("", rest),
            },
            None => {
                let end = rest
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(rest.len());
                rest.split_at(end)
            }
        };
        if name.is_empty() {
            out.push('$');
            continue;
        }
        context.push_value(name, &mut out);
        rest = after;
    }
    out.push_str(rest);
    out
}

/// `value` with the references in its strings (at any depth) replaced; keys are kept.
pub(crate) fn expand_value(value: &Value, context: &Context<'_, '_>) -> Value {
    match value {
        Value::String(s) if s.contains('$') => Value::String(expand(s, context)),
        Value::Array(items) => {
            Value::Array(items.iter().map(|v| expand_value(v, context)).collect())
        }
        Value::Object(map) => {
            Value::Object(map.iter().map(|(k, v)| (k.clone(), expand_value(v, context))).collect())
        }
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use regex::Regex;

    use super::*;

    fn with<R>(tool_results: &[&str], f: impl FnOnce(&Context<'_, '_>) -> R) -> R {
        let re = Regex::new("add (?P<title>[a-z]+)(?: (?P<extra>x))?").unwrap();
        let caps = re.captures("add milk").unwrap();
        let results: Vec<Cow<'_, str>> = tool_results.iter().map(|r| Cow::Borrowed(*r)).collect();
        f(&Context { captures: Some(&caps), tool_results: &results })
    }

    #[test]
    fn captures_and_tool_results_expand() {
        with(&["a", "b"], |cx| {
            assert_eq!(
                expand("$title|${title}s|$1|$0|$extra|$nope|$9", cx),
                "milk|milks|milk|add milk|||"
            );
            assert_eq!(expand("R:\n$tool_results.", cx), "R:\na\nb.");
            assert_eq!(
                expand("$tool_result_2,${tool_result_1},$tool_result_3,$tool_result_0", cx),
                "b,a,,"
            );
        });
        with(&[], |cx| assert_eq!(expand("[$tool_results]", cx), "[]"));
    }

    #[test]
    fn dollars_without_names_stay_literal() {
        with(&["a"], |cx| {
            assert_eq!(
                expand("$$5 costs $ 5, ${unclosed and $", cx),
                "$5 costs $ 5, ${unclosed and $"
            );
            assert_eq!(expand("$${title} ${}", cx), "${title} ${}");
        });
    }

    #[test]
    fn without_captures_only_tool_results_expand() {
        let results = [Cow::Borrowed("r")];
        let cx = Context { captures: None, tool_results: &results };
        assert_eq!(expand("$1$title$tool_results", &cx), "r");
        let value = serde_json::json!({"k": ["$tool_result_1", 1, {"$x": "$$"}]});
        assert_eq!(expand_value(&value, &cx), serde_json::json!({"k": ["r", 1, {"$x": "$"}]}));
    }
}
