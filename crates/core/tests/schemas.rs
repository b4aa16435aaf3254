//! The JSON Schemas in `schemas/` describe the bus messages exactly: each is generated from
//! the Rust type, and this test fails when they drift. `UPDATE_SCHEMAS=1 cargo test -p
//! agentyard-core --test schemas` rewrites them.

use std::path::PathBuf;

use agentyard_core::events::RunEvent;
use agentyard_core::jobs::AgentStep;

fn check(file: &str, schema: schemars::Schema) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../schemas").join(file);
    let generated = serde_json::to_string_pretty(&schema).unwrap() + "\n";
    if std::env::var_os("UPDATE_SCHEMAS").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let stored = std::fs::read_to_string(&path).unwrap_or_default();
    assert_eq!(stored, generated, "{file} is out of date: run with UPDATE_SCHEMAS=1");
}

#[test]
fn the_agent_step_schema_matches_the_rust_type() {
    check("jobs.agent.v1.json", schemars::schema_for!(AgentStep));
}

#[test]
fn the_run_event_schema_matches_the_rust_type() {
    check("events.run.v1.json", schemars::schema_for!(RunEvent));
}

#[test]
fn a_job_round_trips_through_its_wire_form() {
    let job = AgentStep::new(agentyard_core::RunId::new(), 0);
    let wire = serde_json::to_string(&job).unwrap();
    assert_eq!(serde_json::from_str::<AgentStep>(&wire).unwrap(), job);
    assert!(serde_json::from_str::<AgentStep>(r#"{"v":1,"run_id":"x","step":0}"#).is_err());
}
