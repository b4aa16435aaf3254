//! `schemas/workflow.v1.json` describes a workflow definition: it is generated from the Rust
//! type and this test fails when they drift. `UPDATE_SCHEMAS=1` rewrites it.

use std::path::PathBuf;

#[test]
fn the_workflow_schema_matches_the_rust_type() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../schemas/workflow.v1.json");
    let schema = schemars::schema_for!(agentyard_workflows::Definition);
    let generated = serde_json::to_string_pretty(&schema).unwrap() + "\n";
    if std::env::var_os("UPDATE_SCHEMAS").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let stored = std::fs::read_to_string(&path).unwrap_or_default();
    assert_eq!(stored, generated, "workflow.v1.json is out of date: run with UPDATE_SCHEMAS=1");
}
