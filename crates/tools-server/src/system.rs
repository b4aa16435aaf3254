//! The platform's health as a tool: Postgres and NATS answer, and how many agent workers
//! answered a status request within half a second.

use std::time::Duration;

use futures::StreamExt;
use rmcp::model::CallToolResult;
use rmcp::{tool, tool_router};
use serde::Serialize;

use crate::ToolServer;
use crate::args::{Args, NoArgs, input};
use crate::auth::{Caller, READ};
use crate::reply::{ToolError, reply};

/// How long agent workers have to answer.
const WORKER_WAIT: Duration = Duration::from_millis(500);

/// What `get_system_health` reports.
#[derive(Serialize)]
struct Health {
    postgres: bool,
    nats: bool,
    /// Agent workers that answered within 500 ms.
    agent_workers: usize,
    healthy: bool,
}

impl ToolServer {
    /// Agent workers answering a core-NATS status request within [`WORKER_WAIT`]; 0 when NATS
    /// does not take the request.
    async fn count_workers(&self) -> usize {
        let client = self.bus.client();
        let inbox = client.new_inbox();
        let Ok(mut sub) = client.subscribe(inbox.clone()).await else { return 0 };
        let subject = self.bus.subjects().agent_worker_status();
        if client.publish_with_reply(subject, inbox, Default::default()).await.is_err() {
            return 0;
        }
        let deadline = tokio::time::Instant::now() + WORKER_WAIT;
        let mut answers = 0;
        while let Ok(Some(msg)) = tokio::time::timeout_at(deadline, sub.next()).await {
            // Without any worker, NATS itself answers "no responders" (a status, no payload).
            if serde_json::from_slice::<serde_json::Value>(&msg.payload).is_ok() {
                answers += 1;
            }
        }
        answers
    }
}

#[tool_router(router = system_tools, vis = "pub(crate)")]
impl ToolServer {
    /// Checks the platform: whether Postgres and NATS answer and how many agent workers are
    /// running.
    #[tool(input_schema = input::<NoArgs>(), annotations(read_only_hint = true))]
    async fn get_system_health(
        &self,
        caller: Caller,
        args: Args<NoArgs>,
    ) -> Result<CallToolResult, ToolError> {
        caller.require(READ)?;
        args.parse()?;
        let (postgres, nats, agent_workers) =
            tokio::join!(self.store.ping(), self.bus.ping(), self.count_workers());
        let healthy = postgres && nats && agent_workers > 0;
        let sentence = format!(
            "The platform is {}: Postgres {}, NATS {}, {agent_workers} agent worker(s).",
            if healthy { "healthy" } else { "degraded" },
            if postgres { "up" } else { "down" },
            if nats { "up" } else { "down" },
        );
        Ok(reply(sentence, &Health { postgres, nats, agent_workers, healthy }))
    }
}
