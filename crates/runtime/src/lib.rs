//! Process plumbing shared by every binary: configuration from the environment, telemetry and
//! the shutdown signal.

pub mod config;
pub mod signal;
pub mod telemetry;

pub use config::{ConfigError, Settings};
