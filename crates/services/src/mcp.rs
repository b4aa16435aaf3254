//! MCP servers: those an organization registers (streamable HTTP, checked URL, token never
//! shown) and those the operator declares for everyone (`config/mcp-servers.yaml`, listed with
//! how their last `tools/list` went); and the audit log of the calls made to them.

use agentyard_core::tools::BUILTIN_SERVER;
use agentyard_core::{InvocationId, McpServerId, OrgId, UserId};
use agentyard_mcp::{Client, ServerConfig};
use agentyard_store::tools::{Invocation, InvocationFilter, InvocationOutcome, McpServer};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::runs::{cursor, page};
use crate::{Entity, Error, Page, Principal, Result, Services, page_limit};

/// Which calls of the audit log to list (`GET /v1/tool-invocations`).
#[derive(Clone, Debug, Default)]
pub struct InvocationQuery {
    pub tool: Option<String>,
    pub server: Option<String>,
    pub outcome: Option<InvocationOutcome>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    pub user_id: Option<UserId>,
    pub cursor: Option<String>,
    pub limit: Option<i64>,
}

/// Body of `POST /v1/mcp-servers`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterServer {
    /// 1 to 32 of a-z, 0-9, `-`, `_` (no `__`); its tools reach models as `<name>__<tool>`.
    pub name: String,
    /// Its streamable HTTP endpoint (http or https).
    pub url: String,
    /// Sent as `Authorization: Bearer ...`; stored, never returned.
    pub bearer_token: Option<String>,
}

/// A server as listed: the org's own (`source: org`, with an id) or the operator's
/// (`source: operator`, shared by every org, read only).
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct ServerView {
    /// Null for the operator's servers.
    pub id: Option<McpServerId>,
    pub name: String,
    /// `org` or `operator`.
    pub source: &'static str,
    /// `http` or `stdio` (stdio only for the operator's).
    pub transport: String,
    /// The org's servers only.
    pub url: Option<String>,
    pub has_token: bool,
    /// The cached `tools/list`: `[{name, description, input_schema}]`.
    #[schema(value_type = Vec<Object>)]
    pub tools: serde_json::Value,
    pub tools_refreshed_at: Option<DateTime<Utc>>,
    /// Why the last listing failed (null when it worked).
    pub last_error: Option<String>,
    pub created_at: Option<DateTime<Utc>>,
}

impl From<McpServer> for ServerView {
    fn from(s: McpServer) -> Self {
        Self {
            id: Some(s.id),
            name: s.name,
            source: "org",
            transport: "http".into(),
            url: Some(s.url),
            has_token: s.has_token,
            tools: s.tools,
            tools_refreshed_at: s.tools_refreshed_at,
            last_error: s.last_error,
            created_at: Some(s.created_at),
        }
    }
}

impl Services {
    /// Registers a streamable HTTP server for the caller's org and lists its tools (a failed
    /// listing is kept in `last_error`; the server stays registered).
    ///
    /// # Errors
    /// `invalid_name`, `invalid_url` (malformed, or private without `AY_MCP_ALLOW_PRIVATE`),
    /// `invalid_request`, `server_exists`.
    pub async fn register_mcp_server(
        &self,
        who: &Principal,
        req: RegisterServer,
    ) -> Result<ServerView> {
        if !agentyard_mcp::valid_name(&req.name) || req.name == BUILTIN_SERVER {
            return Err(Error::invalid(
                "invalid_name",
                "name must be 1 to 32 of a-z, 0-9, - and _, without `__`, and not `builtin`",
            ));
        }
        if self.mcp_servers.0.contains_key(&req.name) {
            return Err(Error::conflict(
                "server_exists",
                format!("`{}` is a server of the platform", req.name),
            ));
        }
        let url = agentyard_mcp::check_url(&req.url, self.settings.mcp_allow_private)
            .await
            .map_err(|m| Error::invalid("invalid_url", m))?;
        if req.bearer_token.as_ref().is_some_and(|t| t.is_empty() || t.len() > 4096) {
            return Err(Error::invalid("invalid_request", "bearer_token must be 1 to 4096 bytes"));
        }
        let server = self
            .store
            .create_mcp_server(who.org_id, &req.name, url.as_str(), req.bearer_token.as_deref())
            .await?
            .ok_or_else(|| {
                Error::conflict(
                    "server_exists",
                    format!("the organization already has a server named `{}`", req.name),
                )
            })?;
        Ok(self.list_server_tools(who.org_id, server, req.bearer_token).await?.into())
    }

    async fn list_server_tools(
        &self,
        org: OrgId,
        server: McpServer,
        bearer_token: Option<String>,
    ) -> Result<McpServer> {
        let config = ServerConfig::Registered {
            url: server.url.clone(),
            bearer_token,
            allow_private: self.settings.mcp_allow_private,
        };
        let timeout = self.settings.tool_timeout.min(std::time::Duration::from_secs(10));
        let listed = async {
            let client = Client::connect(&config, None, None, timeout).await?;
            let tools = client.list_tools().await;
            client.close().await;
            tools
        }
        .await;
        let updated = match listed {
            Ok(tools) => {
                let tools = serde_json::to_value(tools).unwrap_or_default();
                self.store.set_mcp_server_tools(org, server.id, Ok(&tools)).await?
            }
            Err(e) => {
                tracing::warn!(server = %server.name, url = %server.url, error = %e,
                    "cannot list the tools of a registered MCP server");
                self.store.set_mcp_server_tools(org, server.id, Err(&e.to_string())).await?
            }
        };
        Ok(updated.unwrap_or(server))
    }

    /// The org's servers (by name), then the operator's.
    ///
    /// # Errors
    /// Database failures.
    pub async fn list_mcp_servers(&self, who: &Principal) -> Result<Vec<ServerView>> {
        let mut out: Vec<ServerView> = self
            .store
            .list_mcp_servers(who.org_id)
            .await?
            .into_iter()
            .map(ServerView::from)
            .collect();
        let listed = self.store.platform_servers().await?;
        for (name, config) in &self.mcp_servers.0 {
            let status = listed.iter().find(|s| &s.name == name);
            out.push(ServerView {
                id: None,
                name: name.clone(),
                source: "operator",
                transport: match config {
                    ServerConfig::Http { .. } | ServerConfig::Registered { .. } => "http".into(),
                    ServerConfig::Stdio { .. } => "stdio".into(),
                },
                url: None,
                has_token: matches!(config, ServerConfig::Http { bearer_token: Some(_), .. }),
                tools: status.map_or_else(|| serde_json::json!([]), |s| s.tools.clone()),
                tools_refreshed_at: status.and_then(|s| s.tools_refreshed_at),
                last_error: status.and_then(|s| s.last_error.clone()),
                created_at: None,
            });
        }
        Ok(out)
    }

    /// The org's tool calls matching `q`, newest first, a page at a time (the caller's own
    /// for a caller limited to its user).
    ///
    /// # Errors
    /// `invalid_query`, `invalid_cursor`.
    pub async fn list_invocations(
        &self,
        who: &Principal,
        q: InvocationQuery,
    ) -> Result<Page<Invocation>> {
        let limit = page_limit(q.limit, 50, 500)?;
        let before = cursor::<InvocationId>(q.cursor.as_deref())?;
        let Some(user) = who.user_filter(q.user_id) else {
            return Ok(Page { data: Vec::new(), next_cursor: None });
        };
        let filter = InvocationFilter {
            tool: q.tool.as_deref(),
            server: q.server.as_deref(),
            outcome: q.outcome,
            since: q.since,
            until: q.until,
            user,
        };
        let mut data = self.store.org_invocations(who.org_id, &filter, before, limit + 1).await?;
        Ok(page(&mut data, limit, |c| c.id.to_string()))
    }

    /// One of the org's servers.
    ///
    /// # Errors
    /// `server_not_found`.
    pub async fn get_mcp_server(&self, who: &Principal, id: McpServerId) -> Result<McpServer> {
        self.store.get_mcp_server(who.org_id, id).await?.ok_or(Error::NotFound(Entity::McpServer))
    }

    /// Lists one of the org's servers' tools again.
    ///
    /// # Errors
    /// `server_not_found`.
    pub async fn refresh_mcp_server(&self, who: &Principal, id: McpServerId) -> Result<ServerView> {
        let server = self.get_mcp_server(who, id).await?;
        let token = self.store.mcp_server_token(who.org_id, server.id).await?;
        Ok(self.list_server_tools(who.org_id, server, token).await?.into())
    }

    /// Removes one of the org's servers; its tools stop reaching models.
    ///
    /// # Errors
    /// `server_not_found`.
    pub async fn delete_mcp_server(&self, who: &Principal, id: McpServerId) -> Result<()> {
        if self.store.delete_mcp_server(who.org_id, id).await? {
            Ok(())
        } else {
            Err(Error::NotFound(Entity::McpServer))
        }
    }
}
