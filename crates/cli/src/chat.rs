//! `agentyard chat "message"`: posts a message and prints the reply as it streams. It talks to
//! the agent you name (`--agent task_assistant`, or an agent id), asks at the prompt when the run
//! needs you (an approval, a question from a tool), and Ctrl-C cancels the run and exits.

use std::io::Write;
use std::path::PathBuf;

use agentyard_core::sse::SseParser;
use agentyard_runtime::Settings;
use anyhow::{Context, bail};
use futures::StreamExt;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

/// Arguments of `chat`.
#[derive(Debug, clap::Args)]
pub struct ChatArgs {
    /// The message.
    pub message: String,
    /// The agent that answers: an agent type (`task_assistant`, ...; created in the org when
    /// it has none) or an agent id. Default: the org's default agent.
    #[arg(long)]
    pub agent: Option<String>,
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

/// The API, as the chat talks to it.
struct Api {
    http: reqwest::Client,
    url: String,
    token: String,
}

impl Api {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let mut req =
            self.http.request(method, format!("{}{path}", self.url)).bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp =
            req.send().await.with_context(|| format!("cannot reach the API at {}", self.url))?;
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            let message = body["error"]["message"].as_str().unwrap_or_default();
            bail!("{status}: {} {message}", body["error"]["code"].as_str().unwrap_or_default());
        }
        Ok(body)
    }

    /// The id of the agent `agent` names: an id as it is, else the org's agent of that type
    /// (created when the org has none).
    async fn agent_id(&self, agent: &str) -> anyhow::Result<String> {
        if agent.parse::<agentyard_core::AgentId>().is_ok() {
            return Ok(agent.to_owned());
        }
        let list = self.call(reqwest::Method::GET, "/v1/agents", None).await?;
        let found =
            list["data"].as_array().into_iter().flatten().find(|a| a["agent_type"] == agent);
        if let Some(a) = found {
            return Ok(a["id"].as_str().unwrap_or_default().to_owned());
        }
        let created = self
            .call(reqwest::Method::POST, "/v1/agents", Some(json!({"agent_type": agent})))
            .await
            .with_context(|| format!("no agent of type `{agent}` and cannot create one"))?;
        Ok(created["id"].as_str().unwrap_or_default().to_owned())
    }
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
    let api = Api { http: reqwest::Client::new(), url, token };
    let mut body = json!({"input": args.message, "stream": true, "thread_id": args.thread});
    if let Some(agent) = &args.agent {
        body["agent_id"] = json!(api.agent_id(agent).await?);
    }
    let resp = api
        .http
        .post(format!("{}/v1/runs", api.url))
        .bearer_auth(&api.token)
        .json(&body)
        .send()
        .await
        .with_context(|| format!("cannot reach the API at {}", api.url))?;
    if !resp.status().is_success() {
        let status = resp.status();
        bail!("{status}: {}", resp.text().await.unwrap_or_default());
    }
    let mut parser = SseParser::default();
    let mut bytes = resp.bytes_stream();
    let mut out = std::io::stdout();
    let mut stdin = BufReader::new(tokio::io::stdin()).lines();
    let (mut thread, mut run_id) = (None, None);
    // Whether the cursor is at the start of a line (so the thread hint gets a line of its own).
    let mut line_start = true;
    let ended = 'stream: loop {
        let chunk = tokio::select! {
            c = bytes.next() => c,
            _ = tokio::signal::ctrl_c() => {
                if let Some(id) = &run_id {
                    let _ = api.call(reqwest::Method::POST, &format!("/v1/runs/{id}/cancel"), None).await;
                }
                if !line_start {
                    writeln!(out)?;
                }
                eprintln!("[cancelled]");
                std::process::exit(130);
            }
        };
        let Some(chunk) = chunk else { break false };
        for ev in parser.feed(&chunk?) {
            let data: Value = serde_json::from_str(&ev.data).unwrap_or_default();
            match ev.event.as_str() {
                "run.queued" => {
                    thread = data["run"]["thread_id"].as_str().map(str::to_owned);
                    run_id = data["run"]["id"].as_str().map(str::to_owned);
                }
                "message.delta" => {
                    let text = data["content"].as_str().unwrap_or_default();
                    write!(out, "{text}")?;
                    out.flush()?;
                    if !text.is_empty() {
                        line_start = text.ends_with('\n');
                    }
                }
                "message.reset" => {
                    writeln!(out, "\n[the model is retrying]")?;
                    line_start = true;
                }
                "run.requires_input" => {
                    if !line_start {
                        writeln!(out)?;
                        line_start = true;
                    }
                    if let Some(id) = &run_id {
                        let answer = ask(&data["run"]["required_input"], &mut stdin).await?;
                        api.call(
                            reqwest::Method::POST,
                            &format!("/v1/runs/{id}/input"),
                            Some(answer),
                        )
                        .await?;
                    }
                }
                "run.completed" => break 'stream true,
                "run.failed" | "run.cancelled" | "run.expired" => {
                    if !line_start {
                        writeln!(out)?;
                    }
                    bail!("run {}: {}", &ev.event[4..], data["run"]["error"]);
                }
                _ => {}
            }
        }
    };
    if !line_start {
        writeln!(out)?;
    }
    out.flush()?;
    if !ended {
        bail!("the event stream ended before the run did");
    }
    if let Some(t) = thread {
        eprintln!("(thread {t}: continue with --thread {t})");
    }
    Ok(())
}

/// Prints `prompt` on stderr and reads one line (trimmed; empty at the end of input).
async fn line(
    stdin: &mut tokio::io::Lines<BufReader<tokio::io::Stdin>>,
    prompt: &str,
) -> anyhow::Result<String> {
    eprint!("{prompt}");
    let _ = std::io::stderr().flush();
    Ok(stdin.next_line().await?.unwrap_or_default().trim().to_owned())
}

/// Asks the human at the terminal what the run waits for; returns the answer's body.
async fn ask(
    required: &Value,
    stdin: &mut tokio::io::Lines<BufReader<tokio::io::Stdin>>,
) -> anyhow::Result<Value> {
    if required["kind"] == "tool_approval" {
        let message = required["message"].as_str().unwrap_or("The agent wants to call a tool.");
        let prompt = format!("{message}\n  arguments: {}\nApprove? [y/N] ", required["arguments"]);
        let answer = line(stdin, &prompt).await?;
        let action =
            if matches!(answer.to_lowercase().as_str(), "y" | "yes") { "approve" } else { "deny" };
        return Ok(json!({ "action": action }));
    }
    eprintln!(
        "{} (empty answer to the first question: decline)",
        required["message"].as_str().unwrap_or("A tool asks:")
    );
    let schema = &required["requested_schema"];
    let mut content = serde_json::Map::new();
    let props = schema["properties"].as_object().cloned().unwrap_or_default();
    for (i, (name, prop)) in props.iter().enumerate() {
        let kind = prop["type"].as_str().unwrap_or("string");
        let hint = prop["description"].as_str().map(|d| format!(" ({d})")).unwrap_or_default();
        let answer = line(stdin, &format!("  {name}{hint}: ")).await?;
        if answer.is_empty() {
            if i == 0 {
                return Ok(json!({ "action": "decline" }));
            }
            continue;
        }
        let value = match kind {
            "integer" => answer.parse::<i64>().map(Value::from).unwrap_or(Value::String(answer)),
            "number" => answer.parse::<f64>().map(Value::from).unwrap_or(Value::String(answer)),
            "boolean" => {
                Value::Bool(matches!(answer.to_lowercase().as_str(), "y" | "yes" | "true"))
            }
            _ => Value::String(answer),
        };
        content.insert(name.clone(), value);
    }
    Ok(json!({ "action": "accept", "content": content }))
}
