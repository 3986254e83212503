//! Rolls closed-window summaries up into coarser windows: what the outbox does
//! with old windows when it reaches its byte cap, instead of dropping them.
//!
//! Pure functions over [`WindowSummary`]; choosing *which* batches to roll up
//! and storing the result is the [`crate::outbox`] policy's job.
//!
//! A merge keeps everything that can be kept exactly: count, sum (added in time
//! order), min, max, mean, population stddev (parallel Welford), first and last.
//! Quantiles cannot be merged without the sketches, which are not shipped, so a
//! rolled-up window's p50/p95/p99 are count-weighted means of its parts',
//! clamped to [min, max]; `rolled_up` says how many original windows it holds.

use wire::{LogTemplate, Verdict, WindowSummary};

/// Merges two windows of the same series, `a` before `b` in time.
pub fn merge(a: &WindowSummary, b: &WindowSummary) -> WindowSummary {
    debug_assert_eq!((&a.device, &a.metric), (&b.device, &b.metric));
    let count = a.count + b.count;
    let sum = a.sum + b.sum;
    let mean = if count == 0 { 0.0 } else { sum / count as f64 };
    let m2 = |w: &WindowSummary| {
        let n = w.count as f64;
        n * w.stddev * w.stddev + n * (w.mean - mean) * (w.mean - mean)
    };
    let part_m2 = if count == 0 { 0.0 } else { m2(a) + m2(b) };
    let (min, max) = (a.min.min(b.min), a.max.max(b.max));
    let quantile = |qa: f64, qb: f64| {
        if count == 0 {
            return 0.0;
        }
        let q = (qa * a.count as f64 + qb * b.count as f64) / count as f64;
        q.clamp(min, max)
    };
    let (first, first_ms) = if b.first_ms < a.first_ms {
        (b.first, b.first_ms)
    } else {
        (a.first, a.first_ms)
    };
    let (last, last_ms) = if a.last_ms > b.last_ms {
        (a.last, a.last_ms)
    } else {
        (b.last, b.last_ms)
    };
    WindowSummary {
        device: a.device.clone(),
        metric: a.metric.clone(),
        start_ms: a.start_ms.min(b.start_ms),
        end_ms: a.end_ms.max(b.end_ms),
        count,
        sum,
        min,
        max,
        mean,
        stddev: if count == 0 {
            0.0
        } else {
            (part_m2 / count as f64).sqrt()
        },
        p50: quantile(a.p50, b.p50),
        p95: quantile(a.p95, b.p95),
        p99: quantile(a.p99, b.p99),
        sketch_alpha: a.sketch_alpha.max(b.sketch_alpha),
        first,
        first_ms,
        last,
        last_ms,
        verdict: merge_verdicts(a.verdict, b.verdict),
        rolled_up: a.rolled_up.max(1) + b.rolled_up.max(1),
        template: merge_templates(&a.template, &b.template),
        escalations: a
            .escalations
            .iter()
            .chain(&b.escalations)
            .take(crate::window::MAX_ESCALATIONS_PER_WINDOW)
            .cloned()
            .collect(),
    }
}

/// Template texts: the later one (the miner only generalizes a template, so it
/// covers both); exemplars: the earliest, no more than either part kept.
fn merge_templates(a: &Option<LogTemplate>, b: &Option<LogTemplate>) -> Option<LogTemplate> {
    match (a, b) {
        (Some(a), Some(b)) => {
            let keep = a.exemplars.len().max(b.exemplars.len());
            let text = if b.text.is_empty() { &a.text } else { &b.text };
            Some(LogTemplate {
                text: text.clone(),
                exemplars: a
                    .exemplars
                    .iter()
                    .chain(&b.exemplars)
                    .take(keep)
                    .cloned()
                    .collect(),
            })
        }
        (one, None) | (None, one) => one.clone(),
    }
}

/// Verdicts add up their rows; the peak score (and its confidence) wins.
fn merge_verdicts(a: Option<Verdict>, b: Option<Verdict>) -> Option<Verdict> {
    match (a, b) {
        (Some(a), Some(b)) => {
            let peak = if b.score > a.score { b } else { a };
            Some(Verdict {
                anomalous: a.anomalous || b.anomalous,
                judged: a.judged + b.judged,
                alarms: a.alarms + b.alarms,
                score: peak.score,
                confidence: peak.confidence,
            })
        }
        (one, None) | (None, one) => one,
    }
}

/// Rolls `windows` up one level: per series, windows that fall in the same
/// aligned bucket of twice the series' widest window (capped at
/// `max_width_ms`) become one window, as long as the result is no wider than
/// `max_width_ms`. Series keep the order of their first window; within a
/// series the input must be in time order (it is: the outbox holds each
/// series' windows in close order). Returns the new windows and how many
/// windows were merged away (input − output).
pub fn roll_up(windows: Vec<WindowSummary>, max_width_ms: i64) -> (Vec<WindowSummary>, u64) {
    let before = windows.len();
    let mut series: Vec<Vec<WindowSummary>> = Vec::new();
    let mut index = std::collections::HashMap::<(String, String), usize>::new();
    for w in windows {
        let key = (w.device.clone(), w.metric.clone());
        let slot = *index.entry(key).or_insert_with(|| {
            series.push(Vec::new());
            series.len() - 1
        });
        series[slot].push(w);
    }
    let mut out = Vec::with_capacity(before);
    for windows in series {
        let bucket = bucket_ms(&windows, max_width_ms);
        let mut current: Option<WindowSummary> = None;
        for w in windows {
            current = match current {
                Some(c) if mergeable(&c, &w, bucket, max_width_ms) => Some(merge(&c, &w)),
                Some(c) => {
                    out.push(c);
                    Some(w)
                }
                None => Some(w),
            };
        }
        out.extend(current);
    }
    let merged_away = (before - out.len()) as u64;
    (out, merged_away)
}

/// Rolls `windows`, which take `bytes` encoded, up level by level until they
/// are expected to take at most `target` bytes or nothing merges any more;
/// returns them and how many windows were merged away. The estimate scales
/// `bytes` by the window count (a rolled-up window encodes to about the size
/// of one of its parts), so the caller seals the result and measures.
pub fn roll_up_to_fit(
    mut windows: Vec<WindowSummary>,
    bytes: u64,
    target: u64,
    max_width_ms: i64,
) -> (Vec<WindowSummary>, u64) {
    let original = windows.len().max(1) as u64;
    let mut merged_away = 0;
    while bytes.saturating_mul(windows.len() as u64) / original > target {
        let (rolled, merged) = roll_up(windows, max_width_ms);
        windows = rolled;
        if merged == 0 {
            break;
        }
        merged_away += merged;
    }
    (windows, merged_away)
}

/// True if no further [`roll_up`] could merge anything in `windows`: no two
/// consecutive windows of a series are [`mergeable`] (what `roll_up` would
/// merge first), checked without merging or copying.
pub fn is_coarsest(windows: &[WindowSummary], max_width_ms: i64) -> bool {
    let mut series: std::collections::HashMap<(&str, &str), Vec<&WindowSummary>> =
        std::collections::HashMap::new();
    for w in windows {
        series.entry((&w.device, &w.metric)).or_default().push(w);
    }
    series.values().all(|ws| {
        let bucket = bucket_ms(ws.iter().copied(), max_width_ms);
        ws.windows(2)
            .all(|pair| !mergeable(pair[0], pair[1], bucket, max_width_ms))
    })
}

/// The roll-up bucket of a series: twice its widest window, at most `max_width_ms`.
fn bucket_ms<'a>(windows: impl IntoIterator<Item = &'a WindowSummary>, max_width_ms: i64) -> i64 {
    let widest = windows.into_iter().map(width).max().unwrap_or(1);
    widest.saturating_mul(2).min(max_width_ms).max(1)
}

/// Whether `w` joins `c` (its predecessor in the series): same bucket, and
/// the merged span no wider than `max_width_ms`.
fn mergeable(c: &WindowSummary, w: &WindowSummary, bucket: i64, max_width_ms: i64) -> bool {
    c.start_ms.div_euclid(bucket) == w.start_ms.div_euclid(bucket)
        && w.end_ms.max(c.end_ms) - w.start_ms.min(c.start_ms) <= max_width_ms
}

fn width(w: &WindowSummary) -> i64 {
    (w.end_ms - w.start_ms).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A window of `values`, one per second from `start_ms`.
    fn window(metric: &str, start_ms: i64, width_ms: i64, values: &[f64]) -> WindowSummary {
        let count = values.len() as u64;
        let sum: f64 = values.iter().sum();
        let mean = sum / count as f64;
        let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / count as f64;
        WindowSummary {
            device: "d".into(),
            metric: metric.into(),
            start_ms,
            end_ms: start_ms + width_ms,
            count,
            sum,
            min: values.iter().copied().fold(f64::INFINITY, f64::min),
            max: values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            mean,
            stddev: var.sqrt(),
            p50: mean,
            p95: mean,
            p99: mean,
            sketch_alpha: 0.01,
            first: values[0],
            first_ms: start_ms,
            last: values[values.len() - 1],
            last_ms: start_ms + (values.len() as i64 - 1) * 1000,
            verdict: None,
            rolled_up: 0,
            template: None,
            escalations: Vec::new(),
        }
    }

    #[test]
    fn merge_is_exact_for_everything_but_quantiles() {
        let a = window("t", 0, 60_000, &[1.0, 2.0, 3.0]);
        let b = window("t", 60_000, 60_000, &[10.0, 20.0]);
        let all = window("t", 0, 120_000, &[1.0, 2.0, 3.0, 10.0, 20.0]);
        let m = merge(&a, &b);
        assert_eq!((m.start_ms, m.end_ms, m.count), (0, 120_000, 5));
        assert_eq!((m.sum, m.min, m.max), (36.0, 1.0, 20.0));
        assert!((m.mean - all.mean).abs() < 1e-12);
        assert!(
            (m.stddev - all.stddev).abs() < 1e-12,
            "{} vs {}",
            m.stddev,
            all.stddev
        );
        assert_eq!((m.first, m.first_ms, m.last), (1.0, 0, 20.0));
        assert_eq!(m.last_ms, 61_000);
        assert_eq!(m.rolled_up, 2);
        assert_eq!(
            merge(&m, &window("t", 120_000, 60_000, &[5.0])).rolled_up,
            3
        );
    }

    #[test]
    fn roll_up_pairs_aligned_windows_per_series_and_counts_what_it_merged() {
        let windows = vec![
            window("a", 0, 60_000, &[1.0]),
            window("b", 60_000, 60_000, &[2.0]),
            window("a", 60_000, 60_000, &[3.0]),
            window("a", 120_000, 60_000, &[4.0]),
            window("b", 120_000, 60_000, &[5.0]),
        ];
        let (out, merged) = roll_up(windows, 86_400_000);
        let spans: Vec<(&str, i64, i64, u64)> = out
            .iter()
            .map(|w| (w.metric.as_str(), w.start_ms, w.end_ms, w.count))
            .collect();
        // Buckets of 120 s: a[0,120) merges, a[120,180) stays; b 60 s and 120 s are in different buckets.
        assert_eq!(
            spans,
            vec![
                ("a", 0, 120_000, 2),
                ("a", 120_000, 180_000, 1),
                ("b", 60_000, 120_000, 1),
                ("b", 120_000, 180_000, 1)
            ]
        );
        assert_eq!(merged, 1);
    }

    #[test]
    fn roll_up_never_exceeds_the_coarsest_width_and_then_stops() {
        let mut windows: Vec<WindowSummary> = (0..16)
            .map(|i| window("t", i * 60_000, 60_000, &[i as f64]))
            .collect();
        let total: u64 = windows.iter().map(|w| w.count).sum();
        let mut rounds = 0;
        while !is_coarsest(&windows, 240_000) {
            windows = roll_up(windows, 240_000).0;
            rounds += 1;
        }
        assert_eq!(rounds, 2);
        assert_eq!(windows.len(), 4);
        assert!(windows.iter().all(|w| w.end_ms - w.start_ms == 240_000));
        assert_eq!(windows.iter().map(|w| w.count).sum::<u64>(), total);
        assert!(windows.iter().all(|w| w.rolled_up == 4));
    }

    #[test]
    fn roll_up_to_fit_stops_at_the_target_or_the_coarsest_width() {
        let windows: Vec<WindowSummary> = (0..64)
            .map(|i| window("t", i * 2_000, 2_000, &[i as f64]))
            .collect();
        let total: u64 = windows.iter().map(|w| w.count).sum();
        // 6 400 bytes for 64 windows; a quarter of that takes two levels.
        let (out, merged) = roll_up_to_fit(windows.clone(), 6_400, 1_600, 3_600_000);
        assert_eq!((out.len(), merged), (16, 48));
        assert!(out.iter().all(|w| w.end_ms - w.start_ms == 8_000));
        assert_eq!(out.iter().map(|w| w.count).sum::<u64>(), total);
        // Already small enough: untouched.
        let (out, merged) = roll_up_to_fit(windows.clone(), 6_400, 6_400, 3_600_000);
        assert_eq!((out.len(), merged), (64, 0));
        // A target no roll-up reaches stops at the coarsest width allowed.
        let (out, merged) = roll_up_to_fit(windows, 6_400, 0, 16_000);
        assert_eq!((out.len(), merged), (8, 56));
        assert!(is_coarsest(&out, 16_000));
    }

    #[test]
    fn verdicts_add_rows_and_keep_the_peak() {
        let mut a = window("anomaly", 0, 60_000, &[0.5]);
        let mut b = window("anomaly", 60_000, 60_000, &[2.0]);
        a.verdict = Some(Verdict {
            anomalous: false,
            judged: 10,
            alarms: 0,
            score: 0.5,
            confidence: 0.75,
        });
        b.verdict = Some(Verdict {
            anomalous: true,
            judged: 5,
            alarms: 2,
            score: 2.0,
            confidence: 0.75,
        });
        let v = merge(&a, &b).verdict.unwrap();
        assert!(v.anomalous);
        assert_eq!((v.judged, v.alarms, v.score), (15, 2, 2.0));
    }
}
