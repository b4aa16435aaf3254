-- Demo business data of the built-in tool server, for the workflow templates
-- (customer_onboarding, revenue_analysis, customer_support): customers, the messages sent to
-- them, monthly revenue and saved reports. Every row belongs to one organization, and every
-- query of the tools reads and writes one organization's rows only. Writes go through
-- `tool_writes` like those of tasks and tickets: idempotent per invocation.

-- An organization's customers. An email address names one customer per org ("Ann@x.com" and
-- "ann@x.com" are the same one).
CREATE TABLE customers (
    id          uuid PRIMARY KEY,
    org_id      uuid NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    name        text NOT NULL,
    email       text NOT NULL,
    company     text,
    plan        text NOT NULL DEFAULT 'free' CHECK (plan IN ('free', 'pro', 'enterprise')),
    status      text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'inactive')),
    created_by  uuid,                       -- the user the run acted for, when known
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX customers_org_email ON customers(org_id, lower(email));
-- list_customers: an org's customers, newest first.
CREATE INDEX customers_org_created ON customers(org_id, created_at);

-- Messages "sent" to customers. Nothing is delivered: a message is recorded, and its status
-- says so. A customer's messages stay when the customer is deleted.
CREATE TABLE outgoing_messages (
    id           uuid PRIMARY KEY,
    org_id       uuid NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    customer_id  uuid REFERENCES customers(id) ON DELETE SET NULL,
    recipient    text NOT NULL,              -- an email address
    subject      text NOT NULL,
    body         text NOT NULL,
    status       text NOT NULL DEFAULT 'recorded' CHECK (status IN ('recorded')),
    created_by   uuid,
    created_at   timestamptz NOT NULL DEFAULT now()
);
-- list_messages: an org's messages, or one customer's, newest first.
CREATE INDEX outgoing_messages_org_created ON outgoing_messages(org_id, created_at);
CREATE INDEX outgoing_messages_org_customer ON outgoing_messages(org_id, customer_id, created_at)
    WHERE customer_id IS NOT NULL;

-- Revenue per month and segment: one figure per (org, segment, month); adding one again
-- replaces it. `month` is the first day of the month. The key serves get_revenue's range
-- read (one org, one segment, months in order) and the "any revenue at all?" check.
CREATE TABLE revenue_records (
    org_id      uuid NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    segment     text NOT NULL,
    month       date NOT NULL CHECK (extract(day FROM month) = 1),
    amount      numeric(16, 2) NOT NULL CHECK (amount >= 0),
    currency    text NOT NULL DEFAULT 'USD' CHECK (currency ~ '^[A-Z]{3}$'),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, segment, month)
);

-- Reports agents and workflows save: markdown text plus the figures behind it.
CREATE TABLE reports (
    id          uuid PRIMARY KEY,
    org_id      uuid NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    title       text NOT NULL,
    body        text NOT NULL,               -- markdown
    kind        text NOT NULL DEFAULT 'general',
    data        jsonb NOT NULL DEFAULT '{}', -- any JSON object
    created_by  uuid,
    created_at  timestamptz NOT NULL DEFAULT now()
);
-- list_reports: an org's reports, newest first, optionally of one kind.
CREATE INDEX reports_org_created ON reports(org_id, created_at);
CREATE INDEX reports_org_kind_created ON reports(org_id, kind, created_at);
