//! Message tools: emails to customers, recorded and never delivered (a demo outbox).

use agentyard_core::ids::CustomerId;
use rmcp::model::CallToolResult;
use rmcp::{tool, tool_router};
use schemars::JsonSchema;
use serde::Deserialize;

use crate::ToolServer;
use crate::args::{Args, input, limit};
use crate::auth::{Caller, READ, WRITE};
use crate::data::messages::{self, NewMessage};
use crate::reply::{Started, ToolError, finish, reply};

/// Arguments of `send_message`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SendMessage {
    /// The recipient's email address.
    to: String,
    /// The subject line (1 to 200 characters).
    subject: String,
    /// The message text.
    body: String,
    /// The customer the message is for (a customer of the organization). When absent, the
    /// customer with the recipient's email address, if there is one.
    #[serde(default)]
    customer_id: Option<uuid::Uuid>,
}

/// Arguments of `list_messages`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListMessages {
    /// Only the messages for this customer.
    #[serde(default)]
    customer_id: Option<uuid::Uuid>,
    /// How many messages at most, newest first (1 to 100; default 20).
    #[serde(default)]
    limit: Option<i64>,
}

#[tool_router(router = message_tools, vis = "pub(crate)")]
impl ToolServer {
    /// Sends an email to a customer, as far as a demo goes: the message is recorded with the
    /// status "recorded" and NOT delivered to anyone. Returns the recorded message.
    #[tool(input_schema = input::<SendMessage>())]
    async fn send_message(
        &self,
        caller: Caller,
        args: Args<SendMessage>,
    ) -> Result<CallToolResult, ToolError> {
        caller.require(WRITE)?;
        let a = args.parse()?;
        let message = NewMessage::parse(&a.to, &a.subject, &a.body)?;
        let mut w = match self.begin_data_write(&caller, "send_message").await? {
            Started::Fresh(w) => w,
            Started::Replayed(result) => return Ok(result),
        };
        let customer = match a.customer_id.map(CustomerId) {
            Some(id) => Some(w.customer(id).await?.ok_or_else(|| {
                ToolError::NotFound(format!(
                    "this organization has no customer {id}; nothing was recorded"
                ))
            })?),
            None => w.customer_by_email(message.to()).await?,
        };
        let row = w.record_message(&message, customer.as_ref().map(|c| c.id)).await?;
        let whom = customer.map(|c| format!(" (customer {:?})", c.name)).unwrap_or_default();
        let sentence = format!(
            "Recorded the message {:?} to {}{whom}; it was not delivered: messages are only \
             recorded.",
            row.subject, row.to
        );
        finish(w, reply(sentence, &row)).await
    }

    /// Lists the messages recorded by send_message, newest first: all of the organization's,
    /// or those for one customer.
    #[tool(input_schema = input::<ListMessages>(), annotations(read_only_hint = true))]
    async fn list_messages(
        &self,
        caller: Caller,
        args: Args<ListMessages>,
    ) -> Result<CallToolResult, ToolError> {
        let c = caller.require(READ)?;
        let a = args.parse()?;
        let limit = limit(a.limit)?;
        let customer = a.customer_id.map(CustomerId);
        let rows = messages::list(self.store.pool(), c.org_id, customer, limit).await?;
        Ok(reply(format!("{} message(s), newest first.", rows.len()), &rows))
    }
}
