-- The turns of a batch stored by a few statements for the whole batch, instead of one
-- `ay_tool_step` per turn (six statements each). A built-in call waits for its turn's batch
-- to commit before it starts, so the batch's length is on that path: per turn, this costs
-- Postgres a fraction of the per-turn function (BENCHMARKS.md, "Turns stored as a set").
-- The outcome of each turn is what `ay_tool_step` returns for it ({applied, outbox}); a lone
-- turn still goes through `ay_tool_step`.
CREATE FUNCTION ay_tool_steps(p_runs uuid[], p_steps integer[], p_messages uuid[],
        p_contents text[], p_calls jsonb[], p_usages jsonb[])
RETURNS TABLE (turn bigint, outcome jsonb) LANGUAGE plpgsql AS $$
BEGIN
    -- Every transition locks its thread first; a batch locks its threads in id order.
    PERFORM 1 FROM threads WHERE id IN (SELECT thread_id FROM runs WHERE id = ANY(p_runs))
        ORDER BY id FOR UPDATE;
    RETURN QUERY
    WITH x AS (
        SELECT * FROM unnest(p_runs, p_steps, p_messages, p_contents, p_calls, p_usages)
            WITH ORDINALITY AS x(r, s, m, c, k, u, n)
    ),
    -- A run given twice in one batch (its job delivered twice at once): the first applies, as
    -- the second would find the step's calls stored.
    once AS (SELECT DISTINCT ON (x.r) x.* FROM x ORDER BY x.r, x.n),
    -- As `ay_tool_step`: while the run is queued or in progress at that step, and the step
    -- has no calls yet.
    up AS (
        UPDATE runs SET status = 'in_progress', usage = ay_add_usage(runs.usage, once.u),
                progress_at = clock_timestamp()
            FROM once
            WHERE runs.id = once.r AND runs.step = once.s
              AND runs.status IN ('queued', 'in_progress')
              AND EXISTS (SELECT 1 FROM threads WHERE threads.id = runs.thread_id)
              AND NOT EXISTS (SELECT 1 FROM tool_invocations t
                              WHERE t.run_id = once.r AND t.step = once.s)
            RETURNING runs.org_id, runs.thread_id, runs.user_id, runs.agent_id, once.r,
                once.s, once.m, once.c, once.k, once.n
    ),
    turns AS (
        SELECT up.*, th.last_seq + row_number() OVER (PARTITION BY up.thread_id ORDER BY up.n)
                AS seq
            FROM up JOIN threads th ON th.id = up.thread_id
    ),
    calls AS (
        SELECT turns.*, e.call, e.i - 1 AS i
            FROM turns, jsonb_array_elements(turns.k) WITH ORDINALITY AS e(call, i)
    ),
    inv AS (
        INSERT INTO tool_invocations(id, org_id, run_id, thread_id, user_id, agent_id, step,
                call_index, call_id, server, tool, arguments, attempt)
            SELECT (call->>'invocation_id')::uuid, org_id, r, thread_id, user_id, agent_id, s,
                    i, call->>'call_id', call->>'server', call->>'name', call->'arguments',
                    CASE WHEN coalesce((call->>'claimed')::boolean, false) THEN 1 ELSE 0 END
                FROM calls
    ),
    -- Each call's facts: its `created` event, then its job.
    facts AS (
        SELECT n, jsonb_agg(fact ORDER BY i, o) AS facts FROM (
            SELECT n, i, 1 AS o, ay_fact_event(org_id, r,
                    'tool:' || (call->>'invocation_id') || ':created', 'tool_call.created',
                    jsonb_build_object('id', call->>'invocation_id', 'call_id', call->>'call_id',
                        'name', call->>'name', 'arguments', call->'arguments')) AS fact
                FROM calls
            UNION ALL
            SELECT n, i, 2, ay_fact_tool_call((call->>'invocation_id')::uuid, r, 0) FROM calls
        ) f GROUP BY n
    ),
    asked AS (
        SELECT n, jsonb_agg(jsonb_build_object('id', call->>'call_id', 'name', call->>'name',
                'arguments', call->>'raw_arguments') ORDER BY i) AS tool_calls
            FROM calls GROUP BY n
    ),
    msg AS (
        INSERT INTO messages(id, org_id, thread_id, seq, role, content, tool_calls, run_id,
                created_at)
            SELECT turns.m, turns.org_id, turns.thread_id, turns.seq, 'assistant', turns.c,
                    coalesce(asked.tool_calls, '[]'::jsonb), turns.r, clock_timestamp()
                FROM turns LEFT JOIN asked ON asked.n = turns.n
    ),
    seqs AS (
        UPDATE threads SET last_seq = threads.last_seq + g.turns
            FROM (SELECT thread_id, count(*) AS turns FROM up GROUP BY thread_id) g
            WHERE threads.id = g.thread_id
    ),
    -- One outbox row per turn, as `ay_outbox` writes it (none for a turn without facts).
    rows AS (SELECT facts.n, nextval('outbox_id_seq') AS id, facts.facts FROM facts),
    ob AS (INSERT INTO outbox(id, facts) SELECT rows.id, rows.facts FROM rows)
    SELECT x.n,
            CASE WHEN turns.n IS NULL THEN '{"applied": false, "outbox": []}'::jsonb
                 ELSE jsonb_build_object('applied', true, 'outbox', CASE WHEN rows.n IS NULL
                     THEN '[]'::jsonb
                     ELSE jsonb_build_array(jsonb_build_object('id', rows.id, 'facts', rows.facts))
                 END)
            END
        FROM x LEFT JOIN turns ON turns.n = x.n LEFT JOIN rows ON rows.n = x.n;
END $$;
