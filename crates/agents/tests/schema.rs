//! `schemas/agents.v1.json` describes `config/agents.yaml`: it is generated from the Rust type
//! and this test fails when they drift. `UPDATE_SCHEMAS=1` rewrites it.

use std::path::PathBuf;

#[test]
fn the_agents_file_schema_matches_the_rust_type() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../schemas/agents.v1.json");
    let schema = schemars::schema_for!(agentyard_agents::AgentsFile);
    let generated = serde_json::to_string_pretty(&schema).unwrap() + "\n";
    if std::env::var_os("UPDATE_SCHEMAS").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let stored = std::fs::read_to_string(&path).unwrap_or_default();
    assert_eq!(stored, generated, "agents.v1.json is out of date: run with UPDATE_SCHEMAS=1");
}
