-- The sweeper's two statements read every run ever made, every 2 s in each worker process.
-- Told to use indexes (0016), Postgres still joined live_runs to runs by reading runs whole
-- through its primary key (a hash join, or a nested loop driven by runs), because live_runs,
-- emptied by deletes and not yet vacuumed, looked as large as its pages: 13 ms and 44 ms a
-- call with 12,000 runs (`agentyard-bench throughput`, pg_stat_statements), growing with the
-- table. The disabled-scan costs also passed jit_above_cost, so the DELETE was compiled on
-- every call (about 70 ms). Now each statement walks the live runs and looks each one's run
-- up by key, in a form the planner cannot turn around (a LATERAL subquery with a LIMIT, a
-- scalar subquery run per row), and neither is compiled.

CREATE OR REPLACE FUNCTION ay_overdue_runs(p_timeouts jsonb, p_attempts integer, p_slack interval,
        p_limit bigint)
RETURNS TABLE (run_id uuid, org_id uuid, silent_secs float8, allowed_secs float8)
LANGUAGE plpgsql STABLE
SET enable_seqscan = off SET enable_bitmapscan = off SET jit = off AS $$
BEGIN
    RETURN QUERY
    SELECT r.id, r.org_id, extract(epoch FROM clock_timestamp() - r.progress_at)::float8,
           extract(epoch FROM b.allowed)::float8
    FROM live_runs l
    CROSS JOIN LATERAL (SELECT x.* FROM runs x WHERE x.id = l.run_id LIMIT 1) r
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
-- marker row is unlogged too). Also drops rows of runs that ended, or that do not exist (a
-- crash or a race of the refill can leave one). Returns how many rows were added.
CREATE OR REPLACE FUNCTION ay_refill_live_runs() RETURNS integer LANGUAGE plpgsql
SET enable_seqscan = off SET enable_bitmapscan = off SET jit = off AS $$
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
    DELETE FROM live_runs l
        WHERE NOT coalesce((SELECT r.status IN ('queued', 'in_progress', 'requires_input')
                            FROM runs r WHERE r.id = l.run_id), false);
    RETURN v_added;
END $$;
