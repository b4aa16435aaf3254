-- Workflows (crates/workflows): definitions with versions, executions and the runs their steps
-- started. An execution's state (every step's status, attempts, output, error, timers) is one
-- jsonb document written by the orchestrator under the execution's row lock; the engine that
-- computes it is pure Rust. A run a step started tells its execution when it ends: its end
-- writes a `workflow_advance` job in the same transaction (ay_run_ended below).

-- An organization's definitions; creating an id again adds a version.
CREATE TABLE workflows (
    org_id      uuid NOT NULL,
    id          text NOT NULL,
    version     integer NOT NULL,
    definition  jsonb NOT NULL,
    created_by  uuid,
    -- The scopes of the token that created it: its cron and event executions act with them.
    scopes      text[] NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (org_id, id, version)
);

-- Inbound webhooks: POST /v1/hooks/{id} signed with the hook's secret (HMAC of the platform's
-- `webhook_key` and the hook id: no secret is stored here) starts the workflow.
CREATE TABLE workflow_hooks (
    id           uuid PRIMARY KEY,
    org_id       uuid NOT NULL,
    workflow_id  text NOT NULL,
    created_by   uuid,
    scopes       text[] NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    revoked_at   timestamptz
);
CREATE INDEX workflow_hooks_org ON workflow_hooks(org_id, workflow_id);

CREATE TABLE workflow_executions (
    id               uuid PRIMARY KEY,
    org_id           uuid NOT NULL,
    workflow_id      text NOT NULL,
    version          integer NOT NULL,          -- 0: a built-in template
    definition       jsonb NOT NULL,            -- the version it started with, pinned
    inputs           jsonb NOT NULL,
    status           text NOT NULL CHECK (status IN ('queued', 'running', 'completed',
                         'failed', 'cancelled')),
    state            jsonb NOT NULL,            -- crates/workflows engine::ExecState
    output           jsonb,
    error            jsonb,
    trigger          jsonb NOT NULL,            -- {kind: api | template | cron | event | webhook, ...}
    user_id          uuid,
    scopes           text[] NOT NULL,           -- of the token (or trigger) that started it
    concurrency_key  text,
    wake_at          timestamptz,               -- the earliest timer of its steps
    idempotency_key  text,
    request_sha256   bytea,
    created_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
    started_at       timestamptz,
    completed_at     timestamptz,
    updated_at       timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX workflow_executions_org ON workflow_executions(org_id, id);
CREATE UNIQUE INDEX workflow_executions_idempotency ON workflow_executions(org_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
-- The orchestrators' timer scan.
CREATE INDEX workflow_executions_wake ON workflow_executions(wake_at) WHERE wake_at IS NOT NULL;
-- The last cron tick fired, per workflow (ticks are written as UTC RFC 3339 with
-- milliseconds, so text order is time order).
CREATE INDEX workflow_executions_cron ON workflow_executions(org_id, workflow_id,
    (trigger->>'scheduled_at')) WHERE trigger->>'kind' = 'cron';
-- Live executions of a concurrency key, oldest first.
CREATE INDEX workflow_executions_live ON workflow_executions(org_id, workflow_id, concurrency_key,
    created_at) WHERE status IN ('queued', 'running');

-- The runs steps started: an agent step's ordinary run, or a tool step's run of one call.
CREATE TABLE workflow_step_runs (
    run_id        uuid PRIMARY KEY,
    execution_id  uuid NOT NULL,
    step_id       text NOT NULL,
    attempt       integer NOT NULL,
    kind          text NOT NULL CHECK (kind IN ('agent', 'tool'))
);

-- Steps waiting for a bus event (`wait: {event}`), kept in step with the executions' state by
-- the orchestrator; the event reader looks candidates up here.
CREATE TABLE workflow_event_waits (
    execution_id  uuid NOT NULL,
    step_id       text NOT NULL,
    org_id        uuid NOT NULL,
    event_type    text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (execution_id, step_id)
);
CREATE INDEX workflow_event_waits_org ON workflow_event_waits(org_id, event_type);

CREATE FUNCTION ay_fact_workflow_advance(p_execution uuid, p_cause text) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    RETURN jsonb_build_object('fact', 'job', 'job', jsonb_build_object('kind', 'workflow_advance',
        'v', 1, 'execution_id', p_execution, 'cause', p_cause));
END $$;

-- What every run's end does besides its own row: it is no longer live, a call of it that waits
-- for a human waits no more, and the workflow execution that started it (if any) advances.
-- Returns the facts to publish.
DROP FUNCTION ay_run_ended(runs);
CREATE FUNCTION ay_run_ended(r runs) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    v_exec uuid;
BEGIN
    DELETE FROM live_runs WHERE org_id = r.org_id AND run_id = r.id;
    IF r.status <> 'completed' THEN
        UPDATE tool_invocations SET status = 'completed', is_error = true,
                result = 'the run ended (' || r.status || ') while this call waited for input',
                error = 'the run ended (' || r.status || ') while this call waited for input',
                input_deadline = NULL, input_request = NULL, completed_at = clock_timestamp()
            WHERE run_id = r.id AND status = 'requires_input';
    END IF;
    SELECT execution_id INTO v_exec FROM workflow_step_runs WHERE run_id = r.id;
    IF FOUND THEN
        RETURN jsonb_build_array(ay_fact_workflow_advance(v_exec, 'run:' || r.id));
    END IF;
    RETURN '[]'::jsonb;
END $$;

CREATE OR REPLACE FUNCTION ay_cancel_locked(p_run uuid) RETURNS jsonb LANGUAGE plpgsql AS $$
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
    RETURN jsonb_build_array(ay_fact_run(r, 'run.cancelled', 'terminal')) || ay_run_ended(r);
END $$;

CREATE OR REPLACE FUNCTION ay_finish_run(p_run uuid, p_step integer, p_from text[], p_status text,
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
    IF p_content IS NOT NULL THEN
        v_seq := v_seq + 1;
        INSERT INTO messages(id, org_id, thread_id, seq, role, content, run_id, created_at)
            VALUES (p_message_id, v_org, v_thread, v_seq, 'assistant', p_content, p_run,
                    clock_timestamp())
            RETURNING * INTO m;
        v_facts := jsonb_build_array(ay_fact_event(v_org, p_run, 'message:' || p_message_id,
            'message.completed', jsonb_build_object('message', to_jsonb(m))));
    END IF;
    v_facts := v_facts || jsonb_build_array(ay_fact_run(r, 'run.' || p_status, 'terminal'))
        || ay_run_ended(r);
    IF v_active = p_run THEN
        v_facts := v_facts || ay_hand_over(v_thread, v_seq);
    ELSIF p_content IS NOT NULL THEN
        UPDATE threads SET last_seq = v_seq WHERE id = v_thread;
    END IF;
    INSERT INTO outbox(facts) VALUES (v_facts) RETURNING id INTO v_outbox_id;
    RETURN jsonb_build_object('applied', true, 'run', to_jsonb(r),
        'outbox', jsonb_build_array(jsonb_build_object('id', v_outbox_id, 'facts', v_facts)));
END $$;

CREATE OR REPLACE FUNCTION ay_tool_result(p_inv uuid, p_result text, p_is_error boolean, p_error text,
        p_attempt integer, p_started_at timestamptz) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    inv tool_invocations; r runs; v_seq bigint; v_facts jsonb := '[]'::jsonb; v_open integer;
    t tool_invocations; v_tools jsonb := '[]'::jsonb; v_now timestamptz; v_fin jsonb;
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
    -- A workflow's tool step is a run of one call: its result ends the run.
    IF EXISTS (SELECT 1 FROM workflow_step_runs WHERE run_id = r.id AND kind = 'tool') THEN
        v_fin := ay_finish_run(r.id, NULL, ARRAY['in_progress', 'requires_input'],
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

-- Starts a workflow tool step: a run of one call on a new thread, in progress at once, with
-- the call's invocation and its job. The run's agent is the org's default agent (its tools
-- configuration does not apply: the definition names the tool). Returns the outbox rows.
CREATE FUNCTION ay_create_tool_run(p_org uuid, p_run uuid, p_thread uuid, p_user uuid,
        p_scopes text[], p_inv uuid, p_server text, p_tool text, p_arguments jsonb,
        p_metadata jsonb, p_execution uuid, p_step text, p_attempt integer)
        RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    r runs; v_agent uuid; v_facts jsonb;
BEGIN
    v_agent := ay_default_agent(p_org);
    INSERT INTO live_runs(org_id, run_id) VALUES (p_org, p_run);
    INSERT INTO threads(id, org_id, active_run_id, last_seq) VALUES (p_thread, p_org, p_run, 0);
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
