-- Monitoring, continued: where each process serves /metrics, the monitor's lease and its place
-- in the event stream, time-bucketed series, probes of dependencies, alerts and their webhook
-- deliveries.

ALTER TABLE instances ADD COLUMN metrics_addr text;

-- One monitor at a time reads events, probes, evaluates alerts and delivers webhooks: the
-- holder of this lease (the others stand by and take over when it lapses).
CREATE TABLE monitor_leases (
    name text PRIMARY KEY,
    holder text NOT NULL,
    until timestamptz NOT NULL
);

-- The last event (its EVENTS stream sequence) counted into the series, written in the same
-- transaction as the counts: a monitor that dies and restarts counts every event once.
-- `rewind` is the oldest `run.started` still waiting for its first token: a restart reads from
-- there to know those runs again, counting only what is past `seq`.
CREATE TABLE monitor_positions (
    name text PRIMARY KEY,
    seq bigint NOT NULL,
    rewind bigint NOT NULL
);

-- Time-bucketed series. `org_id` is the nil uuid for platform-wide series (hosts, queues);
-- `key` holds the series' other labels (`agent=<id>,status=completed`, `tool=x,server=y`,
-- `host=h`). Minute buckets are kept a day, hour buckets a week.
CREATE TABLE metric_buckets (
    metric text NOT NULL,
    step_secs integer NOT NULL CHECK (step_secs IN (60, 3600)),
    bucket timestamptz NOT NULL,
    org_id uuid NOT NULL,
    key text NOT NULL,
    count bigint NOT NULL,
    sum float8 NOT NULL,
    min float8 NOT NULL,
    max float8 NOT NULL,
    -- Counts per latency bound (see the monitor's LATENCY_BOUNDS_MS), for percentiles.
    hist bigint[],
    PRIMARY KEY (metric, step_secs, bucket, org_id, key)
);
CREATE INDEX metric_buckets_prune ON metric_buckets (step_secs, bucket);

-- Adds a batch of observations, already summed per series and bucket.
CREATE FUNCTION ay_add_buckets(p_metric text[], p_step integer[], p_bucket timestamptz[],
        p_org uuid[], p_key text[], p_count bigint[], p_sum float8[], p_min float8[],
        p_max float8[], p_hist text[])
RETURNS void LANGUAGE sql AS $$
    INSERT INTO metric_buckets AS b (metric, step_secs, bucket, org_id, key, count, sum, min, max,
        hist)
    SELECT m, s, t, o, k, c, su, mi, ma, h::bigint[]
    FROM unnest(p_metric, p_step, p_bucket, p_org, p_key, p_count, p_sum, p_min, p_max, p_hist)
        AS x(m, s, t, o, k, c, su, mi, ma, h)
    ON CONFLICT (metric, step_secs, bucket, org_id, key) DO UPDATE SET
        count = b.count + EXCLUDED.count,
        sum = b.sum + EXCLUDED.sum,
        min = least(b.min, EXCLUDED.min),
        max = greatest(b.max, EXCLUDED.max),
        hist = CASE WHEN b.hist IS NULL THEN EXCLUDED.hist
                    WHEN EXCLUDED.hist IS NULL THEN b.hist
                    ELSE ARRAY(SELECT coalesce(x, 0) + coalesce(y, 0)
                               FROM unnest(b.hist, EXCLUDED.hist) AS z(x, y)) END
$$;

-- What the monitor probes: `postgres`, `nats`, `model:<alias>`, `mcp:<server id>` (org_id
-- set for an org's MCP server). A state changes once per transition, whichever monitor saw it.
CREATE TABLE probes (
    name text PRIMARY KEY,
    kind text NOT NULL,
    org_id uuid,
    label text NOT NULL,
    status text NOT NULL CHECK (status IN ('up', 'down')),
    status_since timestamptz NOT NULL,
    checked_at timestamptz NOT NULL,
    latency_ms float8,
    error text
);
CREATE TABLE probe_events (
    id bigserial PRIMARY KEY,
    name text NOT NULL,
    kind text NOT NULL,
    status text NOT NULL,
    at timestamptz NOT NULL
);
CREATE INDEX probe_events_at ON probe_events (at);

-- Alerts: a rule of config/alerts.yaml true of a subject (a host, a role, a queue, a probe).
-- One open alert per rule and subject at a time.
CREATE TABLE alerts (
    id uuid PRIMARY KEY,
    rule text NOT NULL,
    subject text NOT NULL,
    org_id uuid REFERENCES organizations(id) ON DELETE CASCADE,
    severity text NOT NULL,
    status text NOT NULL CHECK (status IN ('open', 'resolved')),
    message text NOT NULL,
    value float8 NOT NULL,
    threshold float8 NOT NULL,
    opened_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    resolved_at timestamptz,
    -- `auto` when the condition cleared, else who resolved it.
    resolved_by text
);
CREATE UNIQUE INDEX alerts_one_open ON alerts (rule, subject) WHERE status = 'open';
CREATE INDEX alerts_recent ON alerts (opened_at DESC);

-- A condition seen true but not yet for its rule's `for`; or, `acknowledged`, an alert resolved
-- by hand whose condition still holds (it opens again only after the condition clears).
CREATE TABLE alert_conditions (
    rule text NOT NULL,
    subject text NOT NULL,
    since timestamptz NOT NULL,
    acknowledged boolean NOT NULL DEFAULT false,
    PRIMARY KEY (rule, subject)
);

-- Each alert's open and resolve, to each configured webhook: retried with backoff, every
-- attempt's outcome kept on the row.
CREATE TABLE alert_deliveries (
    id bigserial PRIMARY KEY,
    alert_id uuid NOT NULL REFERENCES alerts(id) ON DELETE CASCADE,
    event text NOT NULL CHECK (event IN ('alert.opened', 'alert.resolved')),
    url text NOT NULL,
    status text NOT NULL CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts integer NOT NULL DEFAULT 0,
    next_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    last_status integer,
    last_error text,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    delivered_at timestamptz,
    UNIQUE (alert_id, event, url)
);
CREATE INDEX alert_deliveries_due ON alert_deliveries (next_at) WHERE status = 'pending';
