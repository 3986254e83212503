//! What one sealed batch costs on the uplink and on what: gzip bytes, contents, and the
//! attribution to columns, verdicts, escalations and counters by re-sealing stripped bodies;
//! and the totals over a set of batches. It does not replay anything (see the parent module).

use std::collections::BTreeMap;

use serde::Serialize;
use wire::{Body, BodyEncoding, Counters, Envelope, Gauges, Reason};

use super::SensorUplinkError;

/// Gzip bytes of a batch by what they carry; the four parts add up to the batch's gzip bytes.
///
/// Measured by re-sealing the body without verdicts, then also without escalations, then also
/// without counters and gauges: the differences are the bytes of each. A part can be a byte
/// or two off either way (gzip is not additive), never more.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Attribution {
    /// Window columns, series and metric names, envelope header and framing.
    pub columns: i64,
    /// Verdicts of judgement windows.
    pub verdicts: i64,
    /// Escalated rows (the model's input rows and local scores).
    pub escalations: i64,
    /// Counters (reasons, health counts) and gauges (the agent's state at the cut).
    pub counters_gauges: i64,
}

impl Attribution {
    /// The parts' sum: the gzip bytes of the batches attributed.
    pub fn total(&self) -> i64 {
        self.columns + self.verdicts + self.escalations + self.counters_gauges
    }

    pub(super) fn add(&mut self, other: &Attribution) {
        self.columns += other.columns;
        self.verdicts += other.verdicts;
        self.escalations += other.escalations;
        self.counters_gauges += other.counters_gauges;
    }
}

/// Bytes and contents of a set of batches, and the raw bytes of the readings they cover.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Totals {
    /// Readings published (one JSON message each).
    pub messages: u64,
    /// The JSON payloads' bytes: what forwarding every reading sends.
    pub raw_bytes: u64,
    /// The payloads as newline-separated JSON, gzip-compressed one fleet-minute at a time.
    pub raw_gzip_bytes: u64,
    /// Sealed batch bytes (CBOR envelopes).
    pub sealed_bytes: u64,
    /// Sealed batches gzip-compressed one by one: what the agent sends by default.
    pub gzip_bytes: u64,
    pub batches: u64,
    /// Batches without a window (counters and gauges alone).
    pub counters_only_batches: u64,
    /// Their gzip bytes (part of `gzip_bytes`).
    pub counters_only_gzip_bytes: u64,
    /// `gzip_bytes` had each batch's windows been sorted by device, metric and start (the
    /// agent's cut sorts them so since 2026-12-03; before, they came in the windower's
    /// hash-map order, which changed from run to run): equal to `gzip_bytes` but for a
    /// re-seal's clock and gauge differences.
    pub sorted_gzip_bytes: u64,
    /// `gzip_bytes` had each batch been sealed as wire schema 3 (verdicts as CBOR beside
    /// the columns) at the same rounding.
    pub schema3_gzip_bytes: u64,
    pub windows: u64,
    /// Windows carrying a model verdict.
    pub verdicts: u64,
    /// Escalated rows shipped.
    pub escalations: u64,
    /// `escalation_over_budget` counted in the batches: unsure rows kept local.
    pub escalations_over_budget: u64,
    /// The gzip bytes by what they carry.
    pub attribution: Attribution,
}

impl Totals {
    /// Raw payload bytes per uplink byte, the uplink gzip-compressed as sent.
    pub fn ratio(&self) -> f64 {
        self.raw_bytes as f64 / self.gzip_bytes.max(1) as f64
    }

    /// Raw bytes gzip-compressed per minute, per uplink gzip byte.
    pub fn gzip_ratio(&self) -> f64 {
        self.raw_gzip_bytes as f64 / self.gzip_bytes.max(1) as f64
    }

    /// Uplink gzip bytes per window shipped.
    pub fn bytes_per_window(&self) -> f64 {
        self.gzip_bytes as f64 / self.windows.max(1) as f64
    }

    pub(super) fn add_batch(&mut self, b: &BatchRecord) {
        self.sealed_bytes += b.sealed;
        self.gzip_bytes += b.gzip;
        self.sorted_gzip_bytes += b.sorted_gzip;
        self.schema3_gzip_bytes += b.schema3_gzip;
        self.batches += 1;
        if b.windows == 0 {
            self.counters_only_batches += 1;
            self.counters_only_gzip_bytes += b.gzip;
        }
        self.windows += b.windows;
        self.verdicts += b.verdicts;
        self.escalations += b.escalations;
        self.escalations_over_budget += b.over_budget;
        self.attribution.add(&b.attribution);
    }
}

/// One batch as it left the outbox.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct BatchRecord {
    /// Outbox sequence number.
    pub seq: u64,
    /// Simulated second of the cut that sealed it (`minutes·60 + 3600` for the final cut).
    pub second: i64,
    /// Sealed bytes.
    pub sealed: u64,
    /// Gzip bytes.
    pub gzip: u64,
    /// Gzip bytes with the windows sorted by device, metric and start.
    pub sorted_gzip: u64,
    /// Gzip bytes sealed as wire schema 3 (verdicts as CBOR) at the same rounding.
    pub schema3_gzip: u64,
    pub windows: u64,
    pub verdicts: u64,
    pub escalations: u64,
    /// `escalation_over_budget` in its counters.
    pub over_budget: u64,
    /// Counter keys it carries (reasons and health counts), with their counts.
    pub counters: BTreeMap<String, u64>,
    pub attribution: Attribution,
    /// Counted in [`Report::steady`].
    pub steady: bool,
    /// Re-sealed as opened, the bytes differ from the batch's.
    pub mismatch: bool,
}

/// Opens a sealed batch and measures it (see [`Attribution`]).
pub(super) fn measure(
    seq: u64,
    bytes: &[u8],
    encoding: BodyEncoding,
) -> Result<(BatchRecord, Body), SensorUplinkError> {
    let (env, body) = Envelope::open(bytes).map_err(|e| SensorUplinkError::Open {
        seq,
        message: e.to_string(),
    })?;
    let key = env.key();
    let sizes = |b: &Body| -> (Vec<u8>, i64) {
        let sealed = Envelope::seal_as(&key, env.created_ms, b, encoding).to_bytes();
        let gz = wire::transport::gzip(&sealed).len() as i64;
        (sealed, gz)
    };
    let (resealed, a) = sizes(&body);
    let mut stripped = body.clone();
    for w in &mut stripped.windows {
        w.verdict = None;
    }
    let (_, b) = sizes(&stripped);
    for w in &mut stripped.windows {
        w.escalations.clear();
    }
    let (_, c) = sizes(&stripped);
    stripped.counters = Counters::default();
    stripped.gauges = Gauges::new();
    let (_, d) = sizes(&stripped);
    let mut sorted = body.clone();
    sorted.windows.sort_by(|x, y| {
        (&x.device, &x.metric, x.start_ms).cmp(&(&y.device, &y.metric, y.start_ms))
    });
    let (_, sorted_gzip) = sizes(&sorted);
    let schema3 = match encoding {
        BodyEncoding::Columnar { relative_error } => BodyEncoding::ColumnarV3 { relative_error },
        other => other,
    };
    let schema3_gzip =
        wire::transport::gzip(&Envelope::seal_as(&key, env.created_ms, &body, schema3).to_bytes())
            .len() as u64;
    let gzip = wire::transport::gzip(bytes).len() as u64;
    let out = BatchRecord {
        seq,
        sealed: bytes.len() as u64,
        gzip,
        sorted_gzip: sorted_gzip as u64,
        schema3_gzip,
        windows: body.windows.len() as u64,
        verdicts: body.windows.iter().filter(|w| w.verdict.is_some()).count() as u64,
        escalations: body
            .windows
            .iter()
            .map(|w| w.escalations.len() as u64)
            .sum(),
        over_budget: body.counters.get(Reason::EscalationOverBudget),
        // Anchored on the batch's own gzip bytes, so the parts add up to what was sent.
        attribution: Attribution {
            columns: d + (gzip as i64 - a),
            verdicts: a - b,
            escalations: b - c,
            counters_gauges: c - d,
        },
        counters: body.counters.0.clone(),
        steady: false,
        second: 0,
        mismatch: resealed != bytes,
    };
    Ok((out, body))
}
