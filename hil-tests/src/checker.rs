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
/// quantile sketch relative accuracy `alpha`).
pub fn check(
    ledger: &[LedgerRecord],
    window_ms: i64,
    stored: &[StoredWindow],
    alpha: f64,
) -> CheckReport {
    let expected = expected_windows(ledger, window_ms);
    let mut report = CheckReport {
        expected: expected.len(),
        stored: stored.len(),
        ..CheckReport::default()
    };
    let mut by_key: BTreeMap<WindowKey, Vec<&StoredWindow>> = BTreeMap::new();
    for w in stored {
        by_key
            .entry((w.device.clone(), w.metric.clone(), w.start_ms))
            .or_default()
            .push(w);
    }

    for (key, exp) in &expected {
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
        compare(&mut report, key, exp, copies[0], alpha);
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

fn compare(
    report: &mut CheckReport,
    key: &WindowKey,
    exp: &ExpectedWindow,
    got: &StoredWindow,
    alpha: f64,
) {
    let mut field = |name: &str, ok: bool, expected: String, stored: String| {
        if !ok {
            let detail = format!("{name}: expected {expected}, stored {stored}");
            report.problem(ProblemKind::FieldMismatch, key, detail);
        }
    };
    let exact = |a: f64, b: f64| a == b || (a.is_nan() && b.is_nan());
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
        <= (1e-9 * exp.stddev.abs().max(got.stddev.abs())).max(1e-12);
    field("stddev", stddev_ok, s(exp.stddev), s(got.stddev));
    for (name, e, g) in [
        ("p50", exp.p50, got.p50),
        ("p95", exp.p95, got.p95),
        ("p99", exp.p99, got.p99),
    ] {
        let ok = (g - e).abs() <= alpha * e.abs() + 1e-12;
        field(name, ok, format!("{e:?} ±{alpha}"), s(g));
    }
    for (name, e, g) in [("sum", exp.sum, got.sum), ("mean", exp.mean, got.mean)] {
        if !exact(e, g) {
            let detail = format!("{name}: expected {e:?}, stored {g:?} (diff {:e})", g - e);
            report.problem(ProblemKind::MeanMismatch, key, detail);
        }
    }
}
