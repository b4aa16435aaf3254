//! The tools offered to the model: the agent's `tools_enabled`, described as their servers'
//! `tools/list` said (cached per organization for [`TTL`]: a newly registered server's tools
//! reach models within that time).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agentyard_core::OrgId;
use agentyard_llm::ToolDef;
use agentyard_store::tools::ToolSpec;
use agentyard_store::{Store, StoreError};

const TTL: Duration = Duration::from_secs(5);

/// An organization's tools and when they were read.
type Entry = (Instant, Arc<Vec<ToolSpec>>);

/// Tool descriptions per organization.
#[derive(Debug, Default)]
pub(crate) struct ToolCache {
    specs: Mutex<HashMap<OrgId, Entry>>,
}

impl ToolCache {
    /// The definitions of the tools in `enabled` that exist (`server__*` enables every tool of
    /// a server), in `enabled`'s order.
    pub(crate) async fn offered(
        &self,
        store: &Store,
        org: OrgId,
        enabled: &[String],
    ) -> Result<Vec<ToolDef>, StoreError> {
        if enabled.is_empty() {
            return Ok(Vec::new());
        }
        let cached = {
            let map = self.specs.lock().expect("tool cache poisoned");
            map.get(&org).filter(|(at, _)| at.elapsed() < TTL).map(|(_, s)| s.clone())
        };
        let specs = match cached {
            Some(s) => s,
            None => {
                let fresh = Arc::new(store.tool_specs(org).await?);
                let mut map = self.specs.lock().expect("tool cache poisoned");
                map.retain(|_, (at, _)| at.elapsed() < TTL);
                map.insert(org, (Instant::now(), fresh.clone()));
                fresh
            }
        };
        Ok(select(&specs, enabled))
    }
}

fn select(specs: &[ToolSpec], enabled: &[String]) -> Vec<ToolDef> {
    let mut out: Vec<ToolDef> = Vec::new();
    for e in enabled {
        let one = std::slice::from_ref(e);
        for s in specs.iter().filter(|s| agentyard_agents::tool_enabled(one, &s.name)) {
            if !out.iter().any(|d| d.name == s.name) {
                out.push(ToolDef {
                    name: s.name.clone(),
                    description: s.description.clone(),
                    parameters: s.input_schema.clone(),
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(server: &str, name: &str) -> ToolSpec {
        ToolSpec {
            server: server.into(),
            name: name.into(),
            description: None,
            input_schema: serde_json::json!({"type": "object"}),
        }
    }

    #[test]
    fn enabled_names_and_server_wildcards_select_tools_in_order() {
        let specs = [
            spec("builtin", "add_task"),
            spec("builtin", "list_tasks"),
            spec("x", "x__echo"),
            spec("x", "x__add"),
        ];
        let names = |e: &[&str]| {
            let e: Vec<String> = e.iter().map(|s| (*s).to_owned()).collect();
            select(&specs, &e).into_iter().map(|d| d.name).collect::<Vec<_>>()
        };
        assert_eq!(names(&["list_tasks", "nope", "add_task"]), ["list_tasks", "add_task"]);
        assert_eq!(names(&["x__*"]), ["x__echo", "x__add"]);
        assert_eq!(names(&["x__add", "x__*"]), ["x__add", "x__echo"]);
    }
}
