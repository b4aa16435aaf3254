//! An organization's customers. An email address names one customer per organization,
//! whatever its case.

use agentyard_core::ids::CustomerId;
use agentyard_core::{OrgId, UserId};
use agentyard_store::Result;
use agentyard_store::domain::{Invalid, optional_text, required_text};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{FromRow, PgExecutor};

use super::{Write, failed};

/// Longest name and company, in characters.
pub(crate) const MAX_NAME: usize = 200;
/// Longest email address, in characters (RFC 5321's path limit).
pub(crate) const MAX_EMAIL: usize = 254;

/// What a customer pays for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Plan {
    #[default]
    Free,
    Pro,
    Enterprise,
}

impl Plan {
    /// Every plan's name.
    pub(crate) const NAMES: &'static [&'static str] = &["free", "pro", "enterprise"];

    /// The name stored and sent.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Free => "free",
            Self::Pro => "pro",
            Self::Enterprise => "enterprise",
        }
    }
}

impl TryFrom<String> for Plan {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        match s.as_str() {
            "free" => Ok(Self::Free),
            "pro" => Ok(Self::Pro),
            "enterprise" => Ok(Self::Enterprise),
            other => Err(format!("unknown plan {other:?}")),
        }
    }
}

/// A customer as stored.
#[derive(Clone, Debug, PartialEq, Serialize, FromRow)]
pub(crate) struct CustomerRow {
    pub(crate) id: CustomerId,
    pub(crate) name: String,
    pub(crate) email: String,
    pub(crate) company: Option<String>,
    #[sqlx(try_from = "String")]
    pub(crate) plan: Plan,
    /// `active` (every customer the tools create) or `inactive`.
    pub(crate) status: String,
    pub(crate) created_at: DateTime<Utc>,
}

const COLUMNS: &str = "id, name, email, company, plan, status, created_at";

/// Trims `value`, which must then look like an email address: `local@domain.tld`, no spaces.
///
/// # Errors
/// Anything else, naming `field`.
pub(crate) fn email(field: &'static str, value: &str) -> Result<String, Invalid> {
    let value = required_text(field, value, MAX_EMAIL)?;
    let bad = || Invalid {
        field,
        message: format!("must be an email address like name@example.com, not {value:?}"),
    };
    let (local, domain) = value.split_once('@').ok_or_else(bad)?;
    let local_ok = !local.is_empty()
        && local.len() <= 64
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && local.chars().all(|c| c.is_alphanumeric() || "!#$%&'*+-/=?^_`{|}~.".contains(c));
    let labels: Vec<&str> = domain.split('.').collect();
    let domain_ok = labels.len() >= 2
        && labels.iter().all(|l| {
            !l.is_empty()
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_alphanumeric() || c == '-')
        })
        && labels.last().is_some_and(|tld| tld.len() >= 2 && tld.chars().all(char::is_alphabetic));
    if local_ok && domain_ok { Ok(value) } else { Err(bad()) }
}

/// A valid new customer.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct NewCustomer {
    name: String,
    email: String,
    company: Option<String>,
    plan: Plan,
}

impl NewCustomer {
    /// # Errors
    /// An empty or too long `name` or `company`, an `email` that is not one.
    pub(crate) fn parse(
        name: &str,
        email_address: &str,
        company: Option<&str>,
        plan: Option<Plan>,
    ) -> Result<Self, Invalid> {
        Ok(Self {
            name: required_text("name", name, MAX_NAME)?,
            email: email("email", email_address)?,
            company: optional_text("company", company, MAX_NAME)?,
            plan: plan.unwrap_or_default(),
        })
    }
}

/// How creating a customer turned out.
pub(crate) enum Created {
    New(CustomerRow),
    /// The organization has a customer with that email address: this one.
    Duplicate(CustomerRow),
}

/// The org's customer with the email address `email` (case-insensitive).
pub(crate) async fn by_email(
    db: impl PgExecutor<'_>,
    org: OrgId,
    email: &str,
) -> Result<Option<CustomerRow>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM customers WHERE org_id = $1 AND lower(email) = lower($2)"
    )))
    .bind(org)
    .bind(email.trim())
    .fetch_optional(db)
    .await
    .map_err(failed("customer_by_email"))
}

/// The org's customer `id`.
pub(crate) async fn get(
    db: impl PgExecutor<'_>,
    org: OrgId,
    id: CustomerId,
) -> Result<Option<CustomerRow>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM customers WHERE id = $1 AND org_id = $2"
    )))
    .bind(id)
    .bind(org)
    .fetch_optional(db)
    .await
    .map_err(failed("get_customer"))
}

/// The org's customers, newest first; `plan` filters; at most `limit`.
pub(crate) async fn list(
    db: impl PgExecutor<'_>,
    org: OrgId,
    plan: Option<Plan>,
    limit: i64,
) -> Result<Vec<CustomerRow>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM customers WHERE org_id = $1 \
         AND ($2::text IS NULL OR plan = $2) ORDER BY created_at DESC, id DESC LIMIT $3"
    )))
    .bind(org)
    .bind(plan.map(Plan::as_str))
    .bind(limit.clamp(1, super::MAX_LIMIT))
    .fetch_all(db)
    .await
    .map_err(failed("list_customers"))
}

async fn insert(
    db: impl PgExecutor<'_>,
    org: OrgId,
    user: Option<UserId>,
    c: &NewCustomer,
) -> Result<Option<CustomerRow>> {
    // Another customer with the email: nothing (a concurrent insert of it is waited for).
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "INSERT INTO customers(id, org_id, name, email, company, plan, created_by) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING RETURNING {COLUMNS}"
    )))
    .bind(CustomerId::new())
    .bind(org)
    .bind(&c.name)
    .bind(&c.email)
    .bind(&c.company)
    .bind(c.plan.as_str())
    .bind(user)
    .fetch_optional(db)
    .await
    .map_err(failed("insert_customer"))
}

impl Write {
    /// Creates a customer, unless the org has one with its email address.
    ///
    /// # Errors
    /// Database failures.
    pub(crate) async fn create_customer(&mut self, c: &NewCustomer) -> Result<Created> {
        let (conn, org, user) = self.0.parts();
        if let Some(row) = insert(&mut *conn, org, user, c).await? {
            return Ok(Created::New(row));
        }
        match by_email(&mut *conn, org, &c.email).await? {
            Some(row) => Ok(Created::Duplicate(row)),
            None => Err(agentyard_store::StoreError::Decode {
                op: "insert_customer",
                detail: "the insert conflicted with no customer of that email".into(),
            }),
        }
    }

    /// The org's customer `id`, seen from this write.
    ///
    /// # Errors
    /// Database failures.
    pub(crate) async fn customer(&mut self, id: CustomerId) -> Result<Option<CustomerRow>> {
        let (conn, org, _) = self.0.parts();
        get(&mut *conn, org, id).await
    }

    /// The org's customer of that email address, seen from this write.
    ///
    /// # Errors
    /// Database failures.
    pub(crate) async fn customer_by_email(&mut self, email: &str) -> Result<Option<CustomerRow>> {
        let (conn, org, _) = self.0.parts();
        by_email(&mut *conn, org, email).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn email_addresses_must_look_like_one() {
        for ok in ["ann@example.com", " Ann.Lee+crm@mail.example.co.uk ", "o'neil@x.io"] {
            assert_eq!(email("email", ok).unwrap(), ok.trim(), "{ok}");
        }
        for bad in
            ["ann", "ann@", "@example.com", "ann@example", "a b@example.com", "ann@@x.com", "a@x.c"]
        {
            let e = email("email", bad).unwrap_err();
            assert_eq!(e.field, "email");
            assert!(e.message.contains("email address"), "{bad}: {}", e.message);
        }
        assert!(email("to", "").unwrap_err().message.contains("empty"));
    }

    #[test]
    fn a_new_customer_is_on_the_free_plan_unless_told() {
        let c = NewCustomer::parse(" Ann ", "ann@example.com", Some(" "), None).unwrap();
        assert_eq!((c.name.as_str(), c.company, c.plan), ("Ann", None, Plan::Free));
        assert_eq!(
            NewCustomer::parse("", "ann@example.com", None, None).unwrap_err().field,
            "name"
        );
    }
}
