//! End-to-end tests: real API and worker processes, real NATS and Postgres, the scripted model.

mod agents;
mod chat;
mod cli;
mod failures;
mod isolation;
mod load;
mod multitask;
mod tenancy;
mod tools;
mod validation;
