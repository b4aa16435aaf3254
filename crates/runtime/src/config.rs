//! Configuration, read once at start from environment variables (and `./.env` when present).
//! An invalid value stops the process, naming the variable. An `AY_*` variable we do not know
//! is reported as a warning (with the known one it most resembles), not refused: orchestrators
//! inject variables of their own (`AY_SERVICE_HOST` for a service named `ay`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// A variable that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{var}: {problem}")]
    Invalid { var: String, problem: String },
}

/// A setting that must not be printed: its `Debug` is `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl Secret {
    /// The value itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// Everything a process of agentyard can be configured with. See the README's table.
#[derive(Clone, Debug)]
pub struct Settings {
    pub database_url: String,
    pub nats_url: String,
    pub http_addr: SocketAddr,
    pub subject_prefix: String,
    pub openai_base_url: Option<String>,
    pub openai_api_key: Option<String>,
    pub model: Option<String>,
    pub max_input_bytes: usize,
    pub events_max_age: Duration,
    /// `AY_NATS_REPLICAS`: copies of each JetStream stream a NATS cluster keeps (1: one server;
    /// 3: a three-node cluster that survives the loss of one node).
    pub nats_replicas: usize,
    /// How often every process publishes its heartbeat (three missed: down).
    pub heartbeat_every: Duration,
    /// `AY_MONITOR_PROBE_EVERY`: how often the monitor checks Postgres, NATS, queues and hosts,
    /// and evaluates the alert rules.
    pub monitor_probe_every: Duration,
    /// `AY_MONITOR_SLOW_PROBE_EVERY`: how often it lists each MCP server's tools and each model
    /// alias (requests that cost the other side something).
    pub monitor_slow_probe_every: Duration,
    pub agent_concurrency: usize,
    /// Model calls (and tool calls) per step before the run fails (the call gets an error).
    pub max_attempts: i64,
    /// Deliveries of a job after which it is given up whatever happened (a job that keeps
    /// killing its worker); failures to reach Postgres or NATS do not count against
    /// `max_attempts`, only against this.
    pub max_deliveries: i64,
    pub ack_wait: Duration,
    pub llm_timeout: Duration,
    pub retry_base: Duration,
    pub retry_max: Duration,
    pub history_tokens: usize,
    pub max_tokens: u32,
    pub db_pool_size: u32,
    /// `AY_DB_GROUP_COMMIT=off`: every run create, start and finish, tool step and tool result
    /// commits alone (to measure what grouping them gains).
    pub db_group_commit: bool,
    pub home: PathBuf,
    pub log: Option<String>,
    /// A directory holding `agents.yaml` to use instead of the compiled-in one.
    pub config_dir: Option<PathBuf>,
    /// `AY_CONSOLE_DIR`: serve the web console's files from this directory instead of the
    /// copies compiled in (edit a page, reload the browser).
    pub console_dir: Option<PathBuf>,
    /// Requests per second one token may make (0: no limit).
    pub rate_limit: f64,
    /// Requests a token may make at once above its rate.
    pub rate_burst: u32,
    /// Failed authentications a second one client address may make (0: no limit); beyond,
    /// tokens not recently seen valid are refused without a lookup.
    pub auth_failure_rate: f64,
    /// Failed authentications an address may make at once above that rate.
    pub auth_failure_burst: u32,
    /// Timeouts and the connection cap of every HTTP listener (`AY_HTTP_*`).
    pub http: crate::http::HttpLimits,
    /// Live (queued, waiting or running) runs one organization may have (0: no limit).
    pub org_max_active_runs: u32,
    /// Where `agentyard mcp-server` (the built-in tool server) listens.
    pub mcp_addr: SocketAddr,
    /// The built-in tool server's MCP endpoint, as the monitor probes it (tool workers run the
    /// built-in tools in their own process).
    pub mcp_url: String,
    /// Let organizations register MCP servers at private or loopback addresses.
    pub mcp_allow_private: bool,
    /// Longest wait for one tool call (not counting a wait for a human's input).
    pub tool_timeout: Duration,
    /// Longest wait for a human's answer to an elicitation or approval (then: declined).
    pub input_timeout: Duration,
    /// Tool calls one tool worker runs at once.
    pub tool_concurrency: usize,
    /// Event streams (SSE) one token may hold open on one API process.
    pub max_streams_per_token: usize,
    /// Record metrics and serve `GET /metrics` (`AY_METRICS=off` turns both off).
    pub metrics: bool,
    /// Where a worker (which has no HTTP server of its own) serves `GET /metrics`; port 0: any
    /// free port, logged and carried in heartbeats.
    pub metrics_addr: SocketAddr,
    /// `AY_SECRET_KEY`: base64 of the 32-byte key that seals the secrets stored in Postgres
    /// (checked, and turned into a keyring, by the store: `agentyard_store::secrets`).
    pub secret_key: Option<Secret>,
    /// `AY_SECRET_KEY_OLD`: earlier keys (comma-separated), to open values only (rotation).
    pub secret_key_old: Option<Secret>,
    /// `AY_*` variables that are set but mean nothing to us (reported as warnings).
    pub unknown_vars: Vec<String>,
}

/// The `AY_*` variables we read (others are rejected).
pub const KNOWN_AY_VARS: &[&str] = &[
    "AY_HTTP_ADDR",
    "AY_HTTP_HEADER_TIMEOUT",
    "AY_HTTP_BODY_TIMEOUT",
    "AY_HTTP_IDLE_TIMEOUT",
    "AY_HTTP_MAX_CONNECTIONS",
    "AY_AUTH_FAILURE_RATE",
    "AY_AUTH_FAILURE_BURST",
    "AY_SUBJECT_PREFIX",
    "AY_MODEL",
    "AY_MAX_INPUT_BYTES",
    "AY_EVENTS_MAX_AGE",
    "AY_NATS_REPLICAS",
    "AY_HEARTBEAT_EVERY",
    "AY_MONITOR_PROBE_EVERY",
    "AY_MONITOR_SLOW_PROBE_EVERY",
    "AY_ALERT_WEBHOOK_SECRET",
    "AY_AGENT_CONCURRENCY",
    "AY_MAX_ATTEMPTS",
    "AY_MAX_DELIVERIES",
    "AY_ACK_WAIT",
    "AY_LLM_TIMEOUT",
    "AY_RETRY_BASE",
    "AY_RETRY_MAX",
    "AY_HISTORY_TOKENS",
    "AY_MAX_TOKENS",
    "AY_DB_POOL_SIZE",
    "AY_DB_GROUP_COMMIT",
    "AY_HOME",
    "AY_LOG",
    "AY_CONFIG_DIR",
    "AY_CONSOLE_DIR",
    "AY_RATE_LIMIT",
    "AY_RATE_BURST",
    "AY_ORG_MAX_ACTIVE_RUNS",
    "AY_MCP_ADDR",
    "AY_MCP_URL",
    "AY_MCP_ALLOW_PRIVATE",
    "AY_TOOL_TIMEOUT",
    "AY_INPUT_TIMEOUT",
    "AY_TOOL_CONCURRENCY",
    "AY_MAX_STREAMS_PER_TOKEN",
    "AY_METRICS",
    "AY_METRICS_ADDR",
    "AY_SECRET_KEY",
    "AY_SECRET_KEY_OLD",
];

impl Settings {
    /// Reads `./.env` (never overriding the real environment), then the environment.
    ///
    /// # Errors
    /// The first invalid or unknown variable.
    pub fn from_env() -> Result<Self, ConfigError> {
        let _ = dotenvy::dotenv();
        Self::from_vars(std::env::vars().collect())
    }

    /// Builds settings from a map of variables (tests build them in code).
    ///
    /// # Errors
    /// The first invalid or unknown variable.
    pub fn from_vars(vars: HashMap<String, String>) -> Result<Self, ConfigError> {
        let mut unknown_vars: Vec<String> = vars
            .keys()
            .filter(|k| k.starts_with("AY_") && !KNOWN_AY_VARS.contains(&k.as_str()))
            .cloned()
            .collect();
        unknown_vars.sort();
        let get = |k: &str| vars.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
        let s = Self {
            database_url: get("DATABASE_URL")
                .unwrap_or("postgres://postgres@127.0.0.1:5432/agentyard")
                .to_owned(),
            nats_url: get("NATS_URL").unwrap_or("nats://127.0.0.1:4222").to_owned(),
            http_addr: parse(&get, "AY_HTTP_ADDR", "127.0.0.1:8080", |v| v.parse().ok())?,
            subject_prefix: parse(&get, "AY_SUBJECT_PREFIX", "ay", valid_prefix)?,
            openai_base_url: get("OPENAI_BASE_URL").map(|v| v.trim_end_matches('/').to_owned()),
            openai_api_key: get("OPENAI_API_KEY").map(str::to_owned),
            model: get("AY_MODEL").map(str::to_owned),
            max_input_bytes: parse(&get, "AY_MAX_INPUT_BYTES", "262144", positive)?,
            events_max_age: parse(&get, "AY_EVENTS_MAX_AGE", "24h", parse_duration)?,
            nats_replicas: parse(&get, "AY_NATS_REPLICAS", "1", |v| {
                v.parse().ok().filter(|n: &usize| (1..=5).contains(n))
            })?,
            heartbeat_every: parse(&get, "AY_HEARTBEAT_EVERY", "5s", parse_duration)?,
            monitor_probe_every: parse(&get, "AY_MONITOR_PROBE_EVERY", "10s", parse_duration)?,
            monitor_slow_probe_every: parse(
                &get,
                "AY_MONITOR_SLOW_PROBE_EVERY",
                "60s",
                parse_duration,
            )?,
            agent_concurrency: parse(&get, "AY_AGENT_CONCURRENCY", "512", positive)?,
            max_attempts: parse(&get, "AY_MAX_ATTEMPTS", "5", |v| {
                v.parse().ok().filter(|n: &i64| (1..=100).contains(n))
            })?,
            max_deliveries: parse(&get, "AY_MAX_DELIVERIES", "100", |v| {
                v.parse().ok().filter(|n: &i64| (1..=100_000).contains(n))
            })?,
            ack_wait: parse(&get, "AY_ACK_WAIT", "30s", parse_duration)?,
            llm_timeout: parse(&get, "AY_LLM_TIMEOUT", "120s", parse_duration)?,
            retry_base: parse(&get, "AY_RETRY_BASE", "500ms", parse_duration)?,
            retry_max: parse(&get, "AY_RETRY_MAX", "30s", parse_duration)?,
            history_tokens: parse(&get, "AY_HISTORY_TOKENS", "8000", positive)?,
            max_tokens: parse(&get, "AY_MAX_TOKENS", "32768", positive)?,
            db_pool_size: parse(&get, "AY_DB_POOL_SIZE", "8", positive)?,
            db_group_commit: parse(&get, "AY_DB_GROUP_COMMIT", "on", on_off)?,
            home: PathBuf::from(get("AY_HOME").unwrap_or(".agentyard")),
            log: get("AY_LOG").map(str::to_owned),
            config_dir: get("AY_CONFIG_DIR").map(PathBuf::from),
            console_dir: get("AY_CONSOLE_DIR").map(PathBuf::from),
            rate_limit: parse(&get, "AY_RATE_LIMIT", "100", |v| {
                v.parse().ok().filter(|n: &f64| n.is_finite() && *n >= 0.0)
            })?,
            rate_burst: parse(&get, "AY_RATE_BURST", "200", positive)?,
            auth_failure_rate: parse(&get, "AY_AUTH_FAILURE_RATE", "1", |v| {
                v.parse().ok().filter(|n: &f64| n.is_finite() && *n >= 0.0)
            })?,
            auth_failure_burst: parse(&get, "AY_AUTH_FAILURE_BURST", "20", positive)?,
            http: crate::http::HttpLimits {
                header_timeout: parse(&get, "AY_HTTP_HEADER_TIMEOUT", "10s", positive_duration)?,
                body_timeout: parse(&get, "AY_HTTP_BODY_TIMEOUT", "30s", positive_duration)?,
                idle_timeout: parse(&get, "AY_HTTP_IDLE_TIMEOUT", "60s", positive_duration)?,
                max_connections: parse(&get, "AY_HTTP_MAX_CONNECTIONS", "20000", positive)?,
            },
            org_max_active_runs: parse(&get, "AY_ORG_MAX_ACTIVE_RUNS", "1000", |v| v.parse().ok())?,
            mcp_addr: parse(&get, "AY_MCP_ADDR", "127.0.0.1:8081", |v| v.parse().ok())?,
            mcp_url: String::new(),
            mcp_allow_private: parse(&get, "AY_MCP_ALLOW_PRIVATE", "0", |v| match v {
                "1" | "true" | "yes" => Some(true),
                "0" | "false" | "no" => Some(false),
                _ => None,
            })?,
            tool_timeout: parse(&get, "AY_TOOL_TIMEOUT", "30s", parse_duration)?,
            input_timeout: parse(&get, "AY_INPUT_TIMEOUT", "10m", parse_duration)?,
            tool_concurrency: parse(&get, "AY_TOOL_CONCURRENCY", "256", positive)?,
            max_streams_per_token: parse(&get, "AY_MAX_STREAMS_PER_TOKEN", "1000", positive)?,
            metrics: parse(&get, "AY_METRICS", "on", on_off)?,
            metrics_addr: parse(&get, "AY_METRICS_ADDR", "127.0.0.1:0", |v| v.parse().ok())?,
            secret_key: get("AY_SECRET_KEY").map(|v| Secret(v.to_owned())),
            secret_key_old: get("AY_SECRET_KEY_OLD").map(|v| Secret(v.to_owned())),
            unknown_vars,
        };
        let mut s = s;
        s.mcp_url = get("AY_MCP_URL").map_or_else(
            || format!("http://{}/mcp", s.mcp_addr),
            |u| u.trim_end_matches('/').to_owned(),
        );
        if s.ack_wait < Duration::from_secs(1) {
            return Err(invalid("AY_ACK_WAIT", "must be at least 1s"));
        }
        Ok(s)
    }
}

impl Settings {
    /// One warning per unknown `AY_*` variable, naming the known one it most resembles.
    pub fn unknown_var_warnings(&self) -> Vec<String> {
        self.unknown_vars
            .iter()
            .map(|var| {
                let closest = KNOWN_AY_VARS
                    .iter()
                    .map(|k| (edit_distance(var, k), *k))
                    .min()
                    .filter(|(d, _)| *d <= 3)
                    .map_or_else(String::new, |(_, k)| format!("; did you mean {k}?"));
                format!("{var} is set but is not an agentyard setting; it is ignored{closest}")
            })
            .collect()
    }
}

/// Levenshtein distance, for "did you mean".
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

fn invalid(var: &str, problem: &str) -> ConfigError {
    ConfigError::Invalid { var: var.to_owned(), problem: problem.to_owned() }
}

fn parse<'a, T>(
    get: &impl Fn(&str) -> Option<&'a str>,
    var: &str,
    default: &str,
    f: impl Fn(&str) -> Option<T>,
) -> Result<T, ConfigError> {
    let raw = get(var).unwrap_or(default);
    f(raw).ok_or_else(|| invalid(var, &format!("invalid value {raw:?}")))
}

fn on_off(v: &str) -> Option<bool> {
    match v {
        "on" | "1" | "true" | "yes" => Some(true),
        "off" | "0" | "false" | "no" => Some(false),
        _ => None,
    }
}

fn positive<T: std::str::FromStr + PartialOrd + Default>(v: &str) -> Option<T> {
    v.parse().ok().filter(|n| *n > T::default())
}

fn positive_duration(v: &str) -> Option<Duration> {
    parse_duration(v).filter(|d| !d.is_zero())
}

fn valid_prefix(v: &str) -> Option<String> {
    let ok = !v.is_empty()
        && v.len() <= 32
        && v.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    ok.then(|| v.to_owned())
}

/// Parses `500ms`, `30s`, `5m`, `24h` or a bare number of seconds.
pub fn parse_duration(v: &str) -> Option<Duration> {
    let v = v.trim();
    let split = v.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(v.len());
    let (num, unit) = v.split_at(split);
    let n: f64 = num.parse().ok().filter(|n: &f64| n.is_finite() && *n >= 0.0)?;
    let secs = match unit.trim() {
        "ms" => n / 1000.0,
        "" | "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        "d" => n * 86400.0,
        _ => return None,
    };
    Some(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn defaults_apply_when_nothing_is_set() {
        let s = Settings::from_vars(HashMap::new()).unwrap();
        assert_eq!(s.http_addr.to_string(), "127.0.0.1:8080");
        assert_eq!(s.subject_prefix, "ay");
        assert_eq!(s.max_input_bytes, 256 * 1024);
        assert_eq!(s.events_max_age, Duration::from_secs(86400));
        assert_eq!(s.agent_concurrency, 512);
        assert_eq!(s.nats_replicas, 1);
        assert!(s.metrics);
        assert_eq!(s.metrics_addr.to_string(), "127.0.0.1:0");
        assert_eq!(s.http, crate::http::HttpLimits::default());
    }

    #[test]
    fn http_limits_are_read_and_zero_timeouts_refused() {
        let s = Settings::from_vars(vars(&[
            ("AY_HTTP_HEADER_TIMEOUT", "500ms"),
            ("AY_HTTP_BODY_TIMEOUT", "2s"),
            ("AY_HTTP_IDLE_TIMEOUT", "1m"),
            ("AY_HTTP_MAX_CONNECTIONS", "3"),
        ]))
        .unwrap();
        assert_eq!(s.http.header_timeout, Duration::from_millis(500));
        assert_eq!(s.http.body_timeout, Duration::from_secs(2));
        assert_eq!(s.http.idle_timeout, Duration::from_secs(60));
        assert_eq!(s.http.max_connections, 3);
        let err = Settings::from_vars(vars(&[("AY_HTTP_IDLE_TIMEOUT", "0s")])).unwrap_err();
        assert!(err.to_string().starts_with("AY_HTTP_IDLE_TIMEOUT"), "{err}");
        let err = Settings::from_vars(vars(&[("AY_HTTP_MAX_CONNECTIONS", "0")])).unwrap_err();
        assert!(err.to_string().starts_with("AY_HTTP_MAX_CONNECTIONS"), "{err}");
    }

    #[test]
    fn metrics_can_be_turned_off_and_given_an_address() {
        let s = Settings::from_vars(vars(&[
            ("AY_METRICS", "off"),
            ("AY_METRICS_ADDR", "0.0.0.0:9464"),
        ]))
        .unwrap();
        assert!(!s.metrics && s.unknown_vars.is_empty());
        assert_eq!(s.metrics_addr.port(), 9464);
        assert!(Settings::from_vars(vars(&[])).unwrap().db_group_commit);
        let s = Settings::from_vars(vars(&[("AY_DB_GROUP_COMMIT", "off")])).unwrap();
        assert!(!s.db_group_commit && s.unknown_vars.is_empty());
        let err = Settings::from_vars(vars(&[("AY_METRICS", "maybe")])).unwrap_err();
        assert!(err.to_string().starts_with("AY_METRICS"), "{err}");
    }

    #[test]
    fn an_unknown_ay_variable_is_a_warning_naming_the_closest_known_one() {
        let s =
            Settings::from_vars(vars(&[("AY_HTTP_ADRR", "x"), ("AY_SERVICE_HOST", "10.0.0.1")]))
                .unwrap();
        let warnings = s.unknown_var_warnings();
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(warnings[0].contains("AY_HTTP_ADRR") && warnings[0].contains("AY_HTTP_ADDR"));
        assert!(warnings[1].contains("AY_SERVICE_HOST") && !warnings[1].contains("did you"));
    }

    #[test]
    fn an_invalid_value_is_named_in_the_error() {
        let err = Settings::from_vars(vars(&[("AY_MAX_INPUT_BYTES", "lots")])).unwrap_err();
        assert!(err.to_string().starts_with("AY_MAX_INPUT_BYTES"), "{err}");
        let err = Settings::from_vars(vars(&[("AY_NATS_REPLICAS", "7")])).unwrap_err();
        assert!(err.to_string().starts_with("AY_NATS_REPLICAS"), "{err}");
        let err = Settings::from_vars(vars(&[("AY_SUBJECT_PREFIX", "Has.Dots")])).unwrap_err();
        assert!(err.to_string().starts_with("AY_SUBJECT_PREFIX"), "{err}");
    }

    #[test]
    fn the_secret_keys_are_read_but_never_printed() {
        let s = Settings::from_vars(vars(&[
            ("AY_SECRET_KEY", "c2VjcmV0LWtleS1ub3QtcHJpbnRlZC0wMTIzNDU2Nzg="),
            ("AY_SECRET_KEY_OLD", "b2xkLWtleQ=="),
        ]))
        .unwrap();
        assert!(s.unknown_vars.is_empty(), "{:?}", s.unknown_vars);
        assert_eq!(s.secret_key.as_ref().map(Secret::expose).map(str::len), Some(44));
        assert!(s.secret_key_old.is_some());
        let printed = format!("{s:?}");
        assert!(!printed.contains("c2VjcmV0") && !printed.contains("b2xk"), "{printed}");
    }

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("30"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("2h"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_duration("soon"), None);
    }
}
