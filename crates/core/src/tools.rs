//! The built-in tools: one registry, read by the tool server (which implements them and marks
//! the read-only ones in `tools/list`), the agent catalog (which tools an agent may be given and
//! which need approval by default) and the tool worker (which scope a call needs).

/// The server name of the built-in tools in invocations and agent configurations.
pub const BUILTIN_SERVER: &str = "builtin";

/// Separates a server's name from its tool's in the names models see (`server__tool`).
pub const NAMESPACE_SEPARATOR: &str = "__";

/// One built-in tool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BuiltinTool {
    pub name: &'static str,
    /// Only reads: a call needs `runs:read`; every other tool needs `runs:write`.
    pub read_only: bool,
    /// A call waits for a human's approval unless the agent's configuration says otherwise.
    pub needs_approval: bool,
}

const fn tool(name: &'static str, read_only: bool, needs_approval: bool) -> BuiltinTool {
    BuiltinTool { name, read_only, needs_approval }
}

/// Every built-in tool, grouped as the server implements them.
pub const BUILTIN_TOOLS: &[BuiltinTool] = &[
    tool("add_task", false, false),
    tool("list_tasks", true, false),
    tool("complete_task", false, false),
    tool("update_task", false, false),
    tool("delete_task", false, true),
    tool("create_ticket", false, false),
    tool("create_ticket_with_ai", false, false),
    tool("get_ticket", true, false),
    tool("update_ticket", false, false),
    tool("delete_ticket", false, true),
    tool("update_ticket_status", false, false),
    tool("assign_ticket", false, false),
    tool("search_tickets", true, false),
    tool("list_tickets", true, false),
    tool("get_ticket_stats", true, false),
    tool("list_integrations", true, false),
    tool("get_active_integrations", true, false),
    tool("get_system_health", true, false),
    tool("create_customer", false, false),
    tool("get_customer", true, false),
    tool("list_customers", true, false),
    tool("send_message", false, false),
    tool("list_messages", true, false),
    tool("add_revenue", false, false),
    // Reads; an organization without revenue gets demo figures first (demo data, not a change
    // the caller asks for).
    tool("get_revenue", true, false),
    tool("save_report", false, false),
    tool("get_report", true, false),
    tool("list_reports", true, false),
];

/// The built-in tool of that name.
pub fn builtin(name: &str) -> Option<&'static BuiltinTool> {
    BUILTIN_TOOLS.iter().find(|t| t.name == name)
}

/// The server a tool name (as models see it) belongs to: `server` of `server__tool`, else the
/// built-in server.
pub fn server_of(tool: &str) -> &str {
    tool.split_once(NAMESPACE_SEPARATOR).map_or(BUILTIN_SERVER, |(server, _)| server)
}

/// The scope a call of `tool` (as models see it) needs.
pub fn required_scope(tool: &str) -> crate::Scope {
    match builtin(tool) {
        Some(t) if t.read_only => crate::Scope::RunsRead,
        _ => crate::Scope::RunsWrite,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_only_tools_need_read_and_the_rest_write() {
        assert_eq!(required_scope("list_tasks"), crate::Scope::RunsRead);
        assert_eq!(required_scope("add_task"), crate::Scope::RunsWrite);
        assert_eq!(required_scope("get_revenue"), crate::Scope::RunsRead);
        assert_eq!(required_scope("send_message"), crate::Scope::RunsWrite);
        assert_eq!(required_scope("everything__echo"), crate::Scope::RunsWrite);
        assert_eq!(server_of("everything__echo"), "everything");
        assert_eq!(server_of("add_task"), BUILTIN_SERVER);
    }
}

/// Whether the model must, may or must not call a tool (OpenAI's `tool_choice`). Small local
/// models rarely call a tool unless told to: `required` makes them.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    serde::Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum ToolChoice {
    /// The model decides.
    #[default]
    Auto,
    /// The model must call a tool.
    Required,
    /// The model must not call a tool (it still sees them).
    None,
}
