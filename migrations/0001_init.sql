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
    -- No foreign key to organizations here or in runs: at hundreds of runs a second, the key
    -- locks every insert takes on the one organization row become a contended multixact. The
    -- functions below keep org_id consistent (a run's org is its thread's org).
    org_id         uuid NOT NULL,
    metadata       jsonb NOT NULL DEFAULT '{}',
    active_run_id  uuid,                      -- the one run allowed to execute on this thread
    last_seq       bigint NOT NULL DEFAULT 0, -- seq of the newest message
    created_at     timestamptz NOT NULL DEFAULT now()
) WITH (fillfactor = 80);  -- room for HOT updates (active_run_id, last_seq)
CREATE INDEX threads_org ON threads(org_id, id);

CREATE TABLE runs (
    id                  uuid PRIMARY KEY,
    org_id              uuid NOT NULL,
    thread_id           uuid NOT NULL REFERENCES threads(id) ON DELETE CASCADE,
    agent_id            uuid NOT NULL,
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
) WITH (fillfactor = 80);  -- room for HOT updates: no index covers a column that changes

-- Runs waiting for their thread (multitask strategy `enqueue`), oldest first. Kept apart from
-- `runs` so the common path (an idle thread) never touches it and runs carries no index on
-- its status.
CREATE TABLE run_queue (
    thread_id   uuid NOT NULL,
    created_at  timestamptz NOT NULL,
    run_id      uuid NOT NULL,
    PRIMARY KEY (thread_id, created_at, run_id)
);

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

-- Jobs and durable events waiting to be published: one row per transition, holding its
-- messages [{subject, msg_id, payload}] in publish order. Rows are deleted once JetStream acked
-- them; a relay re-publishes rows a crash left behind (msg ids make that harmless).
CREATE TABLE outbox (
    id          bigserial PRIMARY KEY,
    messages    jsonb NOT NULL,
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

-- A uuid v7 (time-ordered, like the ids the services generate): Postgres 15 has no uuidv7(),
-- so take a random v4, put the millisecond clock in its first 48 bits and set version 7.
CREATE FUNCTION ay_uuid_v7() RETURNS uuid LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    RETURN encode(set_bit(set_bit(overlay(uuid_send(gen_random_uuid())
        PLACING substring(int8send((extract(epoch FROM clock_timestamp()) * 1000)::bigint) FROM 3)
        FROM 1 FOR 6), 52, 1), 53, 1), 'hex')::uuid;
END $$;

-- The public run object (the API's and the events' shape).
-- The helpers are PL/pgSQL, not SQL, functions: called from PL/pgSQL, a SQL function is parsed
-- and planned again on every call, while PL/pgSQL caches its expression plans per session.
CREATE FUNCTION ay_run_json(r runs) RETURNS jsonb LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN jsonb_build_object(
        'id', r.id, 'thread_id', r.thread_id, 'agent_id', r.agent_id, 'status', r.status,
        'input', r.input, 'output', r.output, 'tools_used', r.tools_used, 'usage', r.usage,
        'error', r.error, 'multitask_strategy', r.multitask_strategy, 'metadata', r.metadata,
        'created_at', r.created_at, 'started_at', r.started_at, 'completed_at', r.completed_at);
END $$;

-- A message to publish.
CREATE FUNCTION ay_msg(p_subject text, p_msg_id text, p_payload jsonb) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    RETURN jsonb_build_object('subject', p_subject, 'msg_id', p_msg_id, 'payload', p_payload);
END $$;

-- The AgentStep job of a run's step.
CREATE FUNCTION ay_job(p_prefix text, p_run uuid, p_step integer) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    RETURN jsonb_build_object('subject', p_prefix || '.jobs.agent',
        'msg_id', 'run:' || p_run || ':step:' || p_step,
        'payload', jsonb_build_object('v', 1, 'run_id', p_run, 'step', p_step));
END $$;

-- A run event (`run.*`) carrying the run object.
CREATE FUNCTION ay_run_event(p_prefix text, p_kind text, p_msg_key text, p_run jsonb)
RETURNS jsonb LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    RETURN jsonb_build_object('subject', p_prefix || '.events.run.' || (p_run->>'id'),
        'msg_id', 'run:' || (p_run->>'id') || ':' || p_msg_key,
        'payload', jsonb_build_object('type', p_kind, 'data', jsonb_build_object('run', p_run)));
END $$;

-- Stores a transition's messages as one outbox row. Returns [{id, messages}], or [] when there
-- is nothing to publish.
CREATE FUNCTION ay_outbox(p_messages jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    v_id bigint;
BEGIN
    IF jsonb_array_length(p_messages) = 0 THEN
        RETURN '[]'::jsonb;
    END IF;
    INSERT INTO outbox(messages) VALUES (p_messages) RETURNING id INTO v_id;
    RETURN jsonb_build_array(jsonb_build_object('id', v_id, 'messages', p_messages));
END $$;

-- Inserts a message at seq p_seq (the caller holds the thread's lock); returns it as JSON.
CREATE FUNCTION ay_insert_message(p_id uuid, p_org uuid, p_thread uuid, p_seq bigint,
        p_role text, p_content text, p_run uuid) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    v_at timestamptz := clock_timestamp();
BEGIN
    INSERT INTO messages(id, org_id, thread_id, seq, role, content, run_id, created_at)
        VALUES (p_id, p_org, p_thread, p_seq, p_role, p_content, p_run, v_at);
    RETURN jsonb_build_object('id', p_id, 'thread_id', p_thread, 'run_id', p_run, 'seq', p_seq,
                              'role', p_role, 'content', p_content, 'created_at', v_at);
END $$;

-- Hands the (locked) thread over from p_run, whose last message has seq p_seq, to the oldest
-- waiting run: its input becomes the next user message and its first job is returned. With no
-- waiting run the thread becomes idle. One UPDATE of the thread either way.
CREATE FUNCTION ay_hand_over(p_thread uuid, p_run uuid, p_seq bigint, p_prefix text)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    nr runs; v_next uuid;
BEGIN
    DELETE FROM run_queue WHERE (thread_id, created_at, run_id) =
        (SELECT thread_id, created_at, run_id FROM run_queue WHERE thread_id = p_thread
         ORDER BY created_at, run_id LIMIT 1)
        RETURNING run_id INTO v_next;
    IF v_next IS NOT NULL THEN
        SELECT * INTO nr FROM runs WHERE id = v_next;
    END IF;
    IF v_next IS NULL THEN
        UPDATE threads SET active_run_id = NULL, last_seq = p_seq WHERE id = p_thread;
        RETURN '[]'::jsonb;
    END IF;
    UPDATE threads SET active_run_id = nr.id, last_seq = p_seq + 1 WHERE id = p_thread;
    PERFORM ay_insert_message(ay_uuid_v7(), nr.org_id, p_thread, p_seq + 1, 'user',
                              nr.input, nr.id);
    RETURN jsonb_build_array(ay_job(p_prefix, nr.id, nr.step));
END $$;

-- Cancels a non-terminal run (the caller holds its thread's lock); returns the messages to
-- publish (its run.cancelled event), or [] when it was already terminal.
CREATE FUNCTION ay_cancel_locked(p_run uuid, p_prefix text) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    r runs;
BEGIN
    UPDATE runs SET status = 'cancelled', completed_at = clock_timestamp(),
            error = jsonb_build_object('code', 'cancelled', 'message', 'the run was cancelled')
        WHERE id = p_run AND status NOT IN ('completed', 'failed', 'cancelled', 'expired')
        RETURNING * INTO r;
    IF NOT FOUND THEN
        RETURN '[]'::jsonb;
    END IF;
    DELETE FROM run_queue WHERE thread_id = r.thread_id AND run_id = r.id;
    RETURN jsonb_build_array(ay_run_event(p_prefix, 'run.cancelled', 'terminal', ay_run_json(r)));
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
            VALUES (ay_uuid_v7(), p_org, 'customer_support', 'Customer support', true)
            ON CONFLICT (org_id, agent_type) DO UPDATE SET is_default = true
            RETURNING id INTO v_id;
    END IF;
    RETURN v_id;
END $$;

-- Creates a run on a thread of p_org (a new thread p_new_thread when p_thread is null),
-- following the multitask strategy, in one transaction. Ids come from the caller (uuid v7);
-- p_message is the id of the user message when the run starts at once. Returns {outcome, run, outbox, interrupted};
-- outcome is created, idempotent or idempotency_mismatch. An unknown thread raises AY404, a
-- busy thread with strategy reject raises AY409 (detail: the active run).
CREATE FUNCTION ay_create_run(p_org uuid, p_thread uuid, p_run uuid, p_agent uuid, p_user uuid,
        p_input text, p_strategy text, p_metadata jsonb, p_prefix text,
        p_idem_key text, p_idem_hash bytea, p_new_thread uuid, p_message uuid)
        RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    r runs; v_run jsonb; v_active uuid; v_seq bigint; v_msgs jsonb := '[]'::jsonb;
    v_prev uuid; v_prev_hash bytea; v_interrupted uuid; v_outbox_id bigint;
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
        SELECT id INTO p_agent FROM agents WHERE org_id = p_org AND is_default;
        IF NOT FOUND THEN
            p_agent := ay_default_agent(p_org);
        END IF;
    END IF;

    IF p_thread IS NULL THEN
        p_thread := p_new_thread;
        v_seq := 1;
        INSERT INTO threads(id, org_id, active_run_id, last_seq) VALUES (p_thread, p_org, p_run, v_seq);
    ELSE
        -- The common case, an idle thread, in one statement.
        UPDATE threads SET active_run_id = p_run, last_seq = last_seq + 1
            WHERE id = p_thread AND org_id = p_org AND active_run_id IS NULL
            RETURNING last_seq INTO v_seq;
        IF NOT FOUND THEN
            SELECT active_run_id, last_seq INTO v_active, v_seq FROM threads
                WHERE id = p_thread AND org_id = p_org FOR UPDATE;
            IF NOT FOUND THEN
                RAISE EXCEPTION USING ERRCODE = 'AY404', MESSAGE = 'thread_not_found';
            END IF;
            IF v_active IS NULL THEN
                -- It became idle between the two statements.
                v_seq := v_seq + 1;
                UPDATE threads SET active_run_id = p_run, last_seq = v_seq WHERE id = p_thread;
            ELSIF p_strategy = 'reject' THEN
                RAISE EXCEPTION USING ERRCODE = 'AY409', MESSAGE = 'thread_busy',
                    DETAIL = v_active::text;
            ELSIF p_strategy = 'interrupt' THEN
                v_msgs := ay_cancel_locked(v_active, p_prefix);
                v_interrupted := v_active;
                v_active := NULL;
                v_seq := v_seq + 1;
                UPDATE threads SET active_run_id = p_run, last_seq = v_seq WHERE id = p_thread;
            END IF;
        END IF;
    END IF;

    INSERT INTO runs(id, org_id, thread_id, agent_id, user_id, status, input,
                     multitask_strategy, metadata, created_at)
        VALUES (p_run, p_org, p_thread, p_agent, p_user, 'queued', p_input, p_strategy,
                p_metadata, clock_timestamp())
        RETURNING * INTO r;
    v_run := ay_run_json(r);
    v_msgs := v_msgs || jsonb_build_array(ay_run_event(p_prefix, 'run.queued', 'queued', v_run));
    IF v_active IS NOT NULL THEN
        INSERT INTO run_queue(thread_id, created_at, run_id) VALUES (p_thread, r.created_at, p_run);
    ELSE
        -- This run holds the thread: its input is the next message and its job goes out now.
        INSERT INTO messages(id, org_id, thread_id, seq, role, content, run_id, created_at)
            VALUES (p_message, p_org, p_thread, v_seq, 'user', p_input, p_run,
                    clock_timestamp());
        v_msgs := v_msgs || jsonb_build_array(ay_job(p_prefix, p_run, 0));
    END IF;
    INSERT INTO outbox(messages) VALUES (v_msgs) RETURNING id INTO v_outbox_id;
    RETURN jsonb_build_object('outcome', 'created', 'run', v_run, 'interrupted', v_interrupted,
        'outbox', jsonb_build_array(jsonb_build_object('id', v_outbox_id, 'messages', v_msgs)));
END $$;

-- Cancels a run of p_org: {outcome: not_found | already_terminal | cancelled, status (before),
-- outbox}. A run holding its thread hands it over to the next waiting run.
CREATE FUNCTION ay_cancel_run(p_org uuid, p_run uuid, p_prefix text) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    v_status text; v_thread uuid; v_active uuid; v_seq bigint; v_msgs jsonb;
BEGIN
    SELECT thread_id INTO v_thread FROM runs WHERE id = p_run AND org_id = p_org;
    IF NOT FOUND THEN
        RETURN jsonb_build_object('outcome', 'not_found');
    END IF;
    -- Every transition locks the thread first, then the run: no deadlocks.
    SELECT active_run_id, last_seq INTO v_active, v_seq FROM threads WHERE id = v_thread FOR UPDATE;
    SELECT status INTO v_status FROM runs WHERE id = p_run;
    IF v_status IN ('completed', 'failed', 'cancelled', 'expired') THEN
        RETURN jsonb_build_object('outcome', 'already_terminal', 'status', v_status);
    END IF;
    v_msgs := ay_cancel_locked(p_run, p_prefix);
    IF v_active = p_run THEN
        v_msgs := v_msgs || ay_hand_over(v_thread, p_run, v_seq, p_prefix);
    END IF;
    RETURN jsonb_build_object('outcome', 'cancelled', 'status', v_status,
                              'outbox', ay_outbox(v_msgs));
END $$;

-- Ends a run a worker was executing: completed (with the assistant message) or failed.
-- Applies only while the run is still in one of p_from (so a cancelled run never turns
-- completed) and, when p_step is given, still at that step (so a stale duplicate changes
-- nothing). The thread goes to its next waiting run. Returns {applied, run, outbox}.
CREATE FUNCTION ay_finish_run(p_run uuid, p_step integer, p_from text[], p_status text,
        p_output jsonb, p_usage jsonb, p_error jsonb, p_message_id uuid, p_content text,
        p_prefix text) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    r runs; v_run jsonb; v_thread uuid; v_org uuid; v_active uuid; v_seq bigint;
    v_msgs jsonb := '[]'::jsonb; v_msg jsonb; v_outbox_id bigint;
BEGIN
    SELECT thread_id INTO v_thread FROM runs WHERE id = p_run;
    IF NOT FOUND THEN
        RETURN jsonb_build_object('applied', false, 'outbox', '[]'::jsonb);
    END IF;
    SELECT org_id, active_run_id, last_seq INTO v_org, v_active, v_seq FROM threads
        WHERE id = v_thread FOR UPDATE;
    UPDATE runs SET status = p_status, output = p_output, usage = p_usage, error = p_error,
            completed_at = clock_timestamp()
        WHERE id = p_run AND status = ANY(p_from) AND (p_step IS NULL OR step = p_step)
        RETURNING * INTO r;
    IF NOT FOUND THEN
        RETURN jsonb_build_object('applied', false, 'outbox', '[]'::jsonb);
    END IF;
    v_run := ay_run_json(r);
    IF p_content IS NOT NULL THEN
        v_seq := v_seq + 1;
        INSERT INTO messages(id, org_id, thread_id, seq, role, content, run_id, created_at)
            VALUES (p_message_id, v_org, v_thread, v_seq, 'assistant', p_content, p_run,
                    clock_timestamp())
            RETURNING jsonb_build_object('id', id, 'thread_id', thread_id, 'run_id', run_id,
                'seq', seq, 'role', role, 'content', content, 'created_at', created_at)
            INTO v_msg;
        v_msgs := jsonb_build_array(ay_msg(p_prefix || '.events.run.' || p_run,
            'run:' || p_run || ':message:' || p_message_id,
            jsonb_build_object('type', 'message.completed', 'data',
                               jsonb_build_object('message', v_msg))));
    END IF;
    v_msgs := v_msgs || jsonb_build_array(ay_run_event(p_prefix, 'run.' || p_status, 'terminal', v_run));
    IF v_active = p_run THEN
        v_msgs := v_msgs || ay_hand_over(v_thread, p_run, v_seq, p_prefix);
    ELSIF p_content IS NOT NULL THEN
        UPDATE threads SET last_seq = v_seq WHERE id = v_thread;
    END IF;
    INSERT INTO outbox(messages) VALUES (v_msgs) RETURNING id INTO v_outbox_id;
    RETURN jsonb_build_object('applied', true, 'run', v_run,
        'outbox', jsonb_build_array(jsonb_build_object('id', v_outbox_id, 'messages', v_msgs)));
END $$;
