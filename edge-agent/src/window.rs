//! One open tumbling window of one series: running statistics until it closes.
//!
//! Count, sum (in arrival order, so `mean = sum / count` is reproducible),
//! exact min/max, Welford variance, first/last by arrival, and a [`Sketch`] for
//! quantiles. It also remembers the oldest journal message that fed it, so
//! the journal keeps every message from it on until it ships. It knows
//! nothing about time policy; the [`crate::windower::Windower`] decides when it closes.

use std::time::Instant;

use serde::{Deserialize, Serialize};
use wire::{Escalation, LogTemplate, Verdict, WindowSummary};

use crate::sketch::Sketch;

/// Escalations one window carries at most (more are counted as
/// `escalation_over_budget`): the bound that keeps every batch under the
/// sink's envelope cap (see [`crate::outbox::worst_window_bytes`]).
pub const MAX_ESCALATIONS_PER_WINDOW: usize = 2;
/// Features an escalated dense row may carry at most; with a sparse row's
/// indices and an exemplar, the escalation must fit the bytes of that many
/// features ([`escalation_fits`]); one that does not is not escalated.
pub const MAX_ESCALATION_FEATURES: usize = 160;
/// Longest exemplar an escalation carries, in bytes (after redaction).
pub const MAX_ESCALATION_EXEMPLAR_BYTES: usize = 128;

/// Bytes of a CBOR unsigned integer `n` (head included).
fn cbor_uint_bytes(n: u64) -> usize {
    match n {
        0..=23 => 1,
        24..=0xff => 2,
        0x100..=0xffff => 3,
        0x1_0000..=0xffff_ffff => 5,
        _ => 9,
    }
}

/// Whether `e` encodes within the room [`crate::outbox::worst_window_bytes`]
/// gives one escalation (48 bytes of scalars, keys and headers plus 5 bytes
/// for each of [`MAX_ESCALATION_FEATURES`]): its features at 5 bytes each,
/// its sparse indices and its exemplar (key and head included) must fit
/// the feature bytes.
pub fn escalation_fits(e: &Escalation) -> bool {
    let mut bytes = 5 * e.features.len();
    if !e.indices.is_empty() {
        bytes += 1 + cbor_uint_bytes(e.indices.len() as u64);
        bytes += e
            .indices
            .iter()
            .map(|&i| cbor_uint_bytes(u64::from(i)))
            .sum::<usize>();
    }
    if let Some(x) = &e.exemplar {
        bytes += 1 + cbor_uint_bytes(x.len() as u64) + x.len();
    }
    bytes <= 5 * MAX_ESCALATION_FEATURES
}

/// Running statistics of one window (serializable for window checkpoints:
/// everything but `last_update`, which a restored window takes afresh).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Window {
    pub start_ms: i64,
    pub end_ms: i64,
    count: u64,
    sum: f64,
    min: f64,
    max: f64,
    welford_mean: f64,
    m2: f64,
    first: (f64, i64),
    last: (f64, i64),
    sketch: Sketch,
    /// Readings above 1.0: on a judgement series, the rows above threshold.
    above_one: u64,
    /// The first lines of a template series' window, already redacted.
    exemplars: Vec<String>,
    /// On a judgement series: the unsure rows sent for a second opinion.
    escalations: Vec<Escalation>,
    /// The oldest journal id whose readings are in this window (`u64::MAX`
    /// while empty): the journal keeps everything from it on.
    pub(crate) first_message: u64,
    /// Wall-clock time of the last reading (drives idle closing).
    #[serde(skip, default = "Instant::now")]
    pub(crate) last_update: Instant,
}

impl Window {
    /// An empty window `[start_ms, end_ms)`.
    pub fn new(start_ms: i64, end_ms: i64, alpha: f64, now: Instant) -> Window {
        Window {
            start_ms,
            end_ms,
            count: 0,
            sum: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            welford_mean: 0.0,
            m2: 0.0,
            first: (0.0, 0),
            last: (0.0, 0),
            sketch: Sketch::new(alpha),
            above_one: 0,
            exemplars: Vec::new(),
            escalations: Vec::new(),
            first_message: u64::MAX,
            last_update: now,
        }
    }

    /// Folds one finite reading in.
    pub fn add(&mut self, value: f64, ts_ms: i64, message: u64, now: Instant) {
        if self.count == 0 {
            self.first = (value, ts_ms);
        }
        self.count += 1;
        self.sum += value;
        self.min = self.min.min(value);
        self.max = self.max.max(value);
        let delta = value - self.welford_mean;
        self.welford_mean += delta / self.count as f64;
        self.m2 += delta * (value - self.welford_mean);
        self.last = (value, ts_ms);
        self.sketch.add(value);
        self.above_one += u64::from(value > 1.0);
        self.first_message = self.first_message.min(message);
        self.last_update = now;
    }

    /// Exemplars kept so far.
    pub fn exemplar_count(&self) -> usize {
        self.exemplars.len()
    }

    /// Keeps `line` as an exemplar if the window holds fewer than `max`.
    pub fn offer_exemplar(&mut self, line: &str, max: usize) -> bool {
        let wanted = self.exemplars.len() < max;
        if wanted {
            self.exemplars.push(line.to_owned());
        }
        wanted
    }

    /// Whether the window holds fewer than [`MAX_ESCALATIONS_PER_WINDOW`].
    pub fn has_escalation_room(&self) -> bool {
        self.escalations.len() < MAX_ESCALATIONS_PER_WINDOW
    }

    /// Keeps `e` if the window holds fewer than [`MAX_ESCALATIONS_PER_WINDOW`].
    pub fn offer_escalation(&mut self, e: &Escalation) -> bool {
        let wanted = self.escalations.len() < MAX_ESCALATIONS_PER_WINDOW;
        if wanted {
            self.escalations.push(e.clone());
        }
        wanted
    }

    /// Number of readings folded in.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The wire summary of this window for `device`/`metric`. On a judgement
    /// series (`judged`), whose readings are normalized model scores, it
    /// carries the window's [`Verdict`].
    pub fn summarize(&self, device: &str, metric: &str, judged: bool) -> WindowSummary {
        let quantile = |q| {
            self.sketch
                .quantile(q)
                .unwrap_or(f64::NAN)
                .clamp(self.min, self.max)
        };
        WindowSummary {
            device: device.to_owned(),
            metric: metric.to_owned(),
            start_ms: self.start_ms,
            end_ms: self.end_ms,
            count: self.count,
            sum: self.sum,
            min: self.min,
            max: self.max,
            mean: self.sum / self.count as f64,
            stddev: (self.m2 / self.count as f64).sqrt(),
            p50: quantile(0.5),
            p95: quantile(0.95),
            p99: quantile(0.99),
            sketch_alpha: self.sketch.alpha(),
            first: self.first.0,
            first_ms: self.first.1,
            last: self.last.0,
            last_ms: self.last.1,
            verdict: judged.then(|| Verdict {
                anomalous: self.above_one > 0,
                judged: self.count,
                alarms: self.above_one,
                score: self.max,
                confidence: wire::Verdict::confidence_at(self.max),
            }),
            rolled_up: 0,
            template: (!self.exemplars.is_empty()).then(|| LogTemplate {
                text: String::new(),
                exemplars: self.exemplars.clone(),
            }),
            escalations: self.escalations.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_matches_hand_computed_statistics() {
        let now = Instant::now();
        let mut w = Window::new(0, 60_000, 0.01, now);
        for (i, v) in [2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0].iter().enumerate() {
            w.add(*v, i as i64 * 1000, i as u64, now);
        }
        let s = w.summarize("d", "m", false);
        assert_eq!(s.verdict, None);
        assert_eq!((s.count, s.min, s.max, s.mean), (8, 2.0, 9.0, 5.0));
        assert!((s.stddev - 2.0).abs() < 1e-12);
        assert_eq!(
            (s.first, s.first_ms, s.last, s.last_ms),
            (2.0, 0, 9.0, 7000)
        );
        assert!((s.p50 - 4.0).abs() <= 0.04, "p50 {}", s.p50);
        assert!((s.p99 - 7.0).abs() <= 0.07, "p99 {}", s.p99);
        assert_eq!(w.first_message, 0);
    }

    #[test]
    fn judgement_series_carry_a_verdict_counting_rows_above_one() {
        let now = Instant::now();
        let mut w = Window::new(0, 60_000, 0.01, now);
        for (i, v) in [0.5, 1.0, 1.5, 3.0, 0.2].iter().enumerate() {
            w.add(*v, i as i64, i as u64, now);
        }
        let v = w.summarize("d", "anomaly", true).verdict.unwrap();
        assert!(v.anomalous);
        assert_eq!((v.judged, v.alarms, v.score), (5, 2, 3.0));
        assert!((v.confidence - (1.0 - 1.0 / 9.0)).abs() < 1e-12);
        let mut calm = Window::new(0, 60_000, 0.01, now);
        calm.add(0.5, 0, 0, now);
        let v = calm.summarize("d", "anomaly", true).verdict.unwrap();
        assert!(!v.anomalous);
        assert_eq!(v.alarms, 0);
    }

    /// The room `worst_window_bytes` gives one escalation (its fixed part is 48),
    /// measured in the packed CBOR form escalations travel in (schema 3 `extras`).
    fn room() -> usize {
        48 + 5 * MAX_ESCALATION_FEATURES
    }

    fn escalation(features: usize, indices: Vec<u32>, exemplar: Option<String>) -> Escalation {
        Escalation {
            ts_ms: i64::MIN,
            alarm: true,
            score: 0.11,
            confidence: 0.13,
            features: vec![0.1; features],
            indices,
            exemplar,
        }
    }

    #[test]
    fn every_escalation_that_fits_encodes_within_its_room() {
        let dense = escalation(MAX_ESCALATION_FEATURES, Vec::new(), None);
        assert!(escalation_fits(&dense));
        assert!(wire::encode_packed(&dense).len() <= room());
        assert!(!escalation_fits(&escalation(
            MAX_ESCALATION_FEATURES + 1,
            Vec::new(),
            None
        )));
        // Sparse rows with the widest indices, with and without an exemplar
        // (multi-byte characters at the cap): grow until one no longer fits.
        for exemplar in [None, Some("é".repeat(MAX_ESCALATION_EXEMPLAR_BYTES / 2))] {
            for base in [0u32, 300, 70_000, u32::MAX - 1000] {
                let mut last_fit = None;
                for n in 1..=MAX_ESCALATION_FEATURES {
                    let e = escalation(
                        n,
                        (0..n as u32).map(|i| base + i).collect(),
                        exemplar.clone(),
                    );
                    if !escalation_fits(&e) {
                        break;
                    }
                    last_fit = Some(e);
                }
                let e = last_fit.expect("a one-entry row fits");
                let bytes = wire::encode_packed(&e).len();
                assert!(bytes <= room(), "base {base}: {bytes} > {}", room());
            }
        }
    }
}
