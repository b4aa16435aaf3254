//! `agentyard chat "message"`: posts a message and prints the reply as it streams.

use std::io::Write;
use std::path::PathBuf;

use agentyard_core::sse::SseParser;
use agentyard_runtime::Settings;
use anyhow::{Context, bail};
use futures::StreamExt;

/// Arguments of `chat`.
#[derive(Debug, clap::Args)]
pub struct ChatArgs {
    /// The message.
    pub message: String,
    /// Continue this thread (printed after each reply).
    #[arg(long)]
    pub thread: Option<String>,
    /// API base URL (default: http://AY_HTTP_ADDR).
    #[arg(long)]
    pub url: Option<String>,
    /// Bearer token (default: the dev token in AY_HOME/dev-token).
    #[arg(long)]
    pub token: Option<String>,
}

/// Posts and streams.
///
/// # Errors
/// When the API cannot be reached or answers with an error.
pub async fn run(settings: &Settings, args: ChatArgs) -> anyhow::Result<()> {
    let url = args.url.unwrap_or_else(|| format!("http://{}", settings.http_addr));
    let token = match args.token {
        Some(t) => t,
        None => {
            let path: PathBuf = settings.home.join("dev-token");
            std::fs::read_to_string(&path)
                .with_context(|| format!("no --token and cannot read {}", path.display()))?
                .trim()
                .to_owned()
        }
    };
    let body = serde_json::json!({"input": args.message, "stream": true, "thread_id": args.thread});
    let resp = reqwest::Client::new()
        .post(format!("{url}/v1/runs"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .with_context(|| format!("cannot reach the API at {url}"))?;
    if !resp.status().is_success() {
        let status = resp.status();
        bail!("{status}: {}", resp.text().await.unwrap_or_default());
    }
    let mut parser = SseParser::default();
    let mut bytes = resp.bytes_stream();
    let mut out = std::io::stdout();
    let mut thread = None;
    while let Some(chunk) = bytes.next().await {
        for ev in parser.feed(&chunk?) {
            let data: serde_json::Value = serde_json::from_str(&ev.data).unwrap_or_default();
            match ev.event.as_str() {
                "run.queued" => thread = data["run"]["thread_id"].as_str().map(str::to_owned),
                "message.delta" => {
                    write!(out, "{}", data["content"].as_str().unwrap_or_default())?;
                    out.flush()?;
                }
                "message.reset" => writeln!(out, "\n[the model is retrying]")?,
                "run.completed" => writeln!(out)?,
                "run.failed" | "run.cancelled" => {
                    writeln!(out)?;
                    bail!("run {}: {}", &ev.event[4..], data["run"]["error"]);
                }
                _ => {}
            }
        }
    }
    if let Some(t) = thread {
        eprintln!("(thread {t}: continue with --thread {t})");
    }
    Ok(())
}
