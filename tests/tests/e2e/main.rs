//! End-to-end tests: real API and worker processes, real NATS and Postgres, the scripted model.

mod agents;
mod chat;
mod cli;
mod engine;
mod failures;
mod fuzz;
mod isolation;
mod load;
mod metrics;
mod monitoring;
mod multitask;
mod outage;
mod peers;
mod system;
mod tenancy;
mod tools;
mod traces;
mod validation;
mod workflows;
