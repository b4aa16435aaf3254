//! What the model is sent: the agent's system prompt and the newest history that fits the
//! token budget (4 characters a token; the newest message is always kept).

use agentyard_llm::{ChatMessage, Role};
use agentyard_store::runs::HistoryMessage;

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
}
