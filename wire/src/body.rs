//! The body of a batch: closed-window summaries plus the counters since the last batch.

use serde::{Deserialize, Serialize};

use crate::Counters;

/// Everything a batch carries besides its header.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Body {
    /// Windows closed since the previous batch, in close order.
    pub windows: Vec<WindowSummary>,
    /// Input counters accumulated since the previous batch, and the agent's
    /// health counts (keys under [`crate::HEALTH_PREFIX`]).
    pub counters: Counters,
    /// The agent's state when the batch was cut (outbox backlog, disk use,
    /// uptime, ...): name → value. Unlike counters these are not summed: the
    /// sink keeps the newest batch's. Absent from the encoding when empty, so
    /// a body without gauges encodes exactly as before.
    #[serde(default, skip_serializing_if = "Gauges::is_empty")]
    pub gauges: Gauges,
}

/// Values of the agent's state at one instant, by name (see [`Body::gauges`]).
pub type Gauges = std::collections::BTreeMap<String, u64>;

/// The summary of one closed tumbling window of one series (device + metric).
///
/// `mean` is `sum / count` with the sum taken in arrival order; `stddev` is the
/// population standard deviation (Welford). Quantiles come from a mergeable
/// DDSketch whose relative error is `sketch_alpha`: each `pNN` lies within
/// `sketch_alpha * |x|` of the exact sample at rank `floor(q * (count - 1))`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowSummary {
    pub device: String,
    pub metric: String,
    /// Inclusive window start, milliseconds since the Unix epoch (event time).
    pub start_ms: i64,
    /// Exclusive window end, milliseconds since the Unix epoch.
    pub end_ms: i64,
    pub count: u64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
    pub mean: f64,
    pub stddev: f64,
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub sketch_alpha: f64,
    pub first: f64,
    pub first_ms: i64,
    pub last: f64,
    pub last_ms: i64,
    /// A model's verdict on this window, present only on a judgement series
    /// (whose readings are a model's per-row scores normalized so that the
    /// device threshold is 1). Absent from the encoding when `None`, so
    /// batches without models are byte-identical to schema version 1's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<Verdict>,
    /// How many original windows were rolled up into this one when the
    /// gateway's outbox ran out of room; 0 for an original window. On a
    /// rolled-up window count, sum, min, max, mean, stddev, first and last are
    /// exact over its span, while p50/p95/p99 are approximate (count-weighted
    /// means of the merged windows' quantiles). Absent from the encoding when
    /// 0, so original windows encode exactly as before.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub rolled_up: u32,
    /// On a log template series (`log.template.<id>`, whose count is the
    /// template's lines in the window): the template's text and a few of the
    /// window's lines, redacted on the gateway. Absent from the encoding when
    /// `None`, so every other window encodes exactly as before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<LogTemplate>,
    /// On a judgement series: the rows whose local verdict was too unsure
    /// (confidence below the model's `escalate_below`), within the device's
    /// hourly budget, sent for the cloud model's second opinion. Absent from
    /// the encoding when empty, so every other window encodes exactly as before.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub escalations: Vec<Escalation>,
}

/// One judged row the gateway's model was unsure of. The local verdict stands
/// on the gateway; the cloud re-judges `features` with its larger model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Escalation {
    /// Event time of the row, milliseconds since the Unix epoch.
    pub ts_ms: i64,
    /// The local verdict (score above the device threshold).
    pub alarm: bool,
    /// The local score, normalized so that the device threshold is 1.
    pub score: f64,
    /// The local verdict's confidence, 0 (on the threshold) to 1.
    pub confidence: f64,
    /// The model's input row, exactly as the gateway's model saw it (already
    /// scaled by the device's calibration), so a cloud model with the same
    /// recipe can judge it without the device's history. With `indices`, only
    /// the row's non-zero entries (see there).
    pub features: Vec<f32>,
    /// A sparse row (the log model's hashed features): `features[i]` is the
    /// value of column `indices[i]` (strictly increasing), every other column
    /// is 0, and the row is as wide as the recipe says. Empty for a dense row.
    /// Absent from the encoding when empty, so sensor escalations encode
    /// exactly as before.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub indices: Vec<u32>,
    /// The judged text (a log line), redacted on the gateway like template
    /// exemplars and capped; never the raw line. Absent when `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exemplar: Option<String>,
}

impl Escalation {
    /// The dense row `width` wide: `features` itself, or the sparse entries
    /// spread out. `None` when the row does not fit `width` (a dense row of
    /// another length, or indices out of range, unordered, or not one per value).
    pub fn dense_row(&self, width: usize) -> Option<Vec<f32>> {
        if self.indices.is_empty() {
            return (self.features.len() == width).then(|| self.features.clone());
        }
        if self.indices.len() != self.features.len()
            || self.indices.windows(2).any(|w| w[0] >= w[1])
            || self.indices.last().is_some_and(|&i| i as usize >= width)
        {
            return None;
        }
        let mut row = vec![0.0; width];
        for (&i, &v) in self.indices.iter().zip(&self.features) {
            row[i as usize] = v;
        }
        Some(row)
    }
}

/// What a template window says about its lines besides their count.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LogTemplate {
    /// The template with `<*>` for each variable; empty if the gateway no longer
    /// held the template when the window closed (evicted).
    pub text: String,
    /// The first lines of the window that fit the template (at most a few, each
    /// capped in length), with personal data redacted as the gateway's config says.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exemplars: Vec<String>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// What a model concluded about one window of one device.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// True if any judged row was above the device threshold.
    pub anomalous: bool,
    /// Rows judged in the window.
    pub judged: u64,
    /// Rows above the threshold.
    pub alarms: u64,
    /// Highest normalized score (1 = threshold).
    pub score: f64,
    /// Confidence of the verdict, 0 (on the threshold) to 1: the gateway
    /// sets [`Verdict::confidence_at`] its score.
    pub confidence: f64,
}

impl Verdict {
    /// Confidence of a verdict at normalized score `r`: `1 − min(r, 1/r)²`,
    /// so 0 on the threshold, 0.56 at 1.5× or 1/1.5×, 0.89 at 3×; 1 for a
    /// score that is not positive and finite. Defined here so the columnar
    /// body can send a verdict's confidence as what differs from it.
    pub fn confidence_at(r: f64) -> f64 {
        if r <= 0.0 || !r.is_finite() {
            return 1.0;
        }
        let m = r.min(1.0 / r);
        1.0 - m * m
    }
}
