-- Tool calls: the audit log of every call (`tool_invocations`), the MCP servers organizations
-- register, the platform's secrets, and the step machine's transitions:
--   ay_tool_step     the model answered with tool calls: assistant message + one invocation and
--                    one ToolCall job per call, in one transaction;
--   ay_tool_result   a call ended: the transaction that records a step's LAST result writes the
--                    tool messages and enqueues the next AgentStep, exactly once (the thread
--                    lock serializes the results of one run);
--   ay_tool_input    a call waits for a human (elicitation or approval): run -> requires_input;
--   ay_answer_input  the human answered: run -> in_progress.

CREATE TABLE platform_secrets (
    name   text PRIMARY KEY,
    value  bytea NOT NULL
);

CREATE TABLE mcp_servers (
    id            uuid PRIMARY KEY,
    org_id        uuid NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    name          text NOT NULL,
    url           text NOT NULL,
    bearer_token  text,                          -- never returned by the API
    tools         jsonb NOT NULL DEFAULT '[]',   -- cached tools/list: [{name, description, input_schema}]
    tools_refreshed_at timestamptz,
    last_error    text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (org_id, name)
);

-- Tools of the platform's own servers (the built-in one and those of config/mcp-servers.yaml),
-- as their tools/list last said; refreshed by tool workers.
CREATE TABLE platform_tools (
    server        text NOT NULL,
    name          text NOT NULL,
    description   text,
    input_schema  jsonb NOT NULL,
    refreshed_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (server, name)
);

CREATE TABLE tool_invocations (
    id              uuid PRIMARY KEY,
    org_id          uuid NOT NULL,
    run_id          uuid NOT NULL,
    thread_id       uuid NOT NULL,
    user_id         uuid,
    agent_id        uuid NOT NULL,
    step            integer NOT NULL,
    call_index      integer NOT NULL,
    call_id         text NOT NULL,               -- the model's id of the call
    server          text NOT NULL,               -- `builtin`, an org server's or a config server's name
    tool            text NOT NULL,               -- the name the model called
    arguments       jsonb NOT NULL,
    status          text NOT NULL DEFAULT 'pending'
                        CHECK (status IN ('pending', 'requires_input', 'completed')),
    result          text,
    is_error        boolean,
    error           text,
    attempt         integer NOT NULL DEFAULT 0,
    input_request   jsonb,                       -- what the call asked a human for
    input_response  jsonb,                       -- answers by kind: {"elicitation": {...}, "tool_approval": {...}}
                                                 -- (kept: a redelivered call reuses them)
    created_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    started_at      timestamptz,
    completed_at    timestamptz,
    duration_ms     integer,
    UNIQUE (run_id, step, call_index)
);
CREATE INDEX tool_invocations_org ON tool_invocations(org_id, created_at);

-- A ToolCall job.
CREATE FUNCTION ay_tool_job(p_prefix text, p_inv uuid, p_run uuid) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    RETURN jsonb_build_object('subject', p_prefix || '.jobs.tool', 'msg_id', 'tool:' || p_inv,
        'payload', jsonb_build_object('v', 1, 'invocation_id', p_inv, 'run_id', p_run));
END $$;

-- An event of a run (not a run.* event).
CREATE FUNCTION ay_event(p_prefix text, p_run uuid, p_msg_key text, p_type text, p_data jsonb)
RETURNS jsonb LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    RETURN jsonb_build_object('subject', p_prefix || '.events.run.' || p_run,
        'msg_id', 'run:' || p_run || ':' || p_msg_key,
        'payload', jsonb_build_object('type', p_type, 'data', p_data));
END $$;


-- The model answered step p_step of p_run with tool calls. p_calls: [{invocation_id, call_id,
-- name, server, arguments (jsonb), raw_arguments (text)}] in the model's order. Applies only
-- while the run is queued/in_progress at that step. Returns {applied, outbox}.
CREATE FUNCTION ay_tool_step(p_run uuid, p_step integer, p_message_id uuid, p_content text,
        p_calls jsonb, p_usage jsonb, p_prefix text) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    r runs; v_thread uuid; v_seq bigint; v_msgs jsonb := '[]'::jsonb; c jsonb; i integer := 0;
    v_calls jsonb := '[]'::jsonb;
BEGIN
    SELECT thread_id INTO v_thread FROM runs WHERE id = p_run;
    IF NOT FOUND THEN
        RETURN jsonb_build_object('applied', false, 'outbox', '[]'::jsonb);
    END IF;
    SELECT last_seq INTO v_seq FROM threads WHERE id = v_thread FOR UPDATE;
    UPDATE runs SET status = 'in_progress', usage = ay_add_usage(usage, p_usage)
        WHERE id = p_run AND step = p_step AND status IN ('queued', 'in_progress')
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
        v_msgs := v_msgs || jsonb_build_array(
            ay_event(p_prefix, p_run, 'tool:' || (c->>'invocation_id') || ':created',
                'tool_call.created', jsonb_build_object('id', c->>'invocation_id',
                'call_id', c->>'call_id', 'name', c->>'name', 'arguments', c->'arguments')),
            ay_tool_job(p_prefix, (c->>'invocation_id')::uuid, p_run));
        i := i + 1;
    END LOOP;
    v_seq := v_seq + 1;
    INSERT INTO messages(id, org_id, thread_id, seq, role, content, tool_calls, run_id, created_at)
        VALUES (p_message_id, r.org_id, v_thread, v_seq, 'assistant', p_content, v_calls, p_run,
                clock_timestamp());
    UPDATE threads SET last_seq = v_seq WHERE id = v_thread;
    RETURN jsonb_build_object('applied', true, 'outbox', ay_outbox(v_msgs));
END $$;

-- Records the end of a call. The transaction that records the last pending call of the step
-- writes the step's tool messages (in call order), appends the tools to tools_used and
-- enqueues the next AgentStep. Returns {applied, next_step, outbox}; applied is false when the
-- call had already ended (a duplicate).
CREATE FUNCTION ay_tool_result(p_inv uuid, p_result text, p_is_error boolean, p_error text,
        p_attempt integer, p_started_at timestamptz, p_prefix text) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    inv tool_invocations; r runs; v_seq bigint; v_msgs jsonb := '[]'::jsonb; v_pending integer;
    t tool_invocations; v_tools jsonb := '[]'::jsonb; v_now timestamptz;
BEGIN
    SELECT * INTO inv FROM tool_invocations WHERE id = p_inv;
    IF NOT FOUND THEN
        RETURN jsonb_build_object('applied', false, 'next_step', false, 'outbox', '[]'::jsonb);
    END IF;
    SELECT last_seq INTO v_seq FROM threads WHERE id = inv.thread_id FOR UPDATE;
    v_now := clock_timestamp();
    UPDATE tool_invocations SET status = 'completed', result = p_result, is_error = p_is_error,
            error = p_error, attempt = greatest(attempt, p_attempt),
            started_at = coalesce(started_at, p_started_at, v_now), completed_at = v_now,
            duration_ms = (extract(epoch FROM v_now - coalesce(started_at, p_started_at, v_now))
                           * 1000)::integer
        WHERE id = p_inv AND status <> 'completed'
        RETURNING * INTO inv;
    IF NOT FOUND THEN
        RETURN jsonb_build_object('applied', false, 'next_step', false, 'outbox', '[]'::jsonb);
    END IF;
    v_msgs := jsonb_build_array(ay_event(p_prefix, inv.run_id, 'tool:' || p_inv || ':completed',
        'tool_call.completed', jsonb_build_object('id', p_inv, 'call_id', inv.call_id,
        'name', inv.tool, 'is_error', p_is_error, 'duration_ms', inv.duration_ms)));
    SELECT * INTO r FROM runs WHERE id = inv.run_id FOR UPDATE;
    SELECT count(*) INTO v_pending FROM tool_invocations
        WHERE run_id = inv.run_id AND step = inv.step AND status <> 'completed';
    IF v_pending > 0 OR r.step <> inv.step OR r.status NOT IN ('in_progress', 'requires_input') THEN
        RETURN jsonb_build_object('applied', true, 'next_step', false, 'outbox', ay_outbox(v_msgs));
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
    UPDATE runs SET step = step + 1, status = 'in_progress', required_input = NULL,
            tools_used = tools_used || v_tools
        WHERE id = inv.run_id RETURNING * INTO r;
    v_msgs := v_msgs || jsonb_build_array(ay_job(p_prefix, r.id, r.step, r.priority));
    RETURN jsonb_build_object('applied', true, 'next_step', true, 'outbox', ay_outbox(v_msgs));
END $$;

-- A call waits for a human: the invocation keeps p_request, the run goes to requires_input
-- with it (and `run.requires_input` is published). Applies while the run is in progress (or
-- already waiting) at the call's step. Returns {applied, outbox}.
CREATE FUNCTION ay_tool_input(p_inv uuid, p_request jsonb, p_prefix text) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    inv tool_invocations; r runs;
BEGIN
    SELECT * INTO inv FROM tool_invocations WHERE id = p_inv;
    IF NOT FOUND THEN
        RETURN jsonb_build_object('applied', false, 'outbox', '[]'::jsonb);
    END IF;
    PERFORM 1 FROM threads WHERE id = inv.thread_id FOR UPDATE;
    UPDATE runs SET status = 'requires_input', required_input = p_request
        WHERE id = inv.run_id AND step = inv.step AND status IN ('in_progress', 'requires_input')
        RETURNING * INTO r;
    IF NOT FOUND THEN
        RETURN jsonb_build_object('applied', false, 'outbox', '[]'::jsonb);
    END IF;
    UPDATE tool_invocations SET status = 'requires_input', input_request = p_request,
            input_response = input_response - (p_request->>'kind')
        WHERE id = p_inv;
    RETURN jsonb_build_object('applied', true, 'outbox', ay_outbox(jsonb_build_array(
        ay_event(p_prefix, r.id, 'input:' || p_inv || ':' || md5(p_request::text),
            'run.requires_input', jsonb_build_object('run', ay_run_json(r))))));
END $$;

-- Answers what a run of p_org waits for. Returns {outcome: not_found | not_waiting | answered,
-- invocation_id, run, outbox}.
CREATE FUNCTION ay_answer_input(p_org uuid, p_run uuid, p_response jsonb, p_prefix text)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    r runs; v_thread uuid; v_inv uuid;
BEGIN
    SELECT thread_id INTO v_thread FROM runs WHERE id = p_run AND org_id = p_org;
    IF NOT FOUND THEN
        RETURN jsonb_build_object('outcome', 'not_found');
    END IF;
    PERFORM 1 FROM threads WHERE id = v_thread FOR UPDATE;
    SELECT id INTO v_inv FROM tool_invocations
        WHERE run_id = p_run AND status = 'requires_input' ORDER BY call_index LIMIT 1;
    UPDATE runs SET status = 'in_progress', required_input = NULL
        WHERE id = p_run AND status = 'requires_input' RETURNING * INTO r;
    IF NOT FOUND OR v_inv IS NULL THEN
        RETURN jsonb_build_object('outcome', 'not_waiting');
    END IF;
    UPDATE tool_invocations SET status = 'pending',
            input_response = coalesce(input_response, '{}'::jsonb)
                || jsonb_build_object(coalesce(input_request->>'kind', 'elicitation'), p_response)
        WHERE id = v_inv;
    RETURN jsonb_build_object('outcome', 'answered', 'invocation_id', v_inv,
        'run', ay_run_json(r),
        'outbox', ay_outbox(jsonb_build_array(ay_event(p_prefix, p_run,
            'input:' || v_inv || ':answer', 'run.input_received',
            jsonb_build_object('run', ay_run_json(r), 'action', p_response->>'action')))));
END $$;
