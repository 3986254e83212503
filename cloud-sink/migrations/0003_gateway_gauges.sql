-- 0003: the agent's gauges (issue 7). Each batch may carry the agent's state
-- when it was cut (outbox backlog, disk use, uptime, ...); the gateway row
-- keeps the newest stored batch's, with the sink time it was stored. Existing
-- rows start with none.
ALTER TABLE gateways ADD COLUMN gauges jsonb NOT NULL DEFAULT '{}'::jsonb;  -- name -> value
ALTER TABLE gateways ADD COLUMN gauges_ms bigint NOT NULL DEFAULT 0;
