-- The monitor (workers/monitor): the processes it has heard from, and each change of their
-- state, from which availability is computed.

-- One row per process start (its heartbeat's instance id).
CREATE TABLE instances (
    id            text PRIMARY KEY,
    role          text NOT NULL,
    version       text NOT NULL,
    host          text NOT NULL,
    pid           integer NOT NULL,
    started_at    timestamptz NOT NULL,
    last_seen     timestamptz NOT NULL,
    every_ms      integer NOT NULL,
    capacity      bigint,
    in_flight     bigint,                   -- jobs it ran at its last heartbeat
    status        text NOT NULL CHECK (status IN ('up', 'down')),
    status_since  timestamptz NOT NULL
);
CREATE INDEX instances_up ON instances(last_seen) WHERE status = 'up';

-- Every up and down of an instance, oldest first.
CREATE TABLE instance_events (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    instance_id  text NOT NULL,
    role         text NOT NULL,
    status       text NOT NULL CHECK (status IN ('up', 'down')),
    at           timestamptz NOT NULL
);
CREATE INDEX instance_events_role ON instance_events(role, at);
