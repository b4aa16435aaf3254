//! Agent types and their defaults (`config/agents.yaml`, compiled in), and the parameters of a
//! model call: the type's defaults with the agent's stored overrides on top.

use std::collections::BTreeMap;

use serde::Deserialize;

/// `config/agents.yaml`.
const DEFAULTS: &str = include_str!("../../../config/agents.yaml");

/// One agent type's defaults.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AgentType {
    #[allow(dead_code)] // shown by the agent API (a later issue)
    pub(crate) name: String,
    #[allow(dead_code)]
    pub(crate) description: String,
    pub(crate) system_prompt: String,
    pub(crate) temperature: Option<f32>,
    pub(crate) max_tokens: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    agent_types: BTreeMap<String, AgentType>,
}

/// Every agent type, by name.
#[derive(Clone, Debug)]
pub(crate) struct AgentTypes(BTreeMap<String, AgentType>);

/// The model call's parameters.
#[derive(Debug, PartialEq)]
pub(crate) struct AgentParams {
    pub(crate) system_prompt: String,
    pub(crate) temperature: Option<f32>,
    pub(crate) max_tokens: Option<u32>,
}

impl AgentTypes {
    /// The compiled-in defaults.
    ///
    /// # Errors
    /// When the file does not parse (the message names the line and the field).
    pub(crate) fn load() -> Result<Self, String> {
        Self::parse(DEFAULTS)
    }

    fn parse(yaml: &str) -> Result<Self, String> {
        let file: File =
            serde_saphyr::from_str(yaml).map_err(|e| format!("config/agents.yaml: {e}"))?;
        if !file.agent_types.contains_key(agentyard_store::orgs::DEFAULT_AGENT_TYPE) {
            return Err(format!(
                "config/agents.yaml: agent_types has no `{}` (the default agent's type)",
                agentyard_store::orgs::DEFAULT_AGENT_TYPE
            ));
        }
        Ok(Self(file.agent_types))
    }

    /// Defaults of `agent_type` (the default type's for an unknown one) with `overrides` on top.
    pub(crate) fn params(&self, agent_type: &str, overrides: &serde_json::Value) -> AgentParams {
        let base = self
            .0
            .get(agent_type)
            .or_else(|| self.0.get(agentyard_store::orgs::DEFAULT_AGENT_TYPE))
            .expect("the default type is checked at load");
        AgentParams {
            system_prompt: overrides["system_prompt"]
                .as_str()
                .map_or_else(|| base.system_prompt.clone(), str::to_owned),
            temperature: overrides["temperature"].as_f64().map(|t| t as f32).or(base.temperature),
            max_tokens: overrides["max_tokens"]
                .as_u64()
                .and_then(|t| u32::try_from(t).ok())
                .or(base.max_tokens),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_defaults_parse_and_overrides_win() {
        let types = AgentTypes::load().unwrap();
        let base = types.params("customer_support", &serde_json::json!({}));
        assert!(base.system_prompt.contains("customer support agent"));
        assert_eq!(base.temperature, Some(0.3));
        let custom = types.params("customer_support", &serde_json::json!({"temperature": 0.9}));
        assert_eq!(custom.temperature, Some(0.9));
        assert_eq!(custom.system_prompt, base.system_prompt);
    }

    #[test]
    fn a_broken_file_names_the_line_and_the_field() {
        let err = AgentTypes::parse(
            "agent_types:\n  customer_support:\n    name: x\n    tempreature: 2\n",
        )
        .unwrap_err();
        assert!(err.contains("tempreature"), "{err}");
        assert!(err.contains('4') || err.contains("line"), "{err}");
    }
}
