-- Costs of the hot path that profiling `agentyard-bench throughput` found in Postgres.

-- The quota's count of an org's live runs (`ay_create_run`) read every index entry of
-- `live_runs` that any run ever left there: each run's end deletes its row, and until
-- autovacuum comes by (a minute apart) the planner's bitmap or sequential scans visit every
-- dead row again on every create. Measured in `agentyard-bench throughput`: after 15 s,
-- 7,018 index entries for 20 live runs, 1 ms per count. A plain index scan marks the entries
-- of dead rows as dead in the index the first time it meets them, so the next counts skip
-- them: the function's statements, all key lookups, plan without those two scans.
ALTER FUNCTION ay_create_run(uuid, uuid, uuid, uuid, uuid, text, text, jsonb, text, bytea, uuid,
    uuid, text, integer, text[], uuid)
    SET enable_seqscan = off SET enable_bitmapscan = off;

-- An outbox row (a transition's facts, with the run as it is) is often over 2 kB: Postgres
-- compressed each one on insert (pglz, 1.6 % of its CPU in `throughput`), to delete it
-- moments later. Rows up to a page's worth now stay as they are.
ALTER TABLE outbox SET (toast_tuple_target = 8160);
