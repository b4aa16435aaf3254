-- Fewer statements in a run's create and finish, the two transitions every run has (see
-- 0014_fewer_statements.sql). Inserts that always go together share one statement, as
-- data-modifying CTEs.

-- ay_create_run: the agent and the org's live count in one statement (were two); the live row
-- and the thread in one (were two); the run and its first message in one (were two). The
-- settings are 0012_hot_path.sql's, which a replaced function would otherwise lose.
CREATE OR REPLACE FUNCTION ay_create_run(p_org uuid, p_thread uuid, p_run uuid, p_agent uuid,
        p_user uuid, p_input text, p_strategy text, p_metadata jsonb,
        p_idem_key text, p_idem_hash bytea, p_new_thread uuid, p_message uuid,
        p_priority text, p_quota integer, p_scopes text[], p_owner uuid DEFAULT NULL)
        RETURNS jsonb LANGUAGE plpgsql
        SET enable_seqscan = off SET enable_bitmapscan = off AS $$
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
    -- The org's quota of live (queued, waiting, running) runs is counted with the agent's
    -- lookup. Counting is cheap (live_runs holds only live runs); near the limit, creates of
    -- the org serialize on an advisory lock and count again, so concurrent creates cannot
    -- overshoot it.
    IF p_agent IS NULL THEN
        SELECT id, is_active,
               CASE WHEN p_quota IS NOT NULL THEN
                   (SELECT count(*) FROM live_runs WHERE org_id = p_org) END
            INTO p_agent, v_agent_active, v_live FROM agents
            WHERE org_id = p_org AND is_default AND deleted_at IS NULL;
        IF NOT FOUND THEN
            p_agent := ay_default_agent(p_org);
            v_agent_active := true;
        END IF;
    ELSE
        SELECT is_active,
               CASE WHEN p_quota IS NOT NULL THEN
                   (SELECT count(*) FROM live_runs WHERE org_id = p_org) END
            INTO v_agent_active, v_live FROM agents
            WHERE id = p_agent AND org_id = p_org AND deleted_at IS NULL;
        IF NOT FOUND THEN
            RAISE EXCEPTION USING ERRCODE = 'AY404', MESSAGE = 'agent_not_found';
        END IF;
    END IF;
    IF NOT v_agent_active THEN
        RAISE EXCEPTION USING ERRCODE = 'AY409', MESSAGE = 'agent_inactive';
    END IF;
    IF p_quota IS NOT NULL THEN
        IF v_live IS NULL OR v_live >= p_quota - 16 THEN
            PERFORM pg_advisory_xact_lock(hashtextextended('ay_quota:' || p_org, 0));
            SELECT count(*) INTO v_live FROM live_runs WHERE org_id = p_org;
        END IF;
        IF v_live >= p_quota THEN
            RAISE EXCEPTION USING ERRCODE = 'AY429', MESSAGE = 'quota_exceeded',
                DETAIL = v_live::text;
        END IF;
    END IF;

    IF p_thread IS NULL THEN
        p_thread := p_new_thread;
        v_seq := 1;
        WITH live AS (INSERT INTO live_runs(org_id, run_id) VALUES (p_org, p_run))
        INSERT INTO threads(id, org_id, user_id, active_run_id, last_seq)
            VALUES (p_thread, p_org, p_user, p_run, v_seq);
    ELSE
        -- The common case, an idle thread, in one statement.
        WITH live AS (INSERT INTO live_runs(org_id, run_id) VALUES (p_org, p_run))
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

    -- A run that holds the thread (no active run) has its input stored as the next message in
    -- the same statement; one that waits for the thread gets its message when its turn comes.
    WITH msg AS (
        INSERT INTO messages(id, org_id, thread_id, seq, role, content, run_id, created_at)
            SELECT p_message, p_org, p_thread, v_seq, 'user', p_input, p_run, clock_timestamp()
            WHERE v_active IS NULL)
    INSERT INTO runs(id, org_id, thread_id, agent_id, user_id, status, input,
                     multitask_strategy, metadata, created_at, priority, scopes, progress_at)
        VALUES (p_run, p_org, p_thread, p_agent, p_user, 'queued', p_input, p_strategy,
                p_metadata, clock_timestamp(), p_priority, p_scopes, clock_timestamp())
        RETURNING * INTO r;
    v_facts := v_facts || jsonb_build_array(ay_fact_run(r, 'run.queued', 'queued'));
    IF v_active IS NULL THEN
        -- Its job goes out now.
        v_facts := v_facts || jsonb_build_array(ay_fact_agent_step(p_run, 0, p_priority));
    ELSE
        INSERT INTO run_queue(thread_id, created_at, run_id) VALUES (p_thread, r.created_at, p_run);
    END IF;
    INSERT INTO outbox(facts) VALUES (v_facts) RETURNING id INTO v_outbox_id;
    RETURN jsonb_build_object('outcome', 'created', 'run', to_jsonb(r), 'interrupted', v_interrupted,
        'outbox', jsonb_build_array(jsonb_build_object('id', v_outbox_id, 'facts', v_facts)));
END $$;
