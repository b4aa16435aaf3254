-- The built-in tool server's data: an organization's tasks, support tickets and integrations,
-- and `tool_writes`, which makes every write tool idempotent per invocation: a tool's result is
-- stored in the same transaction as its write, so a redelivered call (a tool worker crashed
-- after the write) gets the stored result back and writes nothing. Ids are uuid v7, made by
-- the caller.

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
