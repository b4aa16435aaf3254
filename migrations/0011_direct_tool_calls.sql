-- Calls of the built-in tools made by an MCP client with an API token (Claude Desktop, the MCP
-- Inspector, an SDK): no run, thread or agent is behind them, so those stay empty and the audit
-- log names the token instead. Every other row still belongs to a run.
ALTER TABLE tool_invocations
    ALTER COLUMN run_id DROP NOT NULL,
    ALTER COLUMN thread_id DROP NOT NULL,
    ALTER COLUMN agent_id DROP NOT NULL,
    ADD COLUMN token_id uuid,
    ADD CONSTRAINT tool_invocations_run_or_token CHECK (
        (run_id IS NOT NULL AND thread_id IS NOT NULL AND agent_id IS NOT NULL)
        OR (run_id IS NULL AND token_id IS NOT NULL));
