-- Users inside an organization: threads, runs, messages, tool invocations, tasks and workflow
-- executions belong to the user who created them. A token bound to a user that holds neither
-- org:admin nor platform:admin sees and acts on its user's own only (the services check it);
-- admins and tokens bound to no user see the whole org. Runs, tool invocations, tasks
-- (created_by) and executions already record their user; threads now do too.
--
-- No index on (org_id, user_id): a limited caller's lists filter the org's index scan. Each
-- index costs every run's insert; add one when orgs grow to many users with long histories.

ALTER TABLE threads ADD COLUMN user_id uuid;
-- Threads created before this migration take the user of their first run.
UPDATE threads t SET user_id = r.user_id
    FROM (SELECT DISTINCT ON (thread_id) thread_id, user_id FROM runs
          ORDER BY thread_id, created_at) r
    WHERE r.thread_id = t.id AND t.user_id IS NULL;

-- ay_create_run, now recording the new thread's user and, with p_owner, refusing (as not
-- found) a thread of another user.
DROP FUNCTION ay_create_run(uuid, uuid, uuid, uuid, uuid, text, text, jsonb, text, bytea, uuid,
    uuid, text, integer, text[]);
CREATE FUNCTION ay_create_run(p_org uuid, p_thread uuid, p_run uuid, p_agent uuid, p_user uuid,
        p_input text, p_strategy text, p_metadata jsonb,
        p_idem_key text, p_idem_hash bytea, p_new_thread uuid, p_message uuid,
        p_priority text, p_quota integer, p_scopes text[], p_owner uuid DEFAULT NULL)
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
        INSERT INTO threads(id, org_id, user_id, active_run_id, last_seq)
            VALUES (p_thread, p_org, p_user, p_run, v_seq);
    ELSE
        -- The common case, an idle thread, in one statement.
        UPDATE threads SET active_run_id = p_run, last_seq = last_seq + 1
            WHERE id = p_thread AND org_id = p_org AND active_run_id IS NULL
              AND (p_owner IS NULL OR user_id = p_owner)
            RETURNING last_seq INTO v_seq;
        IF NOT FOUND THEN
            SELECT active_run_id, last_seq INTO v_active, v_seq FROM threads
                WHERE id = p_thread AND org_id = p_org
                  AND (p_owner IS NULL OR user_id = p_owner) FOR UPDATE;
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

-- ay_create_tool_run, recording the step thread's user.
CREATE OR REPLACE FUNCTION ay_create_tool_run(p_org uuid, p_run uuid, p_thread uuid, p_user uuid,
        p_scopes text[], p_inv uuid, p_server text, p_tool text, p_arguments jsonb,
        p_metadata jsonb, p_execution uuid, p_step text, p_attempt integer)
        RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    r runs; v_agent uuid; v_facts jsonb;
BEGIN
    v_agent := ay_default_agent(p_org);
    INSERT INTO live_runs(org_id, run_id) VALUES (p_org, p_run);
    INSERT INTO threads(id, org_id, user_id, active_run_id, last_seq)
        VALUES (p_thread, p_org, p_user, p_run, 0);
    INSERT INTO runs(id, org_id, thread_id, agent_id, user_id, status, input, multitask_strategy,
                     metadata, created_at, started_at, priority, scopes, progress_at)
        VALUES (p_run, p_org, p_thread, v_agent, p_user, 'in_progress',
                p_tool || ' ' || p_arguments::text, 'enqueue', p_metadata, clock_timestamp(),
                clock_timestamp(), 'normal', p_scopes, clock_timestamp())
        RETURNING * INTO r;
    INSERT INTO tool_invocations(id, org_id, run_id, thread_id, user_id, agent_id, step,
            call_index, call_id, server, tool, arguments)
        VALUES (p_inv, p_org, p_run, p_thread, p_user, v_agent, 0, 0, 'workflow:' || p_step,
                p_server, p_tool, p_arguments);
    INSERT INTO workflow_step_runs(run_id, execution_id, step_id, attempt, kind)
        VALUES (p_run, p_execution, p_step, p_attempt, 'tool');
    v_facts := jsonb_build_array(
        ay_fact_run(r, 'run.started', 'started'),
        ay_fact_event(p_org, p_run, 'tool:' || p_inv || ':created', 'tool_call.created',
            jsonb_build_object('id', p_inv, 'call_id', 'workflow:' || p_step, 'name', p_tool,
                               'arguments', p_arguments)),
        ay_fact_tool_call(p_inv, p_run, 0));
    RETURN ay_outbox(v_facts);
END $$;
