//! Keeps `platform_tools` (what agent workers offer models) in step with the `tools/list` of
//! the built-in server and of the operator's servers. Each server is listed when it is due: a
//! minute after its last good listing; after a failure, 2 s later, then twice as long after
//! each further failure (up to 10 minutes), so one broken server is reported and backed off on
//! its own and never makes the healthy ones be launched again and again. The schedule is in
//! Postgres (`platform_servers`), shared by every tool worker: one of them lists each server.

use std::time::Duration;

use agentyard_core::tools::BUILTIN_SERVER;
use agentyard_mcp::{Client, ServerConfig};
use agentyard_store::tools::ToolSpec;
use tokio_util::sync::CancellationToken;

use crate::Ctx;

const TICK: Duration = Duration::from_secs(2);
const EVERY: Duration = Duration::from_secs(60);
const RETRY: Duration = Duration::from_secs(2);
const MAX_BACKOFF: Duration = Duration::from_secs(600);

pub(crate) async fn platform_tools(ctx: Ctx, shutdown: CancellationToken) {
    loop {
        refresh_due(&ctx).await;
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(TICK) => {}
        }
    }
}

/// Lists every platform server that is due, at once: the built-in tools (served in this
/// process) and the operator's servers.
async fn refresh_due(ctx: &Ctx) {
    let servers = std::iter::once((BUILTIN_SERVER, None))
        .chain(ctx.servers.0.iter().map(|(n, c)| (n.as_str(), Some(c))));
    futures::future::join_all(servers.map(|(name, config)| refresh(ctx, name, config))).await;
}

/// Lists `server` (None: the built-in tools) if it is due.
async fn refresh(ctx: &Ctx, name: &str, server: Option<&ServerConfig>) {
    let transport = match server {
        None => "in-process",
        Some(ServerConfig::Http { .. } | ServerConfig::Registered { .. }) => "http",
        Some(ServerConfig::Stdio { .. }) => "stdio",
    };
    match ctx.store.claim_platform_refresh(name, transport).await {
        Ok(true) => {}
        Ok(false) => return,
        Err(e) => {
            tracing::warn!(server = name, error = %e, "cannot read the tool-list schedule");
            return;
        }
    }
    let timeout = ctx.settings.tool_timeout;
    let listed = match server {
        None => ctx.builtin.list_tools(timeout).await,
        Some(server) => {
            async {
                let client = Client::connect(server, None, None, timeout).await?;
                let tools = client.list_tools().await;
                client.close().await;
                tools
            }
            .await
        }
    };
    let specs: Result<Vec<ToolSpec>, String> = listed
        .map(|tools| {
            tools
                .into_iter()
                .map(|t| ToolSpec {
                    server: name.to_owned(),
                    name: t.name,
                    description: t.description,
                    input_schema: t.input_schema,
                })
                .collect()
        })
        .map_err(|e| e.to_string());
    let outcome = specs.as_deref().map_err(String::as_str);
    match ctx.store.platform_refresh_done(name, outcome, EVERY, RETRY, MAX_BACKOFF).await {
        Ok(0) => tracing::debug!(server = name, "tools refreshed"),
        Ok(failures) => tracing::warn!(
            server = name,
            failures,
            error = specs.as_ref().err().map_or("", String::as_str),
            "cannot list the tools of a platform MCP server; trying again later"
        ),
        Err(e) => tracing::warn!(server = name, error = %e, "cannot store the tool list"),
    }
}
