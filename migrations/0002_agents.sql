-- Org-scoped agents (soft delete, so `recreate` keeps an agent's id), run priorities, the
-- per-org quota of live runs, and the indexes of per-agent stats. The run functions are
-- replaced with versions that check the agent, the quota and the priority.

ALTER TABLE agents ADD COLUMN deleted_at timestamptz;

-- Jobs go to `<prefix>.jobs.agent.<priority>`; workers take high before normal before low.
ALTER TABLE runs ADD COLUMN priority text NOT NULL DEFAULT 'normal'
    CHECK (priority IN ('high', 'normal', 'low'));
-- The scopes of the token that started the run: its tool calls act with them.
ALTER TABLE runs ADD COLUMN scopes text[] NOT NULL DEFAULT '{}';
-- What a run in `requires_input` waits for (an elicitation or a tool approval).
ALTER TABLE runs ADD COLUMN required_input jsonb;

-- Usage and per-agent stats over a period read an org's runs by creation time. One index only:
-- every index is paid on the hot path (measured: each costs several percent of throughput), and
-- neither column ever changes, so run updates stay HOT.
CREATE INDEX runs_org_created ON runs(org_id, created_at);

-- The live (not yet terminal) runs of orgs with a quota: one row per run, so creates of the same
-- org do not contend on a counter row. Filled only while a quota is configured; a run ending
-- deletes its row either way. Unlogged (no WAL: it churns twice per run); after a Postgres
-- crash it starts empty, so for a while an org may run its quota plus the runs then in flight.
CREATE UNLOGGED TABLE live_runs (
    org_id  uuid NOT NULL,
    run_id  uuid NOT NULL,
    PRIMARY KEY (org_id, run_id)
) WITH (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 1000);

CREATE OR REPLACE FUNCTION ay_run_json(r runs) RETURNS jsonb LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN jsonb_build_object(
        'id', r.id, 'thread_id', r.thread_id, 'agent_id', r.agent_id, 'status', r.status,
        'input', r.input, 'output', r.output, 'tools_used', r.tools_used, 'usage', r.usage,
        'error', r.error, 'multitask_strategy', r.multitask_strategy, 'priority', r.priority,
        'required_input', r.required_input, 'metadata', r.metadata,
        'created_at', r.created_at, 'started_at', r.started_at, 'completed_at', r.completed_at);
END $$;

CREATE FUNCTION ay_job(p_prefix text, p_run uuid, p_step integer, p_priority text) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    RETURN jsonb_build_object('subject', p_prefix || '.jobs.agent.' || p_priority,
        'msg_id', 'run:' || p_run || ':step:' || p_step,
        'payload', jsonb_build_object('v', 1, 'run_id', p_run, 'step', p_step));
END $$;

CREATE OR REPLACE FUNCTION ay_hand_over(p_thread uuid, p_run uuid, p_seq bigint, p_prefix text)
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
    RETURN jsonb_build_array(ay_job(p_prefix, nr.id, nr.step, nr.priority));
END $$;

CREATE OR REPLACE FUNCTION ay_cancel_locked(p_run uuid, p_prefix text) RETURNS jsonb LANGUAGE plpgsql AS $$
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
    DELETE FROM live_runs WHERE org_id = r.org_id AND run_id = r.id;
    RETURN jsonb_build_array(ay_run_event(p_prefix, 'run.cancelled', 'terminal', ay_run_json(r)));
END $$;

-- Usage summed over a run's model turns.
CREATE FUNCTION ay_add_usage(a jsonb, b jsonb) RETURNS jsonb LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF a IS NULL THEN RETURN b; END IF;
    IF b IS NULL THEN RETURN a; END IF;
    RETURN a || jsonb_build_object(
        'prompt_tokens', coalesce((a->>'prompt_tokens')::bigint, 0) + coalesce((b->>'prompt_tokens')::bigint, 0),
        'completion_tokens', coalesce((a->>'completion_tokens')::bigint, 0) + coalesce((b->>'completion_tokens')::bigint, 0),
        'total_tokens', coalesce((a->>'total_tokens')::bigint, 0) + coalesce((b->>'total_tokens')::bigint, 0),
        'cost_usd', coalesce((a->>'cost_usd')::float8, 0) + coalesce((b->>'cost_usd')::float8, 0))
        || CASE WHEN (a->>'estimated')::boolean OR (b->>'estimated')::boolean
                THEN '{"estimated": true}'::jsonb ELSE '{}'::jsonb END;
END $$;

-- The org's default agent, provisioned (or brought back, when deleted) when missing.
CREATE OR REPLACE FUNCTION ay_default_agent(p_org uuid) RETURNS uuid LANGUAGE plpgsql AS $$
DECLARE
    v_id uuid;
BEGIN
    SELECT id INTO v_id FROM agents WHERE org_id = p_org AND is_default AND deleted_at IS NULL;
    IF v_id IS NULL THEN
        UPDATE agents SET deleted_at = NULL, is_active = true, config = '{}', updated_at = now()
            WHERE org_id = p_org AND is_default RETURNING id INTO v_id;
    END IF;
    IF v_id IS NULL THEN
        INSERT INTO agents(id, org_id, agent_type, name, is_default)
            VALUES (ay_uuid_v7(), p_org, 'customer_support', 'Customer support', true)
            ON CONFLICT (org_id, agent_type) DO UPDATE
                SET is_default = true, deleted_at = NULL, is_active = true, updated_at = now()
            RETURNING id INTO v_id;
    END IF;
    RETURN v_id;
END $$;

DROP FUNCTION ay_create_run(uuid, uuid, uuid, uuid, uuid, text, text, jsonb, text, text, bytea,
    uuid, uuid);
CREATE FUNCTION ay_create_run(p_org uuid, p_thread uuid, p_run uuid, p_agent uuid, p_user uuid,
        p_input text, p_strategy text, p_metadata jsonb, p_prefix text,
        p_idem_key text, p_idem_hash bytea, p_new_thread uuid, p_message uuid,
        p_priority text, p_quota integer, p_scopes text[])
        RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    r runs; v_run jsonb; v_active uuid; v_seq bigint; v_msgs jsonb := '[]'::jsonb;
    v_prev uuid; v_prev_hash bytea; v_interrupted uuid; v_outbox_id bigint;
    v_agent_active boolean; v_live bigint;
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
        SELECT id, is_active INTO p_agent, v_agent_active FROM agents
            WHERE org_id = p_org AND is_default AND deleted_at IS NULL;
        IF NOT FOUND THEN
            p_agent := ay_default_agent(p_org);
            v_agent_active := true;
        END IF;
    ELSE
        SELECT is_active INTO v_agent_active FROM agents
            WHERE id = p_agent AND org_id = p_org AND deleted_at IS NULL;
        IF NOT FOUND THEN
            RAISE EXCEPTION USING ERRCODE = 'AY404', MESSAGE = 'agent_not_found';
        END IF;
    END IF;
    IF NOT v_agent_active THEN
        RAISE EXCEPTION USING ERRCODE = 'AY409', MESSAGE = 'agent_inactive';
    END IF;
    -- The org's quota of live (queued, waiting, running) runs. Counting is cheap (live_runs
    -- holds only live runs); near the limit, creates of the org serialize on an advisory lock
    -- and count again, so concurrent creates cannot overshoot it.
    IF p_quota IS NOT NULL THEN
        SELECT count(*) INTO v_live FROM live_runs WHERE org_id = p_org;
        IF v_live >= p_quota - 16 THEN
            PERFORM pg_advisory_xact_lock(hashtextextended('ay_quota:' || p_org, 0));
            SELECT count(*) INTO v_live FROM live_runs WHERE org_id = p_org;
        END IF;
        IF v_live >= p_quota THEN
            RAISE EXCEPTION USING ERRCODE = 'AY429', MESSAGE = 'quota_exceeded',
                DETAIL = v_live::text;
        END IF;
        INSERT INTO live_runs(org_id, run_id) VALUES (p_org, p_run);
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
                     multitask_strategy, metadata, created_at, priority, scopes)
        VALUES (p_run, p_org, p_thread, p_agent, p_user, 'queued', p_input, p_strategy,
                p_metadata, clock_timestamp(), p_priority, p_scopes)
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
        v_msgs := v_msgs || jsonb_build_array(ay_job(p_prefix, p_run, 0, p_priority));
    END IF;
    INSERT INTO outbox(messages) VALUES (v_msgs) RETURNING id INTO v_outbox_id;
    RETURN jsonb_build_object('outcome', 'created', 'run', v_run, 'interrupted', v_interrupted,
        'outbox', jsonb_build_array(jsonb_build_object('id', v_outbox_id, 'messages', v_msgs)));
END $$;

CREATE OR REPLACE FUNCTION ay_finish_run(p_run uuid, p_step integer, p_from text[], p_status text,
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
    UPDATE runs SET status = p_status, output = p_output, usage = ay_add_usage(usage, p_usage),
            error = p_error,
            completed_at = clock_timestamp()
        WHERE id = p_run AND status = ANY(p_from) AND (p_step IS NULL OR step = p_step)
        RETURNING * INTO r;
    IF NOT FOUND THEN
        RETURN jsonb_build_object('applied', false, 'outbox', '[]'::jsonb);
    END IF;
    v_run := ay_run_json(r);
    DELETE FROM live_runs WHERE org_id = v_org AND run_id = p_run;
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

DROP FUNCTION ay_job(text, uuid, integer);
