//! Proves the checker detects each failure kind (missing, duplicate, unexpected, field and
//! mean mismatches, quantiles beyond alpha) on hand-made ledgers, negative times included.
//!
//! Pure tests: no broker, agent or sink.

use hil_tests::checker::{check, ProblemKind, StoredWindow};
use hil_tests::ledger::{LedgerRecord, ReadingRecord};
use hil_tests::windows::{expected_windows, window_start};

const WINDOW: i64 = 1000;
const ALPHA: f64 = 0.01;

/// A change applied to a stored window.
type Mutation = fn(&mut StoredWindow);

fn reading(device: &str, seq: u64, ts_ms: i64, values: &[(&str, f64)]) -> LedgerRecord {
    LedgerRecord::Reading(ReadingRecord {
        device: device.into(),
        topic: format!("plant/{device}/sensors"),
        seq,
        ts_ms,
        values: values.iter().map(|(m, v)| (m.to_string(), *v)).collect(),
    })
}

/// What a perfect sink would store for `ledger`.
fn perfect(ledger: &[LedgerRecord]) -> Vec<StoredWindow> {
    perfect_at(ledger, WINDOW)
}

/// A perfect store with windows `width` wide.
fn perfect_at(ledger: &[LedgerRecord], width: i64) -> Vec<StoredWindow> {
    expected_windows(ledger, width)
        .into_values()
        .map(|e| StoredWindow {
            gateway: "gw".into(),
            epoch: 1,
            seq: 1,
            device: e.device,
            metric: e.metric,
            start_ms: e.start_ms,
            end_ms: e.end_ms,
            count: e.count,
            sum: e.sum,
            min: e.min,
            max: e.max,
            mean: e.mean,
            stddev: e.stddev,
            p50: e.p50,
            p95: e.p95,
            p99: e.p99,
            sketch_alpha: ALPHA,
            first: e.first,
            first_ms: Some(e.first_ms),
            last: e.last,
            last_ms: Some(e.last_ms),
            verdict: None,
            rolled_up: 0,
            template: None,
            escalations: Vec::new(),
        })
        .collect()
}

/// Two devices, two metrics, windows on both sides of zero.
fn ledger() -> Vec<LedgerRecord> {
    let mut out = Vec::new();
    for (seq, ts) in [-1500i64, -1001, -1000, -1, 0, 1, 999, 1000, 2500]
        .iter()
        .enumerate()
    {
        let v = (*ts as f64) / 3.0 + 0.1;
        out.push(reading(
            "dev-00",
            seq as u64 + 1,
            *ts,
            &[("Current", v), ("Voltage", 230.0 - v)],
        ));
    }
    for (seq, ts) in (5000..5100).step_by(7).enumerate() {
        out.push(reading(
            "dev-01",
            seq as u64 + 1,
            ts,
            &[("Current", (ts % 13) as f64 * 0.37)],
        ));
    }
    // Non-reading records are ignored by the checker.
    out.push(LedgerRecord::Log(hil_tests::ledger::LogRecord {
        device: "dev-00".into(),
        topic: "plant/dev-00/logs".into(),
        seq: 1,
        line: "x".into(),
    }));
    out
}

fn find<'a>(
    stored: &'a mut [StoredWindow],
    device: &str,
    metric: &str,
    start: i64,
) -> &'a mut StoredWindow {
    stored
        .iter_mut()
        .find(|w| w.device == device && w.metric == metric && w.start_ms == start)
        .expect("window present")
}

#[test]
fn perfect_store_is_ok() {
    let ledger = ledger();
    let stored = perfect(&ledger);
    let report = check(&ledger, WINDOW, &stored, ALPHA);
    assert!(report.is_ok(), "{report}");
    assert_eq!(report.expected, stored.len());
    assert_eq!(report.matched, report.expected);
    assert!(report.to_string().contains("check OK"));
}

#[test]
fn negative_timestamps_use_floor_windows() {
    let expected = expected_windows(&ledger(), WINDOW);
    let starts: Vec<i64> = expected
        .keys()
        .filter(|(d, m, _)| d == "dev-00" && m == "Current")
        .map(|k| k.2)
        .collect();
    assert_eq!(starts, [-2000, -1000, 0, 1000, 2000]);
    let w = &expected[&("dev-00".to_string(), "Current".to_string(), -1000)];
    // -1001 belongs to [-2000, -1000); -1000 and -1 to [-1000, 0).
    assert_eq!(w.count, 2);
    assert_eq!(w.first_ms, -1000);
    assert_eq!(w.last_ms, -1);
    assert_eq!(w.end_ms, 0);
    assert_eq!(window_start(-1, WINDOW), -1000);

    // A sink that truncates toward zero puts -1 into window 0: detected.
    let ledger = vec![reading("d", 1, -1, &[("m", 1.0)])];
    let mut stored = perfect(&ledger);
    stored[0].start_ms = 0;
    stored[0].end_ms = WINDOW;
    let report = check(&ledger, WINDOW, &stored, ALPHA);
    assert_eq!((report.missing, report.unexpected), (1, 1), "{report}");
}

#[test]
fn missing_duplicate_and_unexpected_windows() {
    let ledger = ledger();
    let mut stored = perfect(&ledger);
    let n = stored.len();
    let dup = stored[3].clone();
    stored.push(dup);
    stored.remove(0);
    let mut stray = stored[0].clone();
    stray.device = "dev-99".into();
    stored.push(stray);
    let report = check(&ledger, WINDOW, &stored, ALPHA);
    assert!(!report.is_ok());
    assert_eq!(report.missing, 1, "{report}");
    assert_eq!(report.duplicate, 1, "{report}");
    assert_eq!(report.unexpected, 1, "{report}");
    assert_eq!(report.matched, n - 1);
    assert_eq!(report.field_mismatches + report.mean_mismatches, 0);
    for kind in [
        ProblemKind::Missing,
        ProblemKind::Duplicate,
        ProblemKind::Unexpected,
    ] {
        assert_eq!(report.examples_of(kind), 1);
    }
    let text = report.to_string();
    assert!(
        text.contains("FAILED") && text.contains("missing 1"),
        "{text}"
    );
}

#[test]
fn quantile_beyond_alpha_is_a_field_mismatch() {
    let ledger = ledger();
    let mut stored = perfect(&ledger);
    let exact = find(&mut stored, "dev-01", "Current", 5000).p95;
    assert!(exact > 0.0);
    // Within alpha: fine.
    find(&mut stored, "dev-01", "Current", 5000).p95 = exact * (1.0 + ALPHA * 0.9);
    assert!(check(&ledger, WINDOW, &stored, ALPHA).is_ok());
    // Beyond alpha: detected, and only that.
    find(&mut stored, "dev-01", "Current", 5000).p95 = exact * (1.0 + ALPHA * 1.5);
    let report = check(&ledger, WINDOW, &stored, ALPHA);
    assert_eq!(report.field_mismatches, 1, "{report}");
    assert!(report.examples[0].detail.starts_with("p95"), "{report}");
}

#[test]
fn exact_fields_and_stddev_tolerance() {
    let ledger = ledger();
    let base = perfect(&ledger);
    let mutations: [(&str, Mutation); 7] = [
        ("count", |w| w.count += 1),
        ("min", |w| w.min = f64::from_bits(w.min.to_bits() + 1)),
        ("max", |w| w.max -= 1e-9),
        ("first", |w| w.first = w.last + 1.0),
        ("last", |w| w.last = w.first - 1.0),
        ("end_ms", |w| w.end_ms += 1),
        ("stddev", |w| w.stddev = w.stddev * (1.0 + 1e-6) + 1e-6),
    ];
    for (field, mutate) in mutations {
        let mut stored = base.clone();
        mutate(find(&mut stored, "dev-00", "Voltage", -1000));
        let report = check(&ledger, WINDOW, &stored, ALPHA);
        assert_eq!(report.field_mismatches, 1, "{field}: {report}");
        assert!(report.examples[0].detail.starts_with(field), "{report}");
    }
    // A stddev within 1e-9 relative passes.
    let mut stored = base.clone();
    let w = find(&mut stored, "dev-01", "Current", 5000);
    w.stddev *= 1.0 + 1e-12;
    assert!(check(&ledger, WINDOW, &stored, ALPHA).is_ok());
}

#[test]
fn inexact_mean_is_reported_separately() {
    let ledger = ledger();
    let mut stored = perfect(&ledger);
    let w = find(&mut stored, "dev-01", "Current", 5000);
    w.mean = f64::from_bits(w.mean.to_bits() + 1);
    let report = check(&ledger, WINDOW, &stored, ALPHA);
    assert_eq!(report.mean_mismatches, 1, "{report}");
    assert_eq!(report.field_mismatches, 0);
    assert!(!report.is_ok());
    assert!(report.is_ok_ignoring_mean());
}

#[test]
fn sum_follows_ledger_order() {
    // 0.1 + 0.2 + 0.3 differs from 0.3 + 0.2 + 0.1 in f64: the ledger order is the contract.
    let ledger: Vec<_> = [0.1, 0.2, 0.3]
        .iter()
        .enumerate()
        .map(|(i, v)| reading("d", i as u64 + 1, i as i64, &[("m", *v)]))
        .collect();
    let w = &expected_windows(&ledger, WINDOW)[&("d".to_string(), "m".to_string(), 0)];
    assert_eq!(w.sum, 0.1 + 0.2 + 0.3);
    assert_eq!(w.mean, (0.1 + 0.2 + 0.3) / 3.0);
    assert_eq!((w.p50, w.p99, w.first, w.last), (0.2, 0.2, 0.1, 0.3));
}

/// What an agent that rolled every pair of windows up would store: windows
/// twice as wide, exact, marked with the number of originals inside.
fn rolled_up(ledger: &[LedgerRecord]) -> Vec<StoredWindow> {
    let originals = perfect(ledger);
    perfect_at(ledger, 2 * WINDOW)
        .into_iter()
        .map(|mut w| {
            let parts = originals
                .iter()
                .filter(|o| {
                    (&o.device, &o.metric) == (&w.device, &w.metric)
                        && (w.start_ms..w.end_ms).contains(&o.start_ms)
                })
                .count();
            w.rolled_up = parts as u32;
            w
        })
        .collect()
}

#[test]
fn rolled_up_windows_are_checked_for_conservation() {
    let ledger = ledger();
    let stored = rolled_up(&ledger);
    assert!(
        stored.iter().any(|w| w.rolled_up >= 2),
        "the ledger has adjacent windows"
    );
    let report = check(&ledger, WINDOW, &stored, ALPHA);
    assert!(report.is_ok_ignoring_mean(), "{report}");
    assert_eq!(report.covered_by_rollups, report.expected);

    let mut wrong = stored.clone();
    let i = wrong.iter().position(|w| w.rolled_up >= 2).unwrap();
    wrong[i].count += 1;
    let report = check(&ledger, WINDOW, &wrong, ALPHA);
    assert_eq!(report.field_mismatches, 1, "{report}");

    let mut wrong = stored.clone();
    wrong[i].rolled_up += 1;
    let report = check(&ledger, WINDOW, &wrong, ALPHA);
    assert_eq!(report.field_mismatches, 1, "{report}");

    let mut twice = stored.clone();
    let key = (
        twice[i].device.clone(),
        twice[i].metric.clone(),
        twice[i].start_ms,
    );
    twice.extend(
        perfect(&ledger)
            .into_iter()
            .filter(|w| (w.device.clone(), w.metric.clone(), w.start_ms) == key),
    );
    let report = check(&ledger, WINDOW, &twice, ALPHA);
    assert_eq!(report.duplicate, 1, "{report}");

    let parts = stored[i].rolled_up as usize;
    let mut lost = stored;
    lost.remove(i);
    let report = check(&ledger, WINDOW, &lost, ALPHA);
    assert_eq!(report.missing, parts, "{report}");
}
