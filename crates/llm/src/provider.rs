//! Which model server to use: `OPENAI_BASE_URL`, else `OPENAI_API_KEY` (OpenAI), else a local
//! Ollama that answers, else the scripted model (started by the caller).

use std::time::Duration;

/// Where a provider came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProviderKind {
    /// `OPENAI_BASE_URL`: any OpenAI-compatible server.
    Configured,
    /// `OPENAI_API_KEY` without a base URL.
    OpenAi,
    /// A local Ollama found on 127.0.0.1:11434.
    Ollama,
    /// The built-in scripted model.
    Scripted,
}

impl ProviderKind {
    /// `gen_ai.provider.name`: `openai` for OpenAI and for any server configured with
    /// `OPENAI_BASE_URL` (it speaks OpenAI's API; which software it is, we cannot know),
    /// `ollama`, `scripted`.
    pub fn gen_ai_name(self) -> &'static str {
        match self {
            Self::Configured | Self::OpenAi => "openai",
            Self::Ollama => "ollama",
            Self::Scripted => "scripted",
        }
    }
}

/// A model endpoint.
#[derive(Clone, Debug)]
pub struct Provider {
    pub kind: ProviderKind,
    /// Base URL including `/v1`.
    pub base_url: String,
    pub api_key: Option<String>,
    pub model: String,
}

/// Default local Ollama endpoint.
pub const OLLAMA_URL: &str = "http://127.0.0.1:11434/v1";

impl Provider {
    /// Resolves the configured provider; None means "use the scripted model".
    pub async fn from_settings(
        base_url: Option<&str>,
        api_key: Option<&str>,
        model: Option<&str>,
    ) -> Option<Self> {
        if let Some(url) = base_url {
            // Without AY_MODEL: the model the server lists first (llama.cpp and vLLM serve
            // one and name it there), else OpenAI's usual name.
            let model = match model {
                Some(m) => m.to_owned(),
                None => probe_models(url, api_key, Duration::from_secs(2))
                    .await
                    .flatten()
                    .unwrap_or_else(|| "gpt-4o-mini".into()),
            };
            return Some(Self {
                kind: ProviderKind::Configured,
                base_url: url.to_owned(),
                api_key: api_key.map(str::to_owned),
                model,
            });
        }
        if let Some(key) = api_key {
            return Some(Self {
                kind: ProviderKind::OpenAi,
                base_url: "https://api.openai.com/v1".to_owned(),
                api_key: Some(key.to_owned()),
                model: model.unwrap_or("gpt-4o-mini").to_owned(),
            });
        }
        let first_model = probe_models(OLLAMA_URL, None, Duration::from_millis(500)).await?;
        Some(Self {
            kind: ProviderKind::Ollama,
            base_url: OLLAMA_URL.to_owned(),
            api_key: None,
            model: model.map(str::to_owned).or(first_model).unwrap_or_else(|| "llama3.2".into()),
        })
    }

    /// The scripted model at `base_url`.
    pub fn scripted(base_url: String, model: Option<&str>) -> Self {
        Self {
            kind: ProviderKind::Scripted,
            base_url,
            api_key: None,
            model: model.unwrap_or("scripted").to_owned(),
        }
    }

    /// One line for the start banner.
    pub fn banner(&self) -> String {
        let what = match self.kind {
            ProviderKind::Configured => "the OpenAI-compatible server at OPENAI_BASE_URL",
            ProviderKind::OpenAi => "OpenAI (OPENAI_API_KEY)",
            ProviderKind::Ollama => "a local Ollama",
            ProviderKind::Scripted => {
                "the SCRIPTED demo model (set OPENAI_BASE_URL or OPENAI_API_KEY for a real one)"
            }
        };
        format!("model: {} via {what} at {}", self.model, self.base_url)
    }
}

/// `Some(first model id)` when an OpenAI-compatible server answers `/models` within `wait`.
async fn probe_models(
    base_url: &str,
    api_key: Option<&str>,
    wait: Duration,
) -> Option<Option<String>> {
    let client = reqwest::Client::builder().timeout(wait).build().ok()?;
    let mut req = client.get(format!("{}/models", base_url.trim_end_matches('/')));
    if let Some(key) = api_key {
        req = req.bearer_auth(key);
    }
    let resp = req.send().await.ok()?;
    if !resp.status().is_success() {
        return None;
    }
    let v: serde_json::Value = resp.json().await.ok()?;
    Some(v["data"][0]["id"].as_str().map(str::to_owned))
}
