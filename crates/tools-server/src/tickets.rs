//! Ticket tools: the organization's support tickets. `create_ticket` asks the user for a
//! missing description (see `elicit`); `create_ticket_with_ai` classifies free text.

use agentyard_store::domain::tickets::{MAX_LIMIT, MAX_TITLE};
use agentyard_store::domain::{
    Category, NewTicket, Priority, TicketChange, TicketRow, TicketStatus, required_text,
};
use rmcp::handler::server::tool::InputResponses;
use rmcp::model::{CallToolResponse, CallToolResult, ElicitationAction};
use rmcp::service::{RequestContext, RoleServer};
use rmcp::{tool, tool_router};
use schemars::JsonSchema;
use serde::Deserialize;

use crate::ToolServer;
use crate::args::{Args, NoArgs, input, names};
use crate::auth::{Caller, READ, WRITE};
use crate::classify::classify;
use crate::elicit::{Answer, Question};
use crate::reply::{Started, ToolError, finish, reply};
use crate::sample::{Sampled, ask_model};

/// The request a model answers to classify a ticket.
const CLASSIFY_PROMPT: &str = "Classify this support ticket";
const CLASSIFY_SYSTEM: &str = "You classify customer support tickets. Answer with only a JSON \
    object: {\"category\": \"billing\" | \"technical\" | \"account\" | \"general\", \
    \"priority\": \"low\" | \"medium\" | \"high\"}.";

/// The category and priority in a model's answer: the first JSON object in it.
fn model_choice(answer: &str) -> Option<(Category, Priority)> {
    let start = answer.find('{')?;
    let end = answer.rfind('}')?;
    let v: serde_json::Value = serde_json::from_str(answer.get(start..=end)?).ok()?;
    let category = v["category"].as_str()?.trim().to_lowercase().parse().ok()?;
    let priority = v["priority"].as_str()?.trim().to_lowercase().parse().ok()?;
    Some((category, priority))
}

/// Tickets a list or search returns by default.
const DEFAULT_LIMIT: i64 = 20;

/// Arguments of `create_ticket`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateTicket {
    /// A one-line summary (1 to 200 characters).
    title: String,
    /// What happened, in detail. When absent, the user is asked for it.
    #[serde(default)]
    description: Option<String>,
    /// billing, technical, account or general (the default).
    #[serde(default)]
    #[schemars(schema_with = "names::category")]
    category: Option<Category>,
    /// low, medium (the default) or high.
    #[serde(default)]
    #[schemars(schema_with = "names::priority")]
    priority: Option<Priority>,
}

/// Arguments of `create_ticket_with_ai`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateTicketWithAi {
    /// The customer's message, as written: its first sentence becomes the title, all of it
    /// the description.
    text: String,
}

/// A ticket, by id.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct TicketId {
    /// The ticket's id (as `list_tickets` and `search_tickets` show it).
    ticket_id: uuid::Uuid,
}

/// Arguments of `update_ticket`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpdateTicket {
    /// The ticket's id.
    ticket_id: uuid::Uuid,
    /// The new one-line summary.
    #[serde(default)]
    title: Option<String>,
    /// The new description.
    #[serde(default)]
    description: Option<String>,
    /// The new category: billing, technical, account or general.
    #[serde(default)]
    #[schemars(schema_with = "names::category")]
    category: Option<Category>,
    /// The new priority: low, medium or high.
    #[serde(default)]
    #[schemars(schema_with = "names::priority")]
    priority: Option<Priority>,
}

/// Arguments of `update_ticket_status`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpdateTicketStatus {
    /// The ticket's id.
    ticket_id: uuid::Uuid,
    /// The new status: open, in_progress, resolved or closed.
    #[schemars(schema_with = "names::ticket_status")]
    status: TicketStatus,
}

/// Arguments of `assign_ticket`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct AssignTicket {
    /// The ticket's id.
    ticket_id: uuid::Uuid,
    /// Who takes the ticket: a name or an email address.
    assignee: String,
}

/// Arguments of `search_tickets`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SearchTickets {
    /// Text to look for in titles, descriptions and assignees (case-insensitive).
    query: String,
}

/// Arguments of `list_tickets`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListTickets {
    /// Only tickets of this status: open, in_progress, resolved or closed.
    #[serde(default)]
    #[schemars(schema_with = "names::ticket_status")]
    status: Option<TicketStatus>,
    /// How many tickets at most, newest first (1 to 200; default 20).
    #[serde(default)]
    limit: Option<i64>,
}

fn not_found(id: uuid::Uuid) -> ToolError {
    ToolError::NotFound(format!("this organization has no ticket {id}"))
}

fn description_question(title: &str) -> Question {
    Question {
        field: "description",
        message: format!("Describe the problem for the new ticket {title:?}."),
        hint: "What happened, in detail",
    }
}

fn refused(title: &str, action: &ElicitationAction) -> CallToolResult {
    let how = if *action == ElicitationAction::Decline { "declined" } else { "cancelled" };
    let sentence =
        format!("No ticket was created: the user {how} to describe the problem for {title:?}.");
    reply(sentence, &serde_json::json!({"created": false, "action": action}))
}

impl ToolServer {
    /// Creates `ticket` under the caller's invocation; `sentence` is the result's first line.
    async fn write_ticket(
        &self,
        caller: &Caller,
        tool: &'static str,
        ticket: &NewTicket,
        sentence: impl FnOnce(&TicketRow) -> String,
    ) -> Result<CallToolResult, ToolError> {
        let mut w = match self.begin_write(caller, tool).await? {
            Started::Fresh(w) => w,
            Started::Replayed(result) => return Ok(result),
        };
        let row = w.create_ticket(ticket).await?;
        finish(w, reply(sentence(&row), &row)).await
    }

    /// Applies `change` to ticket `id` under the caller's invocation.
    async fn change_ticket(
        &self,
        caller: &Caller,
        tool: &'static str,
        id: uuid::Uuid,
        change: &TicketChange,
    ) -> Result<CallToolResult, ToolError> {
        let mut w = match self.begin_write(caller, tool).await? {
            Started::Fresh(w) => w,
            Started::Replayed(result) => return Ok(result),
        };
        let row = w
            .update_ticket(agentyard_core::TicketId(id), change)
            .await?
            .ok_or_else(|| not_found(id))?;
        let sentence = format!(
            "Updated the ticket {:?}: status {}, priority {}, category {}, assignee {}.",
            row.title,
            row.status,
            row.priority,
            row.category,
            row.assignee.as_deref().unwrap_or("none")
        );
        finish(w, reply(sentence, &row)).await
    }
}

#[tool_router(router = ticket_tools, vis = "pub(crate)")]
impl ToolServer {
    /// Creates a support ticket. Without a description, the user is asked for one; if they
    /// decline, no ticket is created.
    #[tool(input_schema = input::<CreateTicket>())]
    async fn create_ticket(
        &self,
        caller: Caller,
        ctx: RequestContext<RoleServer>,
        responses: InputResponses,
        args: Args<CreateTicket>,
    ) -> Result<CallToolResponse, ToolError> {
        caller.require(WRITE)?;
        let a = args.parse()?;
        let title = required_text("title", &a.title, MAX_TITLE)?;
        // A replayed call must not ask the user again.
        if let Some(result) = self.replay(&caller, "create_ticket").await? {
            return Ok(result.into());
        }
        let description = match a.description.filter(|d| !d.trim().is_empty()) {
            Some(d) => d,
            None => match description_question(&title).ask(&ctx, responses.0.as_ref()).await? {
                Answer::Given(d) => d,
                Answer::Ask(input) => return Ok(input.into()),
                Answer::Refused(action) => return Ok(refused(&title, &action).into()),
            },
        };
        let ticket = NewTicket::parse(&title, &description, a.category, a.priority)?;
        let sentence = |t: &TicketRow| format!("Created the ticket {:?}.", t.title);
        Ok(self.write_ticket(&caller, "create_ticket", &ticket, sentence).await?.into())
    }

    /// Creates a support ticket from a customer's message: a model reads the text and picks
    /// its category (billing, technical, account, general) and priority (low, medium, high);
    /// when no model can be asked, keyword rules pick. The result says which did.
    #[tool(input_schema = input::<CreateTicketWithAi>())]
    async fn create_ticket_with_ai(
        &self,
        caller: Caller,
        ctx: RequestContext<RoleServer>,
        responses: InputResponses,
        args: Args<CreateTicketWithAi>,
    ) -> Result<CallToolResponse, ToolError> {
        caller.require(WRITE)?;
        let text = args.parse()?.text;
        // A replayed call must not ask the model again.
        if let Some(result) = self.replay(&caller, "create_ticket_with_ai").await? {
            return Ok(result.into());
        }
        let c = classify(&text);
        let prompt = format!("{CLASSIFY_PROMPT}:\n\n{text}");
        let sampled =
            ask_model(&ctx, responses.0.as_ref(), "classification", CLASSIFY_SYSTEM, prompt);
        let (category, priority, how) = match sampled.await {
            Sampled::Ask(input) => return Ok(input.into()),
            Sampled::Text(answer) => match model_choice(&answer) {
                Some((cat, pri)) => {
                    (cat, pri, format!("The model chose category {cat} and priority {pri}."))
                }
                None => (
                    c.category,
                    c.priority,
                    format!(
                        "The model's answer could not be used, so keyword rules chose: {}",
                        c.reason
                    ),
                ),
            },
            Sampled::Unavailable(why) => (
                c.category,
                c.priority,
                format!("No model could be asked ({why}), so keyword rules chose: {}", c.reason),
            ),
        };
        let ticket = NewTicket::parse(&c.title, &text, Some(category), Some(priority))
            .map_err(|e| ToolError::Invalid { field: "text".into(), message: e.message })?;
        let sentence = |t: &TicketRow| format!("Created the ticket {:?}. {how}", t.title);
        Ok(self.write_ticket(&caller, "create_ticket_with_ai", &ticket, sentence).await?.into())
    }

    /// Reads one ticket by its id: title, description, category, priority, status and
    /// assignee.
    #[tool(input_schema = input::<TicketId>(), annotations(read_only_hint = true))]
    async fn get_ticket(
        &self,
        caller: Caller,
        args: Args<TicketId>,
    ) -> Result<CallToolResult, ToolError> {
        let c = caller.require(READ)?;
        let id = args.parse()?.ticket_id;
        let row = self
            .store
            .get_ticket(c.org_id, agentyard_core::TicketId(id))
            .await?
            .ok_or_else(|| not_found(id))?;
        Ok(reply(format!("The ticket {:?} is {}.", row.title, row.status), &row))
    }

    /// Changes a ticket's title, description, category or priority (at least one).
    #[tool(input_schema = input::<UpdateTicket>())]
    async fn update_ticket(
        &self,
        caller: Caller,
        args: Args<UpdateTicket>,
    ) -> Result<CallToolResult, ToolError> {
        caller.require(WRITE)?;
        let a = args.parse()?;
        let change = TicketChange::parse(
            a.title.as_deref(),
            a.description.as_deref(),
            a.category,
            a.priority,
        )?;
        self.change_ticket(&caller, "update_ticket", a.ticket_id, &change).await
    }

    /// Deletes a ticket for good.
    #[tool(input_schema = input::<TicketId>(), annotations(destructive_hint = true))]
    async fn delete_ticket(
        &self,
        caller: Caller,
        args: Args<TicketId>,
    ) -> Result<CallToolResult, ToolError> {
        caller.require(WRITE)?;
        let id = args.parse()?.ticket_id;
        let mut w = match self.begin_write(&caller, "delete_ticket").await? {
            Started::Fresh(w) => w,
            Started::Replayed(result) => return Ok(result),
        };
        let row =
            w.delete_ticket(agentyard_core::TicketId(id)).await?.ok_or_else(|| not_found(id))?;
        finish(w, reply(format!("Deleted the ticket {:?}.", row.title), &row)).await
    }

    /// Moves a ticket to another status: open, in_progress, resolved or closed.
    #[tool(input_schema = input::<UpdateTicketStatus>())]
    async fn update_ticket_status(
        &self,
        caller: Caller,
        args: Args<UpdateTicketStatus>,
    ) -> Result<CallToolResult, ToolError> {
        caller.require(WRITE)?;
        let a = args.parse()?;
        let change = TicketChange::status(a.status);
        self.change_ticket(&caller, "update_ticket_status", a.ticket_id, &change).await
    }

    /// Assigns a ticket to someone (a name or an email address).
    #[tool(input_schema = input::<AssignTicket>())]
    async fn assign_ticket(
        &self,
        caller: Caller,
        args: Args<AssignTicket>,
    ) -> Result<CallToolResult, ToolError> {
        caller.require(WRITE)?;
        let a = args.parse()?;
        let change = TicketChange::assign(&a.assignee)?;
        self.change_ticket(&caller, "assign_ticket", a.ticket_id, &change).await
    }

    /// Finds tickets whose title, description or assignee contains the query, newest first.
    #[tool(input_schema = input::<SearchTickets>(), annotations(read_only_hint = true))]
    async fn search_tickets(
        &self,
        caller: Caller,
        args: Args<SearchTickets>,
    ) -> Result<CallToolResult, ToolError> {
        let c = caller.require(READ)?;
        let query = required_text("query", &args.parse()?.query, 200)?;
        let rows = self.store.search_tickets(c.org_id, &query, DEFAULT_LIMIT).await?;
        Ok(reply(format!("{} ticket(s) match {query:?}.", rows.len()), &rows))
    }

    /// Lists the organization's tickets, newest first, optionally only those of one status.
    #[tool(input_schema = input::<ListTickets>(), annotations(read_only_hint = true))]
    async fn list_tickets(
        &self,
        caller: Caller,
        args: Args<ListTickets>,
    ) -> Result<CallToolResult, ToolError> {
        let c = caller.require(READ)?;
        let a = args.parse()?;
        let limit = a.limit.unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(ToolError::Invalid {
                field: "limit".into(),
                message: format!("must be 1 to {MAX_LIMIT}"),
            });
        }
        let rows = self.store.list_tickets(c.org_id, a.status, limit).await?;
        Ok(reply(format!("{} ticket(s), newest first.", rows.len()), &rows))
    }

    /// Counts the organization's tickets by status, priority and category.
    #[tool(input_schema = input::<NoArgs>(), annotations(read_only_hint = true))]
    async fn get_ticket_stats(
        &self,
        caller: Caller,
        args: Args<NoArgs>,
    ) -> Result<CallToolResult, ToolError> {
        let c = caller.require(READ)?;
        args.parse()?;
        let stats = self.store.ticket_stats(c.org_id).await?;
        let open = stats.by_status.get("open").copied().unwrap_or(0);
        Ok(reply(format!("{} ticket(s) in all, {open} open.", stats.total), &stats))
    }
}
