-- 0002: escalations of the log model (issue 6). A log line's feature row is
-- sparse: `features` holds its non-zero values and `feature_indices` their
-- columns (strictly increasing; NULL for a dense sensor row). `exemplar` is the
-- line as redacted on the gateway (NULL for sensor rows). Existing rows keep
-- NULL in both, which reads back as a dense row without exemplar.
ALTER TABLE escalations ADD COLUMN feature_indices bigint[];
ALTER TABLE escalations ADD COLUMN exemplar text;
CREATE INDEX escalations_series ON escalations (series);
