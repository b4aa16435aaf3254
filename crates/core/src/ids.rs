//! Typed ids: uuid v7 newtypes, so ids sort by creation time and keep indexes warm, and a
//! `RunId` can never be passed where a `ThreadId` is expected. With the `sqlx` feature each is
//! a Postgres `uuid` parameter and column as it is (no `.0`).

macro_rules! id_type {
    ($($(#[$doc:meta])* $name:ident),+ $(,)?) => {$(
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema, utoipa::ToSchema)]
        #[cfg_attr(feature = "sqlx", derive(sqlx::Type), sqlx(transparent))]
        #[serde(transparent)]
        #[schema(value_type = String, format = Uuid)]
        pub struct $name(pub uuid::Uuid);

        impl $name {
            /// A new, time-ordered id.
            #[allow(clippy::new_without_default)]
            pub fn new() -> Self {
                Self(uuid::Uuid::now_v7())
            }

            /// The nil id (all zeros): "nobody" in claims that need an id.
            pub const fn nil() -> Self {
                Self(uuid::Uuid::nil())
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }

        impl std::str::FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                uuid::Uuid::parse_str(s).map(Self)
            }
        }

        impl From<uuid::Uuid> for $name {
            fn from(u: uuid::Uuid) -> Self {
                Self(u)
            }
        }
    )+};
}

id_type!(
    /// An organization: the unit of isolation.
    OrgId,
    /// A user inside an organization.
    UserId,
    /// An API token (its id, never its secret).
    TokenId,
    /// An agent of an organization.
    AgentId,
    /// A conversation.
    ThreadId,
    /// A message of a thread.
    MessageId,
    /// One execution of an agent on a thread.
    RunId,
    /// One tool call a model made (a row of the audit log).
    InvocationId,
    /// An MCP server an organization registered.
    McpServerId,
    /// A to-do task of the built-in tools.
    TaskId,
    /// A support ticket of the built-in tools.
    TicketId,
    /// An integration of the built-in tools.
    IntegrationId,
    /// A customer of the built-in tools' demo data.
    CustomerId,
    /// A message the built-in `send_message` tool recorded (nothing is really sent).
    OutgoingMessageId,
    /// A report of the built-in tools.
    ReportId,
    /// A workflow definition.
    WorkflowId,
    /// One execution of a workflow.
    ExecutionId,
);
