//! End-to-end tests: real API and worker processes, real NATS and Postgres, the scripted model.

mod agents;
mod chat;
mod cli;
mod console;
mod dlq;
mod engine;
mod failures;
mod faults;
mod fuzz;
mod hardening;
mod isolation;
mod load;
mod mcp_client;
mod metrics;
mod monitoring;
mod multitask;
mod outage;
mod peers;
mod secrets;
mod system;
mod tenancy;
mod tools;
mod traces;
mod users;
mod validation;
mod workflows;
