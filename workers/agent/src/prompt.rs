//! What the model is sent: the agent's system prompt and the newest history that fits the
//! token budget (4 characters a token; the newest message is always kept). A cut never leaves
//! a tool result without the assistant message that called it.

use agentyard_llm::{ChatMessage, Role, ToolCall};
use agentyard_store::runs::HistoryMessage;

fn tokens(text: &str) -> usize {
    text.len().div_ceil(4) + 4
}

/// The tokens of history to send: `AY_HISTORY_TOKENS`, and, when the model alias says how
/// large its context is, what of it the answer (`max_tokens`) leaves, less a tenth for the
/// estimate's error (4 characters a token is only an estimate).
pub(crate) fn budget(
    history_tokens: usize,
    model: Option<&agentyard_agents::ModelAlias>,
    max_tokens: u32,
) -> usize {
    match model.and_then(|m| m.context_tokens) {
        Some(context) => {
            let room = usize::try_from(context.saturating_sub(max_tokens)).unwrap_or(usize::MAX);
            history_tokens.min(room - room / 10)
        }
        None => history_tokens,
    }
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
            let mut msg = ChatMessage::new(role, m.content.clone());
            msg.tool_call_id.clone_from(&m.tool_call_id);
            msg.tool_calls = m
                .tool_calls
                .iter()
                .map(|c| ToolCall {
                    id: c.id.clone(),
                    name: c.name.clone(),
                    arguments: c.arguments.clone(),
                })
                .collect();
            kept.push(msg);
        }
    }
    // Oldest first from here: drop tool results whose call was cut off.
    while kept.len() > 1 && kept.last().is_some_and(|m| m.role == Role::Tool) {
        kept.pop();
    }
    kept.push(ChatMessage::new(Role::System, system));
    kept.reverse();
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(role: &str, content: &str) -> HistoryMessage {
        HistoryMessage {
            role: role.into(),
            content: content.into(),
            tool_calls: Vec::new(),
            tool_call_id: None,
        }
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
    fn a_model_alias_with_a_small_context_trims_the_budget() {
        let alias = |context_tokens| agentyard_agents::ModelAlias {
            description: String::new(),
            model: None,
            context_tokens,
            price: agentyard_agents::Price { input_per_1m_tokens: 0.0, output_per_1m_tokens: 0.0 },
        };
        assert_eq!(budget(8000, None, 1000), 8000);
        assert_eq!(budget(8000, Some(&alias(None)), 1000), 8000);
        assert_eq!(budget(8000, Some(&alias(Some(4096))), 1024), 2765);
        assert_eq!(budget(2000, Some(&alias(Some(100_000))), 1024), 2000);
    }

    #[test]
    fn the_newest_message_is_kept_even_when_it_alone_exceeds_the_budget() {
        let history = vec![msg("user", &"a".repeat(4000))];
        assert_eq!(build("sys", &history, 10).len(), 2);
    }
}
