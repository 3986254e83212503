//! The values the store keeps and returns: batch records, per-gateway totals,
//! stored windows, escalations with their teacher verdicts, and the queries.
//!
//! Plain data only: encoding happens in `store/mod.rs` via `wire::encode`.

use serde::{Deserialize, Serialize};
use wire::{BatchKey, Counters, Escalation, Gauges, WindowSummary};

/// Number of windows a series query returns when no limit is given.
pub const DEFAULT_SERIES_LIMIT: usize = 100_000;

/// What `put_batch` did with a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutOutcome {
    /// The batch was new and is now durably stored.
    Stored,
    /// The same key with the same body hash was already stored; nothing was written.
    Duplicate,
    /// The same key was stored with a different body hash; nothing was written.
    Conflict {
        /// Hex SHA-256 of the body stored first.
        stored_hash: String,
    },
}

/// The record kept per stored batch (the idempotency ledger).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchRecord {
    /// Hex SHA-256 of the batch body.
    pub body_sha256: String,
    /// Sink wall-clock time the batch was stored (ms since the Unix epoch).
    pub received_ms: i64,
    /// Gateway wall-clock time the batch was cut (informational).
    pub created_ms: i64,
    /// Number of windows the batch carried.
    pub windows: u64,
}

/// Running totals per gateway, updated atomically with every stored batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayInfo {
    /// Gateway id.
    pub id: String,
    /// Batches stored (duplicates not counted).
    pub batches: u64,
    /// Windows stored, summed over stored batches.
    pub windows: u64,
    /// Sink time of the last stored batch (ms since the Unix epoch).
    pub last_seen_ms: i64,
    /// Key of the last stored batch (arrival order).
    pub last_batch: Option<BatchKey>,
    /// The gateway's input counters and the agent's health counts (keys
    /// under `agent.`), summed over stored batches.
    pub counters: Counters,
    /// The agent's state (outbox backlog, disk use, uptime, ...) as reported
    /// by the newest batch that carried any: the highest (epoch, seq), whatever
    /// the order batches arrived in. Empty until one did.
    #[serde(default)]
    pub gauges: Gauges,
    /// Epoch and seq of the batch `gauges` came from ((0, 0) while empty).
    #[serde(default)]
    pub gauges_batch: (u64, u64),
    /// Sink time that batch was stored (ms since the Unix epoch; 0 while empty).
    #[serde(default)]
    pub gauges_ms: i64,
}

impl GatewayInfo {
    /// Totals of a gateway that has stored nothing yet.
    pub fn empty(id: &str) -> GatewayInfo {
        GatewayInfo {
            id: id.to_owned(),
            batches: 0,
            windows: 0,
            last_seen_ms: 0,
            last_batch: None,
            counters: Counters::default(),
            gauges: Gauges::new(),
            gauges_batch: (0, 0),
            gauges_ms: 0,
        }
    }
}

/// One stored window as queries return it: its batch key plus every summary field.
///
/// In JSON the summary fields are flattened next to `gateway`, `epoch`, `seq`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredWindow {
    pub gateway: String,
    pub epoch: u64,
    pub seq: u64,
    #[serde(flatten)]
    pub window: WindowSummary,
}

/// How a window is kept on disk (no `flatten`, so the CBOR form is plain).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct WindowRecord {
    pub gateway: String,
    pub epoch: u64,
    pub seq: u64,
    pub window: WindowSummary,
}

impl From<WindowRecord> for StoredWindow {
    fn from(r: WindowRecord) -> Self {
        StoredWindow {
            gateway: r.gateway,
            epoch: r.epoch,
            seq: r.seq,
            window: r.window,
        }
    }
}

/// One escalated row as stored and served by `/v1/escalations`: the gateway's
/// local verdict and the model input row, with where it came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredEscalation {
    pub gateway: String,
    pub epoch: u64,
    pub seq: u64,
    pub device: String,
    /// The judgement series (model) whose window carried it.
    pub series: String,
    /// Start of that window (ms since the Unix epoch).
    pub window_start_ms: i64,
    pub escalation: Escalation,
    /// The sink's teacher verdict on `escalation.features`, judged once when
    /// the batch was stored; `None` when it was not judged (see `teacher_skipped`).
    #[serde(default)]
    pub teacher: Option<TeacherVerdict>,
    /// Why there is no teacher verdict (`None` when there is one, and on
    /// records stored before the sink had teachers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub teacher_skipped: Option<TeacherSkip>,
}

/// The teacher's verdict on one escalated row.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TeacherVerdict {
    /// The teacher model's raw score.
    pub score: f64,
    /// The teacher's per-row threshold (its sidecar's `rule.absolute`).
    pub threshold: f64,
    /// `score > threshold`.
    pub alarm: bool,
}

/// Why an escalation was stored without a teacher verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TeacherSkip {
    /// No teacher is configured for the escalation's series.
    NoTeacher,
    /// The row's feature count is not the teacher's input width.
    Width,
    /// A feature is NaN or infinite.
    NotFinite,
    /// The model failed or gave a non-finite score (logged).
    ModelError,
}

impl TeacherSkip {
    /// Every reason, in the order shown.
    pub const ALL: [TeacherSkip; 4] = [
        TeacherSkip::NoTeacher,
        TeacherSkip::Width,
        TeacherSkip::NotFinite,
        TeacherSkip::ModelError,
    ];

    /// Stable name (the JSON value).
    pub fn as_str(self) -> &'static str {
        match self {
            TeacherSkip::NoTeacher => "no_teacher",
            TeacherSkip::Width => "width",
            TeacherSkip::NotFinite => "not_finite",
            TeacherSkip::ModelError => "model_error",
        }
    }
}

/// What the teacher made of one escalation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TeacherJudgement {
    Judged(TeacherVerdict),
    Skipped(TeacherSkip),
}

/// Which escalations a query returns (optional filters, oldest first per device).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EscalationQuery {
    pub gateway: Option<String>,
    pub device: Option<String>,
    /// The judgement series (`anomaly`, `log.alert`, …).
    pub series: Option<String>,
    pub limit: usize,
}

/// Which windows a series query returns. Every filter is optional.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeriesQuery {
    pub gateway: Option<String>,
    pub device: Option<String>,
    pub metric: Option<String>,
    /// Inclusive lower bound on `start_ms`.
    pub from_ms: Option<i64>,
    /// Exclusive upper bound on `start_ms`.
    pub to_ms: Option<i64>,
    /// Maximum number of windows returned.
    pub limit: usize,
}

impl Default for SeriesQuery {
    fn default() -> Self {
        SeriesQuery {
            gateway: None,
            device: None,
            metric: None,
            from_ms: None,
            to_ms: None,
            limit: DEFAULT_SERIES_LIMIT,
        }
    }
}

impl SeriesQuery {
    /// True when `w` passes every filter of this query.
    pub fn matches(&self, w: &StoredWindow) -> bool {
        fn eq(filter: &Option<String>, value: &str) -> bool {
            filter.as_deref().is_none_or(|f| f == value)
        }
        eq(&self.gateway, &w.gateway)
            && eq(&self.device, &w.window.device)
            && eq(&self.metric, &w.window.metric)
            && self.from_ms.is_none_or(|from| w.window.start_ms >= from)
            && self.to_ms.is_none_or(|to| w.window.start_ms < to)
    }
}
