-- The audit trail of administrative acts made through the API: tokens created and revoked,
-- users created, agents created, changed, reset, recreated, activated, deactivated and deleted,
-- MCP servers registered and deleted. Who (user, token), what, on what, when. Append-only:
-- rows are never changed or removed (not even with the organization: a trail outlives it).
CREATE TABLE audit_log (
    id bigserial PRIMARY KEY,
    org_id uuid NOT NULL,
    actor_user_id uuid,
    actor_token_id uuid NOT NULL,
    action text NOT NULL,
    target_type text NOT NULL,
    target_id text NOT NULL,
    details jsonb NOT NULL DEFAULT '{}',
    at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX audit_log_org ON audit_log (org_id, id DESC);

CREATE FUNCTION ay_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the audit log is append-only' USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION ay_audit_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION ay_audit_append_only();
