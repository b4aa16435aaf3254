//! What the model is sent: the agent's system prompt and the newest history that fits the
//! token budget (4 characters a token; the newest message is always kept).

use agentyard_llm::{ChatMessage, Role};
use agentyard_store::runs::HistoryMessage;

/// The default agent's instructions until agent types are configurable per org.
pub(crate) const DEFAULT_SYSTEM_PROMPT: &str = "You are agentyard's customer support agent. \
Answer the user's question directly and concisely, in the user's language. When you do not \
know something, say so plainly instead of guessing.";

/// The model call's parameters from the agent's stored configuration (overrides).
#[derive(Debug, PartialEq)]
pub(crate) struct AgentParams {
    pub(crate) system_prompt: String,
    pub(crate) temperature: Option<f32>,
    pub(crate) max_tokens: Option<u32>,
}

impl AgentParams {
    pub(crate) fn from_config(config: &serde_json::Value) -> Self {
        Self {
            system_prompt: config["system_prompt"]
                .as_str()
                .unwrap_or(DEFAULT_SYSTEM_PROMPT)
                .to_owned(),
            temperature: config["temperature"].as_f64().map(|t| t as f32),
            max_tokens: config["max_tokens"].as_u64().and_then(|t| u32::try_from(t).ok()),
        }
    }
}

fn tokens(text: &str) -> usize {
    text.len().div_ceil(4) + 4
}

/// The system prompt plus the newest messages within `budget` tokens, oldest first.
pub(crate) fn build(system: &str, history: &[HistoryMessage], budget: usize) -> Vec<ChatMessage> {
    let mut left = budget.saturating_sub(tokens(system));
    let mut kept = Vec::new();
    for m in history.iter().rev() {
        let cost = tokens(&m.content);
        if cost > left && !kept.is_empty() {
            break;
        }
        left = left.saturating_sub(cost);
        if let Some(role) = Role::parse(&m.role) {
            kept.push(ChatMessage::new(role, m.content.clone()));
        }
    }
    kept.push(ChatMessage::new(Role::System, system));
    kept.reverse();
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(role: &str, content: &str) -> HistoryMessage {
        HistoryMessage { role: role.into(), content: content.into() }
    }

    #[test]
    fn history_is_cut_from_the_oldest_end_to_fit_the_budget() {
        let history =
            vec![msg("user", &"a".repeat(400)), msg("assistant", "ok"), msg("user", "hi")];
        let all = build("sys", &history, 10_000);
        assert_eq!(all.len(), 4);
        assert_eq!(all[0].role, Role::System);
        let cut = build("sys", &history, 30);
        assert_eq!(cut.iter().map(|m| m.content.as_str()).collect::<Vec<_>>(), ["sys", "ok", "hi"]);
    }

    #[test]
    fn the_newest_message_is_kept_even_when_it_alone_exceeds_the_budget() {
        let history = vec![msg("user", &"a".repeat(4000))];
        assert_eq!(build("sys", &history, 10).len(), 2);
    }

    #[test]
    fn overrides_replace_defaults() {
        let p = AgentParams::from_config(&serde_json::json!({"temperature": 0.5}));
        assert_eq!(p.system_prompt, DEFAULT_SYSTEM_PROMPT);
        assert_eq!(p.temperature, Some(0.5));
        assert_eq!(p.max_tokens, None);
    }
}
