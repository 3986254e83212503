//! Computes the windows the pipeline should produce from a ledger's readings, exactly.
//!
//! Series = (device, metric); window start = floor(ts / window) * window. Sums are added in
//! ledger order; quantiles are exact order statistics. It does not compare anything.

use std::collections::BTreeMap;

use crate::ledger::LedgerRecord;

/// Identifies a window: device, metric, start ms.
pub type WindowKey = (String, String, i64);

/// One expected window.
#[derive(Debug, Clone, PartialEq)]
pub struct ExpectedWindow {
    /// Device name.
    pub device: String,
    /// Metric name.
    pub metric: String,
    /// Inclusive start (ms).
    pub start_ms: i64,
    /// Exclusive end (start + window).
    pub end_ms: i64,
    /// Number of readings.
    pub count: u64,
    /// Sum in ledger order.
    pub sum: f64,
    /// Smallest value.
    pub min: f64,
    /// Largest value.
    pub max: f64,
    /// `sum / count`.
    pub mean: f64,
    /// Population standard deviation.
    pub stddev: f64,
    /// Exact median (rank `floor(0.5 (n-1))`).
    pub p50: f64,
    /// Exact 95th percentile (rank `floor(0.95 (n-1))`).
    pub p95: f64,
    /// Exact 99th percentile (rank `floor(0.99 (n-1))`).
    pub p99: f64,
    /// First value in ledger order, and its timestamp.
    pub first: f64,
    /// Timestamp of `first`.
    pub first_ms: i64,
    /// Last value in ledger order.
    pub last: f64,
    /// Timestamp of `last`.
    pub last_ms: i64,
}

/// Start of the window holding `ts_ms` (floor division, correct for negative times).
pub fn window_start(ts_ms: i64, window_ms: i64) -> i64 {
    ts_ms.div_euclid(window_ms) * window_ms
}

/// The value at rank `floor(percent/100 · (n-1))` of `sorted` (integer math, no rounding).
pub fn exact_quantile(sorted: &[f64], percent: usize) -> f64 {
    match sorted.len() {
        0 => f64::NAN,
        n => sorted[percent * (n - 1) / 100],
    }
}

/// Every expected window of the ledger's `reading` records, keyed and sorted.
/// `window_ms` must be positive.
pub fn expected_windows(
    ledger: &[LedgerRecord],
    window_ms: i64,
) -> BTreeMap<WindowKey, ExpectedWindow> {
    let window_ms = window_ms.max(1);
    // Values with their timestamps, in ledger order, per window.
    let mut raw: BTreeMap<WindowKey, Vec<(i64, f64)>> = BTreeMap::new();
    for record in ledger {
        let LedgerRecord::Reading(r) = record else {
            continue;
        };
        let start = window_start(r.ts_ms, window_ms);
        for (metric, value) in &r.values {
            raw.entry((r.device.clone(), metric.clone(), start))
                .or_default()
                .push((r.ts_ms, *value));
        }
    }
    raw.into_iter()
        .map(|(key, points)| {
            let window = summarize(&key, window_ms, &points);
            (key, window)
        })
        .collect()
}

/// The exact window `key` (of `window_ms`) of `points` (timestamp, value) in
/// arrival order; `points` must not be empty.
pub fn summarize(key: &WindowKey, window_ms: i64, points: &[(i64, f64)]) -> ExpectedWindow {
    let count = points.len() as u64;
    let mut sum = 0.0;
    let (mut min, mut max) = (f64::INFINITY, f64::NEG_INFINITY);
    for &(_, v) in points {
        sum += v;
        min = min.min(v);
        max = max.max(v);
    }
    let mean = sum / count as f64;
    let var = points
        .iter()
        .map(|&(_, v)| (v - mean) * (v - mean))
        .sum::<f64>()
        / count as f64;
    let mut sorted: Vec<f64> = points.iter().map(|&(_, v)| v).collect();
    sorted.sort_by(f64::total_cmp);
    let (first_ms, first) = points[0];
    let (last_ms, last) = points[points.len() - 1];
    ExpectedWindow {
        device: key.0.clone(),
        metric: key.1.clone(),
        start_ms: key.2,
        end_ms: key.2 + window_ms,
        count,
        sum,
        min,
        max,
        mean,
        stddev: var.sqrt(),
        p50: exact_quantile(&sorted, 50),
        p95: exact_quantile(&sorted, 95),
        p99: exact_quantile(&sorted, 99),
        first,
        first_ms,
        last,
        last_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floor_division_and_ranks() {
        assert_eq!(window_start(-1, 1000), -1000);
        assert_eq!(window_start(-1000, 1000), -1000);
        assert_eq!(window_start(999, 1000), 0);
        let v: Vec<f64> = (0..21).map(f64::from).collect();
        // 0.95 * 20 = 19 exactly (a float product could floor to 18).
        assert_eq!(exact_quantile(&v, 95), 19.0);
        assert_eq!(exact_quantile(&v, 50), 10.0);
        assert_eq!(exact_quantile(&v[..1], 99), 0.0);
    }
}
