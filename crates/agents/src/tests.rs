use serde_json::json;

use super::*;

const SMALL: &str = "
models:
  primary:
    description: d
    price: { input_per_1m_tokens: 2.0, output_per_1m_tokens: 8.0 }
  fast:
    description: d
    model: tiny
    price: { input_per_1m_tokens: 0.1, output_per_1m_tokens: 0.4 }
agent_types:
  customer_support:
    name: Customer support
    description: Helps.
    model: primary
    temperature: 0.3
    max_tokens: 1024
    timeout_seconds: 60
    max_steps: 8
    response_style: concise
    capabilities: [customer_support]
    tools_enabled: [list_tickets, delete_ticket]
    tools_require_approval: [delete_ticket]
    system_prompt: You help.
";

fn small() -> Catalog {
    Catalog::parse("t.yaml", SMALL).unwrap()
}

#[test]
fn the_shipped_file_parses_with_its_eight_types() {
    let c = Catalog::load(None).unwrap();
    let names: Vec<&str> = c.agent_types().keys().map(String::as_str).collect();
    for t in [
        "customer_support",
        "task_assistant",
        "data_analyst",
        "automation_specialist",
        "content_creator",
        "customer_success",
        "financial_advisor",
        "operations_manager",
    ] {
        assert!(names.contains(&t), "{t} missing from {names:?}");
    }
    assert_eq!(c.agent_type("customer_support").unwrap().tools_enabled.len(), 13);
    assert_eq!(c.agent_type("task_assistant").unwrap().tools_enabled.len(), 5);
}

#[test]
fn a_broken_file_names_the_line_and_the_field() {
    let broken = SMALL.replace("    temperature: 0.3", "    tempreature: 0.3");
    let err = Catalog::parse("t.yaml", &broken).unwrap_err();
    assert!(err.contains("tempreature") && err.contains("t.yaml"), "{err}");
    assert!(err.contains("line") || err.contains("14"), "{err}");
    let bad_rule = SMALL.replace("temperature: 0.3", "temperature: 7");
    let err = Catalog::parse("t.yaml", &bad_rule).unwrap_err();
    assert!(err.contains("agent_types.customer_support.temperature"), "{err}");
}

#[test]
fn overrides_are_a_merge_patch_on_the_defaults() {
    let c = small();
    let o = c.apply_patch("customer_support", &json!({}), &json!({"temperature": 0.9})).unwrap();
    assert_eq!(o, json!({"temperature": 0.9}));
    let o = c.apply_patch("customer_support", &o, &json!({"max_steps": 3})).unwrap();
    assert_eq!(o, json!({"temperature": 0.9, "max_steps": 3}));
    let o = c.apply_patch("customer_support", &o, &json!({"temperature": null})).unwrap();
    assert_eq!(o, json!({"max_steps": 3}));
    let e = c.effective("customer_support", "Mine", &o);
    assert_eq!((e.max_steps, e.temperature, e.name.as_str()), (3, 0.3, "Mine"));
    let src = c.config_source("customer_support", "Customer support", &o);
    let custom: Vec<&str> =
        src.iter().filter(|(_, s)| **s == Source::Custom).map(|(f, _)| *f).collect();
    assert_eq!(custom, ["max_steps"]);
}

#[test]
fn bad_overrides_name_every_bad_field_and_change_nothing() {
    let c = small();
    let errs = c
        .apply_patch(
            "customer_support",
            &json!({}),
            &json!({"temperature": 3, "max_tokens": 0, "tools_enabled": ["frobnicate"], "model": "huge"}),
        )
        .unwrap_err();
    let fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
    for f in ["temperature", "max_tokens", "tools_enabled", "model"] {
        assert!(fields.contains(&format!("configuration.{f}").as_str()), "{f}: {errs:?}");
    }
    assert!(errs.iter().any(|e| e.message.contains("frobnicate")), "{errs:?}");
    let errs =
        c.apply_patch("customer_support", &json!({}), &json!({"temprature": 1})).unwrap_err();
    assert_eq!(errs[0].field, "configuration.temprature");
    let errs =
        c.apply_patch("customer_support", &json!({}), &json!({"temperature": "hot"})).unwrap_err();
    assert_eq!(errs[0].field, "configuration.temperature");
    assert!(errs[0].message.contains("number"), "{errs:?}");
    assert!(c.apply_patch("customer_support", &json!({}), &json!([1])).is_err());
}

#[test]
fn effective_ignores_stored_overrides_that_no_longer_fit() {
    let c = small();
    let e = c.effective("customer_support", "x", &json!({"temperature": 9, "max_steps": 2}));
    assert_eq!((e.temperature, e.max_steps), (0.3, 2));
    let unknown_type = c.effective("gone", "x", &json!({}));
    assert_eq!(unknown_type.system_prompt, "You help.");
}

#[test]
fn cost_uses_the_alias_price() {
    let c = small();
    assert!((c.cost("fast", 1_000_000, 1_000_000) - 0.5).abs() < 1e-9);
    assert_eq!(c.cost("nope", 10, 10), 0.0);
    assert_eq!(c.models()["fast"].model.as_deref(), Some("tiny"));
}

#[test]
fn merge_patch_follows_rfc_7396() {
    let mut t = json!({"a": "b", "c": {"d": "e", "f": "g"}});
    merge_patch(&mut t, &json!({"a": "z", "c": {"f": null}}));
    assert_eq!(t, json!({"a": "z", "c": {"d": "e"}}));
    let mut t = json!({"a": [1, 2]});
    merge_patch(&mut t, &json!({"a": [3]}));
    assert_eq!(t, json!({"a": [3]}));
}

#[test]
fn tools_of_other_servers_are_namespaced_by_server() {
    let c = small();
    let ok = c.apply_patch(
        "customer_support",
        &json!({}),
        &json!({"tools_enabled": ["list_tickets", "everything__echo", "docs-1__*"],
                "tools_require_approval": []}),
    );
    assert!(ok.is_ok(), "{ok:?}");
    for bad in ["Everything__echo", "x__", "__echo", "echo"] {
        assert!(
            c.apply_patch(
                "customer_support",
                &json!({}),
                &json!({"tools_enabled": [bad], "tools_require_approval": []})
            )
            .is_err(),
            "{bad}"
        );
    }
}

#[test]
fn overrides_that_only_fit_together_apply_together() {
    let c = small();
    // Alone, the new tools_enabled would break the default tools_require_approval.
    let o = c
        .apply_patch(
            "customer_support",
            &json!({}),
            &json!({"tools_enabled": ["list_tickets", "x__*"], "tools_require_approval": []}),
        )
        .unwrap();
    let e = c.effective("customer_support", "n", &o);
    assert_eq!(e.tools_enabled, ["list_tickets", "x__*"]);
    assert!(e.tools_require_approval.is_empty());
}
