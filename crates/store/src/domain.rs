//! The built-in tool server's data: an organization's tasks, support tickets and
//! integrations. Every function takes the organization it is scoped to and never reads or
//! writes another's rows.
//!
//! Layout:
//! - [`tasks`], [`tickets`], [`integrations`]: rows, validated inputs ("parse, don't
//!   validate": an input that exists is valid), reads and writes.
//! - [`ToolWrite`]: the transaction of one write tool call. Its result is stored in
//!   `tool_writes` under the call's invocation id in the same transaction as the write, so a
//!   redelivered call (its worker crashed after the commit) gets the stored result back and
//!   writes nothing; a concurrent duplicate waits on the row lock, then does the same.
//! - [`Store::seed_demo`]: sample integrations and tickets for a new organization.

pub mod integrations;
pub mod tasks;
pub mod tickets;

use agentyard_core::{InvocationId, OrgId, UserId};
use sqlx::{Postgres, Transaction};

use crate::{Result, Store, StoreError};

pub use integrations::{IntegrationChange, IntegrationRow, NewIntegration, UpdateIntegration};
pub use tasks::{NewTask, TaskChange, TaskRef, TaskRow, TaskStatus};
pub use tickets::{
    Category, NewTicket, Priority, TicketChange, TicketRow, TicketStats, TicketStatus,
};

/// An input a domain rule rejects: the field (as the tool and REST APIs name it) and why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct Invalid {
    pub field: &'static str,
    pub message: String,
}

impl Invalid {
    pub(crate) fn new(field: &'static str, message: impl Into<String>) -> Self {
        Self { field, message: message.into() }
    }
}

/// Trims `value`; it must then hold 1 to `max` characters, none of them NUL (Postgres cannot
/// store it).
///
/// # Errors
/// An empty, too long or unstorable value, naming `field`.
pub fn required_text(field: &'static str, value: &str, max: usize) -> Result<String, Invalid> {
    let value = value.trim();
    if value.is_empty() {
        return Err(Invalid::new(field, "must not be empty"));
    }
    if let Err(e) = agentyard_core::storable::check_text(field, value) {
        return Err(Invalid::new(field, e.problem));
    }
    if value.chars().count() > max {
        return Err(Invalid::new(field, format!("must be at most {max} characters")));
    }
    Ok(value.to_owned())
}

/// Like [`required_text`] for an optional value; an empty one counts as absent.
///
/// # Errors
/// A too long value, naming `field`.
pub fn optional_text(
    field: &'static str,
    value: Option<&str>,
    max: usize,
) -> Result<Option<String>, Invalid> {
    match value.map(str::trim) {
        None | Some("") => Ok(None),
        Some(v) => required_text(field, v, max).map(Some),
    }
}

/// How a task found by id or title turned out.
#[derive(Clone, Debug, PartialEq)]
pub enum Lookup<T> {
    Found(T),
    NotFound,
    /// Several tasks of the org have that title: the caller must name one by id.
    Ambiguous,
}

/// How starting a tool call's write turned out.
#[derive(Debug)]
pub enum WriteStart {
    /// The first attempt: write, then [`ToolWrite::commit`] with the result.
    Fresh(ToolWrite),
    /// An earlier attempt of this invocation committed this result.
    Done(serde_json::Value),
    /// The invocation id was used by another tool (or organization): nothing may be written.
    Conflict,
}

/// One write tool call's transaction. Dropping it without [`ToolWrite::commit`] rolls the
/// write back, and with it the claim on the invocation id.
#[derive(Debug)]
pub struct ToolWrite {
    pub(crate) tx: Transaction<'static, Postgres>,
    pub(crate) org: OrgId,
    pub(crate) user: Option<UserId>,
    /// The user the write is limited to (the run's user, unless it acts as an admin).
    pub(crate) owner: Option<UserId>,
    invocation: InvocationId,
}

impl ToolWrite {
    /// The write's transaction, organization and user, for tools whose tables live elsewhere
    /// (the built-in server's demo data): what they write commits with the result.
    pub fn parts(&mut self) -> (&mut sqlx::PgConnection, OrgId, Option<UserId>) {
        (&mut self.tx, self.org, self.user)
    }

    /// Stores `result` as the invocation's result and commits it with the write.
    ///
    /// # Errors
    /// Database failures (then nothing was written).
    pub async fn commit(mut self, result: &serde_json::Value) -> Result<()> {
        sqlx::query("UPDATE tool_writes SET result = $2 WHERE invocation_id = $1")
            .bind(self.invocation)
            .bind(result)
            .execute(&mut *self.tx)
            .await
            .map_err(|e| StoreError::db("tool_write.result", e))?;
        self.tx.commit().await.map_err(|e| StoreError::db("tool_write.commit", e))
    }
}

#[derive(sqlx::FromRow)]
struct WriteRecord {
    org_id: OrgId,
    tool: String,
    result: serde_json::Value,
}

impl Store {
    /// Claims `invocation` for `tool` of `org` and opens the transaction its write goes in, or
    /// returns the result an earlier attempt committed.
    ///
    /// # Errors
    /// Database failures.
    pub async fn begin_tool_write(
        &self,
        org: OrgId,
        user: Option<UserId>,
        owner: Option<UserId>,
        invocation: InvocationId,
        tool: &str,
    ) -> Result<WriteStart> {
        let mut tx = self.pool.begin().await.map_err(|e| StoreError::db("tool_write", e))?;
        // A duplicate running at the same time blocks here until this transaction ends.
        let claimed = sqlx::query(
            "INSERT INTO tool_writes(invocation_id, org_id, tool, result) \
             VALUES ($1, $2, $3, 'null') ON CONFLICT (invocation_id) DO NOTHING",
        )
        .bind(invocation)
        .bind(org)
        .bind(tool)
        .execute(&mut *tx)
        .await
        .map_err(|e| StoreError::db("tool_write.claim", e))?
        .rows_affected()
            == 1;
        if claimed {
            return Ok(WriteStart::Fresh(ToolWrite { tx, org, user, owner, invocation }));
        }
        let record: WriteRecord =
            sqlx::query_as("SELECT org_id, tool, result FROM tool_writes WHERE invocation_id = $1")
                .bind(invocation)
                .fetch_one(&mut *tx)
                .await
                .map_err(|e| StoreError::db("tool_write.replay", e))?;
        Ok(if record.org_id == org && record.tool == tool {
            WriteStart::Done(record.result)
        } else {
            WriteStart::Conflict
        })
    }

    /// The committed result of `invocation` of `tool` in `org`, if any: lets a tool that must
    /// ask a human first (elicitation) skip the question on a replay.
    ///
    /// # Errors
    /// Database failures.
    pub async fn tool_write_result(
        &self,
        org: OrgId,
        invocation: InvocationId,
        tool: &str,
    ) -> Result<Option<serde_json::Value>> {
        sqlx::query_scalar(
            "SELECT result FROM tool_writes WHERE invocation_id = $1 AND org_id = $2 AND tool = $3",
        )
        .bind(invocation)
        .bind(org)
        .bind(tool)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| StoreError::db("tool_write_result", e))
    }

    /// Gives an organization sample integrations (Slack, Salesforce, Zendesk, GitHub, Jira)
    /// and five tickets, unless it has integrations already. Returns whether it seeded.
    ///
    /// # Errors
    /// Database failures.
    pub async fn seed_demo(&self, org: OrgId) -> Result<bool> {
        let mut tx = self.pool.begin().await.map_err(|e| StoreError::db("seed_demo", e))?;
        // Two seeds of one org at once: the second waits here, then finds the integrations.
        sqlx::query("SELECT 1 FROM organizations WHERE id = $1 FOR UPDATE")
            .bind(org)
            .execute(&mut *tx)
            .await
            .map_err(|e| StoreError::db("seed_demo.lock", e))?;
        let seeded: bool =
            sqlx::query_scalar("SELECT EXISTS(SELECT 1 FROM integrations WHERE org_id = $1)")
                .bind(org)
                .fetch_one(&mut *tx)
                .await
                .map_err(|e| StoreError::db("seed_demo.check", e))?;
        if seeded {
            return Ok(false);
        }
        for integration in integrations::demo() {
            integrations::insert(&mut *tx, org, &integration).await?;
        }
        for ticket in tickets::demo() {
            tickets::insert(&mut *tx, org, None, &ticket).await?;
        }
        tx.commit().await.map_err(|e| StoreError::db("seed_demo.commit", e))?;
        Ok(true)
    }
}

/// A text column holding one of a closed set of names, as a Rust enum: serde, `FromStr` and
/// sqlx encode it as its name, and the OpenAPI schema lists the names (`Name as SchemaName`
/// names the schema apart from another type's of the same name).
///
/// The names are `tt`, not `literal`: a `literal` fragment reaches the derives wrapped in an
/// invisible group, which serde reads but utoipa silently ignores (it then documented the
/// variants' Rust names, `InProgress` for `in_progress`).
macro_rules! text_enum {
    (
        $(#[$doc:meta])* $name:ident $(as $schema:ident)?
        { $($(#[$vdoc:meta])* $variant:ident = $text:tt),+ $(,)? }
    ) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[derive(serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
        $(#[schema(as = $schema)])?
        pub enum $name {
            $($(#[$vdoc])* #[serde(rename = $text)] $variant),+
        }

        impl $name {
            /// Every value, in order.
            pub const ALL: &'static [Self] = &[$(Self::$variant),+];
            /// Every value's name, in order.
            pub const NAMES: &'static [&'static str] = &[$($text),+];

            /// The name stored and sent.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text),+
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($text => Ok(Self::$variant),)+
                    other => Err(format!(
                        "unknown value {other:?}; expected one of {}",
                        Self::NAMES.join(", ")
                    )),
                }
            }
        }

        impl sqlx::Type<sqlx::Postgres> for $name {
            fn type_info() -> sqlx::postgres::PgTypeInfo {
                <&str as sqlx::Type<sqlx::Postgres>>::type_info()
            }
            fn compatible(ty: &sqlx::postgres::PgTypeInfo) -> bool {
                <&str as sqlx::Type<sqlx::Postgres>>::compatible(ty)
            }
        }

        impl<'q> sqlx::Encode<'q, sqlx::Postgres> for $name {
            fn encode_by_ref(
                &self,
                buf: &mut sqlx::postgres::PgArgumentBuffer,
            ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
                <&str as sqlx::Encode<'q, sqlx::Postgres>>::encode_by_ref(&self.as_str(), buf)
            }
        }

        impl<'r> sqlx::Decode<'r, sqlx::Postgres> for $name {
            fn decode(
                value: sqlx::postgres::PgValueRef<'r>,
            ) -> Result<Self, sqlx::error::BoxDynError> {
                let s = <&str as sqlx::Decode<'r, sqlx::Postgres>>::decode(value)?;
                Ok(s.parse()?)
            }
        }
    };
}
pub(crate) use text_enum;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_trimmed_and_bounded() {
        assert_eq!(required_text("title", "  Pay rent ", 10).unwrap(), "Pay rent");
        assert_eq!(required_text("title", "   ", 10).unwrap_err().field, "title");
        assert!(required_text("title", "abcdef", 5).unwrap_err().message.contains("at most 5"));
        assert_eq!(optional_text("description", Some(" "), 5).unwrap(), None);
        assert_eq!(optional_text("description", None, 5).unwrap(), None);
        assert!(required_text("title", "a\0b", 10).unwrap_err().message.contains("NUL"));
    }

    #[test]
    fn text_enums_round_trip_their_names() {
        for s in TicketStatus::ALL {
            assert_eq!(s.as_str().parse::<TicketStatus>().unwrap(), *s);
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
        assert!("done".parse::<TaskStatus>().unwrap_err().contains("pending, completed"));
    }
}
