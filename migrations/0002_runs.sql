-- The run state machine. Each transition that touches several rows (create, finish, cancel,
-- hand-over) is one function here: one round trip, one transaction, which also writes the
-- transition's outbox facts. Every transition locks the thread first, then the run: no
-- deadlocks.
--
-- The helpers are PL/pgSQL, not SQL, functions: called from PL/pgSQL, a SQL function is parsed
-- and planned again on every call, while PL/pgSQL caches its expression plans per session.

-- Outbox facts (crates/core/src/outbox.rs). No subject and no message id here: `bus` derives
-- them from the facts.
CREATE FUNCTION ay_fact_agent_step(p_run uuid, p_step integer, p_priority text) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    RETURN jsonb_build_object('fact', 'job', 'job', jsonb_build_object('kind', 'agent_step',
        'v', 1, 'run_id', p_run, 'step', p_step, 'priority', p_priority));
END $$;

CREATE FUNCTION ay_fact_event(p_org uuid, p_run uuid, p_key text, p_type text, p_data jsonb)
RETURNS jsonb LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    RETURN jsonb_build_object('fact', 'event', 'org', p_org, 'run', p_run, 'key', p_key,
        'event', jsonb_build_object('type', p_type, 'data', p_data));
END $$;

-- A `run.*` event carrying the run as it is now (the row as it is: `bus` reads it into the
-- public run object, which leaves out the internal columns).
CREATE FUNCTION ay_fact_run(r runs, p_type text, p_key text) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN ay_fact_event(r.org_id, r.id, p_key, p_type, jsonb_build_object('run', to_jsonb(r)));
END $$;

-- Stores a transition's facts as one outbox row. Returns [{id, facts}], or [] when there is
-- nothing to publish.
CREATE FUNCTION ay_outbox(p_facts jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    v_id bigint;
BEGIN
    IF jsonb_array_length(p_facts) = 0 THEN
        RETURN '[]'::jsonb;
    END IF;
    INSERT INTO outbox(facts) VALUES (p_facts) RETURNING id INTO v_id;
    RETURN jsonb_build_array(jsonb_build_object('id', v_id, 'facts', p_facts));
END $$;

-- What every run's end does besides its own row: it is no longer live, and a call of it that
-- waits for a human waits no more.
CREATE FUNCTION ay_run_ended(r runs) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM live_runs WHERE org_id = r.org_id AND run_id = r.id;
    IF r.status <> 'completed' THEN
        UPDATE tool_invocations SET status = 'completed', is_error = true,
                result = 'the run ended (' || r.status || ') while this call waited for input',
                error = 'the run ended (' || r.status || ') while this call waited for input',
                input_deadline = NULL, input_request = NULL, completed_at = clock_timestamp()
            WHERE run_id = r.id AND status = 'requires_input';
    END IF;
END $$;

-- Hands the (locked) thread over from the run whose last message has seq p_seq to the oldest
-- waiting run: its input becomes the next user message and its first job is returned. With no
-- waiting run the thread becomes idle. One UPDATE of the thread either way.
CREATE FUNCTION ay_hand_over(p_thread uuid, p_seq bigint) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    nr runs; v_next uuid;
BEGIN
    DELETE FROM run_queue WHERE (thread_id, created_at, run_id) =
        (SELECT thread_id, created_at, run_id FROM run_queue WHERE thread_id = p_thread
         ORDER BY created_at, run_id LIMIT 1)
        RETURNING run_id INTO v_next;
    IF v_next IS NULL THEN
        UPDATE threads SET active_run_id = NULL, last_seq = p_seq WHERE id = p_thread;
        RETURN '[]'::jsonb;
    END IF;
    -- Its wait for the thread is over: from now on it must make progress.
    UPDATE runs SET progress_at = clock_timestamp() WHERE id = v_next RETURNING * INTO nr;
    UPDATE threads SET active_run_id = nr.id, last_seq = p_seq + 1 WHERE id = p_thread;
    INSERT INTO messages(id, org_id, thread_id, seq, role, content, run_id, created_at)
        VALUES (ay_uuid_v7(), nr.org_id, p_thread, p_seq + 1, 'user', nr.input, nr.id,
                clock_timestamp());
    RETURN jsonb_build_array(ay_fact_agent_step(nr.id, nr.step, nr.priority));
END $$;

-- Cancels a live run (the caller holds its thread's lock); returns its facts (run.cancelled),
-- or [] when it was already terminal.
CREATE FUNCTION ay_cancel_locked(p_run uuid) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    r runs;
BEGIN
    UPDATE runs SET status = 'cancelled', completed_at = clock_timestamp(),
            progress_at = clock_timestamp(), required_input = NULL,
            error = jsonb_build_object('code', 'cancelled', 'message', 'the run was cancelled')
        WHERE id = p_run AND status IN ('queued', 'in_progress', 'requires_input')
        RETURNING * INTO r;
    IF NOT FOUND THEN
        RETURN '[]'::jsonb;
    END IF;
    DELETE FROM run_queue WHERE thread_id = r.thread_id AND run_id = r.id;
    PERFORM ay_run_ended(r);
    RETURN jsonb_build_array(ay_fact_run(r, 'run.cancelled', 'terminal'));
END $$;

-- The org's default agent, provisioned (or brought back, when deleted) when missing.
CREATE FUNCTION ay_default_agent(p_org uuid) RETURNS uuid LANGUAGE plpgsql AS $$
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

-- Creates a run on a thread of p_org (a new thread p_new_thread when p_thread is null),
-- following the multitask strategy, in one transaction. Ids come from the caller (uuid v7);
-- p_message is the id of the user message when the run starts at once. Returns {outcome, run,
-- outbox, interrupted}; outcome is created, idempotent or idempotency_mismatch. Raises AY404
-- (thread_not_found, agent_not_found), AY409 (thread_busy with the active run as detail,
-- agent_inactive) and AY429 (quota_exceeded with the live count as detail).
CREATE FUNCTION ay_create_run(p_org uuid, p_thread uuid, p_run uuid, p_agent uuid, p_user uuid,
        p_input text, p_strategy text, p_metadata jsonb,
        p_idem_key text, p_idem_hash bytea, p_new_thread uuid, p_message uuid,
        p_priority text, p_quota integer, p_scopes text[])
        RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    r runs; v_active uuid; v_seq bigint; v_facts jsonb := '[]'::jsonb;
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
            RETURN jsonb_build_object('outcome', 'idempotent', 'run', to_jsonb(r));
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
    END IF;
    INSERT INTO live_runs(org_id, run_id) VALUES (p_org, p_run);

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
                v_facts := ay_cancel_locked(v_active);
                v_interrupted := v_active;
                v_active := NULL;
                v_seq := v_seq + 1;
                UPDATE threads SET active_run_id = p_run, last_seq = v_seq WHERE id = p_thread;
            END IF;
        END IF;
    END IF;

    INSERT INTO runs(id, org_id, thread_id, agent_id, user_id, status, input,
                     multitask_strategy, metadata, created_at, priority, scopes, progress_at)
        VALUES (p_run, p_org, p_thread, p_agent, p_user, 'queued', p_input, p_strategy,
                p_metadata, clock_timestamp(), p_priority, p_scopes, clock_timestamp())
        RETURNING * INTO r;
    v_facts := v_facts || jsonb_build_array(ay_fact_run(r, 'run.queued', 'queued'));
    IF v_active IS NOT NULL THEN
        INSERT INTO run_queue(thread_id, created_at, run_id) VALUES (p_thread, r.created_at, p_run);
    ELSE
        -- This run holds the thread: its input is the next message and its job goes out now.
        INSERT INTO messages(id, org_id, thread_id, seq, role, content, run_id, created_at)
            VALUES (p_message, p_org, p_thread, v_seq, 'user', p_input, p_run,
                    clock_timestamp());
        v_facts := v_facts || jsonb_build_array(ay_fact_agent_step(p_run, 0, p_priority));
    END IF;
    INSERT INTO outbox(facts) VALUES (v_facts) RETURNING id INTO v_outbox_id;
    RETURN jsonb_build_object('outcome', 'created', 'run', to_jsonb(r), 'interrupted', v_interrupted,
        'outbox', jsonb_build_array(jsonb_build_object('id', v_outbox_id, 'facts', v_facts)));
END $$;

-- Cancels a run of p_org: {outcome: not_found | already_terminal | cancelled, status (before),
-- outbox}. A run holding its thread hands it over to the next waiting run.
CREATE FUNCTION ay_cancel_run(p_org uuid, p_run uuid) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    v_status text; v_thread uuid; v_active uuid; v_seq bigint; v_facts jsonb;
BEGIN
    SELECT thread_id INTO v_thread FROM runs WHERE id = p_run AND org_id = p_org;
    IF NOT FOUND THEN
        RETURN jsonb_build_object('outcome', 'not_found');
    END IF;
    SELECT active_run_id, last_seq INTO v_active, v_seq FROM threads WHERE id = v_thread FOR UPDATE;
    SELECT status INTO v_status FROM runs WHERE id = p_run;
    IF v_status IN ('completed', 'failed', 'cancelled', 'expired') THEN
        RETURN jsonb_build_object('outcome', 'already_terminal', 'status', v_status);
    END IF;
    v_facts := ay_cancel_locked(p_run);
    IF v_active = p_run THEN
        v_facts := v_facts || ay_hand_over(v_thread, v_seq);
    END IF;
    RETURN jsonb_build_object('outcome', 'cancelled', 'status', v_status,
                              'outbox', ay_outbox(v_facts));
END $$;

-- Ends a run: completed (with the assistant message), failed or expired. Applies only while the
-- run is in one of p_from (so a cancelled run never turns completed) and, when p_step is given,
-- still at that step (so a stale duplicate changes nothing). The thread goes to its next
-- waiting run. Returns {applied, run, outbox}.
CREATE FUNCTION ay_finish_run(p_run uuid, p_step integer, p_from text[], p_status text,
        p_output jsonb, p_usage jsonb, p_error jsonb, p_message_id uuid, p_content text)
        RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    r runs; v_thread uuid; v_org uuid; v_active uuid; v_seq bigint;
    v_facts jsonb := '[]'::jsonb; m messages; v_outbox_id bigint;
BEGIN
    SELECT thread_id INTO v_thread FROM runs WHERE id = p_run;
    IF NOT FOUND THEN
        RETURN jsonb_build_object('applied', false, 'outbox', '[]'::jsonb);
    END IF;
    SELECT org_id, active_run_id, last_seq INTO v_org, v_active, v_seq FROM threads
        WHERE id = v_thread FOR UPDATE;
    UPDATE runs SET status = p_status, output = p_output, usage = ay_add_usage(usage, p_usage),
            error = p_error, required_input = NULL, completed_at = clock_timestamp(),
            progress_at = clock_timestamp()
        WHERE id = p_run AND status = ANY(p_from) AND (p_step IS NULL OR step = p_step)
        RETURNING * INTO r;
    IF NOT FOUND THEN
        RETURN jsonb_build_object('applied', false, 'outbox', '[]'::jsonb);
    END IF;
    PERFORM ay_run_ended(r);
    IF p_content IS NOT NULL THEN
        v_seq := v_seq + 1;
        INSERT INTO messages(id, org_id, thread_id, seq, role, content, run_id, created_at)
            VALUES (p_message_id, v_org, v_thread, v_seq, 'assistant', p_content, p_run,
                    clock_timestamp())
            RETURNING * INTO m;
        v_facts := jsonb_build_array(ay_fact_event(v_org, p_run, 'message:' || p_message_id,
            'message.completed', jsonb_build_object('message', to_jsonb(m))));
    END IF;
    v_facts := v_facts || jsonb_build_array(ay_fact_run(r, 'run.' || p_status, 'terminal'));
    IF v_active = p_run THEN
        v_facts := v_facts || ay_hand_over(v_thread, v_seq);
    ELSIF p_content IS NOT NULL THEN
        UPDATE threads SET last_seq = v_seq WHERE id = v_thread;
    END IF;
    INSERT INTO outbox(facts) VALUES (v_facts) RETURNING id INTO v_outbox_id;
    RETURN jsonb_build_object('applied', true, 'run', to_jsonb(r),
        'outbox', jsonb_build_array(jsonb_build_object('id', v_outbox_id, 'facts', v_facts)));
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

-- The live runs that made no progress for longer than their agent allows: its timeout_seconds
-- (the agent's own, else p_timeouts' default of its type) times p_attempts, plus p_slack. A
-- queued run waiting behind another run of its thread is not due: its turn comes when that one
-- ends. Oldest first.
CREATE FUNCTION ay_overdue_runs(p_timeouts jsonb, p_attempts integer, p_slack interval,
        p_limit bigint)
RETURNS TABLE (run_id uuid, org_id uuid, silent_secs float8, allowed_secs float8)
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN QUERY
    SELECT r.id, r.org_id, extract(epoch FROM clock_timestamp() - r.progress_at)::float8,
           extract(epoch FROM b.allowed)::float8
    FROM live_runs l
    JOIN runs r ON r.id = l.run_id
    JOIN agents a ON a.id = r.agent_id
    CROSS JOIN LATERAL (SELECT make_interval(secs => coalesce(
            (a.config->>'timeout_seconds')::integer,
            (p_timeouts->>a.agent_type)::integer, 60)::float8 * p_attempts) + p_slack
        AS allowed) b
    WHERE r.status IN ('queued', 'in_progress')
      AND r.progress_at < clock_timestamp() - b.allowed
      AND NOT EXISTS (SELECT 1 FROM run_queue q WHERE q.thread_id = r.thread_id AND q.run_id = r.id)
    ORDER BY r.progress_at
    LIMIT p_limit;
END $$;

-- After a Postgres crash the unlogged live_runs is empty: refill it from runs (once; the
-- marker row is unlogged too). Also drops rows of runs that ended (a crash or a race of the
-- refill can leave one). Returns how many rows were added.
CREATE FUNCTION ay_refill_live_runs() RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    v_added integer := 0;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM live_runs_filled) THEN
        INSERT INTO live_runs(org_id, run_id)
            SELECT org_id, id FROM runs WHERE status IN ('queued', 'in_progress', 'requires_input')
            ON CONFLICT DO NOTHING;
        GET DIAGNOSTICS v_added = ROW_COUNT;
        INSERT INTO live_runs_filled DEFAULT VALUES ON CONFLICT DO NOTHING;
    END IF;
    DELETE FROM live_runs l USING runs r
        WHERE r.id = l.run_id AND r.status NOT IN ('queued', 'in_progress', 'requires_input');
    RETURN v_added;
END $$;
