//! The built-in tool server end to end: real HTTP, Postgres and NATS, an rmcp client. One
//! test binary (link time); each test has a server and a database of its own.

mod access;
mod customers;
mod harness;
mod in_process;
mod revenue;
mod tasks;
mod tickets;
