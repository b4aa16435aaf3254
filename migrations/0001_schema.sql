-- The tables of agentyard. The run and tool state machines are the functions of 0002_runs.sql
-- and 0003_tools.sql; every multi-row transition is one of them, so it is ONE round trip and ONE
-- transaction, which also writes the outbox facts that `bus` publishes after commit.
--
-- Hot tables (threads, runs, messages, outbox) have as few indexes as the queries allow: every
-- index is paid on each run, and no index covers a column a transition changes, so updates of
-- runs and threads stay HOT.

CREATE TABLE organizations (
    id          uuid PRIMARY KEY,
    name        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE users (
    id          uuid PRIMARY KEY,
    org_id      uuid NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    name        text NOT NULL,
    email       text,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX users_org ON users(org_id);

CREATE TABLE api_tokens (
    id            uuid PRIMARY KEY,
    org_id        uuid NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    user_id       uuid REFERENCES users(id) ON DELETE CASCADE,
    name          text NOT NULL,
    token_sha256  bytea NOT NULL UNIQUE,      -- the secret itself is never stored
    scopes        text[] NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz,
    revoked_at    timestamptz
);
CREATE INDEX api_tokens_org ON api_tokens(org_id);

-- An org's agents: one per agent type, storing only the overrides of the type's defaults.
-- Deleting is soft, so `recreate` keeps an agent's id.
CREATE TABLE agents (
    id          uuid PRIMARY KEY,
    org_id      uuid NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    agent_type  text NOT NULL,
    name        text NOT NULL,
    is_active   boolean NOT NULL DEFAULT true,
    is_default  boolean NOT NULL DEFAULT false,
    config      jsonb NOT NULL DEFAULT '{}',  -- overrides of the type's defaults (merge patch)
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    deleted_at  timestamptz,
    UNIQUE (org_id, agent_type)
);
CREATE UNIQUE INDEX agents_one_default ON agents(org_id) WHERE is_default;

CREATE TABLE threads (
    id             uuid PRIMARY KEY,
    -- No foreign key to organizations here or in runs: at hundreds of runs a second, the key
    -- locks every insert takes on the one organization row become a contended multixact. The
    -- functions keep org_id consistent (a run's org is its thread's org).
    org_id         uuid NOT NULL,
    metadata       jsonb NOT NULL DEFAULT '{}',
    active_run_id  uuid,                      -- the one run allowed to execute on this thread
    last_seq       bigint NOT NULL DEFAULT 0, -- seq of the newest message
    created_at     timestamptz NOT NULL DEFAULT now()
) WITH (fillfactor = 80);  -- room for HOT updates (active_run_id, last_seq)
-- An org's threads, newest first (ids are uuid v7: they sort by creation).
CREATE INDEX threads_org ON threads(org_id, id);

CREATE TABLE runs (
    id                  uuid PRIMARY KEY,
    org_id              uuid NOT NULL,
    thread_id           uuid NOT NULL REFERENCES threads(id) ON DELETE CASCADE,
    agent_id            uuid NOT NULL,
    user_id             uuid,
    status              text NOT NULL CHECK (status IN ('queued', 'in_progress', 'requires_input',
                            'completed', 'failed', 'cancelled', 'expired')),
    input               text NOT NULL,
    output              jsonb,
    tools_used          jsonb NOT NULL DEFAULT '[]',
    usage               jsonb,
    error               jsonb,
    multitask_strategy  text NOT NULL,
    -- Jobs go to `<prefix>.jobs.agent.<priority>`; workers take high before normal before low.
    priority            text NOT NULL DEFAULT 'normal' CHECK (priority IN ('high', 'normal', 'low')),
    -- The scopes of the token that started the run: its tool calls act with them.
    scopes              text[] NOT NULL DEFAULT '{}',
    -- What a run in `requires_input` waits for (an elicitation or a tool approval).
    required_input      jsonb,
    metadata            jsonb NOT NULL DEFAULT '{}',
    step                integer NOT NULL DEFAULT 0,   -- the current model turn
    attempt             integer NOT NULL DEFAULT 0,   -- model calls made for the current step
    created_at          timestamptz NOT NULL,
    started_at          timestamptz,
    completed_at        timestamptz,
    -- The last transition (or a worker's keep-alive): the sweeper expires a live run that made
    -- no progress for longer than its agent allows.
    progress_at         timestamptz NOT NULL DEFAULT now()
) WITH (fillfactor = 80);  -- room for HOT updates: no index covers a column that changes
-- Usage, stats and the run list read an org's runs by creation time; neither column changes.
CREATE INDEX runs_org_created ON runs(org_id, created_at);

-- Runs waiting for their thread (multitask strategy `enqueue`), oldest first. Kept apart from
-- `runs` so the common path (an idle thread) never touches it and runs carries no index on
-- its status.
CREATE TABLE run_queue (
    thread_id   uuid NOT NULL,
    created_at  timestamptz NOT NULL,
    run_id      uuid NOT NULL,
    PRIMARY KEY (thread_id, created_at, run_id)
);

-- Every live (not yet terminal) run: the org quota counts it, the sweeper walks it. One row per
-- run, so creates of one org do not contend on a counter row. Unlogged (no WAL: it churns twice
-- per run); after a Postgres crash it starts empty, and the sweeper refills it from `runs` when
-- it finds `live_runs_filled` empty.
CREATE UNLOGGED TABLE live_runs (
    org_id  uuid NOT NULL,
    run_id  uuid NOT NULL,
    PRIMARY KEY (org_id, run_id)
) WITH (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 1000);
CREATE UNLOGGED TABLE live_runs_filled (one boolean PRIMARY KEY DEFAULT true CHECK (one));
INSERT INTO live_runs_filled DEFAULT VALUES;

CREATE TABLE messages (
    id            uuid PRIMARY KEY,
    org_id        uuid NOT NULL,
    thread_id     uuid NOT NULL REFERENCES threads(id) ON DELETE CASCADE,
    seq           bigint NOT NULL,
    role          text NOT NULL CHECK (role IN ('system', 'user', 'assistant', 'tool')),
    content       text NOT NULL,
    tool_calls    jsonb,                      -- an assistant message's calls [{id, name, arguments}]
    tool_call_id  text,                       -- the call a tool message answers
    run_id        uuid,
    created_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (thread_id, seq)
);

-- Facts waiting to be published: one row per transition, holding its facts (jobs and events,
-- see crates/core/src/outbox.rs) in publish order. `bus` derives subjects and message ids from
-- them; rows are deleted once JetStream acked them; a relay re-publishes rows a crash left
-- behind (message ids make that harmless) and sets aside a fact it cannot read.
CREATE TABLE outbox (
    id          bigserial PRIMARY KEY,
    facts       jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp()
);
-- Facts the relay could not read, with why: for an operator.
CREATE TABLE outbox_rejects (
    id           bigserial PRIMARY KEY,
    outbox_id    bigint NOT NULL,
    fact         text NOT NULL,
    error        text NOT NULL,
    rejected_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE idempotency_keys (
    org_id          uuid NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    key             text NOT NULL,
    request_sha256  bytea NOT NULL,
    run_id          uuid NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, key)
);

-- The built-in tool server's data: an organization's tasks, support tickets and integrations,
-- and `tool_writes`, which makes every write tool idempotent per invocation: a tool's result is
-- stored in the same transaction as its write, so a redelivered call gets the stored result
-- back and writes nothing.
CREATE TABLE tasks (
    id            uuid PRIMARY KEY,
    org_id        uuid NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    title         text NOT NULL,
    description   text,
    due_date      date,
    status        text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'completed')),
    created_by    uuid,                     -- the user the run acted for, when known
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    completed_at  timestamptz
);
-- Every read is of one org; tools find a task by its exact, case-insensitive title.
CREATE INDEX tasks_org_title ON tasks(org_id, lower(title));

CREATE TABLE tickets (
    id           uuid PRIMARY KEY,
    org_id       uuid NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    title        text NOT NULL,
    description  text NOT NULL,
    category     text NOT NULL DEFAULT 'general'
                     CHECK (category IN ('billing', 'technical', 'account', 'general')),
    priority     text NOT NULL DEFAULT 'medium' CHECK (priority IN ('low', 'medium', 'high')),
    status       text NOT NULL DEFAULT 'open'
                     CHECK (status IN ('open', 'in_progress', 'resolved', 'closed')),
    assignee     text,
    created_by   uuid,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX tickets_org_created ON tickets(org_id, created_at);

CREATE TABLE integrations (
    id          uuid PRIMARY KEY,
    org_id      uuid NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    name        text NOT NULL,
    kind        text NOT NULL DEFAULT 'custom',
    is_active   boolean NOT NULL DEFAULT true,
    config      jsonb NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
-- One integration of a name per org ("Slack" and "slack" are the same one).
CREATE UNIQUE INDEX integrations_org_name ON integrations(org_id, lower(name));

CREATE TABLE tool_writes (
    invocation_id  uuid PRIMARY KEY,
    org_id         uuid NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    tool           text NOT NULL,
    result         jsonb NOT NULL,           -- the tool's result, returned again on a replay
    created_at     timestamptz NOT NULL DEFAULT now()
);

-- Secrets of the platform itself (the key that signs tool tokens).
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
-- The platform's servers and how their last listing went: a broken one is reported and backed
-- off on its own, shared by every tool worker.
CREATE TABLE platform_servers (
    name          text PRIMARY KEY,
    transport     text NOT NULL,
    tools_refreshed_at timestamptz,
    last_error    text,
    failures      integer NOT NULL DEFAULT 0,
    next_try_at   timestamptz NOT NULL DEFAULT now()
);

-- The audit log of every tool call, and the state of each call.
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
    attempt         integer NOT NULL DEFAULT 0,  -- times the call was started
    round           integer NOT NULL DEFAULT 0,  -- times it was dispatched (+1 per answered input)
    input_request   jsonb,                       -- what the call asks a human for now
    input_key       text,                        -- the request's key in input_response
    input_deadline  timestamptz,                 -- when no answer counts as decline / deny
    input_response  jsonb,                       -- answers by request key (kept: a call run
                                                 -- again asks again and gets them back)
    created_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    started_at      timestamptz,
    completed_at    timestamptz,
    duration_ms     integer,
    UNIQUE (run_id, step, call_index)
);
CREATE INDEX tool_invocations_org ON tool_invocations(org_id, created_at);
-- Calls waiting for a human, by deadline (the sweeper answers the late ones). Partial, on a
-- column only the input path changes, so other updates stay HOT.
CREATE INDEX tool_invocations_input_deadline ON tool_invocations(input_deadline)
    WHERE input_deadline IS NOT NULL;

-- A uuid v7 (time-ordered, like the ids the services generate): Postgres 15 has no uuidv7(),
-- so take a random v4, put the millisecond clock in its first 48 bits and set version 7.
CREATE FUNCTION ay_uuid_v7() RETURNS uuid LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    RETURN encode(set_bit(set_bit(overlay(uuid_send(gen_random_uuid())
        PLACING substring(int8send((extract(epoch FROM clock_timestamp()) * 1000)::bigint) FROM 3)
        FROM 1 FOR 6), 52, 1), 53, 1), 'hex')::uuid;
END $$;
