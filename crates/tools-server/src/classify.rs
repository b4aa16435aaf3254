//! A ticket's category, priority and title from its free text, by keyword rules: simple,
//! predictable, and explained (the result names the words that decided).

use agentyard_store::domain::{Category, Priority};

/// Words (or phrases) that point to a category; the category with the most matches wins,
/// the earlier on a tie; none: `general`.
const CATEGORY_WORDS: &[(Category, &[&str])] = &[
    (
        Category::Billing,
        &[
            "invoice",
            "invoices",
            "bill",
            "billed",
            "billing",
            "charge",
            "charged",
            "refund",
            "payment",
            "paid",
            "price",
            "pricing",
            "subscription",
            "receipt",
            "credit card",
        ],
    ),
    (
        Category::Technical,
        &[
            "error",
            "errors",
            "bug",
            "crash",
            "crashes",
            "down",
            "outage",
            "500",
            "api",
            "broken",
            "fails",
            "failing",
            "failed",
            "timeout",
            "slow",
            "exception",
            "not working",
        ],
    ),
    (
        Category::Account,
        &[
            "login",
            "log in",
            "password",
            "account",
            "sign in",
            "2fa",
            "locked",
            "username",
            "permissions",
            "admin",
            "access",
        ],
    ),
];

/// Any of these makes a ticket `high`.
const HIGH: &[&str] = &[
    "urgent",
    "critical",
    "down",
    "outage",
    "asap",
    "immediately",
    "emergency",
    "security",
    "data loss",
    "production",
];

/// Otherwise any of these makes it `low`; with none of either it is `medium`.
const LOW: &[&str] = &[
    "question",
    "how do i",
    "how to",
    "wondering",
    "minor",
    "suggestion",
    "feature request",
    "when you have time",
    "no rush",
];

/// Longest derived title, in characters.
const TITLE_CHARS: usize = 80;

/// What the rules decided, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Classification {
    pub(crate) title: String,
    pub(crate) category: Category,
    pub(crate) priority: Priority,
    /// One sentence naming the words that decided.
    pub(crate) reason: String,
}

/// Lowercase words separated by single spaces, with a space at each end, so that a phrase
/// matches whole words only: `" down "` is in `" is down "`, not in `" download "`.
fn normalize(text: &str) -> String {
    let words: Vec<String> = text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect();
    format!(" {} ", words.join(" "))
}

fn matches<'a>(text: &str, words: &[&'a str]) -> Vec<&'a str> {
    words.iter().copied().filter(|w| text.contains(&format!(" {w} "))).collect()
}

/// The first sentence (or line) of `text`, cut to 80 characters at a word boundary.
fn title(text: &str) -> String {
    let text = text.trim();
    let end = text.find(['\n', '.', '!', '?']).unwrap_or(text.len());
    let first = text[..end].trim();
    let first = if first.is_empty() { text } else { first };
    if first.chars().count() <= TITLE_CHARS {
        return first.to_owned();
    }
    let cut: String = first.chars().take(TITLE_CHARS).collect();
    let cut = cut.rsplit_once(' ').map_or(cut.as_str(), |(head, _)| head);
    format!("{}…", cut.trim_end())
}

/// Classifies a ticket's text.
pub(crate) fn classify(text: &str) -> Classification {
    let norm = normalize(text);
    let mut best: Option<(Category, Vec<&str>)> = None;
    for (category, words) in CATEGORY_WORDS {
        let found = matches(&norm, words);
        if !found.is_empty() && best.as_ref().is_none_or(|(_, b)| found.len() > b.len()) {
            best = Some((*category, found));
        }
    }
    let (category, category_why) = match best {
        Some((c, words)) => (c, format!("{c} (it mentions {})", words.join(", "))),
        None => (Category::General, "general (no billing, technical or account words)".into()),
    };
    let (high, low) = (matches(&norm, HIGH), matches(&norm, LOW));
    let (priority, priority_why) = if !high.is_empty() {
        (Priority::High, format!("high (it says {})", high.join(", ")))
    } else if !low.is_empty() {
        (Priority::Low, format!("low (it says {})", low.join(", ")))
    } else {
        (Priority::Medium, "medium (no urgency words)".into())
    };
    Classification {
        title: title(text),
        category,
        priority,
        reason: format!("Category {category_why}; priority {priority_why}."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urgency_words_make_a_ticket_high() {
        let c = classify("URGENT: the API is down, every request fails with a 500");
        assert_eq!((c.category, c.priority), (Category::Technical, Priority::High));
        assert!(c.reason.contains("urgent") && c.reason.contains("api"), "{}", c.reason);
    }

    #[test]
    fn categories_follow_their_words() {
        assert_eq!(classify("I was charged twice on my invoice").category, Category::Billing);
        assert_eq!(classify("I cannot log in, my password is refused").category, Category::Account);
        let c = classify("Do you have a dark theme?");
        assert_eq!((c.category, c.priority), (Category::General, Priority::Medium));
        assert_eq!(classify("Just a question about pricing").priority, Priority::Low);
    }

    #[test]
    fn words_match_whole() {
        assert_eq!(classify("Please download the report").priority, Priority::Medium);
    }

    #[test]
    fn the_title_is_the_first_sentence_cut_at_a_word() {
        assert_eq!(title("Refund please. I was charged twice."), "Refund please");
        let long = "word ".repeat(40);
        let t = title(&long);
        assert!(t.ends_with('…') && t.chars().count() <= TITLE_CHARS + 1, "{t}");
    }
}
