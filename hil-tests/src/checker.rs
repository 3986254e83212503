//! Compares the windows a sink stored against the windows a ledger implies, and counts lost,
//! duplicated, unexpected and wrong windows.
//!
//! Pure: no I/O (fetching is in `sink_client`, the expected values in `windows`).

use std::collections::BTreeMap;
use std::fmt;

use crate::ledger::LedgerRecord;
use crate::windows::{expected_windows, ExpectedWindow, WindowKey};

pub use crate::sink_client::StoredWindow;

/// How many example problems a report keeps.
pub const MAX_EXAMPLES: usize = 20;

/// What kind of problem a window has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProblemKind {
    /// Expected but not stored.
    Missing,
    /// Stored more than once.
    Duplicate,
    /// Stored but not expected.
    Unexpected,
    /// An exact or toleranced field (count, min, max, first, last, bounds, stddev, pNN) differs.
    FieldMismatch,
    /// `sum` or `mean` is not bit-identical to the ledger-order computation.
    MeanMismatch,
}

/// One example problem.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    /// The kind.
    pub kind: ProblemKind,
    /// The window: device, metric, start ms.
    pub key: WindowKey,
    /// Human-readable detail (field, expected, stored).
    pub detail: String,
}

/// The outcome of [`check`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CheckReport {
    /// Windows the ledger implies.
    pub expected: usize,
    /// Stored windows given.
    pub stored: usize,
    /// Expected windows found (at least once).
    pub matched: usize,
    /// Expected windows not stored.
    pub missing: usize,
    /// Extra copies of stored windows (a window stored 3 times counts 2).
    pub duplicate: usize,
    /// Stored windows no ledger reading explains.
    pub unexpected: usize,
    /// Field mismatches (count, min, max, first, last, bounds, stddev, quantiles).
    pub field_mismatches: usize,
    /// Sum/mean values that are not exactly equal.
    pub mean_mismatches: usize,
    /// Stored windows the agent rolled up from several originals.
    pub rolled_up: usize,
    /// Expected windows accounted for inside a rolled-up window (aggregates conserved or not).
    pub covered_by_rollups: usize,
    /// Up to [`MAX_EXAMPLES`] examples.
    pub examples: Vec<Problem>,
}

impl CheckReport {
    /// True when nothing is missing, duplicated, unexpected or different (mean included).
    pub fn is_ok(&self) -> bool {
        self.missing == 0
            && self.duplicate == 0
            && self.unexpected == 0
            && self.field_mismatches == 0
            && self.mean_mismatches == 0
    }

    /// Like [`CheckReport::is_ok`] but tolerating inexact sums/means.
    pub fn is_ok_ignoring_mean(&self) -> bool {
        self.missing == 0
            && self.duplicate == 0
            && self.unexpected == 0
            && self.field_mismatches == 0
    }

    fn problem(&mut self, kind: ProblemKind, key: &WindowKey, detail: String) {
        match kind {
            ProblemKind::Missing => self.missing += 1,
            ProblemKind::Duplicate => self.duplicate += 1,
            ProblemKind::Unexpected => self.unexpected += 1,
            ProblemKind::FieldMismatch => self.field_mismatches += 1,
            ProblemKind::MeanMismatch => self.mean_mismatches += 1,
        }
        if self.examples.len() < MAX_EXAMPLES {
            self.examples.push(Problem {
                kind,
                key: key.clone(),
                detail,
            });
        }
    }

    /// Number of example problems of `kind` kept.
    pub fn examples_of(&self, kind: ProblemKind) -> usize {
        self.examples.iter().filter(|p| p.kind == kind).count()
    }
}

impl fmt::Display for CheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "check {}: expected {} windows, stored {}, matched {}",
            if self.is_ok() { "OK" } else { "FAILED" },
            self.expected,
            self.stored,
            self.matched
        )?;
        writeln!(
            f,
            "  rolled-up windows stored {}, covering {} expected",
            self.rolled_up, self.covered_by_rollups
        )?;
        writeln!(
            f,
            "  missing {}, duplicate {}, unexpected {}, field mismatches {}, mean mismatches {}",
            self.missing,
            self.duplicate,
            self.unexpected,
            self.field_mismatches,
            self.mean_mismatches
        )?;
        for p in &self.examples {
            writeln!(
                f,
                "  {:?} {}/{} @{}: {}",
                p.kind, p.key.0, p.key.1, p.key.2, p.detail
            )?;
        }
        Ok(())
    }
}

/// Checks `stored` against the windows of `ledger`'s readings (window length `window_ms`,
/// quantile sketch relative accuracy `alpha`), values exact (`uplink.relative_error = 0`).
pub fn check(
    ledger: &[LedgerRecord],
    window_ms: i64,
    stored: &[StoredWindow],
    alpha: f64,
) -> CheckReport {
    check_rounded(ledger, window_ms, stored, alpha, 0.0)
}

/// [`check`] for an agent whose uplink rounds window values to within
/// `relative_error` (its `uplink.relative_error`; 0 is exact): counts and
/// times must still match exactly, values within that error (quantiles within
/// the sketch's and the rounding's). Roll-ups are checked exactly either way.
pub fn check_rounded(
    ledger: &[LedgerRecord],
    window_ms: i64,
    stored: &[StoredWindow],
    alpha: f64,
    relative_error: f64,
) -> CheckReport {
    let expected = expected_windows(ledger, window_ms);
    let mut report = CheckReport {
        expected: expected.len(),
        stored: stored.len(),
        ..CheckReport::default()
    };
    let (rollups, originals): (Vec<&StoredWindow>, Vec<&StoredWindow>) =
        stored.iter().partition(|w| w.rolled_up > 0);
    report.rolled_up = rollups.len();
    let covered = check_rollups(&mut report, &expected, &rollups);
    let mut by_key: BTreeMap<WindowKey, Vec<&StoredWindow>> = BTreeMap::new();
    for w in originals {
        by_key
            .entry((w.device.clone(), w.metric.clone(), w.start_ms))
            .or_default()
            .push(w);
    }

    for (key, exp) in &expected {
        if covered.contains(key) {
            if by_key.contains_key(key) {
                let detail = "stored on its own and inside a roll-up".to_owned();
                report.problem(ProblemKind::Duplicate, key, detail);
            }
            continue;
        }
        let Some(copies) = by_key.get(key) else {
            let detail = format!("count {} not stored", exp.count);
            report.problem(ProblemKind::Missing, key, detail);
            continue;
        };
        report.matched += 1;
        for extra in &copies[1..] {
            let detail = format!(
                "also stored by gateway {:?} epoch {} seq {}",
                extra.gateway, extra.epoch, extra.seq
            );
            report.problem(ProblemKind::Duplicate, key, detail);
        }
        compare(&mut report, key, exp, copies[0], alpha, relative_error);
    }
    for (key, copies) in &by_key {
        if !expected.contains_key(key) {
            for w in copies {
                let detail = format!("count {} from batch {}/{}", w.count, w.epoch, w.seq);
                report.problem(ProblemKind::Unexpected, key, detail);
            }
        }
    }
    report
}

/// Matches each rolled-up window with the expected windows of its series that
/// start inside its span, and checks what a roll-up must conserve: the number
/// of original windows, count, sum (to rounding), min, max, first, last and
/// stddev (to rounding). Returns the expected windows it covered; one covered
/// twice is a duplicate, a roll-up covering none is unexpected.
fn check_rollups(
    report: &mut CheckReport,
    expected: &BTreeMap<WindowKey, ExpectedWindow>,
    rollups: &[&StoredWindow],
) -> std::collections::BTreeSet<WindowKey> {
    let mut covered = std::collections::BTreeSet::new();
    for r in rollups {
        let key = (r.device.clone(), r.metric.clone(), r.start_ms);
        let lo = (r.device.clone(), r.metric.clone(), r.start_ms);
        let hi = (r.device.clone(), r.metric.clone(), r.end_ms);
        let parts: Vec<(&WindowKey, &ExpectedWindow)> = expected.range(lo..hi).collect();
        if parts.is_empty() {
            let detail = format!(
                "roll-up of {} from batch {}/{}",
                r.rolled_up, r.epoch, r.seq
            );
            report.problem(ProblemKind::Unexpected, &key, detail);
            continue;
        }
        for (k, _) in &parts {
            if !covered.insert((*k).clone()) {
                let detail = "inside two roll-ups".to_owned();
                report.problem(ProblemKind::Duplicate, k, detail);
            }
        }
        report.covered_by_rollups += parts.len();
        let windows: Vec<&ExpectedWindow> = parts.iter().map(|(_, w)| *w).collect();
        let count: u64 = windows.iter().map(|w| w.count).sum();
        let sum: f64 = windows.iter().map(|w| w.sum).sum();
        let min = windows.iter().map(|w| w.min).fold(f64::INFINITY, f64::min);
        let max = windows
            .iter()
            .map(|w| w.max)
            .fold(f64::NEG_INFINITY, f64::max);
        let mean = sum / count as f64;
        let m2: f64 = windows
            .iter()
            .map(|w| {
                let n = w.count as f64;
                n * w.stddev * w.stddev + n * (w.mean - mean).powi(2)
            })
            .sum();
        let stddev = (m2 / count as f64).sqrt();
        let first = windows
            .iter()
            .min_by_key(|w| w.first_ms)
            .map_or(f64::NAN, |w| w.first);
        let last = windows
            .iter()
            .max_by_key(|w| w.last_ms)
            .map_or(f64::NAN, |w| w.last);
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0);
        let checks = [
            (
                "windows",
                windows.len() == r.rolled_up as usize,
                windows.len() as f64,
                f64::from(r.rolled_up),
            ),
            ("count", count == r.count, count as f64, r.count as f64),
            ("sum", close(sum, r.sum), sum, r.sum),
            ("min", min == r.min, min, r.min),
            ("max", max == r.max, max, r.max),
            ("first", first == r.first, first, r.first),
            ("last", last == r.last, last, r.last),
            ("stddev", close(stddev, r.stddev), stddev, r.stddev),
        ];
        for (name, ok, e, g) in checks {
            if !ok {
                let detail = format!("roll-up {name}: expected {e:?}, stored {g:?}");
                report.problem(ProblemKind::FieldMismatch, &key, detail);
            }
        }
    }
    covered
}

fn compare(
    report: &mut CheckReport,
    key: &WindowKey,
    exp: &ExpectedWindow,
    got: &StoredWindow,
    alpha: f64,
    relative_error: f64,
) {
    let mut field = |name: &str, ok: bool, expected: String, stored: String| {
        if !ok {
            let detail = format!("{name}: expected {expected}, stored {stored}");
            report.problem(ProblemKind::FieldMismatch, key, detail);
        }
    };
    // Exact, or within the uplink's rounding of the expected value.
    let exact = |e: f64, g: f64| {
        e == g || (e.is_nan() && g.is_nan()) || (g - e).abs() <= relative_error * e.abs()
    };
    let s = |v: f64| format!("{v:?}");
    field(
        "count",
        exp.count == got.count,
        exp.count.to_string(),
        got.count.to_string(),
    );
    field(
        "end_ms",
        exp.end_ms == got.end_ms,
        exp.end_ms.to_string(),
        got.end_ms.to_string(),
    );
    for (name, e, g) in [
        ("min", exp.min, got.min),
        ("max", exp.max, got.max),
        ("first", exp.first, got.first),
        ("last", exp.last, got.last),
    ] {
        field(name, exact(e, g), s(e), s(g));
    }
    for (name, e, g) in [
        ("first_ms", exp.first_ms, got.first_ms),
        ("last_ms", exp.last_ms, got.last_ms),
    ] {
        if let Some(g) = g {
            field(name, e == g, e.to_string(), g.to_string());
        }
    }
    let stddev_ok = (exp.stddev - got.stddev).abs()
        <= (relative_error.max(1e-9) * exp.stddev.abs().max(got.stddev.abs())).max(1e-12);
    field("stddev", stddev_ok, s(exp.stddev), s(got.stddev));
    for (name, e, g) in [
        ("p50", exp.p50, got.p50),
        ("p95", exp.p95, got.p95),
        ("p99", exp.p99, got.p99),
    ] {
        // Within the sketch's error, then rounded: |g − e| ≤ (α + a(1 + α))·|e|.
        let within = alpha + relative_error * (1.0 + alpha);
        let ok = (g - e).abs() <= within * e.abs() + 1e-12;
        field(name, ok, format!("{e:?} ±{within}"), s(g));
    }
    for (name, e, g) in [("sum", exp.sum, got.sum), ("mean", exp.mean, got.mean)] {
        if !exact(e, g) {
            let detail = format!("{name}: expected {e:?}, stored {g:?} (diff {:e})", g - e);
            report.problem(ProblemKind::MeanMismatch, key, detail);
        }
    }
}
