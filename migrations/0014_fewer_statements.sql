-- Fewer statements in every run's transitions. Each statement a PL/pgSQL function runs costs
-- Postgres an executor start and end whatever it does; counted with pg_stat_statements in
-- `agentyard-bench tools`, a run with one tool call ran about 40 of them.

-- No foreign key from runs or messages to threads. Each insert of a run or a message ran the
-- key's check, a query of its own (`SELECT 1 FROM threads ... FOR KEY SHARE`) queued as an
-- after-trigger: 5 per tool run, 3 per chat run. The functions guarantee what the keys
-- checked: every one that inserts a run or a message either holds its thread's row lock,
-- taken earlier in the same transaction, or inserted the thread itself; and no thread is
-- ever deleted (there is no such route, and an organization is never deleted). As with
-- threads.org_id (0001_schema.sql), consistency is kept by the functions, not by a key.
ALTER TABLE runs DROP CONSTRAINT runs_thread_id_fkey;
ALTER TABLE messages DROP CONSTRAINT messages_thread_id_fkey;

-- ay_tool_step: the run's thread is found and locked in one statement (was two).
CREATE OR REPLACE FUNCTION ay_tool_step(p_run uuid, p_step integer, p_message_id uuid,
        p_content text, p_calls jsonb, p_usage jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    r runs; v_thread uuid; v_seq bigint; v_facts jsonb := '[]'::jsonb; c jsonb; i integer := 0;
    v_calls jsonb := '[]'::jsonb;
BEGIN
    SELECT id, last_seq INTO v_thread, v_seq FROM threads
        WHERE id = (SELECT thread_id FROM runs WHERE id = p_run) FOR UPDATE;
    IF NOT FOUND THEN
        RETURN jsonb_build_object('applied', false, 'outbox', '[]'::jsonb);
    END IF;
    UPDATE runs SET status = 'in_progress', usage = ay_add_usage(usage, p_usage),
            progress_at = clock_timestamp()
        WHERE id = p_run AND step = p_step AND status IN ('queued', 'in_progress')
          AND NOT EXISTS (SELECT 1 FROM tool_invocations WHERE run_id = p_run AND step = p_step)
        RETURNING * INTO r;
    IF NOT FOUND THEN
        RETURN jsonb_build_object('applied', false, 'outbox', '[]'::jsonb);
    END IF;
    FOR c IN SELECT * FROM jsonb_array_elements(p_calls) LOOP
        v_calls := v_calls || jsonb_build_array(jsonb_build_object('id', c->>'call_id',
            'name', c->>'name', 'arguments', c->>'raw_arguments'));
        INSERT INTO tool_invocations(id, org_id, run_id, thread_id, user_id, agent_id, step,
                call_index, call_id, server, tool, arguments)
            VALUES ((c->>'invocation_id')::uuid, r.org_id, p_run, v_thread, r.user_id, r.agent_id,
                p_step, i, c->>'call_id', c->>'server', c->>'name', c->'arguments');
        v_facts := v_facts || jsonb_build_array(
            ay_fact_event(r.org_id, p_run, 'tool:' || (c->>'invocation_id') || ':created',
                'tool_call.created', jsonb_build_object('id', c->>'invocation_id',
                'call_id', c->>'call_id', 'name', c->>'name', 'arguments', c->'arguments')),
            ay_fact_tool_call((c->>'invocation_id')::uuid, p_run, 0));
        i := i + 1;
    END LOOP;
    v_seq := v_seq + 1;
    INSERT INTO messages(id, org_id, thread_id, seq, role, content, tool_calls, run_id, created_at)
        VALUES (p_message_id, r.org_id, v_thread, v_seq, 'assistant', p_content, v_calls, p_run,
                clock_timestamp());
    UPDATE threads SET last_seq = v_seq WHERE id = v_thread;
    RETURN jsonb_build_object('applied', true, 'outbox', ay_outbox(v_facts));
END $$;

-- ay_finish_run: the run's thread found and locked in one statement (was two), and the run's
-- JSON built once for its event and the answer.
CREATE OR REPLACE FUNCTION ay_finish_run(p_run uuid, p_step integer, p_from text[], p_status text,
        p_output jsonb, p_usage jsonb, p_error jsonb, p_message_id uuid, p_content text)
        RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    r runs; v_thread uuid; v_org uuid; v_active uuid; v_seq bigint;
    v_facts jsonb := '[]'::jsonb; m messages; v_outbox_id bigint; v_run jsonb; v_fact jsonb;
BEGIN
    SELECT id, org_id, active_run_id, last_seq INTO v_thread, v_org, v_active, v_seq
        FROM threads WHERE id = (SELECT thread_id FROM runs WHERE id = p_run) FOR UPDATE;
    IF NOT FOUND THEN
        RETURN jsonb_build_object('applied', false, 'outbox', '[]'::jsonb);
    END IF;
    UPDATE runs SET status = p_status, output = p_output, usage = ay_add_usage(usage, p_usage),
            error = p_error, required_input = NULL, completed_at = clock_timestamp(),
            progress_at = clock_timestamp()
        WHERE id = p_run AND status = ANY(p_from) AND (p_step IS NULL OR step = p_step)
        RETURNING * INTO r;
    IF NOT FOUND THEN
        RETURN jsonb_build_object('applied', false, 'outbox', '[]'::jsonb);
    END IF;
    IF p_content IS NOT NULL THEN
        v_seq := v_seq + 1;
        INSERT INTO messages(id, org_id, thread_id, seq, role, content, run_id, created_at)
            VALUES (p_message_id, v_org, v_thread, v_seq, 'assistant', p_content, p_run,
                    clock_timestamp())
            RETURNING * INTO m;
        v_facts := jsonb_build_array(ay_fact_event(v_org, p_run, 'message:' || p_message_id,
            'message.completed', jsonb_build_object('message', to_jsonb(m))));
    END IF;
    v_fact := ay_fact_run(r, 'run.' || p_status, 'terminal');
    -- The answer's run is the one in the event: its JSON is built once.
    v_run := v_fact #> '{event,data,run}';
    v_facts := v_facts || jsonb_build_array(v_fact) || ay_run_ended(r);
    IF v_active = p_run THEN
        v_facts := v_facts || ay_hand_over(v_thread, v_seq);
    ELSIF p_content IS NOT NULL THEN
        UPDATE threads SET last_seq = v_seq WHERE id = v_thread;
    END IF;
    INSERT INTO outbox(facts) VALUES (v_facts) RETURNING id INTO v_outbox_id;
    RETURN jsonb_build_object('applied', true, 'run', v_run,
        'outbox', jsonb_build_array(jsonb_build_object('id', v_outbox_id, 'facts', v_facts)));
END $$;

-- ay_tool_result: the call's thread found and locked in one statement (was two: the call,
-- then its thread), the call's row from its update; the run's lock, the count of the step's
-- open calls and the workflow check in one statement (were three).
CREATE OR REPLACE FUNCTION ay_tool_result(p_inv uuid, p_result text, p_is_error boolean,
        p_error text, p_attempt integer, p_started_at timestamptz) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    inv tool_invocations; r runs; v_seq bigint; v_facts jsonb := '[]'::jsonb; v_open integer;
    t tool_invocations; v_tools jsonb := '[]'::jsonb; v_now timestamptz; v_fin jsonb;
    v_step integer; v_status text; v_workflow boolean;
BEGIN
    SELECT last_seq INTO v_seq FROM threads
        WHERE id = (SELECT thread_id FROM tool_invocations WHERE id = p_inv) FOR UPDATE;
    IF NOT FOUND THEN
        RETURN jsonb_build_object('applied', false, 'next_step', false, 'outbox', '[]'::jsonb);
    END IF;
    v_now := clock_timestamp();
    UPDATE tool_invocations SET status = 'completed', result = p_result, is_error = p_is_error,
            error = p_error, attempt = greatest(attempt, p_attempt), input_request = NULL,
            input_deadline = NULL,
            started_at = coalesce(started_at, p_started_at, v_now), completed_at = v_now,
            duration_ms = (extract(epoch FROM v_now - coalesce(started_at, p_started_at, v_now))
                           * 1000)::integer
        WHERE id = p_inv AND status <> 'completed'
        RETURNING * INTO inv;
    IF NOT FOUND THEN
        RETURN jsonb_build_object('applied', false, 'next_step', false, 'outbox', '[]'::jsonb);
    END IF;
    v_facts := jsonb_build_array(ay_fact_event(inv.org_id, inv.run_id,
        'tool:' || p_inv || ':completed', 'tool_call.completed',
        jsonb_build_object('id', p_inv, 'call_id', inv.call_id, 'name', inv.tool,
                           'is_error', p_is_error, 'duration_ms', inv.duration_ms)));
    -- The run, the step's calls still open and whether it is a workflow's tool step, at once.
    SELECT runs.step, runs.status,
           (SELECT count(*) FROM tool_invocations
                WHERE run_id = inv.run_id AND step = inv.step AND status <> 'completed'),
           EXISTS (SELECT 1 FROM workflow_step_runs WHERE run_id = inv.run_id AND kind = 'tool')
        INTO v_step, v_status, v_open, v_workflow
        FROM runs WHERE id = inv.run_id FOR UPDATE;
    IF v_open > 0 OR v_step <> inv.step OR v_status NOT IN ('in_progress', 'requires_input') THEN
        RETURN jsonb_build_object('applied', true, 'next_step', false, 'outbox', ay_outbox(v_facts));
    END IF;
    -- A workflow's tool step is a run of one call: its result ends the run.
    IF v_workflow THEN
        v_fin := ay_finish_run(inv.run_id, NULL, ARRAY['in_progress', 'requires_input'],
            CASE WHEN p_is_error THEN 'failed' ELSE 'completed' END,
            CASE WHEN p_is_error THEN NULL ELSE jsonb_build_object('content', p_result) END,
            NULL,
            CASE WHEN p_is_error THEN jsonb_build_object('code', 'tool_error', 'message',
                coalesce(p_result, p_error, 'the tool failed')) END,
            NULL, NULL);
        RETURN jsonb_build_object('applied', true, 'next_step', false,
            'outbox', ay_outbox(v_facts) || (v_fin->'outbox'));
    END IF;
    FOR t IN SELECT * FROM tool_invocations WHERE run_id = inv.run_id AND step = inv.step
             ORDER BY call_index LOOP
        v_seq := v_seq + 1;
        INSERT INTO messages(id, org_id, thread_id, seq, role, content, tool_call_id, run_id,
                created_at)
            VALUES (ay_uuid_v7(), t.org_id, t.thread_id, v_seq, 'tool', coalesce(t.result, ''),
                t.call_id, t.run_id, clock_timestamp());
        v_tools := v_tools || to_jsonb(t.tool);
    END LOOP;
    UPDATE threads SET last_seq = v_seq WHERE id = inv.thread_id;
    UPDATE runs SET step = step + 1, attempt = 0, status = 'in_progress', required_input = NULL,
            tools_used = tools_used || v_tools, progress_at = clock_timestamp()
        WHERE id = inv.run_id RETURNING * INTO r;
    v_facts := v_facts || jsonb_build_array(ay_fact_agent_step(r.id, r.step, r.priority));
    RETURN jsonb_build_object('applied', true, 'next_step', true, 'outbox', ay_outbox(v_facts));
END $$;

-- ay_hand_over: the next waiting run taken off the queue and the thread handed to it (or left
-- idle) in one statement (were two).
CREATE OR REPLACE FUNCTION ay_hand_over(p_thread uuid, p_seq bigint) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    nr runs; v_next uuid;
BEGIN
    WITH nx AS (
        DELETE FROM run_queue WHERE (thread_id, created_at, run_id) =
            (SELECT thread_id, created_at, run_id FROM run_queue WHERE thread_id = p_thread
             ORDER BY created_at, run_id LIMIT 1)
        RETURNING run_id)
    UPDATE threads SET active_run_id = (SELECT run_id FROM nx),
            last_seq = p_seq + (SELECT count(*) FROM nx)
        WHERE id = p_thread RETURNING active_run_id INTO v_next;
    IF v_next IS NULL THEN
        RETURN '[]'::jsonb;
    END IF;
    -- Its wait for the thread is over: from now on it must make progress.
    UPDATE runs SET progress_at = clock_timestamp() WHERE id = v_next RETURNING * INTO nr;
    INSERT INTO messages(id, org_id, thread_id, seq, role, content, run_id, created_at)
        VALUES (ay_uuid_v7(), nr.org_id, p_thread, p_seq + 1, 'user', nr.input, nr.id,
                clock_timestamp());
    RETURN jsonb_build_array(ay_fact_agent_step(nr.id, nr.step, nr.priority));
END $$;

-- ay_run_ended: the run's live row deleted and its workflow looked up in one statement (were
-- two).
CREATE OR REPLACE FUNCTION ay_run_ended(r runs) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    v_exec uuid;
BEGIN
    IF r.status <> 'completed' THEN
        UPDATE tool_invocations SET status = 'completed', is_error = true,
                result = 'the run ended (' || r.status || ') while this call waited for input',
                error = 'the run ended (' || r.status || ') while this call waited for input',
                input_deadline = NULL, input_request = NULL, completed_at = clock_timestamp()
            WHERE run_id = r.id AND status = 'requires_input';
    END IF;
    WITH gone AS (DELETE FROM live_runs WHERE org_id = r.org_id AND run_id = r.id)
    SELECT execution_id INTO v_exec FROM workflow_step_runs WHERE run_id = r.id;
    IF FOUND THEN
        RETURN jsonb_build_array(ay_fact_workflow_advance(v_exec, 'run:' || r.id));
    END IF;
    RETURN '[]'::jsonb;
END $$;
