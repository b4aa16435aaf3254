-- The sweeper's two statements join live_runs (the few live runs) to runs (every run ever
-- made). Planned while runs is small, or on tables never analyzed, Postgres hashes the whole
-- of runs instead of looking each live run up by key, and a session keeps that plan: the
-- sweeper then read every run twice a second (seen in `agentyard-bench tools`: 44 scans of
-- runs in 12 s). As with ay_create_run (0012_hot_path.sql), they are told to use the indexes.
-- The refill after a crash still reads runs whole (no index covers a run's status); it runs
-- once.
ALTER FUNCTION ay_overdue_runs(jsonb, integer, interval, bigint)
    SET enable_seqscan = off SET enable_bitmapscan = off;
ALTER FUNCTION ay_refill_live_runs() SET enable_seqscan = off SET enable_bitmapscan = off;
