//! Keeps `platform_tools` (what agent workers offer models) in step with the `tools/list` of
//! the built-in server and of the operator's servers: at start (retrying until each answers)
//! and then every minute.

use std::time::Duration;

use agentyard_core::{AgentId, OrgId, RunId};
use agentyard_mcp::{Client, ServerConfig};
use agentyard_store::tool_tokens::{self, ToolClaims};
use agentyard_store::tools::{BUILTIN_SERVER, ToolSpec};
use tokio_util::sync::CancellationToken;

use crate::Ctx;

const EVERY: Duration = Duration::from_secs(60);
const RETRY: Duration = Duration::from_secs(2);

pub(crate) async fn platform_tools(ctx: Ctx, shutdown: CancellationToken) {
    loop {
        let all_ok = refresh_all(&ctx).await;
        let wait = if all_ok { EVERY } else { RETRY };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

async fn refresh_all(ctx: &Ctx) -> bool {
    // Listing needs a valid token but no principal: nil ids, no scopes.
    let claims = ToolClaims {
        org_id: OrgId(uuid::Uuid::nil()),
        user_id: None,
        agent_id: AgentId(uuid::Uuid::nil()),
        run_id: RunId(uuid::Uuid::nil()),
        invocation_id: uuid::Uuid::nil(),
        scopes: Vec::new(),
        exp: chrono::Utc::now().timestamp() + 120,
    };
    let builtin = ServerConfig::Http {
        url: ctx.settings.mcp_url.clone(),
        bearer_token: Some(tool_tokens::mint(&ctx.key, &claims)),
    };
    let mut ok = refresh(ctx, BUILTIN_SERVER, &builtin).await;
    for (name, server) in &ctx.servers.0 {
        ok &= refresh(ctx, name, server).await;
    }
    ok
}

async fn refresh(ctx: &Ctx, name: &str, server: &ServerConfig) -> bool {
    let listed = async {
        let client = Client::connect(server, None, None, ctx.settings.tool_timeout).await?;
        let tools = client.list_tools().await;
        client.close().await;
        tools
    };
    match listed.await {
        Ok(tools) => {
            let specs: Vec<ToolSpec> = tools
                .into_iter()
                .map(|t| ToolSpec {
                    server: name.to_owned(),
                    name: t.name,
                    description: t.description,
                    input_schema: t.input_schema,
                })
                .collect();
            match ctx.store.set_platform_tools(name, &specs).await {
                Ok(()) => {
                    tracing::debug!(server = name, tools = specs.len(), "tools refreshed");
                    true
                }
                Err(e) => {
                    tracing::warn!(server = name, error = %e, "cannot store the tool list");
                    false
                }
            }
        }
        Err(e) => {
            tracing::warn!(server = name, error = %e, "cannot list tools (will retry)");
            false
        }
    }
}
