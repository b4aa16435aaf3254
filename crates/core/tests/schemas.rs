//! The JSON Schemas in `schemas/` describe the bus messages exactly: each is generated from
//! the Rust type, and this test fails when they drift. `UPDATE_SCHEMAS=1 cargo test -p
//! agentyard-core --test schemas` rewrites them.

use std::path::PathBuf;

use agentyard_core::events::{Event, EventKind};
use agentyard_core::jobs::{AgentStep, Job};
use agentyard_core::outbox::Fact;
use agentyard_core::run::Priority;

fn check(file: &str, schema: &schemars::Schema) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../schemas").join(file);
    let generated = serde_json::to_string_pretty(schema).unwrap() + "\n";
    if std::env::var_os("UPDATE_SCHEMAS").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let stored = std::fs::read_to_string(&path).unwrap_or_default();
    assert_eq!(stored, generated, "{file} is out of date: run with UPDATE_SCHEMAS=1");
}

#[test]
fn the_job_schema_matches_the_rust_types() {
    check("jobs.v1.json", &schemars::schema_for!(Job));
}

#[test]
fn the_event_schema_matches_the_rust_types_and_names_every_kind() {
    let schema = schemars::schema_for!(Event);
    check("events.v1.json", &schema);
    let text = serde_json::to_string(&schema).unwrap();
    for kind in EventKind::ALL {
        assert!(text.contains(&format!("\"{}\"", kind.as_str())), "{kind} missing from the schema");
    }
}

#[test]
fn the_outbox_fact_schema_matches_the_rust_types() {
    check("outbox.v1.json", &schemars::schema_for!(Fact));
}

#[test]
fn a_job_round_trips_through_its_wire_form() {
    let job = AgentStep::new(agentyard_core::RunId::new(), 0, Priority::Low);
    let wire = serde_json::to_string(&job).unwrap();
    assert_eq!(serde_json::from_str::<AgentStep>(&wire).unwrap(), job);
    assert!(serde_json::from_str::<AgentStep>(r#"{"v":1,"run_id":"x","step":0}"#).is_err());
    assert!(
        serde_json::from_str::<AgentStep>(&wire.replace("\"v\":1", "\"v\":1,\"extra\":0")).is_err()
    );
}
