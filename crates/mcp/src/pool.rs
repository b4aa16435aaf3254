//! Connections kept open between calls for servers that cannot tell concurrent calls apart (a
//! stdio server is a process, which costs far more to start than a call). Each pooled
//! connection serves one call at a time, so a server's questions (elicitations) during a call
//! go to that call's broker; calls beyond the idle connections open new ones. Connections are
//! pooled by a key the caller chooses: the tool worker keys them by server and organization,
//! so no process ever serves two organizations.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::{
    Brokers, Client, InputBroker, McpError, Output, Sampler, ServerConfig, call_params_with_trace,
};

/// A connection between calls, with the slot its current call's broker goes in.
struct Idle {
    client: Client,
    slot: Arc<Mutex<Option<Arc<dyn InputBroker>>>>,
    since: Instant,
}

/// Open connections by key, each used by one call at a time.
pub struct Pool {
    idle: Mutex<HashMap<String, Vec<Idle>>>,
    /// Idle connections kept per key (more are closed when their call ends).
    max_idle: usize,
    /// An idle connection older than this is closed instead of used.
    idle_for: Duration,
}

impl Pool {
    pub fn new(max_idle: usize, idle_for: Duration) -> Self {
        Self { idle: Mutex::new(HashMap::new()), max_idle, idle_for }
    }

    /// An idle connection of `key`, closing those idle too long.
    fn take(&self, key: &str) -> Option<Idle> {
        let mut idle = self.idle.lock().expect("pool poisoned");
        let list = idle.get_mut(key)?;
        let mut stale = Vec::new();
        let mut found = None;
        while let Some(c) = list.pop() {
            if c.since.elapsed() < self.idle_for {
                found = Some(c);
                break;
            }
            stale.push(c);
        }
        drop(idle);
        close(stale);
        found
    }

    fn give_back(&self, key: &str, mut conn: Idle) {
        conn.since = Instant::now();
        let mut idle = self.idle.lock().expect("pool poisoned");
        let list = idle.entry(key.to_owned()).or_default();
        if list.len() < self.max_idle {
            list.push(conn);
        } else {
            drop(idle);
            close(vec![conn]);
        }
    }

    /// Calls `tool` on a connection of `key` to `server` (opened within `timeout` when none is
    /// idle), answering its questions through `broker`. A connection whose call broke or timed
    /// out is closed; the others wait for the next call.
    ///
    /// # Errors
    /// As [`Client::call`].
    #[allow(clippy::too_many_arguments)] // one call's whole description
    pub async fn call(
        &self,
        key: &str,
        server: &ServerConfig,
        broker: Arc<dyn InputBroker>,
        sampler: Option<Arc<dyn Sampler>>,
        tool: &str,
        arguments: serde_json::Map<String, serde_json::Value>,
        timeout: Duration,
    ) -> Result<Output, McpError> {
        let conn = match self.take(key) {
            Some(c) => c,
            None => {
                let slot = Arc::new(Mutex::new(None));
                let brokers = Brokers::Slot(slot.clone());
                // On a task of its own, outside the calling span: the process outlives the
                // call (see `SharedSession`); each call carries its trace context in its `_meta`.
                let server = server.clone();
                let opening =
                    tokio::spawn(
                        async move { Client::open(&server, brokers, sampler, timeout).await },
                    );
                let client = opening.await.map_err(|e| McpError::Unreachable(e.to_string()))??;
                Idle { client, slot, since: Instant::now() }
            }
        };
        *conn.slot.lock().expect("slot poisoned") = Some(broker);
        let params = call_params_with_trace(tool, arguments);
        let out = match tokio::time::timeout(timeout, conn.client.call_params(params)).await {
            Ok(r) => r,
            Err(_) => Err(McpError::Unreachable(format!("no answer within {timeout:?}"))),
        };
        *conn.slot.lock().expect("slot poisoned") = None;
        match out {
            Err(McpError::Unreachable(_)) => close(vec![conn]),
            _ => self.give_back(key, conn),
        }
        out
    }

    /// Closes every idle connection (a worker stopping).
    pub async fn close_all(&self) {
        let all: Vec<Idle> =
            self.idle.lock().expect("pool poisoned").drain().flat_map(|(_, v)| v).collect();
        for c in all {
            c.client.close().await;
        }
    }
}

/// Closes connections in the background (a stdio server's process is stopped).
fn close(conns: Vec<Idle>) {
    if conns.is_empty() {
        return;
    }
    tokio::spawn(async move {
        for c in conns {
            c.client.close().await;
        }
    });
}
