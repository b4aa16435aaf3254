//! Parsing and validation tests for the script format.

use super::*;

fn error_of(yaml: &str) -> String {
    let err = Script::from_yaml_str(yaml).expect_err("script should be rejected");
    let mut text = err.to_string();
    let mut source = std::error::Error::source(&err);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[test]
fn the_example_script_parses() {
    let script = Script::from_yaml_str(include_str!("../../examples/script.yaml")).unwrap();
    assert_eq!(script.rule_count(), 9);
    assert_eq!(script.defaults().first_token_ms, Some(0));
    let triggers: Vec<Trigger> = script.rules().iter().map(|r| r.on).collect();
    assert_eq!(triggers.iter().filter(|t| **t == Trigger::Tool).count(), 1);
    let flaky = &script.rules()[0];
    assert!(matches!(&flaky.responses[0].kind, Kind::Error(e) if e.retry_after == Some(1)));
    assert!(!flaky.responses[2].usage);
    assert_eq!(script.rules()[3].responses[0].stall_after_tokens, Some(3));
    assert_eq!(script.rules()[4].responses[0].cut_after_tokens, Some(3));
    assert!(script.rules()[6].responses[0].expands);
}

#[test]
fn empty_documents_and_json_scripts_are_accepted() {
    assert_eq!(Script::from_yaml_str("").unwrap().rule_count(), 0);
    let json = "{\n\t\"rules\": [{\"match\": \"x\", \"responses\": [{\"text\": \"y\"}]}]\n}";
    assert_eq!(Script::from_yaml_str(json).unwrap().rule_count(), 1);
    let flow_yaml = "{rules: [{match: x, responses: [{text: y}]}]}";
    assert_eq!(Script::from_yaml_str(flow_yaml).unwrap().rule_count(), 1);
    let yaml_11_words = "rules:\n  - match: on\n    responses: [{text: yes}, {text: n}]\n";
    assert_eq!(Script::from_yaml_str(yaml_11_words).unwrap().rule_count(), 1);
    let bad_json = r#"{"rules": [], "extra": 1}"#;
    assert!(Script::from_yaml_str(bad_json).is_err());
}

#[test]
fn unknown_rule_keys_name_the_rule() {
    let msg =
        error_of("rules:\n  - responses: [{text: a}]\n  - mtach: x\n    responses: [{text: b}]\n");
    assert!(msg.starts_with("rule 1 is invalid"), "{msg}");
    assert!(msg.contains("mtach"), "{msg}");
}

#[test]
fn invalid_regexes_name_the_rule() {
    let msg = error_of("rules:\n  - match: \"(unclosed\"\n    responses: [{text: a}]\n");
    assert!(msg.starts_with("rule 0 has an invalid `match` pattern"), "{msg}");
}

#[test]
fn responses_must_be_exactly_one_kind() {
    let msg = error_of("rules:\n  - responses:\n      - {text: a, hang: true}\n");
    assert!(msg.starts_with("rule 0: response 0 must have exactly one"), "{msg}");
    let msg = error_of("rules:\n  - responses:\n      - {usage: false}\n");
    assert!(msg.starts_with("rule 0: response 0 must have exactly one"), "{msg}");
    let msg = error_of("rules:\n  - responses:\n      - {text: a}\n      - {txet: b}\n");
    assert!(msg.starts_with("rule 0 response 1 is invalid"), "{msg}");
}

#[test]
fn other_format_violations_are_reported() {
    assert!(error_of("rules:\n  - responses: []\n").contains("must not be empty"));
    let bad_status = "rules:\n  - responses: [{error: {status: 200}}]\n";
    assert!(error_of(bad_status).contains("outside 400..=599"));
    assert!(
        error_of("rules:\n  - on: assistant\n    responses: [{text: a}]\n")
            .starts_with("rule 0 is invalid")
    );
    assert!(error_of("rulez: []\n").starts_with("script is not a valid"));
}

#[test]
fn patterns_are_case_insensitive_and_respect_the_trigger() {
    let yaml = "rules:\n  - match: flaky\n    on: tool\n    responses: [{text: a}]\n";
    let script = Script::from_yaml_str(yaml).unwrap();
    let rule = &script.rules()[0];
    assert!(rule.applies("a FLAKY thing", true));
    assert!(!rule.applies("a FLAKY thing", false));
    assert!(!rule.applies("solid", true));
}
