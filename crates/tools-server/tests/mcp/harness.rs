//! A tool server per test: a fresh database (`ay_test_<secs>_<rand>`, dropped afterwards), a
//! subject prefix of its own on the real NATS, the server on 127.0.0.1:0, and rmcp clients
//! over streamable HTTP with minted tool tokens.

use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use agentyard_bus::Bus;
use agentyard_core::{AgentId, OrgId, RunId};
use agentyard_store::Store;
use agentyard_store::tool_tokens::{self, ToolClaims};
use rmcp::model::{
    CallToolRequestParams, CallToolResult, ClientCapabilities, ClientConfig, ElicitRequestParams,
    ElicitResult, Implementation, ProtocolVersion,
};
use rmcp::service::{RequestContext, RoleClient, RunningService};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::{ClientHandler, ClientLifecycleMode, ClientServiceExt, ErrorData, ServiceExt};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

/// Both scopes the tools use.
pub(crate) const READ_WRITE: &[&str] = &["runs:read", "runs:write"];

fn admin_database_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

fn with_database(url: &str, db: &str) -> String {
    let (base, _) = url.rsplit_once('/').unwrap_or((url, ""));
    format!("{base}/{db}")
}

/// A running tool server.
pub(crate) struct TestServer {
    /// `http://127.0.0.1:<port>/mcp`.
    pub(crate) url: String,
    pub(crate) store: Store,
    pub(crate) bus: Bus,
    key: Vec<u8>,
    db_name: String,
    shutdown: CancellationToken,
}

impl TestServer {
    pub(crate) async fn start() -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let secs = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
        let id = uuid::Uuid::now_v7().simple().to_string();
        let short = &id[id.len() - 10..];
        let db_name = format!("ay_test_{secs}_{short}");
        let admin = sqlx::PgPool::connect(&admin_database_url()).await.expect("Postgres");
        let create = format!("CREATE DATABASE \"{db_name}\"");
        sqlx::raw_sql(sqlx::AssertSqlSafe(create)).execute(&admin).await.expect("create db");
        admin.close().await;
        let prefix = format!("t{short}");
        let url = with_database(&admin_database_url(), &db_name);
        let key = agentyard_store::secrets::Keyring::generate_encoded();
        let keys = agentyard_store::secrets::Keyring::from_vars(Some(&key), None)
            .expect("a key")
            .expect("a key");
        let store = Store::connect(&url, 4).await.expect("connect").with_keys(keys);
        agentyard_store::MIGRATOR.run(store.pool()).await.expect("migrate");
        let nats = std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
        let bus = Bus::connect(&nats, &prefix).await.expect("NATS");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/mcp", listener.local_addr().unwrap());
        let shutdown = CancellationToken::new();
        let serve = agentyard_tools_server::serve(
            listener,
            store.clone(),
            bus.clone(),
            Default::default(),
            agentyard_runtime::limit::RateLimiter::new(0.0, 1),
            shutdown.clone(),
        );
        tokio::spawn(serve);
        let key = store.tool_token_key().await.expect("tool token key");
        Self { url, store, bus, key, db_name, shutdown }
    }

    /// A new organization.
    pub(crate) async fn org(&self) -> OrgId {
        self.store.create_org("org").await.expect("create org").org_id
    }

    /// A token of `org` holding `scopes`, for a new invocation.
    pub(crate) fn token(&self, org: OrgId, scopes: &[&str]) -> String {
        self.mint(&claims(org, scopes))
    }

    /// The platform's tool-token key.
    pub(crate) fn key(&self) -> Vec<u8> {
        self.key.clone()
    }

    /// A token carrying `claims`.
    pub(crate) fn mint(&self, claims: &ToolClaims) -> String {
        tool_tokens::mint(&self.key, claims)
    }

    /// A client that cannot be asked for input, on a 2025-11-25 session.
    pub(crate) async fn connect(&self, token: &str) -> RunningService<RoleClient, TestClient> {
        self.connect_as(token, TestClient::new(ProtocolVersion::V_2025_11_25, None)).await
    }

    /// `client` on a session of its protocol version (2026-07-28: no session, `discover`).
    pub(crate) async fn connect_as(
        &self,
        token: &str,
        client: TestClient,
    ) -> RunningService<RoleClient, TestClient> {
        let config =
            StreamableHttpClientTransportConfig::with_uri(self.url.clone()).auth_header(token);
        let transport = StreamableHttpClientTransport::from_config(config);
        let version = client.version.clone();
        if version >= ProtocolVersion::V_2026_07_28 {
            let lifecycle = ClientLifecycleMode::Discover { preferred_versions: vec![version] };
            client.serve_with_lifecycle(transport, lifecycle).await.expect("discover")
        } else {
            client.serve(transport).await.expect("initialize")
        }
    }

    /// Calls `tool` with `args` once, on a connection of its own.
    pub(crate) async fn call(
        &self,
        token: &str,
        tool: &'static str,
        args: Value,
    ) -> CallToolResult {
        let client = self.connect(token).await;
        let result = call(&client, tool, args).await;
        client.cancel().await.expect("close the client");
        result
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shutdown.cancel();
        // Drop cannot await and the test's runtime is ending: clean up on a thread of its own.
        let db = self.db_name.clone();
        let cleanup = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
                return;
            };
            rt.block_on(async move {
                if let Ok(pool) = sqlx::PgPool::connect(&admin_database_url()).await {
                    let sql = format!("DROP DATABASE IF EXISTS \"{db}\" WITH (FORCE)");
                    let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&pool).await;
                }
            });
        });
        let _ = cleanup.join();
    }
}

/// Claims of a run of `org` with `scopes`, for a new invocation, valid for 5 minutes.
pub(crate) fn claims(org: OrgId, scopes: &[&str]) -> ToolClaims {
    ToolClaims {
        org_id: org,
        user_id: None,
        agent_id: AgentId::new(),
        run_id: RunId::new(),
        invocation_id: agentyard_core::InvocationId::new(),
        scopes: scopes.iter().map(|s| s.parse().expect("a scope")).collect(),
        exp: chrono::Utc::now().timestamp() + 300,
    }
}

/// Calls `tool` with `args` (an object) and returns its result; panics on a protocol error.
pub(crate) async fn call(
    client: &RunningService<RoleClient, TestClient>,
    tool: &'static str,
    args: Value,
) -> CallToolResult {
    let args = args.as_object().cloned().unwrap_or_default();
    let params = CallToolRequestParams::new(tool).with_arguments(args);
    client.call_tool(params).await.unwrap_or_else(|e| panic!("{tool} failed: {e}"))
}

/// The text of a result.
pub(crate) fn text(r: &CallToolResult) -> &str {
    &r.content[0].as_text().expect("a text result").text
}

/// The JSON after a result's sentence.
pub(crate) fn data(r: &CallToolResult) -> Value {
    let (_, json) = text(r).split_once("\n\n").unwrap_or_else(|| panic!("no data in {r:?}"));
    serde_json::from_str(json).expect("the data is JSON")
}

/// True for an error result.
pub(crate) fn is_error(r: &CallToolResult) -> bool {
    r.is_error == Some(true)
}

/// An MCP client whose user answers every elicitation with `answer`.
#[derive(Clone)]
pub(crate) struct TestClient {
    version: ProtocolVersion,
    /// None: the client does not declare elicitation.
    answer: Option<ElicitResult>,
    /// The messages of the elicitations it received.
    pub(crate) asked: Arc<Mutex<Vec<String>>>,
}

impl TestClient {
    pub(crate) fn new(version: ProtocolVersion, answer: Option<ElicitResult>) -> Self {
        Self { version, answer, asked: Arc::default() }
    }

    /// The messages of the elicitations received so far.
    pub(crate) fn asked(&self) -> Vec<String> {
        self.asked.lock().unwrap().clone()
    }
}

impl ClientHandler for TestClient {
    fn get_info(&self) -> ClientConfig {
        let capabilities = if self.answer.is_some() {
            ClientCapabilities::builder().enable_elicitation().build()
        } else {
            ClientCapabilities::default()
        };
        ClientConfig::new(capabilities, Implementation::new("agentyard-tests", "0"))
            .with_protocol_version(self.version.clone())
    }

    async fn create_elicitation(
        &self,
        request: ElicitRequestParams,
        _context: RequestContext<RoleClient>,
    ) -> Result<ElicitResult, ErrorData> {
        if let ElicitRequestParams::FormElicitationParams { message, .. } = &request {
            self.asked.lock().unwrap().push(message.clone());
        }
        self.answer
            .clone()
            .ok_or_else(|| ErrorData::internal_error("not an elicitation client", None))
    }
}
