-- cloud-sink PostgreSQL schema, version 1: batches, windows, escalations, gateways.
--
-- Applied by cloud-sink at start-up (cloud-sink/src/pg/migrate.rs) inside the
-- configured schema, under an advisory lock, once (recorded in schema_migrations).
-- It does not create the database, roles or extensions, and never drops data.
--
-- u64 values of the wire format (epoch, seq, counts) are stored in bigint with a
-- two's-complement cast: values below 2^63 (every real epoch, a clock in ms, and
-- seq) read as themselves.
-- Text columns use COLLATE "C" so ORDER BY is byte order, as in the embedded store.
-- TimescaleDB: windows.time (and escalations.time) suit create_hypertable; both
-- primary keys include their time column, as hypertables require. No foreign keys
-- (a hypertable cannot be referenced by one); the sink writes a batch's rows in one
-- transaction instead.

-- The idempotency ledger: one row per stored batch. Its primary key decides
-- "stored" vs. "duplicate" (INSERT ... ON CONFLICT DO NOTHING).
CREATE TABLE batches (
    gateway      text COLLATE "C" NOT NULL,
    epoch        bigint NOT NULL,
    seq          bigint NOT NULL,
    body_sha256  text NOT NULL,
    created_ms   bigint NOT NULL,
    received_ms  bigint NOT NULL,
    windows      bigint NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (gateway, epoch, seq)
);

-- One row per window summary. idx = position in its batch.
CREATE TABLE windows (
    gateway      text COLLATE "C" NOT NULL,
    epoch        bigint NOT NULL,
    seq          bigint NOT NULL,
    idx          integer NOT NULL,
    device       text COLLATE "C" NOT NULL,
    metric       text COLLATE "C" NOT NULL,
    time         timestamptz NOT NULL,          -- = start_ms, for Grafana / create_hypertable
    start_ms     bigint NOT NULL,
    end_ms       bigint NOT NULL,
    count        bigint NOT NULL,
    sum          double precision NOT NULL,
    min          double precision NOT NULL,
    max          double precision NOT NULL,
    mean         double precision NOT NULL,
    stddev       double precision NOT NULL,
    p50          double precision NOT NULL,
    p95          double precision NOT NULL,
    p99          double precision NOT NULL,
    sketch_alpha double precision NOT NULL,
    first        double precision NOT NULL,
    first_ms     bigint NOT NULL,
    last         double precision NOT NULL,
    last_ms      bigint NOT NULL,
    rolled_up    integer NOT NULL DEFAULT 0,    -- windows merged into this one (0 = original)
    -- The gateway model's verdict, on judgement series only (all NULL otherwise).
    verdict_anomalous  boolean,
    verdict_judged     bigint,
    verdict_alarms     bigint,
    verdict_score      double precision,
    verdict_confidence double precision,
    -- Log template series only: template text and its redacted exemplar lines
    -- (a JSON array of strings).
    template_text      text,
    template_exemplars jsonb,
    -- Escalations carried (rows in the escalations table with this window's key).
    escalations  integer NOT NULL DEFAULT 0,
    PRIMARY KEY (gateway, epoch, seq, idx, time)
);
CREATE INDEX windows_series ON windows (gateway, device, metric, start_ms);
CREATE INDEX windows_time ON windows (time);

-- One row per escalated row: the gateway's verdict and the teacher's.
CREATE TABLE escalations (
    gateway         text COLLATE "C" NOT NULL,
    epoch           bigint NOT NULL,
    seq             bigint NOT NULL,
    window_idx      integer NOT NULL,
    idx             integer NOT NULL,
    device          text COLLATE "C" NOT NULL,
    series          text COLLATE "C" NOT NULL,
    window_start_ms bigint NOT NULL,
    time            timestamptz NOT NULL,       -- = ts_ms
    ts_ms           bigint NOT NULL,
    alarm           boolean NOT NULL,
    score           double precision NOT NULL,
    confidence      double precision NOT NULL,
    features        real[] NOT NULL,
    -- The teacher's verdict (all NULL when it did not judge: see teacher_skipped).
    teacher_score     double precision,
    teacher_threshold double precision,
    teacher_alarm     boolean,
    teacher_skipped   text CHECK (teacher_skipped IN ('no_teacher', 'width', 'not_finite', 'model_error')),
    PRIMARY KEY (gateway, epoch, seq, window_idx, idx, time)
);
CREATE INDEX escalations_device ON escalations (gateway, device, ts_ms);

-- Running totals per gateway, updated in the transaction of every stored batch.
CREATE TABLE gateways (
    id           text COLLATE "C" PRIMARY KEY,
    batches      bigint NOT NULL,
    windows      bigint NOT NULL,
    last_seen_ms bigint NOT NULL,
    last_epoch   bigint,
    last_seq     bigint,
    counters     jsonb NOT NULL DEFAULT '{}'::jsonb   -- reason -> count
);

-- Sums two counter maps key by key, saturating at u64::MAX like the embedded store.
CREATE FUNCTION merge_counters(a jsonb, b jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
    SELECT coalesce(jsonb_object_agg(key, least(total, 18446744073709551615::numeric)), '{}'::jsonb)
    FROM (
        SELECT key, sum(value::text::numeric) AS total
        FROM (SELECT * FROM jsonb_each(a) UNION ALL SELECT * FROM jsonb_each(b)) AS e
        GROUP BY key
    ) AS s
$$;
