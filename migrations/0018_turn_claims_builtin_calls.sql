-- The agent worker runs its model's built-in calls itself, right after the turn's transaction.
-- That transaction now also claims them: a call the turn marks `claimed` is stored with its
-- first attempt counted, as a tool worker's claim would count it, and the worker runs it with
-- no claim statement of its own (one round trip to Postgres and one transaction fewer per call,
-- on the path between the model asking and the tool running). `started_at` stays null until
-- the result: the worker passes the moment the call really started (`ay_tool_result`'s
-- `p_started_at`). A call the worker does not end (it died, or a retry is due) goes to a tool
-- worker, whose claim counts a second attempt.
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
                call_index, call_id, server, tool, arguments, attempt)
            VALUES ((c->>'invocation_id')::uuid, r.org_id, p_run, v_thread, r.user_id, r.agent_id,
                p_step, i, c->>'call_id', c->>'server', c->>'name', c->'arguments',
                CASE WHEN coalesce((c->>'claimed')::boolean, false) THEN 1 ELSE 0 END);
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
