//! Agent types and model aliases (`config/agents.yaml`), and the rules that turn an org's
//! stored overrides into an agent's effective configuration.
//!
//! An org's agent stores only its overrides, a JSON object applied to its type's defaults as a
//! JSON merge patch (RFC 7396). So `reset-config` clears the overrides, `config-source` says
//! field by field whether a value is the type's default or the org's own, and a change of the
//! defaults reaches every agent that did not override that field.
//!
//! The file is compiled in; `AY_CONFIG_DIR` points at a directory with an `agents.yaml` to use
//! instead. Either way it is checked when a process starts, and a broken file names its line
//! and field.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The compiled-in `config/agents.yaml`.
pub const DEFAULT_FILE: &str = include_str!("../../../config/agents.yaml");

/// Every organization's default agent is of this type.
pub const DEFAULT_AGENT_TYPE: &str = "customer_support";

/// Bounds of the numeric settings.
pub const TEMPERATURE: (f64, f64) = (0.0, 2.0);
pub const MAX_TOKENS: (u64, u64) = (1, 32_768);
pub const TIMEOUT_SECONDS: (u64, u64) = (1, 600);
pub const MAX_STEPS: (u64, u64) = (1, 50);
const MAX_PROMPT_CHARS: usize = 32_000;
const MAX_LIST: usize = 64;

/// How an agent words its answers.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum ResponseStyle {
    Concise,
    Detailed,
    Friendly,
    Formal,
    Technical,
}

/// An agent's configuration: an agent type's defaults, or an agent's effective configuration.
#[derive(
    Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema, utoipa::ToSchema,
)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// Display name (an agent's own name; the type's name is its default).
    pub name: String,
    /// What the agent is for.
    pub description: String,
    /// A key of `models`.
    pub model: String,
    /// Sampling temperature, 0 to 2.
    pub temperature: f32,
    /// Most tokens one answer may have, 1 to 32768.
    pub max_tokens: u32,
    /// Longest wait for one model call (and for each streamed chunk), 1 to 600 seconds.
    pub timeout_seconds: u32,
    /// Most model turns in one run, 1 to 50.
    pub max_steps: u32,
    pub response_style: ResponseStyle,
    /// What the agent can do; delegation picks an agent by one of these.
    pub capabilities: Vec<String>,
    /// Tools the model may call.
    pub tools_enabled: Vec<String>,
    /// Tools that run only after a human approves the call. When an agent does not set it,
    /// its type's list plus the built-in tools that need approval by default, of those enabled.
    pub tools_require_approval: Vec<String>,
    /// Whether the model must (`required`), may (`auto`, the default) or must not (`none`) call
    /// one of its tools.
    #[serde(default)]
    pub tool_choice: agentyard_core::tools::ToolChoice,
    /// The system prompt.
    pub system_prompt: String,
}

/// The fields of [`AgentConfig`], in order.
pub const CONFIG_FIELDS: &[&str] = &[
    "name",
    "description",
    "model",
    "temperature",
    "max_tokens",
    "timeout_seconds",
    "max_steps",
    "response_style",
    "capabilities",
    "tools_enabled",
    "tools_require_approval",
    "tool_choice",
    "system_prompt",
];

/// Estimated price of a model, in USD per million tokens.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Price {
    pub input_per_1m_tokens: f64,
    pub output_per_1m_tokens: f64,
}

/// A model alias agents name in `model`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ModelAlias {
    pub description: String,
    /// The model to ask for; absent: the provider's default (`AY_MODEL`).
    #[serde(default)]
    pub model: Option<String>,
    /// The model's context window in tokens, when known: the history sent is trimmed so that
    /// it and the answer fit (`AY_HISTORY_TOKENS` caps it either way).
    #[serde(default)]
    pub context_tokens: Option<u32>,
    pub price: Price,
}

/// `config/agents.yaml`.
#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentsFile {
    pub models: BTreeMap<String, ModelAlias>,
    pub agent_types: BTreeMap<String, AgentConfig>,
}

pub use agentyard_core::FieldError;

/// Where an effective value comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = ConfigSource)]
pub enum Source {
    Default,
    Custom,
}

/// The agent types and model aliases, checked.
#[derive(Clone, Debug)]
pub struct Catalog {
    file: AgentsFile,
    defaults: BTreeMap<String, Value>,
}

impl Catalog {
    /// `<dir>/agents.yaml` when `dir` is given and holds one, else the compiled-in file.
    ///
    /// # Errors
    /// When the file cannot be read, does not parse or breaks a rule; the message names the
    /// file, and the line and field when the parser knows them.
    pub fn load(dir: Option<&Path>) -> Result<Self, String> {
        match dir {
            None => Self::parse("config/agents.yaml", DEFAULT_FILE),
            Some(dir) if !dir.join("agents.yaml").exists() => {
                Self::parse("config/agents.yaml", DEFAULT_FILE)
            }
            Some(dir) => {
                let path = dir.join("agents.yaml");
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                Self::parse(&path.display().to_string(), &text)
            }
        }
    }

    /// Parses and checks a file's text; `name` is used in messages.
    ///
    /// # Errors
    /// As [`Catalog::load`].
    pub fn parse(name: &str, yaml: &str) -> Result<Self, String> {
        let file: AgentsFile = serde_saphyr::from_str(yaml).map_err(|e| format!("{name}: {e}"))?;
        let mut problems = Vec::new();
        if !file.agent_types.contains_key(DEFAULT_AGENT_TYPE) {
            problems.push(format!("agent_types has no `{DEFAULT_AGENT_TYPE}` (the default type)"));
        }
        if file.models.is_empty() {
            problems.push("models is empty".to_owned());
        }
        let mut owner: BTreeMap<&str, &str> = BTreeMap::new();
        for (ty, config) in &file.agent_types {
            for e in check_config(config, &file.models) {
                problems.push(format!("agent_types.{ty}.{e}"));
            }
            for cap in &config.capabilities {
                if let Some(other) = owner.insert(cap, ty) {
                    problems.push(format!(
                        "agent_types.{ty}.capabilities: `{cap}` is also a capability of {other}"
                    ));
                }
            }
        }
        if !problems.is_empty() {
            return Err(format!("{name}: {}", problems.join("; ")));
        }
        let defaults = file
            .agent_types
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::to_value(v).expect("a config serializes")))
            .collect();
        Ok(Self { file, defaults })
    }

    /// The agent type `name`.
    pub fn agent_type(&self, name: &str) -> Option<&AgentConfig> {
        self.file.agent_types.get(name)
    }

    /// Every agent type, by name.
    pub fn agent_types(&self) -> &BTreeMap<String, AgentConfig> {
        &self.file.agent_types
    }

    /// Every model alias, by name.
    pub fn models(&self) -> &BTreeMap<String, ModelAlias> {
        &self.file.models
    }

    /// The agent type whose default capabilities include `capability`.
    pub fn type_with_capability(&self, capability: &str) -> Option<&str> {
        self.file
            .agent_types
            .iter()
            .find(|(_, c)| c.capabilities.iter().any(|c| c == capability))
            .map(|(k, _)| k.as_str())
    }

    /// The effective configuration of an agent of `agent_type` named `name` with `overrides`.
    /// An unknown type falls back to the default type; overrides that no longer fit (stored
    /// before a rule changed) are ignored field by field rather than breaking the agent.
    pub fn effective(&self, agent_type: &str, name: &str, overrides: &Value) -> AgentConfig {
        let base = self
            .defaults
            .get(agent_type)
            .or_else(|| self.defaults.get(DEFAULT_AGENT_TYPE))
            .expect("the default type is checked at load");
        let mut merged = base.clone();
        merge_patch(&mut merged, overrides);
        settle_approvals(&mut merged, base, overrides);
        let fits = |v: &Value| {
            serde_json::from_value::<AgentConfig>(v.clone())
                .is_ok_and(|c| check_config(&c, &self.file.models).is_empty())
        };
        if !fits(&merged) {
            merged = base.clone();
        }
        if let Value::Object(o) = overrides
            && merged == *base
        {
            for (k, v) in o {
                let mut candidate = merged.clone();
                let one = Value::Object(Map::from_iter([(k.clone(), v.clone())]));
                merge_patch(&mut candidate, &one);
                settle_approvals(&mut candidate, base, &one);
                if let Ok(c) = serde_json::from_value::<AgentConfig>(candidate.clone())
                    && check_config(&c, &self.file.models).is_empty()
                {
                    merged = candidate;
                }
            }
        }
        let mut config: AgentConfig =
            serde_json::from_value(merged).expect("the defaults and checked overrides fit");
        name.clone_into(&mut config.name);
        config
    }

    /// Checks `patch`, a merge patch of the overrides of an agent of `agent_type` whose
    /// overrides are now `current`, and returns the new overrides. `name` is not a
    /// configuration field here (agents have their own name).
    ///
    /// # Errors
    /// Every bad field, named.
    pub fn apply_patch(
        &self,
        agent_type: &str,
        current: &Value,
        patch: &Value,
    ) -> Result<Value, Vec<FieldError>> {
        let Value::Object(p) = patch else {
            return Err(vec![FieldError {
                field: "configuration".into(),
                message: "must be a JSON object".into(),
            }]);
        };
        let mut errors = Vec::new();
        for key in p.keys() {
            if key == "name" {
                errors.push(FieldError {
                    field: "configuration.name".into(),
                    message: "set the agent's name with the top-level `name`".into(),
                });
            } else if !CONFIG_FIELDS.contains(&key.as_str()) {
                errors.push(FieldError {
                    field: format!("configuration.{key}"),
                    message: format!("unknown field; known: {}", CONFIG_FIELDS[1..].join(", ")),
                });
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let mut overrides =
            if current.is_object() { current.clone() } else { Value::Object(Map::new()) };
        merge_patch(&mut overrides, patch);
        let base = self
            .defaults
            .get(agent_type)
            .or_else(|| self.defaults.get(DEFAULT_AGENT_TYPE))
            .expect("the default type is checked at load");
        let mut merged = base.clone();
        merge_patch(&mut merged, &overrides);
        settle_approvals(&mut merged, base, &overrides);
        let config = match serde_json::from_value::<AgentConfig>(merged.clone()) {
            Ok(c) => c,
            Err(_) => {
                // Find the fields that do not fit their type, one by one.
                for (k, v) in p {
                    let mut one = base.clone();
                    merge_patch(&mut one, &Value::Object(Map::from_iter([(k.clone(), v.clone())])));
                    if let Err(e) = serde_json::from_value::<AgentConfig>(one) {
                        errors.push(FieldError {
                            field: format!("configuration.{k}"),
                            message: type_message(k, &e.to_string()),
                        });
                    }
                }
                return Err(errors);
            }
        };
        let errors: Vec<FieldError> = check_config(&config, &self.file.models)
            .into_iter()
            .map(|mut e| {
                e.field = format!("configuration.{}", e.field);
                e
            })
            .collect();
        if errors.is_empty() { Ok(overrides) } else { Err(errors) }
    }

    /// Field by field, whether the effective value is the type's default or the org's own.
    pub fn config_source(
        &self,
        agent_type: &str,
        name: &str,
        overrides: &Value,
    ) -> BTreeMap<&'static str, Source> {
        let effective = self.effective(agent_type, name, overrides);
        let type_name = self.agent_type(agent_type).map(|t| t.name.as_str());
        let custom = serde_json::to_value(&effective).expect("a config serializes");
        let base = self.defaults.get(agent_type);
        CONFIG_FIELDS
            .iter()
            .map(|&f| {
                let is_custom = if f == "name" {
                    type_name != Some(name)
                } else {
                    base.is_none_or(|b| b.get(f) != custom.get(f))
                        && overrides.get(f).is_some_and(|v| !v.is_null())
                };
                (f, if is_custom { Source::Custom } else { Source::Default })
            })
            .collect()
    }

    /// Estimated cost in USD of a call to model alias `model`.
    pub fn cost(&self, model: &str, prompt_tokens: u64, completion_tokens: u64) -> f64 {
        self.file.models.get(model).map_or(0.0, |m| {
            (prompt_tokens as f64 * m.price.input_per_1m_tokens
                + completion_tokens as f64 * m.price.output_per_1m_tokens)
                / 1_000_000.0
        })
    }
}

/// The rules a configuration must follow (beyond its types).
fn check_config(c: &AgentConfig, models: &BTreeMap<String, ModelAlias>) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let mut bad = |field: &str, message: String| {
        errors.push(FieldError { field: field.to_owned(), message });
    };
    if !models.contains_key(&c.model) {
        let known: Vec<&str> = models.keys().map(String::as_str).collect();
        bad("model", format!("unknown model alias `{}`; known: {}", c.model, known.join(", ")));
    }
    let t = f64::from(c.temperature);
    if !(TEMPERATURE.0..=TEMPERATURE.1).contains(&t) {
        bad("temperature", format!("{t} is not between {} and {}", TEMPERATURE.0, TEMPERATURE.1));
    }
    for (field, value, (lo, hi)) in [
        ("max_tokens", c.max_tokens, MAX_TOKENS),
        ("timeout_seconds", c.timeout_seconds, TIMEOUT_SECONDS),
        ("max_steps", c.max_steps, MAX_STEPS),
    ] {
        if !(lo..=hi).contains(&u64::from(value)) {
            bad(field, format!("{value} is not between {lo} and {hi}"));
        }
    }
    if c.system_prompt.trim().is_empty() || c.system_prompt.chars().count() > MAX_PROMPT_CHARS {
        bad("system_prompt", format!("must be 1 to {MAX_PROMPT_CHARS} characters"));
    }
    if c.name.trim().is_empty() || c.name.chars().count() > 200 {
        bad("name", "must be 1 to 200 characters".into());
    }
    for (field, list) in
        [("tools_enabled", &c.tools_enabled), ("tools_require_approval", &c.tools_require_approval)]
    {
        let unknown: Vec<&str> =
            list.iter().map(String::as_str).filter(|t| !known_tool(t)).collect();
        if !unknown.is_empty() {
            bad(field, format!("unknown tools: {}", unknown.join(", ")));
        }
        if list.len() > MAX_LIST {
            bad(field, format!("at most {MAX_LIST} entries"));
        }
    }
    let not_enabled: Vec<&str> = c
        .tools_require_approval
        .iter()
        .map(String::as_str)
        .filter(|t| known_tool(t) && !c.tools_enabled.iter().any(|e| e == t))
        .collect();
    if !not_enabled.is_empty() {
        bad("tools_require_approval", format!("not in tools_enabled: {}", not_enabled.join(", ")));
    }
    let bad_caps: Vec<&str> =
        c.capabilities.iter().map(String::as_str).filter(|s| !is_snake_word(s)).collect();
    if !bad_caps.is_empty() {
        bad("capabilities", format!("not snake_case words: {}", bad_caps.join(", ")));
    }
    if c.capabilities.len() > MAX_LIST {
        bad("capabilities", format!("at most {MAX_LIST} entries"));
    }
    errors
}

/// When `overrides` do not set `tools_require_approval`, the effective list is the type's
/// default list plus the built-in tools that need approval by default, each only while enabled:
/// changing `tools_enabled` alone never leaves the list naming a tool that is off.
fn settle_approvals(merged: &mut Value, base: &Value, overrides: &Value) {
    if overrides.get("tools_require_approval").is_some_and(|v| !v.is_null()) {
        return;
    }
    let names = |v: &Value| -> Vec<String> {
        v.as_array().into_iter().flatten().filter_map(|t| t.as_str().map(str::to_owned)).collect()
    };
    let enabled = names(&merged["tools_enabled"]);
    let mut approvals: Vec<String> = names(&base["tools_require_approval"])
        .into_iter()
        .filter(|t| enabled.contains(t))
        .collect();
    for t in &enabled {
        if agentyard_core::tools::builtin(t).is_some_and(|b| b.needs_approval)
            && !approvals.contains(t)
        {
            approvals.push(t.clone());
        }
    }
    merged["tools_require_approval"] = Value::from(approvals);
}

/// True when `enabled` (an agent's `tools_enabled`) enables the tool the model sees as `tool`:
/// by its name, or by `server__*` for every tool of a server.
pub fn tool_enabled(enabled: &[String], tool: &str) -> bool {
    enabled.iter().any(|e| match e.strip_suffix('*') {
        Some(prefix) if prefix.ends_with("__") => tool.starts_with(prefix),
        _ => e == tool,
    })
}

/// A built-in tool, or a tool of another MCP server: `server__tool`, or `server__*` for all of
/// its tools (whether that server exists is checked where the org's servers are known).
fn known_tool(t: &str) -> bool {
    if agentyard_core::tools::builtin(t).is_some() {
        return true;
    }
    let Some((server, tool)) = t.split_once("__") else { return false };
    let name_char = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    !server.is_empty()
        && server.len() <= 32
        && server
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        && (tool == "*" || (!tool.is_empty() && t.len() <= 64 && tool.chars().all(name_char)))
}

fn is_snake_word(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.starts_with(|c: char| c.is_ascii_lowercase())
        && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// A type error's message, in terms of the field.
fn type_message(field: &str, serde_message: &str) -> String {
    let expected = match field {
        "temperature" => "a number between 0 and 2",
        "max_tokens" => "an integer between 1 and 32768",
        "timeout_seconds" => "an integer between 1 and 600",
        "max_steps" => "an integer between 1 and 50",
        "response_style" => "one of concise, detailed, friendly, formal, technical",
        "capabilities" | "tools_enabled" | "tools_require_approval" => "an array of strings",
        "tool_choice" => "one of auto, required, none",
        _ => "a string",
    };
    let detail = serde_message.split(" at line").next().unwrap_or(serde_message);
    format!("must be {expected} ({detail})")
}

/// RFC 7396 JSON merge patch: `patch`'s members replace `target`'s; `null` removes one.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let t = target.as_object_mut().expect("made an object above");
    for (k, v) in p {
        if v.is_null() {
            t.remove(k);
        } else {
            merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
        }
    }
}

#[cfg(test)]
mod tests;
