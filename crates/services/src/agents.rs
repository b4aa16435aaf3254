//! An org's agents as clients see them (effective configuration = type defaults + stored
//! overrides), changes checked against the catalog, status, and delegation by capability.

use std::collections::BTreeMap;
use std::time::Duration;

use agentyard_agents::{AgentConfig, Source};
use agentyard_core::run::{Priority, Run};
use agentyard_core::{AgentId, RunId};
use agentyard_store::agents::{AgentRow, CreateAgent};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::runs::CreateRunRequest;
use crate::{Entity, Error, Principal, Result, Services};

/// An agent of the organization.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Agent {
    pub id: AgentId,
    pub agent_type: String,
    pub name: String,
    pub is_active: bool,
    /// The org's default agent answers runs that name no agent.
    pub is_default: bool,
    /// What runs use: the type's defaults with the overrides on top.
    pub configuration: AgentConfig,
    /// The org's own values (a JSON merge patch on the type's defaults).
    #[schema(value_type = Object)]
    pub overrides: serde_json::Value,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Body of `POST /v1/agents`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateAgentRequest {
    /// A type of `config/agents.yaml` (`GET /v1/agent-types`).
    pub agent_type: String,
    /// Default: the type's name.
    pub name: Option<String>,
    /// Overrides of the type's defaults.
    #[schema(value_type = Option<Object>)]
    pub configuration: Option<serde_json::Value>,
}

/// Body of `PATCH /v1/agents/{id}`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchAgentRequest {
    pub name: Option<String>,
    /// A JSON merge patch on the agent's overrides: a field set to null goes back to its
    /// default.
    #[schema(value_type = Option<Object>)]
    pub configuration: Option<serde_json::Value>,
}

/// An effective value and where it comes from.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SourcedValue {
    /// Any JSON value: a number, a string, a list, an object.
    pub value: serde_json::Value,
    pub source: Source,
}

/// Body of `PUT /v1/agents/{id}/tools`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentTools {
    /// Tools the model may call.
    pub tools_enabled: Vec<String>,
    /// Tools that run only after a human approves the call (default: unchanged).
    #[serde(default)]
    pub tools_require_approval: Option<Vec<String>>,
}

/// The agent's tools, as `GET /v1/agents/{id}/tools` shows them.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AgentToolsView {
    /// Tools the model may call.
    pub tools_enabled: Vec<String>,
    /// Tools that run only after a human approves the call.
    pub tools_require_approval: Vec<String>,
    /// Every built-in tool an agent can be given.
    pub available: Vec<String>,
}

/// Body of `POST /v1/agents/delegate`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DelegateRequest {
    /// A capability, e.g. `data_analysis` (`GET /v1/agent-types` lists them).
    pub capability: String,
    /// The task.
    #[schema(min_length = 1)]
    pub input: String,
    #[serde(default)]
    pub priority: Priority,
    /// Free-form object stored with the run's metadata.
    #[schema(value_type = Option<Object>)]
    pub context: Option<serde_json::Value>,
}

/// What delegation started.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Delegation {
    pub agent: Agent,
    pub run: Run,
}

/// Is the agent ready to answer?
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AgentStatus {
    pub id: AgentId,
    pub is_active: bool,
    /// The model alias and, as agent workers see it, whether its server answers.
    pub model: String,
    /// True when an agent worker reached the model server; false when workers answered but
    /// could not; null when no worker answered.
    pub model_reachable: Option<bool>,
    /// The model name sent to the server (the alias's, else the workers' default).
    pub model_name: Option<String>,
    /// True when the server lists that model and accepts the key; false when it does not;
    /// null when it cannot say (no model list) or nobody asked it.
    pub model_available: Option<bool>,
    /// What is wrong with the model, when something is (unreachable, key refused, unknown
    /// model).
    pub model_problem: Option<String>,
    /// Agent workers that answered within a second.
    pub workers: usize,
    /// The MCP servers this agent's tools come from, and whether they answer (for the
    /// operator's stdio servers: whether their last tool listing worked).
    pub tool_servers: Vec<ToolServerStatus>,
    /// Tools the model may call.
    pub tools_available: Vec<String>,
    /// Active, at least one worker, the model reachable and not known to be unavailable.
    pub ready: bool,
}

/// An MCP server's reachability.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ToolServerStatus {
    pub name: String,
    /// Null when nothing checked it.
    pub reachable: Option<bool>,
}

/// The view of a stored agent.
pub fn view(svc: &Services, row: AgentRow) -> Agent {
    Agent {
        id: row.id,
        configuration: svc.catalog.effective(&row.agent_type, &row.name, &row.config),
        agent_type: row.agent_type,
        name: row.name,
        is_active: row.is_active,
        is_default: row.is_default,
        overrides: row.config,
        created_at: row.created_at,
        updated_at: row.updated_at,
    }
}

fn not_found() -> Error {
    Error::NotFound(Entity::Agent)
}

fn check_name(name: &str) -> Result<(), Error> {
    if name.trim().is_empty() || name.chars().count() > 200 {
        return Err(Error::invalid("invalid_name", "name must be 1 to 200 characters"));
    }
    agentyard_core::storable::check_text("name", name)
        .map_err(|e| Error::invalid("invalid_name", e.to_string()))
}

/// A configuration patch Postgres can store and give back (no NUL character, no number that
/// would not read back equal), before the catalog checks its fields.
fn check_storable(patch: &serde_json::Value) -> Result<(), Error> {
    agentyard_core::storable::check_json("configuration", patch).map_err(|e| {
        let field = agentyard_agents::FieldError { field: e.path, message: e.problem };
        Error::fields("invalid_configuration", vec![field])
    })
}

/// A live agent of the caller's org.
///
/// # Errors
/// 404 `agent_not_found`.
pub async fn get(svc: &Services, who: &Principal, id: AgentId) -> Result<AgentRow, Error> {
    svc.store.get_agent(who.org_id, id).await?.ok_or_else(not_found)
}

/// Creates the org's agent of a type.
///
/// # Errors
/// 422 `unknown_agent_type` / `invalid_configuration` / `invalid_name`, 409 `agent_exists`.
pub async fn create(
    svc: &Services,
    who: &Principal,
    req: CreateAgentRequest,
) -> Result<Agent, Error> {
    let Some(ty) = svc.catalog.agent_type(&req.agent_type) else {
        let known: Vec<&str> = svc.catalog.agent_types().keys().map(String::as_str).collect();
        return Err(Error::invalid(
            "unknown_agent_type",
            format!("unknown agent_type `{}`; known: {}", req.agent_type, known.join(", ")),
        ));
    };
    let name = req.name.unwrap_or_else(|| ty.name.clone());
    check_name(&name)?;
    if let Some(p) = &req.configuration {
        check_storable(p)?;
        check_servers(svc, who, p).await?;
    }
    let overrides = match &req.configuration {
        None => serde_json::json!({}),
        Some(patch) => svc
            .catalog
            .apply_patch(&req.agent_type, &serde_json::json!({}), patch)
            .map_err(|e| Error::fields("invalid_configuration", e))?,
    };
    match svc.store.create_agent(who.org_id, &req.agent_type, &name, &overrides).await? {
        CreateAgent::Created(row) => Ok(view(svc, row)),
        CreateAgent::Exists(id) => Err(Error::conflict(
            "agent_exists",
            format!("the organization already has a {} agent ({id})", req.agent_type),
        )),
    }
}

/// Tools named `server__tool` must name a server the org registered or the operator declared.
async fn check_servers(
    svc: &Services,
    who: &Principal,
    patch: &serde_json::Value,
) -> Result<(), Error> {
    let mut named: Vec<(&'static str, &str)> = Vec::new();
    for field in ["tools_enabled", "tools_require_approval"] {
        for t in patch[field].as_array().into_iter().flatten().filter_map(|v| v.as_str()) {
            if let Some((server, _)) = t.split_once("__") {
                named.push((field, server));
            }
        }
    }
    if named.is_empty() {
        return Ok(());
    }
    let servers = svc.store.list_mcp_servers(who.org_id).await?;
    let unknown: Vec<agentyard_agents::FieldError> = named
        .into_iter()
        .filter(|(_, s)| {
            !svc.mcp_servers.0.contains_key(*s) && !servers.iter().any(|x| x.name == *s)
        })
        .map(|(field, s)| agentyard_agents::FieldError {
            field: format!("configuration.{field}"),
            message: format!("unknown MCP server `{s}` (register it with POST /v1/mcp-servers)"),
        })
        .collect();
    if unknown.is_empty() { Ok(()) } else { Err(Error::fields("invalid_configuration", unknown)) }
}

/// Renames an agent and/or applies a merge patch to its overrides.
///
/// # Errors
/// 404, 422 `invalid_configuration` / `invalid_name` (nothing is stored).
pub async fn patch(
    svc: &Services,
    who: &Principal,
    id: AgentId,
    req: PatchAgentRequest,
) -> Result<Agent, Error> {
    if let Some(n) = &req.name {
        check_name(n)?;
    }
    if let Some(p) = &req.configuration {
        check_storable(p)?;
        check_servers(svc, who, p).await?;
    }
    let catalog = svc.catalog.clone();
    let row = svc
        .store
        .update_agent::<Error>(who.org_id, id, |row| {
            let config = match &req.configuration {
                None => row.config.clone(),
                Some(p) => catalog
                    .apply_patch(&row.agent_type, &row.config, p)
                    .map_err(|e| Error::fields("invalid_configuration", e))?,
            };
            Ok((req.name.clone().unwrap_or_else(|| row.name.clone()), config))
        })
        .await??;
    row.map(|r| view(svc, r)).ok_or_else(not_found)
}

/// Replaces the agent's tool lists.
///
/// # Errors
/// As [`patch`].
pub async fn put_tools(
    svc: &Services,
    who: &Principal,
    id: AgentId,
    tools: AgentTools,
) -> Result<Agent, Error> {
    let mut configuration = serde_json::json!({ "tools_enabled": tools.tools_enabled });
    if let Some(a) = tools.tools_require_approval {
        configuration["tools_require_approval"] = serde_json::json!(a);
    }
    patch(svc, who, id, PatchAgentRequest { name: None, configuration: Some(configuration) }).await
}

/// Clears the overrides (the name stays).
///
/// # Errors
/// 404.
pub async fn reset_config(svc: &Services, who: &Principal, id: AgentId) -> Result<Agent, Error> {
    let row = svc
        .store
        .update_agent::<Error>(who.org_id, id, |row| Ok((row.name.clone(), serde_json::json!({}))))
        .await??;
    row.map(|r| view(svc, r)).ok_or_else(not_found)
}

/// Field by field: the effective value and whether it is the default or the org's own.
pub fn config_source(svc: &Services, row: &AgentRow) -> BTreeMap<&'static str, SourcedValue> {
    let effective = svc.catalog.effective(&row.agent_type, &row.name, &row.config);
    let values = serde_json::to_value(&effective).expect("a config serializes");
    svc.catalog
        .config_source(&row.agent_type, &row.name, &row.config)
        .into_iter()
        .map(|(f, source)| (f, SourcedValue { value: values[f].clone(), source }))
        .collect()
}

/// Whether the agent can answer now: asks the agent workers (core NATS request, one second)
/// and probes the HTTP servers its tools come from (any HTTP answer within a second counts); the
/// built-in tools and stdio servers count as reachable when a tool worker last listed them well.
pub async fn status(svc: &Services, who: &Principal, row: AgentRow) -> Result<AgentStatus, Error> {
    let agent = view(svc, row);
    let tools = agent.configuration.tools_enabled.clone();
    let mut names: Vec<String> = Vec::new();
    for t in &tools {
        let server = t.split_once("__").map_or("builtin", |(s, _)| s).to_owned();
        if !names.contains(&server) {
            names.push(server);
        }
    }
    let org_servers = svc.store.list_mcp_servers(who.org_id).await?;
    let platform = svc.store.platform_servers().await?;
    let listed = |n: &str| {
        platform
            .iter()
            .find(|s| s.name == n)
            .map(|s| s.last_error.is_none() && s.tools_refreshed_at.is_some())
    };
    let urls: Vec<(String, Result<String, Option<bool>>)> = names
        .into_iter()
        .map(|n| {
            // The built-in tools run in the tool workers, like a stdio server's process:
            // reachable when the last listing by a tool worker went well.
            let url = if n == "builtin" {
                Err(listed(&n))
            } else if let Some(s) = org_servers.iter().find(|s| s.name == n) {
                Ok(s.url.clone())
            } else {
                match svc.mcp_servers.0.get(&n) {
                    Some(
                        agentyard_mcp::ServerConfig::Http { url, .. }
                        | agentyard_mcp::ServerConfig::Registered { url, .. },
                    ) => Ok(url.clone()),
                    Some(agentyard_mcp::ServerConfig::Stdio { .. }) => Err(listed(&n)),
                    None => Err(None),
                }
            };
            (n, url)
        })
        .collect();
    let http =
        reqwest::Client::builder().timeout(Duration::from_secs(1)).build().unwrap_or_default();
    let probes = urls.iter().map(|(name, url)| {
        let http = http.clone();
        async move {
            let reachable = match url {
                Ok(u) => Some(http.get(u).send().await.is_ok()),
                Err(listed) => *listed,
            };
            ToolServerStatus { name: name.clone(), reachable }
        }
    });
    let alias_model =
        svc.catalog.models().get(&agent.configuration.model).and_then(|m| m.model.clone());
    let (answers, tool_servers) = tokio::join!(
        ask_workers(svc, alias_model.as_deref(), Duration::from_secs(1)),
        futures::future::join_all(probes)
    );
    let model_reachable = if answers.is_empty() {
        None
    } else {
        Some(answers.iter().any(|a| a["model_reachable"].as_bool() == Some(true)))
    };
    // The best answer: a worker that reached the server and knows the model, else any.
    let best = answers
        .iter()
        .find(|a| a["model_available"].as_bool() == Some(true))
        .or_else(|| answers.iter().find(|a| a["model_reachable"].as_bool() == Some(true)))
        .or_else(|| answers.first());
    let model_available = best.and_then(|a| a["model_available"].as_bool());
    let model_problem = best.and_then(|a| a["model_problem"].as_str().map(str::to_owned));
    let model_name = best.and_then(|a| a["model"].as_str().map(str::to_owned)).or(alias_model);
    Ok(AgentStatus {
        id: agent.id,
        is_active: agent.is_active,
        model: agent.configuration.model.clone(),
        model_reachable,
        model_name,
        model_available,
        model_problem,
        workers: answers.len(),
        tool_servers,
        tools_available: tools,
        ready: agent.is_active && model_reachable == Some(true) && model_available != Some(false),
    })
}

async fn ask_workers(
    svc: &Services,
    model: Option<&str>,
    wait: Duration,
) -> Vec<serde_json::Value> {
    use futures::StreamExt;
    let client = svc.bus.client();
    let inbox = client.new_inbox();
    let Ok(mut sub) = client.subscribe(inbox.clone()).await else { return Vec::new() };
    let subject = svc.bus.subjects().agent_worker_status();
    let body = serde_json::json!({ "model": model }).to_string();
    if client.publish_with_reply(subject, inbox, body.into()).await.is_err() {
        return Vec::new();
    }
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + wait;
    while let Ok(Some(msg)) = tokio::time::timeout_at(deadline, sub.next()).await {
        if let Ok(v) = serde_json::from_slice(&msg.payload) {
            out.push(v);
        }
    }
    out
}

/// Starts a run of the org's active agent with `capability` (provisioning it from its type
/// when the org has none) on a new thread.
///
/// # Errors
/// 422 `unknown_capability` / `invalid_input`, 409 `agent_inactive`, 429, 5xx.
pub async fn delegate(
    svc: &Services,
    who: &Principal,
    req: DelegateRequest,
) -> Result<Delegation, Error> {
    let capability = req.capability.trim();
    if let Some(c) = &req.context
        && !c.is_object()
    {
        return Err(Error::invalid("invalid_context", "context must be a JSON object"));
    }
    let agents = svc.store.list_agents(who.org_id).await?;
    let has = |row: &AgentRow| {
        svc.catalog
            .effective(&row.agent_type, &row.name, &row.config)
            .capabilities
            .iter()
            .any(|c| c == capability)
    };
    let mut chosen = agents.iter().find(|r| r.is_active && has(r)).cloned();
    if chosen.is_none() {
        if let Some(inactive) = agents.iter().find(|r| has(r)) {
            return Err(Error::conflict(
                "agent_inactive",
                format!("the agent with {capability} ({}) is deactivated", inactive.id),
            ));
        }
        let Some(ty) = svc.catalog.type_with_capability(capability) else {
            let mut known: Vec<&str> = svc
                .catalog
                .agent_types()
                .values()
                .flat_map(|t| t.capabilities.iter().map(String::as_str))
                .collect();
            known.sort_unstable();
            return Err(Error::invalid(
                "unknown_capability",
                format!(
                    "no agent type has the capability `{capability}`; known: {}",
                    known.join(", ")
                ),
            ));
        };
        let name = svc.catalog.agent_type(ty).map(|t| t.name.clone()).unwrap_or_default();
        let row =
            match svc.store.create_agent(who.org_id, ty, &name, &serde_json::json!({})).await? {
                CreateAgent::Created(row) => row,
                // Provisioned concurrently, or an agent of that type whose overrides dropped the
                // capability: use it either way.
                CreateAgent::Exists(_) => {
                    svc.store.agent_of_type(who.org_id, ty).await?.ok_or_else(not_found)?
                }
            };
        if !row.is_active {
            return Err(Error::conflict("agent_inactive", "the agent is deactivated"));
        }
        chosen = Some(row);
    }
    let row = chosen.expect("chosen above");
    let metadata = serde_json::json!({
        "delegation": { "capability": capability, "context": req.context.unwrap_or_else(|| serde_json::json!({})) }
    });
    let run_req = CreateRunRequest {
        input: req.input,
        stream: false,
        multitask_strategy: Default::default(),
        metadata: Some(metadata),
        thread_id: None,
        agent_id: Some(row.id),
        priority: req.priority,
    };
    let run = svc.create_run(who, run_req, None, None, RunId::new()).await?;
    Ok(Delegation { agent: view(svc, row), run })
}
