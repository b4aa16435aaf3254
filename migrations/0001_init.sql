-- agentyard schema, first cut: tenancy, agents, threads, messages, runs, the outbox and
-- idempotency keys. The run state machine's multi-row transitions live in the functions at the
-- end, so each transition is ONE round trip and ONE transaction (see docs in crates/store).

CREATE TABLE organizations (
    id          uuid PRIMARY KEY,
    name        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE users (
    id          uuid PRIMARY KEY,
    org_id      uuid NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    name        text NOT NULL,
    email       text,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX users_org ON users(org_id);

CREATE TABLE api_tokens (
    id            uuid PRIMARY KEY,
    org_id        uuid NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    user_id       uuid REFERENCES users(id) ON DELETE CASCADE,
    name          text NOT NULL,
    token_sha256  bytea NOT NULL UNIQUE,      -- the secret itself is never stored
    scopes        text[] NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz,
    revoked_at    timestamptz
);
CREATE INDEX api_tokens_org ON api_tokens(org_id);

CREATE TABLE agents (
    id          uuid PRIMARY KEY,
    org_id      uuid NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    agent_type  text NOT NULL,
    name        text NOT NULL,
    is_active   boolean NOT NULL DEFAULT true,
    is_default  boolean NOT NULL DEFAULT false,
    config      jsonb NOT NULL DEFAULT '{}',  -- overrides of the type's defaults (merge patch)
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (org_id, agent_type)
);
CREATE UNIQUE INDEX agents_one_default ON agents(org_id) WHERE is_default;

CREATE TABLE threads (
    id             uuid PRIMARY KEY,
    org_id         uuid NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    metadata       jsonb NOT NULL DEFAULT '{}',
    active_run_id  uuid,                      -- the one run allowed to execute on this thread
    last_seq       bigint NOT NULL DEFAULT 0, -- seq of the newest message
    created_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX threads_org ON threads(org_id, id);

CREATE TABLE runs (
    id                  uuid PRIMARY KEY,
    org_id              uuid NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    thread_id           uuid NOT NULL REFERENCES threads(id) ON DELETE CASCADE,
    agent_id            uuid NOT NULL REFERENCES agents(id) ON DELETE CASCADE,
    user_id             uuid,
    status              text NOT NULL CHECK (status IN ('queued', 'in_progress', 'requires_input',
                            'completed', 'failed', 'cancelled', 'expired')),
    input               text NOT NULL,
    output              jsonb,
    tools_used          jsonb NOT NULL DEFAULT '[]',
    usage               jsonb,
    error               jsonb,
    multitask_strategy  text NOT NULL,
    metadata            jsonb NOT NULL DEFAULT '{}',
    step                integer NOT NULL DEFAULT 0,
    created_at          timestamptz NOT NULL,
    started_at          timestamptz,
    completed_at        timestamptz
);
CREATE INDEX runs_waiting ON runs(thread_id, created_at, id) WHERE status = 'queued';
CREATE INDEX runs_org ON runs(org_id, created_at);

CREATE TABLE messages (
    id            uuid PRIMARY KEY,
    org_id        uuid NOT NULL,
    thread_id     uuid NOT NULL REFERENCES threads(id) ON DELETE CASCADE,
    seq           bigint NOT NULL,
    role          text NOT NULL CHECK (role IN ('system', 'user', 'assistant', 'tool')),
    content       text NOT NULL,
    tool_calls    jsonb,
    tool_call_id  text,
    run_id        uuid,
    created_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (thread_id, seq)
);

-- Jobs and durable events waiting to be published. Rows are deleted once JetStream acked them;
-- a relay re-publishes rows a crash left behind (msg ids make that harmless).
CREATE TABLE outbox (
    id          bigserial PRIMARY KEY,
    subject     text NOT NULL,
    msg_id      text NOT NULL,
    payload     jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp()
);

CREATE TABLE idempotency_keys (
    org_id          uuid NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    key             text NOT NULL,
    request_sha256  bytea NOT NULL,
    run_id          uuid NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, key)
);

-- The public run object (the API's and the events' shape).
CREATE FUNCTION ay_run_json(r runs) RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'id', r.id, 'thread_id', r.thread_id, 'agent_id', r.agent_id, 'status', r.status,
        'input', r.input, 'output', r.output, 'tools_used', r.tools_used, 'usage', r.usage,
        'error', r.error, 'multitask_strategy', r.multitask_strategy, 'metadata', r.metadata,
        'created_at', r.created_at, 'started_at', r.started_at, 'completed_at', r.completed_at)
$$;

-- Inserts one outbox row and returns it as {id, subject, msg_id, payload}.
CREATE FUNCTION ay_outbox(p_subject text, p_msg_id text, p_payload jsonb) RETURNS jsonb
LANGUAGE sql AS $$
    INSERT INTO outbox(subject, msg_id, payload) VALUES (p_subject, p_msg_id, p_payload)
    RETURNING jsonb_build_object('id', id, 'subject', subject, 'msg_id', msg_id, 'payload', payload)
$$;

-- Appends a message to a thread (the thread row is locked by the caller's UPDATE).
CREATE FUNCTION ay_append_message(p_id uuid, p_thread uuid, p_role text, p_content text,
                                  p_run uuid) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    v_org uuid; v_seq bigint; v_at timestamptz := clock_timestamp();
BEGIN
    UPDATE threads SET last_seq = last_seq + 1 WHERE id = p_thread
        RETURNING org_id, last_seq INTO v_org, v_seq;
    INSERT INTO messages(id, org_id, thread_id, seq, role, content, run_id, created_at)
        VALUES (p_id, v_org, p_thread, v_seq, p_role, p_content, p_run, v_at);
    RETURN jsonb_build_object('id', p_id, 'thread_id', p_thread, 'run_id', p_run, 'seq', v_seq,
                              'role', p_role, 'content', p_content, 'created_at', v_at);
END $$;

-- Makes p_run the thread's active run: stores its input as the user message and enqueues its
-- first AgentStep. Returns the outbox rows to publish.
CREATE FUNCTION ay_activate_run(p_run uuid, p_prefix text) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    r runs;
BEGIN
    SELECT * INTO r FROM runs WHERE id = p_run;
    UPDATE threads SET active_run_id = p_run WHERE id = r.thread_id;
    PERFORM ay_append_message(gen_random_uuid(), r.thread_id, 'user', r.input, r.id);
    RETURN jsonb_build_array(ay_outbox(p_prefix || '.jobs.agent',
        'run:' || r.id || ':step:' || r.step,
        jsonb_build_object('v', 1, 'run_id', r.id, 'step', r.step)));
END $$;

-- Frees the thread of p_run (if p_run holds it) and activates the oldest waiting run.
CREATE FUNCTION ay_release_thread(p_thread uuid, p_run uuid, p_prefix text) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    v_active uuid; v_next uuid;
BEGIN
    SELECT active_run_id INTO v_active FROM threads WHERE id = p_thread FOR UPDATE;
    IF v_active IS DISTINCT FROM p_run THEN
        RETURN '[]'::jsonb;
    END IF;
    SELECT id INTO v_next FROM runs
        WHERE thread_id = p_thread AND status = 'queued' AND id <> p_run
        ORDER BY created_at, id LIMIT 1;
    IF v_next IS NULL THEN
        UPDATE threads SET active_run_id = NULL WHERE id = p_thread;
        RETURN '[]'::jsonb;
    END IF;
    RETURN ay_activate_run(v_next, p_prefix);
END $$;

-- The org's default agent, provisioned when missing (an org whose default agent was deleted
-- still chats).
CREATE FUNCTION ay_default_agent(p_org uuid) RETURNS uuid LANGUAGE plpgsql AS $$
DECLARE
    v_id uuid;
BEGIN
    SELECT id INTO v_id FROM agents WHERE org_id = p_org AND is_default;
    IF v_id IS NULL THEN
        INSERT INTO agents(id, org_id, agent_type, name, is_default)
            VALUES (gen_random_uuid(), p_org, 'customer_support', 'Customer support', true)
            ON CONFLICT (org_id, agent_type) DO UPDATE SET is_default = true
            RETURNING id INTO v_id;
    END IF;
    RETURN v_id;
END $$;

-- Creates a run on a thread of p_org (a new thread when p_thread is null), following the
-- multitask strategy, in one transaction.
-- Returns {outcome, run?, outbox?, active_run_id?}; outcome is one of created, idempotent,
-- idempotency_mismatch, thread_not_found, rejected.
CREATE FUNCTION ay_create_run(p_org uuid, p_thread uuid, p_run uuid, p_agent uuid, p_user uuid,
        p_input text, p_strategy text, p_metadata jsonb, p_prefix text,
        p_idem_key text, p_idem_hash bytea) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    v_active uuid; v_active_status text; r runs; v_outbox jsonb := '[]'::jsonb;
    v_prev uuid; v_prev_hash bytea; v_interrupted uuid;
BEGIN
    IF p_idem_key IS NOT NULL THEN
        INSERT INTO idempotency_keys(org_id, key, request_sha256, run_id)
            VALUES (p_org, p_idem_key, p_idem_hash, p_run)
            ON CONFLICT (org_id, key) DO NOTHING;
        IF NOT FOUND THEN
            SELECT run_id, request_sha256 INTO v_prev, v_prev_hash FROM idempotency_keys
                WHERE org_id = p_org AND key = p_idem_key;
            IF v_prev_hash <> p_idem_hash THEN
                RETURN jsonb_build_object('outcome', 'idempotency_mismatch');
            END IF;
            SELECT * INTO r FROM runs WHERE id = v_prev;
            RETURN jsonb_build_object('outcome', 'idempotent', 'run', ay_run_json(r));
        END IF;
    END IF;

    IF p_agent IS NULL THEN
        p_agent := ay_default_agent(p_org);
    END IF;
    IF p_thread IS NULL THEN
        INSERT INTO threads(id, org_id) VALUES (gen_random_uuid(), p_org) RETURNING id INTO p_thread;
    END IF;
    SELECT t.active_run_id, ar.status INTO v_active, v_active_status
        FROM threads t LEFT JOIN runs ar ON ar.id = t.active_run_id
        WHERE t.id = p_thread AND t.org_id = p_org FOR UPDATE OF t;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'AY404', MESSAGE = 'thread_not_found';
    END IF;
    IF v_active IS NOT NULL AND p_strategy = 'reject' THEN
        RAISE EXCEPTION USING ERRCODE = 'AY409', MESSAGE = 'thread_busy', DETAIL = v_active::text;
    END IF;

    INSERT INTO runs(id, org_id, thread_id, agent_id, user_id, status, input,
                     multitask_strategy, metadata, created_at)
        VALUES (p_run, p_org, p_thread, p_agent, p_user, 'queued', p_input, p_strategy,
                p_metadata, clock_timestamp())
        RETURNING * INTO r;
    v_outbox := v_outbox || ay_outbox(p_prefix || '.events.run.' || p_run,
        'run:' || p_run || ':queued',
        jsonb_build_object('type', 'run.queued', 'data', jsonb_build_object('run', ay_run_json(r))));

    IF v_active IS NOT NULL AND p_strategy = 'interrupt' THEN
        v_outbox := v_outbox || ay_cancel_run_locked(v_active, p_prefix, false);
        UPDATE threads SET active_run_id = NULL WHERE id = p_thread;
        v_interrupted := v_active;
        v_active := NULL;
    END IF;
    IF v_active IS NULL THEN
        v_outbox := v_outbox || ay_activate_run(p_run, p_prefix);
    END IF;
    RETURN jsonb_build_object('outcome', 'created', 'run', ay_run_json(r), 'outbox', v_outbox,
                              'interrupted', v_interrupted);
END $$;

-- Cancels a non-terminal run. When p_release is true and the run holds its thread, the next
-- waiting run is activated. Returns the outbox rows (the run.cancelled event, maybe a job).
CREATE FUNCTION ay_cancel_run_locked(p_run uuid, p_prefix text, p_release boolean) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    r runs; v_outbox jsonb;
BEGIN
    UPDATE runs SET status = 'cancelled', completed_at = clock_timestamp(),
            error = jsonb_build_object('code', 'cancelled', 'message', 'the run was cancelled')
        WHERE id = p_run AND status NOT IN ('completed', 'failed', 'cancelled', 'expired')
        RETURNING * INTO r;
    IF NOT FOUND THEN
        RETURN '[]'::jsonb;
    END IF;
    v_outbox := jsonb_build_array(ay_outbox(p_prefix || '.events.run.' || r.id,
        'run:' || r.id || ':terminal',
        jsonb_build_object('type', 'run.cancelled', 'data', jsonb_build_object('run', ay_run_json(r)))));
    IF p_release THEN
        v_outbox := v_outbox || ay_release_thread(r.thread_id, r.id, p_prefix);
    END IF;
    RETURN v_outbox;
END $$;

-- Cancels a run of p_org. Returns {outcome: not_found | already_terminal | cancelled,
-- status (before), outbox}.
CREATE FUNCTION ay_cancel_run(p_org uuid, p_run uuid, p_prefix text) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    v_status text; v_thread uuid;
BEGIN
    SELECT status, thread_id INTO v_status, v_thread FROM runs
        WHERE id = p_run AND org_id = p_org;
    IF NOT FOUND THEN
        RETURN jsonb_build_object('outcome', 'not_found');
    END IF;
    -- Lock the thread first (same order as every other transition) to avoid deadlocks.
    PERFORM 1 FROM threads WHERE id = v_thread FOR UPDATE;
    SELECT status INTO v_status FROM runs WHERE id = p_run FOR UPDATE;
    IF v_status IN ('completed', 'failed', 'cancelled', 'expired') THEN
        RETURN jsonb_build_object('outcome', 'already_terminal', 'status', v_status);
    END IF;
    RETURN jsonb_build_object('outcome', 'cancelled', 'status', v_status,
                              'outbox', ay_cancel_run_locked(p_run, p_prefix, true));
END $$;

-- Ends a run that a worker was executing: completed (with the assistant message) or failed.
-- Applies only while the run is still in one of p_from (so a cancelled run never turns
-- completed) and, when p_step is given, still at that step (so a stale duplicate changes
-- nothing). Returns {applied, outbox}.
CREATE FUNCTION ay_finish_run(p_run uuid, p_step integer, p_from text[], p_status text,
        p_output jsonb, p_usage jsonb, p_error jsonb, p_message_id uuid, p_content text,
        p_prefix text) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    r runs; v_thread uuid; v_outbox jsonb := '[]'::jsonb; v_msg jsonb;
BEGIN
    SELECT thread_id INTO v_thread FROM runs WHERE id = p_run;
    IF NOT FOUND THEN
        RETURN jsonb_build_object('applied', false, 'outbox', v_outbox);
    END IF;
    PERFORM 1 FROM threads WHERE id = v_thread FOR UPDATE;
    UPDATE runs SET status = p_status, output = p_output, usage = p_usage, error = p_error,
            completed_at = clock_timestamp()
        WHERE id = p_run AND status = ANY(p_from) AND (p_step IS NULL OR step = p_step)
        RETURNING * INTO r;
    IF NOT FOUND THEN
        RETURN jsonb_build_object('applied', false, 'outbox', v_outbox);
    END IF;
    IF p_content IS NOT NULL THEN
        v_msg := ay_append_message(p_message_id, v_thread, 'assistant', p_content, p_run);
        v_outbox := v_outbox || ay_outbox(p_prefix || '.events.run.' || p_run,
            'run:' || p_run || ':message:' || p_message_id,
            jsonb_build_object('type', 'message.completed', 'data',
                               jsonb_build_object('message', v_msg)));
    END IF;
    v_outbox := v_outbox || ay_outbox(p_prefix || '.events.run.' || p_run,
        'run:' || p_run || ':terminal',
        jsonb_build_object('type', 'run.' || p_status, 'data',
                           jsonb_build_object('run', ay_run_json(r))));
    v_outbox := v_outbox || ay_release_thread(v_thread, p_run, p_prefix);
    RETURN jsonb_build_object('applied', true, 'outbox', v_outbox, 'run', ay_run_json(r));
END $$;
