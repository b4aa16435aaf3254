-- The tool-call state machine:
--   ay_tool_step     the model answered with tool calls: the assistant message, one invocation
--                    and one ToolCall job per call, in one transaction;
--   ay_tool_result   a call ended: the transaction that records a step's LAST result writes the
--                    tool messages and enqueues the next AgentStep, exactly once (the thread
--                    lock serializes the results of one run);
--   ay_tool_input    a call waits for a human (an approval, an elicitation): the invocation
--                    keeps the request and its deadline and the run goes to requires_input; no
--                    worker waits;
--   ay_answer_input  the human (or the deadline) answered: the call is enqueued again, a round
--                    later, and finds the answer stored under its request's key.

CREATE FUNCTION ay_fact_tool_call(p_inv uuid, p_run uuid, p_round integer) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    RETURN jsonb_build_object('fact', 'job', 'job', jsonb_build_object('kind', 'tool_call',
        'v', 1, 'invocation_id', p_inv, 'run_id', p_run, 'round', p_round));
END $$;

-- The model answered step p_step of p_run with tool calls. p_calls: [{invocation_id, call_id,
-- name, server, arguments (jsonb), raw_arguments (text)}] in the model's order. Applies only
-- while the run is queued/in_progress at that step and the step has no calls yet (a
-- redelivered step that generated again changes nothing). Returns {applied, outbox}.
CREATE FUNCTION ay_tool_step(p_run uuid, p_step integer, p_message_id uuid, p_content text,
        p_calls jsonb, p_usage jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    r runs; v_thread uuid; v_seq bigint; v_facts jsonb := '[]'::jsonb; c jsonb; i integer := 0;
    v_calls jsonb := '[]'::jsonb;
BEGIN
    SELECT thread_id INTO v_thread FROM runs WHERE id = p_run;
    IF NOT FOUND THEN
        RETURN jsonb_build_object('applied', false, 'outbox', '[]'::jsonb);
    END IF;
    SELECT last_seq INTO v_seq FROM threads WHERE id = v_thread FOR UPDATE;
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

-- Records the end of a call. The transaction that records the last open call of the step
-- writes the step's tool messages (in call order), appends the tools to tools_used and
-- enqueues the next AgentStep. Returns {applied, next_step, outbox}; applied is false when the
-- call had already ended (a duplicate).
CREATE FUNCTION ay_tool_result(p_inv uuid, p_result text, p_is_error boolean, p_error text,
        p_attempt integer, p_started_at timestamptz) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    inv tool_invocations; r runs; v_seq bigint; v_facts jsonb := '[]'::jsonb; v_open integer;
    t tool_invocations; v_tools jsonb := '[]'::jsonb; v_now timestamptz;
BEGIN
    SELECT * INTO inv FROM tool_invocations WHERE id = p_inv;
    IF NOT FOUND THEN
        RETURN jsonb_build_object('applied', false, 'next_step', false, 'outbox', '[]'::jsonb);
    END IF;
    SELECT last_seq INTO v_seq FROM threads WHERE id = inv.thread_id FOR UPDATE;
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
    SELECT * INTO r FROM runs WHERE id = inv.run_id FOR UPDATE;
    SELECT count(*) INTO v_open FROM tool_invocations
        WHERE run_id = inv.run_id AND step = inv.step AND status <> 'completed';
    IF v_open > 0 OR r.step <> inv.step OR r.status NOT IN ('in_progress', 'requires_input') THEN
        RETURN jsonb_build_object('applied', true, 'next_step', false, 'outbox', ay_outbox(v_facts));
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

-- A pending call (of dispatch round p_round) waits for a human: the invocation keeps the request
-- (p_request, a RequiredInput), its key in input_response and its deadline; the run goes to
-- requires_input and shows it, unless it already shows another call's request (then this one
-- is shown when that one is answered). Returns {applied, outbox}.
CREATE FUNCTION ay_tool_input(p_inv uuid, p_round integer, p_request jsonb, p_key text,
        p_deadline timestamptz) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    inv tool_invocations; r runs;
BEGIN
    SELECT * INTO inv FROM tool_invocations WHERE id = p_inv;
    IF NOT FOUND THEN
        RETURN jsonb_build_object('applied', false, 'outbox', '[]'::jsonb);
    END IF;
    PERFORM 1 FROM threads WHERE id = inv.thread_id FOR UPDATE;
    SELECT * INTO inv FROM tool_invocations WHERE id = p_inv;
    SELECT * INTO r FROM runs WHERE id = inv.run_id;
    IF inv.status <> 'pending' OR inv.round <> p_round OR r.step <> inv.step
       OR r.status NOT IN ('in_progress', 'requires_input') THEN
        RETURN jsonb_build_object('applied', false, 'outbox', '[]'::jsonb);
    END IF;
    UPDATE tool_invocations SET status = 'requires_input', input_request = p_request,
            input_key = p_key, input_deadline = p_deadline
        WHERE id = p_inv;
    IF r.status = 'requires_input' AND r.required_input IS NOT NULL THEN
        RETURN jsonb_build_object('applied', true, 'outbox', '[]'::jsonb);
    END IF;
    UPDATE runs SET status = 'requires_input', required_input = p_request,
            progress_at = clock_timestamp()
        WHERE id = r.id RETURNING * INTO r;
    RETURN jsonb_build_object('applied', true, 'outbox', ay_outbox(jsonb_build_array(
        ay_fact_run(r, 'run.requires_input', 'input:' || p_inv || ':' || inv.round))));
END $$;

-- Answers a call of run p_run (of p_org) that waits for a human: p_inv, or (when null) the one
-- the run shows. The answer is kept under the request's key, the call is enqueued again (a
-- round later), and the run shows the next waiting call of its own, if any, else goes back
-- to in_progress. Returns {outcome: not_found | not_waiting | answered, invocation_id, run,
-- outbox}.
CREATE FUNCTION ay_answer_input(p_org uuid, p_run uuid, p_inv uuid, p_answer jsonb)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    r runs; v_thread uuid; inv tool_invocations; nxt tool_invocations; v_facts jsonb;
    v_shown uuid;
BEGIN
    SELECT thread_id INTO v_thread FROM runs WHERE id = p_run AND org_id = p_org;
    IF NOT FOUND THEN
        RETURN jsonb_build_object('outcome', 'not_found');
    END IF;
    PERFORM 1 FROM threads WHERE id = v_thread FOR UPDATE;
    SELECT * INTO r FROM runs WHERE id = p_run;
    v_shown := (r.required_input->>'invocation_id')::uuid;
    SELECT * INTO inv FROM tool_invocations
        WHERE id = coalesce(p_inv, v_shown) AND run_id = p_run AND status = 'requires_input';
    IF NOT FOUND OR r.status NOT IN ('in_progress', 'requires_input') THEN
        RETURN jsonb_build_object('outcome', 'not_waiting');
    END IF;
    UPDATE tool_invocations SET status = 'pending', round = round + 1, input_request = NULL,
            input_deadline = NULL,
            input_response = coalesce(input_response, '{}'::jsonb)
                || jsonb_build_object(inv.input_key, p_answer)
        WHERE id = inv.id RETURNING * INTO inv;
    v_facts := jsonb_build_array(ay_fact_tool_call(inv.id, inv.run_id, inv.round));
    SELECT * INTO nxt FROM tool_invocations
        WHERE run_id = p_run AND status = 'requires_input' ORDER BY step, call_index LIMIT 1;
    IF FOUND THEN
        UPDATE runs SET status = 'requires_input', required_input = nxt.input_request,
                progress_at = clock_timestamp()
            WHERE id = p_run RETURNING * INTO r;
    ELSE
        UPDATE runs SET status = 'in_progress', required_input = NULL,
                progress_at = clock_timestamp()
            WHERE id = p_run RETURNING * INTO r;
    END IF;
    v_facts := v_facts || jsonb_build_array(ay_fact_event(r.org_id, r.id,
        'input:' || inv.id || ':' || (inv.round - 1) || ':answer', 'run.input_received',
        jsonb_build_object('run', to_jsonb(r), 'action', p_answer->'action')));
    IF nxt.id IS NOT NULL AND nxt.id IS DISTINCT FROM v_shown THEN
        v_facts := v_facts || jsonb_build_array(
            ay_fact_run(r, 'run.requires_input', 'input:' || nxt.id || ':' || nxt.round));
    END IF;
    RETURN jsonb_build_object('outcome', 'answered', 'invocation_id', inv.id, 'run', to_jsonb(r),
        'outbox', ay_outbox(v_facts));
END $$;
