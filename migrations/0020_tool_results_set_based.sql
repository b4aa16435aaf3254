-- The results of a batch stored by a few statements for the whole batch, instead of one
-- `ay_tool_result` per result (`migrations/0014`), as `ay_tool_steps` does for the turns
-- (`migrations/0019`): a call's result waits for its batch to commit, and its run's next turn
-- for that. Each result's outcome is what `ay_tool_result` returns for it, the batch taken in
-- thread order, then in the order given; a lone result still goes through `ay_tool_result`.
CREATE FUNCTION ay_tool_results(p_invs uuid[], p_results text[], p_is_errors boolean[],
        p_errors text[], p_attempts integer[], p_started timestamptz[])
RETURNS TABLE (result bigint, outcome jsonb) LANGUAGE plpgsql AS $$
DECLARE
    v_out jsonb; v_ends jsonb; e jsonb; v_fin jsonb;
BEGIN
    -- Every transition locks its thread first; a batch locks its threads in id order, then
    -- the calls' runs, as each result does after its thread.
    PERFORM 1 FROM threads
        WHERE id IN (SELECT thread_id FROM tool_invocations WHERE id = ANY(p_invs))
        ORDER BY id FOR UPDATE;
    PERFORM 1 FROM runs WHERE id IN (SELECT run_id FROM tool_invocations WHERE id = ANY(p_invs))
        ORDER BY id FOR UPDATE;
    WITH x AS (
        SELECT * FROM unnest(p_invs, p_results, p_is_errors, p_errors, p_attempts, p_started)
            WITH ORDINALITY AS x(i, res, err, e, a, st, n)
    ),
    -- A result given twice in one batch: the first applies, as the second would find the call
    -- completed.
    once AS (SELECT DISTINCT ON (x.i) x.* FROM x ORDER BY x.i, x.n),
    clock AS MATERIALIZED (SELECT clock_timestamp() AS now),
    done AS (
        UPDATE tool_invocations t SET status = 'completed', result = once.res,
                is_error = once.err, error = once.e, attempt = greatest(t.attempt, once.a),
                input_request = NULL, input_deadline = NULL,
                started_at = coalesce(t.started_at, once.st, clock.now),
                completed_at = clock.now,
                duration_ms = (extract(epoch FROM clock.now
                                       - coalesce(t.started_at, once.st, clock.now))
                               * 1000)::integer
            FROM once, clock
            WHERE t.id = once.i AND t.status <> 'completed'
              AND EXISTS (SELECT 1 FROM threads WHERE threads.id = t.thread_id)
            RETURNING t.*, once.n
    ),
    -- The steps whose last open calls end in this batch, each ended by its last result (the
    -- snapshot still counts this batch's calls as open).
    last AS (
        SELECT done.run_id, done.step, max(done.n) AS n, count(*) AS k
            FROM done GROUP BY done.run_id, done.step
    ),
    ended AS (
        SELECT last.*, r.org_id, r.thread_id,
                EXISTS (SELECT 1 FROM workflow_step_runs w
                        WHERE w.run_id = last.run_id AND w.kind = 'tool') AS workflow
            FROM last JOIN runs r ON r.id = last.run_id
            WHERE r.step = last.step AND r.status IN ('in_progress', 'requires_input')
              AND (SELECT count(*) FROM tool_invocations t
                   WHERE t.run_id = last.run_id AND t.step = last.step
                     AND t.status <> 'completed') = last.k
    ),
    -- A run's next turn: the step's results as tool messages, in call order.
    replies AS (
        SELECT ended.org_id, ended.thread_id, ended.run_id, ended.n, t.call_index, t.call_id,
                t.tool, CASE WHEN d.id IS NULL THEN t.result ELSE d.result END AS content
            FROM ended
            JOIN tool_invocations t ON t.run_id = ended.run_id AND t.step = ended.step
            LEFT JOIN done d ON d.id = t.id
            WHERE NOT ended.workflow
    ),
    numbered AS (
        SELECT replies.*, th.last_seq + row_number() OVER (PARTITION BY replies.thread_id
                ORDER BY replies.n, replies.call_index) AS seq
            FROM replies JOIN threads th ON th.id = replies.thread_id
    ),
    msg AS (
        INSERT INTO messages(id, org_id, thread_id, seq, role, content, tool_call_id, run_id,
                created_at)
            SELECT ay_uuid_v7(), org_id, thread_id, seq, 'tool', coalesce(content, ''),
                    call_id, run_id, clock_timestamp()
                FROM numbered
    ),
    seqs AS (
        UPDATE threads SET last_seq = threads.last_seq + g.k
            FROM (SELECT thread_id, count(*) AS k FROM replies GROUP BY thread_id) g
            WHERE threads.id = g.thread_id
    ),
    advanced AS (
        UPDATE runs SET step = runs.step + 1, attempt = 0, status = 'in_progress',
                required_input = NULL, tools_used = runs.tools_used || g.tools,
                progress_at = clock_timestamp()
            FROM (SELECT run_id, n, jsonb_agg(to_jsonb(tool) ORDER BY call_index) AS tools
                  FROM replies GROUP BY run_id, n) g
            WHERE runs.id = g.run_id
            RETURNING runs.id, runs.step, runs.priority, g.n
    ),
    facts AS (
        SELECT done.n, done.thread_id, jsonb_build_array(ay_fact_event(done.org_id, done.run_id,
                    'tool:' || done.id || ':completed', 'tool_call.completed',
                    jsonb_build_object('id', done.id, 'call_id', done.call_id, 'name', done.tool,
                        'is_error', done.is_error, 'duration_ms', done.duration_ms)))
                || CASE WHEN a.n IS NULL THEN '[]'::jsonb
                        ELSE jsonb_build_array(ay_fact_agent_step(a.id, a.step, a.priority))
                   END AS facts,
                a.n IS NOT NULL AS next_step
            FROM done LEFT JOIN advanced a ON a.n = done.n
    ),
    -- One outbox row per result, numbered in the order the results are taken.
    rows AS (
        SELECT facts.*, nextval('outbox_id_seq') AS id FROM facts ORDER BY facts.thread_id, facts.n
    ),
    ob AS (INSERT INTO outbox(id, facts) SELECT rows.id, rows.facts FROM rows)
    SELECT
        (SELECT jsonb_object_agg(x.n, CASE WHEN rows.n IS NULL
                THEN '{"applied": false, "next_step": false, "outbox": []}'::jsonb
                ELSE jsonb_build_object('applied', true, 'next_step', rows.next_step,
                    'outbox', jsonb_build_array(jsonb_build_object('id', rows.id,
                        'facts', rows.facts)))
                END)
            FROM x LEFT JOIN rows ON rows.n = x.n),
        (SELECT jsonb_agg(jsonb_build_object('n', ended.n, 'run', ended.run_id,
                'is_error', done.is_error, 'result', done.result, 'error', done.error))
            FROM ended JOIN done ON done.n = ended.n WHERE ended.workflow)
        INTO v_out, v_ends;
    -- A workflow's tool step is a run of one call: its result ends the run.
    FOR e IN SELECT * FROM jsonb_array_elements(coalesce(v_ends, '[]'::jsonb)) LOOP
        v_fin := ay_finish_run((e->>'run')::uuid, NULL, ARRAY['in_progress', 'requires_input'],
            CASE WHEN (e->>'is_error')::boolean THEN 'failed' ELSE 'completed' END,
            CASE WHEN (e->>'is_error')::boolean THEN NULL
                 ELSE jsonb_build_object('content', e->>'result') END,
            NULL,
            CASE WHEN (e->>'is_error')::boolean THEN jsonb_build_object('code', 'tool_error',
                'message', coalesce(e->>'result', e->>'error', 'the tool failed')) END,
            NULL, NULL);
        v_out := jsonb_set(v_out, ARRAY[e->>'n', 'outbox'],
            (v_out->(e->>'n')->'outbox') || (v_fin->'outbox'));
    END LOOP;
    RETURN QUERY SELECT key::bigint, value FROM jsonb_each(v_out);
END $$;
