//! Customer tools: the organization's (demo) customers, for the onboarding and support
//! workflows. A customer is named by `customer_id` or by its email address.

use agentyard_core::ids::CustomerId;
use rmcp::model::CallToolResult;
use rmcp::{tool, tool_router};
use schemars::JsonSchema;
use serde::Deserialize;

use crate::ToolServer;
use crate::args::{Args, input, limit, names};
use crate::auth::{Caller, READ, WRITE};
use crate::data::customers::{self, Created, CustomerRow, NewCustomer, Plan};
use crate::reply::{Started, ToolError, finish, reply};

/// Arguments of `create_customer`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateCustomer {
    /// The customer's name (1 to 200 characters).
    name: String,
    /// The customer's email address; one customer per address in the organization.
    email: String,
    /// The customer's company.
    #[serde(default)]
    company: Option<String>,
    /// free (the default), pro or enterprise.
    #[serde(default)]
    #[schemars(schema_with = "names::plan")]
    plan: Option<Plan>,
}

/// A customer, by id or by email address.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct FindCustomer {
    /// The customer's id (as `create_customer` and `list_customers` show it).
    #[serde(default)]
    customer_id: Option<uuid::Uuid>,
    /// The customer's email address, case-insensitive; used when `customer_id` is absent.
    #[serde(default)]
    email: Option<String>,
}

/// Arguments of `list_customers`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListCustomers {
    /// Only customers on this plan: free, pro or enterprise.
    #[serde(default)]
    #[schemars(schema_with = "names::plan")]
    plan: Option<Plan>,
    /// How many customers at most, newest first (1 to 100; default 20).
    #[serde(default)]
    limit: Option<i64>,
}

fn summary(c: &CustomerRow) -> String {
    let company = c.company.as_ref().map(|co| format!(" of {co:?}")).unwrap_or_default();
    format!("{:?}{company} ({}, plan {}, {})", c.name, c.email, c.plan.as_str(), c.status)
}

#[tool_router(router = customer_tools, vis = "pub(crate)")]
impl ToolServer {
    /// Creates a customer of the organization (status active). The email address must be
    /// new to the organization. Returns the customer with its id.
    #[tool(input_schema = input::<CreateCustomer>())]
    async fn create_customer(
        &self,
        caller: Caller,
        args: Args<CreateCustomer>,
    ) -> Result<CallToolResult, ToolError> {
        caller.require(WRITE)?;
        let a = args.parse()?;
        let customer = NewCustomer::parse(&a.name, &a.email, a.company.as_deref(), a.plan)?;
        let mut w = match self.begin_data_write(&caller, "create_customer").await? {
            Started::Fresh(w) => w,
            Started::Replayed(result) => return Ok(result),
        };
        match w.create_customer(&customer).await? {
            Created::New(row) => {
                finish(w, reply(format!("Created the customer {}.", summary(&row)), &row)).await
            }
            Created::Duplicate(row) => Err(ToolError::Refused(format!(
                "a customer with email {} already exists (id {}, name {:?}); nothing was \
                 created: get_customer reads it",
                row.email, row.id, row.name
            ))),
        }
    }

    /// Reads one customer of the organization, by customer_id or by email address.
    #[tool(input_schema = input::<FindCustomer>(), annotations(read_only_hint = true))]
    async fn get_customer(
        &self,
        caller: Caller,
        args: Args<FindCustomer>,
    ) -> Result<CallToolResult, ToolError> {
        let c = caller.require(READ)?;
        let a = args.parse()?;
        let pool = self.store.pool();
        let (row, which) = match (a.customer_id, a.email.as_deref().map(str::trim)) {
            (Some(id), _) => {
                (customers::get(pool, c.org_id, CustomerId(id)).await?, id.to_string())
            }
            (None, Some(email)) if !email.is_empty() => {
                (customers::by_email(pool, c.org_id, email).await?, format!("with email {email}"))
            }
            _ => {
                return Err(ToolError::Invalid {
                    field: "customer_id".into(),
                    message: "give customer_id or email".into(),
                });
            }
        };
        let row = row.ok_or_else(|| {
            ToolError::NotFound(format!(
                "this organization has no customer {which}; list_customers shows them"
            ))
        })?;
        Ok(reply(format!("The customer {}.", summary(&row)), &row))
    }

    /// Lists the organization's customers, newest first, optionally only those on one plan.
    #[tool(input_schema = input::<ListCustomers>(), annotations(read_only_hint = true))]
    async fn list_customers(
        &self,
        caller: Caller,
        args: Args<ListCustomers>,
    ) -> Result<CallToolResult, ToolError> {
        let c = caller.require(READ)?;
        let a = args.parse()?;
        let limit = limit(a.limit)?;
        let rows = customers::list(self.store.pool(), c.org_id, a.plan, limit).await?;
        let on = a.plan.map(|p| format!(" on the {} plan", p.as_str())).unwrap_or_default();
        Ok(reply(format!("{} customer(s){on}, newest first.", rows.len()), &rows))
    }
}
