//! Heartbeats: every process says it is alive on core NATS (`<p>.heartbeat.<role>`) every
//! `AY_HEARTBEAT_EVERY`; the monitor keeps the instances and notices the silent ones.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// One heartbeat.
#[derive(
    Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema, utoipa::ToSchema,
)]
pub struct Heartbeat {
    /// Unique per process start.
    pub instance_id: String,
    /// `api`, `agent`, `tool`, `orchestrator`, `mcp-server`, `monitor`.
    pub role: String,
    pub version: String,
    pub host: String,
    pub pid: u32,
    pub started_at: DateTime<Utc>,
    pub at: DateTime<Utc>,
    /// How often it beats: silent for three of these, it counts as down.
    pub every_ms: u64,
    /// Jobs it can run at once (workers).
    pub capacity: Option<u64>,
    /// Jobs it runs now (workers).
    #[serde(default)]
    pub in_flight: Option<u64>,
    /// Where it serves `GET /metrics` (host:port), once it listens.
    #[serde(default)]
    pub metrics_addr: Option<String>,
    /// Its host's use of CPU, memory, disk and network.
    #[serde(default)]
    pub host_stats: Option<HostStats>,
}

/// A host's figures, as a process on it saw them between two of its heartbeats.
#[derive(
    Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema, utoipa::ToSchema,
)]
pub struct HostStats {
    /// Busy share of every CPU since the previous beat (absent in the first).
    pub cpu_pct: Option<f64>,
    /// Memory in use (not available), in percent.
    pub mem_pct: f64,
    /// Of the root file system, in percent.
    pub disk_pct: Option<f64>,
    /// Bytes per second over every interface but loopback, since the previous beat.
    pub net_rx_bytes_per_s: Option<f64>,
    pub net_tx_bytes_per_s: Option<f64>,
    /// Load average over a minute.
    pub load1: Option<f64>,
}
