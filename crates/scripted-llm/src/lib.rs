//! `agentyard-scripted-llm`: an OpenAI-compatible chat model that answers from a script.
//!
//! Tests, demos and benchmarks point their OpenAI client at it instead of a real provider. It
//! speaks the real Chat Completions wire protocol (JSON and SSE chunks, tool-call deltas,
//! usage, errors with `Retry-After`), so the production client code path is exercised.
//!
//! A [`Script`] (YAML or JSON, see `examples/script.yaml`) holds rules: a case-insensitive
//! regex on the last user message picks a sequence of responses (text, tool calls, HTTP
//! errors, hangs, stalls), each rule advancing its own cursor; text and arguments may quote
//! captures and tool results (`$title`, `$tool_results`).
//!
//! What the script does not answer goes to the built-in rules ([`Options::builtin_rules`]),
//! which call the tools a request offers for phrases such as "add a task to \<title>",
//! "list my tasks" or `call <name> <json>` (`src/builtin.yaml`, `src/builtin.rs`), so demos and
//! end-to-end tests can use tools without a script. Everything else gets [`default_answer`],
//! derived from the conversation.
//!
//! # Layout
//! - `answer`: reading messages; the default answer, tokens and usage counts (pure).
//! - `script`: the script format, parsed and validated once.
//! - `plan`: picks the reply to one request (rule, cursor, delays); `expand`: `$` references;
//!   `builtin`: the built-in tool rules.
//! - `wire`: the OpenAI JSON shapes; `stream`: SSE framing with delays.
//! - `server`: state, routes and handlers; this file: [`router`], [`serve`], [`spawn`].

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use axum::Router;
use axum::serve::ListenerExt;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

mod answer;
mod builtin;
mod expand;
mod plan;
mod script;
mod server;
mod stream;
mod wire;

pub use answer::{default_answer, tokenize};
pub use script::{Script, ScriptError};

use server::AppState;

/// How the scripted model behaves.
#[derive(Debug, Clone)]
pub struct Options {
    /// Milliseconds before the first content chunk, unless the script sets its own.
    pub first_token_ms: u64,
    /// Milliseconds between content chunks, unless the script sets its own.
    pub token_delay_ms: u64,
    /// The rules; the default script has none.
    pub script: Script,
    /// Whether the built-in tool rules answer what the script does not (on by default):
    /// "add a task to \<title>", `call <name> <json>` and the like, see `src/builtin.yaml`.
    pub builtin_rules: bool,
    /// The model listed by `/v1/models`, and echoed when a request names none.
    pub model: String,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            first_token_ms: 0,
            token_delay_ms: 0,
            script: Script::default(),
            builtin_rules: true,
            model: "scripted".to_owned(),
        }
    }
}

/// The scripted model's routes, with fresh state (response cursors, request log).
///
/// Requests that hang stay open until the client leaves; use [`serve`] to release them on
/// shutdown.
pub fn router(options: Options) -> Router {
    server::routes(AppState::new(options, CancellationToken::new()))
}

/// Serves the scripted model on `listener` until `shutdown` is cancelled, then finishes
/// in-flight responses (hanging ones are released at once) and returns.
///
/// # Errors
/// The I/O error that stopped the server.
pub async fn serve(
    listener: TcpListener,
    options: Options,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    serve_state(listener, AppState::new(options, shutdown.clone()), shutdown).await
}

async fn serve_state(
    listener: TcpListener,
    state: Arc<AppState>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let addr = listener.local_addr()?;
    tracing::info!(%addr, "scripted model listening");
    // Timed streams send small frames; Nagle's algorithm would delay them.
    let listener = listener.tap_io(|tcp| {
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::debug!(%error, "failed to set TCP_NODELAY");
        }
    });
    axum::serve(listener, server::routes(state))
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}

/// A scripted model running in the background; dropping it shuts the server down.
#[derive(Debug)]
pub struct Spawned {
    /// The OpenAI base URL, `http://127.0.0.1:<port>/v1`.
    pub base_url: String,
    /// The bound address.
    pub addr: SocketAddr,
    shutdown: CancellationToken,
    state: Arc<AppState>,
}

impl Spawned {
    /// The bodies of the last (up to 1000) chat completion requests, oldest first, the same
    /// data as `GET /_scripted/requests`.
    pub fn requests(&self) -> Vec<serde_json::Value> {
        let bodies = self.state.requests();
        // Only bodies that parsed as JSON are recorded.
        bodies.iter().filter_map(|b| serde_json::from_slice(b).ok()).collect()
    }

    /// Forgets the recorded requests.
    pub fn clear_requests(&self) {
        self.state.clear_requests();
    }

    /// A token that stops the server when cancelled (dropping `self` cancels it too).
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Binds `127.0.0.1:0` and serves the scripted model on the current runtime.
///
/// # Errors
/// The I/O error from binding the listener.
pub async fn spawn(options: Options) -> std::io::Result<Spawned> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
    let addr = listener.local_addr()?;
    let shutdown = CancellationToken::new();
    let state = AppState::new(options, shutdown.clone());
    let task_state = Arc::clone(&state);
    let task_shutdown = shutdown.clone();
    tokio::spawn(async move {
        if let Err(error) = serve_state(listener, task_state, task_shutdown).await {
            tracing::error!(%error, "scripted model server stopped");
        }
    });
    Ok(Spawned { base_url: format!("http://{addr}/v1"), addr, shutdown, state })
}
