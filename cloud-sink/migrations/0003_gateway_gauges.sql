-- 0003: the agent's gauges (issue 7). Each batch may carry the agent's state
-- when it was cut (outbox backlog, disk use, uptime, ...); the gateway row
-- keeps those of the batch with the highest (epoch, seq) that carried any,
-- that batch's epoch and seq, and the sink time it was stored. Existing rows
-- start with none.
ALTER TABLE gateways ADD COLUMN gauges jsonb NOT NULL DEFAULT '{}'::jsonb;  -- name -> value
ALTER TABLE gateways ADD COLUMN gauges_epoch bigint NOT NULL DEFAULT 0;
ALTER TABLE gateways ADD COLUMN gauges_seq bigint NOT NULL DEFAULT 0;
ALTER TABLE gateways ADD COLUMN gauges_ms bigint NOT NULL DEFAULT 0;
