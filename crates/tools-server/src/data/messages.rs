//! Messages to customers. Nothing is delivered: `send_message` records a message with the
//! status `recorded`, so workflows can "send" a welcome email and show what they sent.

use agentyard_core::OrgId;
use agentyard_core::ids::{CustomerId, OutgoingMessageId};
use agentyard_store::Result;
use agentyard_store::domain::{Invalid, required_text};
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{FromRow, PgExecutor};

use super::customers::email;
use super::{Write, failed};

/// Longest subject, in characters.
pub(crate) const MAX_SUBJECT: usize = 200;
/// Longest body, in characters.
pub(crate) const MAX_BODY: usize = 20_000;

/// A message as stored.
#[derive(Clone, Debug, PartialEq, Serialize, FromRow)]
pub(crate) struct MessageRow {
    pub(crate) id: OutgoingMessageId,
    /// The customer the message is about, when known.
    pub(crate) customer_id: Option<CustomerId>,
    /// The recipient's email address.
    #[sqlx(rename = "recipient")]
    pub(crate) to: String,
    pub(crate) subject: String,
    pub(crate) body: String,
    /// Always `recorded`: nothing is sent.
    pub(crate) status: String,
    pub(crate) created_at: DateTime<Utc>,
}

const COLUMNS: &str = "id, customer_id, recipient, subject, body, status, created_at";

/// A valid new message.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct NewMessage {
    to: String,
    subject: String,
    body: String,
}

impl NewMessage {
    /// # Errors
    /// A `to` that is not an email address, an empty or too long `subject` or `body`.
    pub(crate) fn parse(to: &str, subject: &str, body: &str) -> Result<Self, Invalid> {
        Ok(Self {
            to: email("to", to)?,
            subject: required_text("subject", subject, MAX_SUBJECT)?,
            body: required_text("body", body, MAX_BODY)?,
        })
    }

    /// The recipient's email address.
    pub(crate) fn to(&self) -> &str {
        &self.to
    }
}

/// The org's messages, newest first, of one customer when given; at most `limit`.
pub(crate) async fn list(
    db: impl PgExecutor<'_>,
    org: OrgId,
    customer: Option<CustomerId>,
    limit: i64,
) -> Result<Vec<MessageRow>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM outgoing_messages WHERE org_id = $1 \
         AND ($2::uuid IS NULL OR customer_id = $2) ORDER BY created_at DESC, id DESC LIMIT $3"
    )))
    .bind(org)
    .bind(customer)
    .bind(limit.clamp(1, super::MAX_LIMIT))
    .fetch_all(db)
    .await
    .map_err(failed("list_messages"))
}

impl Write {
    /// Records `message`, about `customer` (a customer of the org) when given.
    ///
    /// # Errors
    /// Database failures.
    pub(crate) async fn record_message(
        &mut self,
        message: &NewMessage,
        customer: Option<CustomerId>,
    ) -> Result<MessageRow> {
        let (conn, org, user) = self.0.parts();
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "INSERT INTO outgoing_messages(id, org_id, customer_id, recipient, subject, body, \
             created_by) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {COLUMNS}"
        )))
        .bind(OutgoingMessageId::new())
        .bind(org)
        .bind(customer)
        .bind(&message.to)
        .bind(&message.subject)
        .bind(&message.body)
        .bind(user)
        .fetch_one(&mut *conn)
        .await
        .map_err(failed("record_message"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_needs_an_address_a_subject_and_a_body() {
        assert!(NewMessage::parse("ann@example.com", "Welcome", "Hi Ann").is_ok());
        assert_eq!(NewMessage::parse("ann", "Welcome", "Hi").unwrap_err().field, "to");
        assert_eq!(NewMessage::parse("a@x.io", " ", "Hi").unwrap_err().field, "subject");
        assert_eq!(NewMessage::parse("a@x.io", "Hey", "").unwrap_err().field, "body");
    }
}
