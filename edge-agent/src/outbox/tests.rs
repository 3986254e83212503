//! Unit tests of the outbox: sealing batches, the cap and its roll-ups.

use super::*;

const MIB: u64 = 1024 * 1024;

/// Gateway "g", 100 windows a batch, values exact (so merges compare exactly).
fn sealer(epoch: u64) -> BatchSealer {
    BatchSealer::new("g", epoch, 100, wire::BodyEncoding::EXACT)
}

fn cap(live: u64) -> OutboxCap {
    OutboxCap::new(64 * MIB, Duration::from_secs(3600), sealer(1), live)
}

#[test]
fn the_worst_window_bound_holds_for_a_window_at_every_cap() {
    use crate::classify::redact::{MAX_EXEMPLAR_BYTES, MAX_TEMPLATE_TEXT_BYTES};
    let big = |n: usize| "é".repeat(n / 2);
    for (names, exemplars, escalations) in [
        (1, None, false),
        (256, None, true),
        (256, Some(3), false),
        (1000, Some(10), true),
    ] {
        let w = WindowSummary {
            device: big(names),
            metric: big(names.max(64)),
            start_ms: i64::MIN,
            end_ms: i64::MAX,
            count: u64::MAX,
            sum: f64::MIN_POSITIVE / 3.0,
            min: -1.1e300,
            max: 1.3e-300,
            mean: 0.1,
            stddev: 0.2,
            p50: 0.3,
            p95: 0.4,
            p99: 0.6,
            sketch_alpha: 0.01,
            first: 0.7,
            first_ms: i64::MIN,
            last: 0.9,
            last_ms: i64::MAX,
            verdict: Some(wire::Verdict {
                anomalous: true,
                judged: u64::MAX,
                alarms: u64::MAX,
                score: 0.11,
                confidence: 0.13,
            }),
            rolled_up: u32::MAX,
            template: exemplars.map(|n| wire::LogTemplate {
                text: big(MAX_TEMPLATE_TEXT_BYTES),
                exemplars: vec![big(MAX_EXEMPLAR_BYTES); n],
            }),
            escalations: if escalations {
                let widest = wire::Escalation {
                    ts_ms: i64::MIN,
                    alarm: true,
                    score: 0.11,
                    confidence: 0.13,
                    features: vec![0.1; crate::window::MAX_ESCALATION_FEATURES],
                    indices: Vec::new(),
                    exemplar: None,
                };
                vec![widest; crate::window::MAX_ESCALATIONS_PER_WINDOW]
            } else {
                Vec::new()
            },
        };
        let one = wire::encode(&w).len();
        let bound = worst_window_bytes(names, exemplars, escalations);
        assert!(one <= bound, "{names} {exemplars:?}: {one} > {bound}");
    }
}

/// A 2 s window of series `metric` starting at `start_ms`, one reading.
fn two_seconds(metric: &str, start_ms: i64) -> WindowSummary {
    WindowSummary {
        device: "d".into(),
        metric: metric.into(),
        start_ms,
        end_ms: start_ms + 2000,
        count: 1,
        sum: 1.0,
        min: 1.0,
        max: 1.0,
        mean: 1.0,
        stddev: 0.0,
        p50: 1.0,
        p95: 1.0,
        p99: 1.0,
        sketch_alpha: 0.01,
        first: 1.0,
        first_ms: start_ms,
        last: 1.0,
        last_ms: start_ms,
        verdict: None,
        rolled_up: 0,
        template: None,
        escalations: Vec::new(),
    }
}

/// Commits one batch of `windows` (or of counters only) as the next seq.
fn put(store: &Store, epoch: u64, next: &mut u64, windows: &[WindowSummary]) {
    let mut counters = Counters::default();
    counters.add(Reason::RolledUp, 1);
    let batches = sealer(epoch).seal(*next.., windows, counters, 0);
    *next += batches.len() as u64;
    store
        .commit_batches(crate::store::BatchCommit {
            batches,
            next_seq: *next,
            ..Default::default()
        })
        .unwrap();
}

/// The fault_outbox_cap burst (2 s windows): one cut was alone over the
/// budget, its room (budget − incoming) was 0, and the walk before it
/// dropped every old batch; and a counters-only batch at the tail was
/// taken for "as coarse as allowed", which froze every batch before it, so
/// later walks dropped windows that still merged.
#[test]
fn room_for_a_cut_drops_nothing_and_a_counters_only_batch_freezes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (store, r) = Store::open(dir.path(), 1_700_000_000_000).unwrap();
    let mut next = r.next_seq;
    let mut c = OutboxCap::new(64 * MIB, Duration::from_secs(3600), sealer(r.epoch), 0);
    // The head (never rewritten), one window of x, a counters-only batch.
    put(&store, r.epoch, &mut next, &[two_seconds("x", 0)]);
    put(&store, r.epoch, &mut next, &[two_seconds("x", 4000)]);
    put(&store, r.epoch, &mut next, &[]);
    let before = store.outbox_bytes();
    // Room 0 before a burst cut: roll up what merges, drop nothing.
    let mut loss = Counters::default();
    let done = c
        .roll_up_to(&store, 0, &Counters::default(), &mut loss, 0)
        .unwrap();
    assert_eq!((done.dropped, done.rolled_up), (0, 0));
    assert_eq!(store.outbox_bytes(), before);
    assert!(loss.is_empty());
    // The cut lands: x's next window pairs with the one two batches back.
    put(&store, r.epoch, &mut next, &[two_seconds("x", 6000)]);
    let target = store.outbox_bytes() - 1;
    let done = c
        .enforce(&store, target, &Counters::default(), &mut loss, 0)
        .unwrap();
    assert_eq!(
        (done.dropped, done.rolled_up),
        (0, 1),
        "the pair rolls up, nothing is dropped: {loss:?}"
    );
    assert_eq!(loss.get(Reason::OutboxFull), 0);
}

#[test]
fn budget_starts_low_but_keeps_what_a_restart_finds() {
    assert_eq!(cap(0).budget(), 64 * MIB / 6);
    assert_eq!(cap(40 * MIB).budget(), 40 * MIB);
    assert_eq!(cap(100 * MIB).budget(), 64 * MIB);
}

#[test]
fn budget_shrinks_when_disk_is_high_and_grows_only_when_low_and_in_use() {
    let mut c = cap(0);
    // Disk high: cut to 95% of what is live (or of the budget, if less).
    c.observe_disk(60 * MIB, 10 * MIB);
    assert_eq!(c.budget(), 10 * MIB / 100 * 95);
    // Disk high with little live: never below the floor.
    c.observe_disk(63 * MIB, MIB);
    assert_eq!(c.budget(), 4 * MIB);
    // Disk low but the budget not in use: unchanged.
    c.observe_disk(10 * MIB, MIB);
    assert_eq!(c.budget(), 4 * MIB);
    // Disk low and the budget in use: +1% per observation, up to the cap.
    c.observe_disk(10 * MIB, 4 * MIB);
    assert_eq!(c.budget(), 4 * MIB + 4 * MIB / 100);
    for _ in 0..1000 {
        let b = c.budget();
        c.observe_disk(10 * MIB, b);
    }
    assert_eq!(c.budget(), 64 * MIB);
    // Between the marks: unchanged.
    c.observe_disk(38 * MIB, 64 * MIB);
    assert_eq!(c.budget(), 64 * MIB);
}
