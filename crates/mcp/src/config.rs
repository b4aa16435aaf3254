//! `config/mcp-servers.yaml`: MCP servers the operator declares for every organization. Only
//! here may a server be a command (stdio): an API client can never make the platform run one.
//!
//! ```yaml
//! servers:
//!   everything:                 # its tools reach models as everything__<tool>
//!     command: node
//!     args: [/opt/mcp/everything/dist/index.js, stdio]
//!     env: { LOG_LEVEL: warn }
//!   docs:
//!     url: https://mcp.example.com/mcp
//!     bearer_token_env: DOCS_MCP_TOKEN   # the token is read from this variable
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

/// How to reach a server.
#[derive(Clone, Debug, PartialEq)]
pub enum ServerConfig {
    /// A server of the operator's (the built-in one, `config/mcp-servers.yaml`): trusted.
    Http {
        url: String,
        bearer_token: Option<String>,
    },
    Stdio {
        command: String,
        args: Vec<String>,
        env: BTreeMap<String, String>,
    },
    /// A server an organization registered, reached on its behalf: the address connected to is
    /// checked at every connection (no special-purpose address unless `allow_private`, which is
    /// `AY_MCP_ALLOW_PRIVATE`) and redirects are not followed.
    Registered {
        url: String,
        bearer_token: Option<String>,
        allow_private: bool,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    command: Option<String>,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    url: Option<String>,
    bearer_token_env: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    servers: BTreeMap<String, Entry>,
}

/// The operator's servers, by name.
#[derive(Clone, Debug, Default)]
pub struct ConfigServers(pub BTreeMap<String, ServerConfig>);

impl ConfigServers {
    /// `<dir>/mcp-servers.yaml`; none when `dir` is None or the file does not exist.
    ///
    /// # Errors
    /// A file that does not parse or breaks a rule (the message names the line and field).
    pub fn load(dir: Option<&Path>) -> Result<Self, String> {
        let Some(dir) = dir else { return Ok(Self::default()) };
        let path = dir.join("mcp-servers.yaml");
        match std::fs::read_to_string(&path) {
            Ok(text) => Self::parse(&path.display().to_string(), &text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(format!("{}: {e}", path.display())),
        }
    }

    /// Parses a file's text; `name` is used in messages.
    ///
    /// # Errors
    /// As [`ConfigServers::load`].
    pub fn parse(name: &str, yaml: &str) -> Result<Self, String> {
        let file: File = serde_saphyr::from_str(yaml).map_err(|e| format!("{name}: {e}"))?;
        let mut out = BTreeMap::new();
        for (server, e) in file.servers {
            if !valid_name(&server) {
                return Err(format!(
                    "{name}: servers.{server}: a name is 1 to 32 of a-z, 0-9, - and _, without `__`"
                ));
            }
            let config = match (e.command, e.url) {
                (Some(command), None) => ServerConfig::Stdio { command, args: e.args, env: e.env },
                (None, Some(url)) => {
                    let bearer_token = match e.bearer_token_env {
                        Some(var) => Some(std::env::var(&var).map_err(|_| {
                            format!("{name}: servers.{server}.bearer_token_env: {var} is not set")
                        })?),
                        None => None,
                    };
                    ServerConfig::Http { url, bearer_token }
                }
                _ => {
                    return Err(format!(
                        "{name}: servers.{server}: give exactly one of `command` and `url`"
                    ));
                }
            };
            out.insert(server, config);
        }
        Ok(Self(out))
    }
}

/// A server name: 1 to 32 of `a-z`, `0-9`, `-`, `_`, without `__` (the namespace separator).
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 32
        && !name.contains("__")
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stdio_and_http_servers_parse_and_bad_ones_are_named() {
        let ok = ConfigServers::parse(
            "t",
            "servers:\n  every:\n    command: node\n    args: [x.js, stdio]\n  web:\n    url: http://h/mcp\n",
        )
        .unwrap();
        assert!(matches!(ok.0["every"], ServerConfig::Stdio { .. }));
        assert!(matches!(ok.0["web"], ServerConfig::Http { .. }));
        let err = ConfigServers::parse("t", "servers:\n  x:\n    comand: node\n").unwrap_err();
        assert!(err.contains("comand"), "{err}");
        let err = ConfigServers::parse("t", "servers:\n  a__b:\n    command: x\n").unwrap_err();
        assert!(err.contains("a__b"), "{err}");
        assert!(ConfigServers::load(None).unwrap().0.is_empty());
    }
}
