//! The `inputs` JSON Schema of a definition: compiled once, every start checked against it.

use std::sync::Arc;

use serde_json::Value;

/// A compiled inputs schema.
#[derive(Clone)]
pub struct InputsSchema {
    schemas: Arc<boon::Schemas>,
    index: boon::SchemaIndex,
}

impl std::fmt::Debug for InputsSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InputsSchema")
    }
}

const LOCATION: &str = "urn:agentyard:workflow-inputs";

impl InputsSchema {
    /// Compiles `schema` (draft 2020-12 unless it says otherwise; `format` is asserted).
    ///
    /// # Errors
    /// What is wrong with the schema.
    pub fn compile(schema: &Value) -> Result<Self, String> {
        if !schema.is_object() {
            return Err("must be a JSON Schema object".to_owned());
        }
        let mut schemas = boon::Schemas::new();
        let mut compiler = boon::Compiler::new();
        compiler.enable_format_assertions();
        compiler
            .add_resource(LOCATION, schema.clone())
            .map_err(|e| format!("not a valid JSON Schema: {e}"))?;
        let index = compiler
            .compile(LOCATION, &mut schemas)
            .map_err(|e| format!("not a valid JSON Schema: {}", one_line(&format!("{e:#}"))))?;
        Ok(Self { schemas: Arc::new(schemas), index })
    }

    /// Checks `inputs`.
    ///
    /// # Errors
    /// Each violation as `inputs/<path>: <what>`, joined by `; `.
    pub fn check(&self, inputs: &Value) -> Result<(), String> {
        let Err(e) = self.schemas.validate(inputs, self.index) else {
            return Ok(());
        };
        let mut leaves = Vec::new();
        collect(&e, &mut leaves);
        Err(leaves.join("; "))
    }
}

fn collect(e: &boon::ValidationError<'_, '_>, out: &mut Vec<String>) {
    if e.causes.is_empty() {
        let at = e.instance_location.to_string();
        let at = if at.is_empty() { "inputs".to_owned() } else { format!("inputs{at}") };
        out.push(format!("{at}: {}", e.kind));
    } else {
        for c in &e.causes {
            collect(c, out);
        }
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn inputs_are_checked_and_each_violation_named() {
        let s = InputsSchema::compile(&json!({
            "type": "object",
            "required": ["email"],
            "properties": {"email": {"type": "string", "format": "email"}, "n": {"type": "integer"}},
            "additionalProperties": false
        }))
        .unwrap();
        s.check(&json!({"email": "a@b.example"})).unwrap();
        let e = s.check(&json!({"email": "nope", "n": "x"})).unwrap_err();
        assert!(e.contains("inputs/email:"), "{e}");
        assert!(e.contains("inputs/n:"), "{e}");
        assert!(s.check(&json!({})).unwrap_err().contains("email"));
        assert!(InputsSchema::compile(&json!({"type": 3})).is_err());
        assert!(InputsSchema::compile(&json!("x")).is_err());
    }
}
