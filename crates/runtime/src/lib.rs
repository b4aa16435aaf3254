//! Process plumbing shared by every binary: configuration from the environment, telemetry and
//! the shutdown signal, and the HTTP server every listener uses ([`http`]).

pub mod config;
pub mod http;
pub mod limit;
pub mod signal;
pub mod telemetry;

pub use config::{ConfigError, Settings};
