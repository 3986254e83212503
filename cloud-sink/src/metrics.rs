//! The sink's instruments, registered once in one `telemetry::Metrics`
//! registry (prefix `cloud_sink`) that `GET /metrics` encodes and OTLP
//! exports: batches by outcome, windows, escalations and bytes received,
//! rejections by reason, the counters gateways report, per-gateway sync lag,
//! ingest latency, teacher judgements and latency.
//!
//! Only definitions and small recording helpers; the ingest handler decides
//! when to record. The counters shown in `/v1/health` are the same atomics
//! (see `stats.rs`).

use std::sync::Arc;
use std::time::Duration;

use telemetry::{Counter, CounterVec, GaugeVec, Histogram, Metrics, LATENCY_BUCKETS};

use crate::stats::{IngestStats, TeacherStats};

/// Why a batch was rejected before it could be stored (label `reason` of
/// `cloud_sink_rejected_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// The body could not be read.
    ReadBody,
    /// Over `limits.max_body_bytes`.
    TooLarge,
    /// A Content-Encoding other than gzip.
    UnsupportedEncoding,
    /// The gzip body inflates past the envelope cap.
    InflatesTooLarge,
    /// Not valid gzip.
    BadGzip,
    /// The envelope itself does not decode (or is over the cap).
    Envelope,
    /// A schema version this build does not open.
    Version,
    /// The body does not match its SHA-256.
    HashMismatch,
    /// The body does not decode.
    Body,
    /// The decoder task failed.
    DecoderTask,
    /// The envelope names another gateway than the credentials.
    WrongGateway,
}

impl Rejection {
    /// Every reason, so each is exported from start-up on.
    pub const ALL: [Rejection; 11] = [
        Rejection::ReadBody,
        Rejection::TooLarge,
        Rejection::UnsupportedEncoding,
        Rejection::InflatesTooLarge,
        Rejection::BadGzip,
        Rejection::Envelope,
        Rejection::Version,
        Rejection::HashMismatch,
        Rejection::Body,
        Rejection::DecoderTask,
        Rejection::WrongGateway,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Rejection::ReadBody => "read_body",
            Rejection::TooLarge => "too_large",
            Rejection::UnsupportedEncoding => "unsupported_encoding",
            Rejection::InflatesTooLarge => "inflates_too_large",
            Rejection::BadGzip => "bad_gzip",
            Rejection::Envelope => "envelope",
            Rejection::Version => "version",
            Rejection::HashMismatch => "hash_mismatch",
            Rejection::Body => "body",
            Rejection::DecoderTask => "decoder_task",
            Rejection::WrongGateway => "wrong_gateway",
        }
    }

    /// The reason of an envelope that does not open.
    pub fn of_open_error(e: &wire::OpenError) -> Rejection {
        match e {
            wire::OpenError::Codec(_) => Rejection::Envelope,
            wire::OpenError::Version(_) => Rejection::Version,
            wire::OpenError::HashMismatch => Rejection::HashMismatch,
            wire::OpenError::Body(_) => Rejection::Body,
        }
    }
}

/// Every instrument of the sink. Cheap to share (`Arc` fields, clones of
/// registry handles).
#[derive(Debug, Clone)]
pub struct SinkMetrics {
    /// The registry `GET /metrics` encodes and `telemetry::init` exports.
    pub registry: Metrics,
    /// `batches_total{outcome}`, also `/v1/health`'s counters.
    pub ingest: Arc<IngestStats>,
    /// `teacher_judgements_total{result}` and `teacher_latency_seconds`, also
    /// `/v1/health`'s teacher counters.
    pub teacher: Arc<TeacherStats>,
    /// `windows_stored_total`: windows of newly stored batches.
    pub windows_stored: Counter,
    /// `escalations_stored_total`: escalations of newly stored batches.
    pub escalations_stored: Counter,
    /// `received_bytes_total`: request bodies read (as sent, before inflating).
    pub bytes_received: Counter,
    /// `rejected_total{reason}`: batches rejected as undecodable or misaddressed.
    pub rejected: CounterVec,
    /// `gateway_counters_total{gateway,reason}`: the agents' own counters
    /// (decode errors, late, dropped, …) summed over stored batches.
    pub gateway_counters: CounterVec,
    /// `sync_lag_seconds{gateway}`: sink time minus the `created_ms` of the
    /// gateway's last stored batch, at the time it was stored.
    pub sync_lag: GaugeVec,
    /// `ingest_latency_seconds`: time to answer a `POST /v1/batches` whose
    /// caller was authenticated.
    pub ingest_latency: Histogram,
}

impl Default for SinkMetrics {
    fn default() -> Self {
        SinkMetrics::new()
    }
}

impl SinkMetrics {
    /// A fresh registry with every instrument registered (every outcome and
    /// rejection reason at 0).
    pub fn new() -> SinkMetrics {
        let registry = Metrics::new("cloud_sink");
        let ingest = Arc::new(IngestStats::register(&registry));
        let teacher = Arc::new(TeacherStats::register(&registry));
        let rejected = registry.counter_vec(
            "rejected",
            "Batches rejected before storing, by reason.",
            &["reason"],
        );
        for r in Rejection::ALL {
            rejected.with(&[r.as_str()]);
        }
        SinkMetrics {
            windows_stored: registry.counter("windows_stored", "Windows of stored batches."),
            escalations_stored: registry.counter(
                "escalations_stored",
                "Escalated rows of stored batches (each judged by the teacher once).",
            ),
            bytes_received: registry.counter(
                "received_bytes",
                "Bytes of batch request bodies read, as sent (gzip included).",
            ),
            rejected,
            gateway_counters: registry.counter_vec(
                "gateway_counters",
                "Counters the gateways reported in stored batches (decode errors, late, dropped, ...).",
                &["gateway", "reason"],
            ),
            sync_lag: registry.gauge_vec(
                "sync_lag_seconds",
                "Sink time minus the creation time of the gateway's last stored batch.",
                &["gateway"],
            ),
            ingest_latency: registry.histogram(
                "ingest_latency_seconds",
                "Time to answer an authenticated POST /v1/batches.",
                LATENCY_BUCKETS,
            ),
            registry,
            ingest,
            teacher,
        }
    }

    /// Records a newly stored batch: its windows, escalations, the gateway's
    /// reported counters and its sync lag (`received_ms - created_ms`).
    pub fn record_stored(&self, stored: &StoredBatch<'_>) {
        self.windows_stored.inc_by(stored.windows);
        self.escalations_stored.inc_by(stored.escalations);
        for (reason, n) in &stored.counters.0 {
            // Only the reasons this build knows: a label value per gateway's whim
            // would let one gateway grow the registry without bound.
            if *n > 0 && wire::Reason::ALL.iter().any(|r| r.as_str() == reason) {
                self.gateway_counters
                    .with(&[stored.gateway, reason])
                    .inc_by(*n);
            }
        }
        let lag_ms = stored.received_ms.saturating_sub(stored.created_ms);
        // Exact below 2^53 ms.
        let lag = lag_ms as f64 / 1000.0;
        self.sync_lag.with(&[stored.gateway]).set(lag);
    }

    /// Records the time spent answering one authenticated batch.
    pub fn record_latency(&self, spent: Duration) {
        self.ingest_latency.observe(spent.as_secs_f64());
    }
}

/// What [`SinkMetrics::record_stored`] needs of a stored batch.
#[derive(Debug)]
pub struct StoredBatch<'a> {
    /// The gateway id.
    pub gateway: &'a str,
    /// Windows in the batch.
    pub windows: u64,
    /// Escalations in the batch.
    pub escalations: u64,
    /// The counters the gateway reported.
    pub counters: &'a wire::Counters,
    /// When the gateway sealed it (its clock, ms since the epoch).
    pub created_ms: i64,
    /// When the sink received it (ms since the epoch).
    pub received_ms: i64,
}
