-- Replaying a dead-lettered agent step (`POST /v1/admin/dlq/{id}/replay`, `agentyard dlq
-- replay`): the failed run goes back to `queued` at the step that was given up, its attempts
-- counted from zero, as a new attempt of that run.

-- How many times the run was replayed. Every `run.*` fact of a replayed run carries it in its
-- key, so its new events (`run.completed` after `run.failed`, whose key is `terminal` too) are
-- not taken for duplicates of the first ones by JetStream's deduplication window.
ALTER TABLE runs ADD COLUMN replays integer NOT NULL DEFAULT 0;

CREATE OR REPLACE FUNCTION ay_fact_run(r runs, p_type text, p_key text) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN ay_fact_event(r.org_id, r.id,
        CASE WHEN r.replays = 0 THEN p_key ELSE p_key || ':replay' || r.replays END,
        p_type, jsonb_build_object('run', to_jsonb(r)));
END $$;

-- Brings failed run p_run back to `queued` at step p_step, when its thread is idle (it becomes
-- the thread's active run again). Outcomes: `replayed` (with the run, its replay count and the
-- outbox row of its `run.queued` event; the caller publishes the step's job), `not_failed`
-- (the run is not failed at that step: it finished or moved on, so nothing must run again),
-- `thread_busy` (another run holds the thread: replay once it ended), `not_found`. A run
-- replayed but whose job was never published (the replayer died in between) is `not_failed`
-- and `queued` at p_step with replays > 0 (`stranded`): the caller publishes its job again.
CREATE FUNCTION ay_replay_run(p_run uuid, p_step integer) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    r runs; v_thread uuid; v_active uuid;
BEGIN
    SELECT thread_id INTO v_thread FROM runs WHERE id = p_run;
    IF NOT FOUND THEN
        RETURN jsonb_build_object('outcome', 'not_found');
    END IF;
    SELECT active_run_id INTO v_active FROM threads WHERE id = v_thread FOR UPDATE;
    UPDATE runs SET status = 'queued', error = NULL, output = NULL, completed_at = NULL,
            attempt = 0, replays = replays + 1, progress_at = clock_timestamp()
        WHERE id = p_run AND step = p_step AND status = 'failed'
          AND (v_active IS NULL OR v_active = p_run)
        RETURNING * INTO r;
    IF NOT FOUND THEN
        IF EXISTS (SELECT 1 FROM runs WHERE id = p_run AND step = p_step AND status = 'failed') THEN
            RETURN jsonb_build_object('outcome', 'thread_busy', 'active_run_id', v_active);
        END IF;
        SELECT * INTO r FROM runs WHERE id = p_run;
        RETURN jsonb_build_object('outcome', 'not_failed', 'run', to_jsonb(r),
            'stranded', r.status = 'queued' AND r.step = p_step AND r.replays > 0,
            'replays', r.replays);
    END IF;
    UPDATE threads SET active_run_id = p_run WHERE id = v_thread;
    INSERT INTO live_runs(org_id, run_id) VALUES (r.org_id, r.id) ON CONFLICT DO NOTHING;
    RETURN jsonb_build_object('outcome', 'replayed', 'run', to_jsonb(r), 'replays', r.replays,
        'outbox', ay_outbox(jsonb_build_array(ay_fact_run(r, 'run.queued', 'queued'))));
END $$;
