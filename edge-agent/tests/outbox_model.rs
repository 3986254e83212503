//! A proptest state machine of the outbox (sled store + byte cap + roll-up +
//! syncer claims) against a simple model, with crashes between any two steps.
//!
//! Steps: cut windows into batches (the pipeline's job), deliver the oldest
//! batch (claim, "send", delete on 2xx), send and crash before the delete (the
//! sink has it, the agent does not know), and crash (drop the store, reopen).
//! After every step it checks what must hold whatever the order:
//! - live outbox bytes equal the sum of the stored envelopes and stay under the cap;
//! - no (epoch, seq) ever reaches the sink with two different bodies;
//! - every original window is accounted for exactly once: at the sink or in
//!   the outbox (rolled-up windows count as the windows they hold), or in
//!   `outbox_full`; readings and sums are conserved wherever windows survive;
//! - stored windows of one series never overlap (no double counting);
//! - counters fed into cuts are never lost, even when their batch is dropped.
//!
//! It does not model ingest or the windower (pipeline_replay.rs does).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use edge_agent::outbox::{BatchSealer, OutboxCap};
use edge_agent::store::{BatchCommit, Store};
use proptest::prelude::*;
use wire::{Counters, Envelope, Reason, WindowSummary};

const WIDTH: i64 = 1_000;
/// Small enough that generated runs roll up and drop, not just roll up.
const CAP: u64 = 8 * 1024;
const MAX_WIDTH: i64 = 4_000;
const PER_BATCH: usize = 8;

/// Gateway "g", [`PER_BATCH`] windows a batch, values exact: the model
/// compares merged values exactly.
fn sealer(epoch: u64) -> BatchSealer {
    BatchSealer::new("g", epoch, PER_BATCH, wire::BodyEncoding::EXACT)
}
const SERIES: [&str; 3] = ["a", "b", "c"];

#[derive(Debug, Clone)]
enum Step {
    /// Close `windows[i]` windows of series i, each with `readings` readings,
    /// and count `malformed` rejected messages.
    Cut {
        windows: [u8; 3],
        readings: u8,
        malformed: u8,
    },
    Deliver,
    SendThenCrash,
    Crash,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => (any::<[u8; 3]>(), 1u8..6, 0u8..3).prop_map(|(w, readings, malformed)| Step::Cut {
            windows: w.map(|n| n % 12),
            readings,
            malformed,
        }),
        2 => Just(Step::Deliver),
        1 => Just(Step::SendThenCrash),
        1 => Just(Step::Crash),
    ]
}

/// Everything the test knows independently of the outbox.
#[derive(Default)]
struct Model {
    next_start: BTreeMap<&'static str, i64>,
    cut_windows: u64,
    cut_readings: BTreeMap<String, u64>,
    cut_malformed: u64,
    /// What the sink holds: (seq → envelope bytes).
    sink: BTreeMap<u64, Vec<u8>>,
}

struct Agent {
    cap_bytes: u64,
    max_width: Duration,
    dir: tempfile::TempDir,
    store: Option<Store>,
    cap: OutboxCap,
    epoch: u64,
    next_seq: u64,
    pending: Counters,
}

fn open(dir: &Path) -> (Store, edge_agent::store::Recovered) {
    // sled's background flusher may hold the file lock for a moment after a drop.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match Store::open(dir, 1_000) {
            Ok(pair) => return pair,
            Err(e) if format!("{e:?}").contains("could not acquire lock") => {
                assert!(
                    std::time::Instant::now() < deadline,
                    "store stays locked: {e}"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("reopen: {e}"),
        }
    }
}

impl Agent {
    fn new(cap_bytes: u64, max_width_ms: i64) -> Agent {
        let dir = tempfile::tempdir().unwrap();
        let (store, r) = open(dir.path());
        let max_width = Duration::from_millis(max_width_ms as u64);
        Agent {
            cap_bytes,
            max_width,
            cap: OutboxCap::new(cap_bytes, max_width, sealer(r.epoch), 0),
            epoch: r.epoch,
            next_seq: r.next_seq,
            pending: r.counters,
            store: Some(store),
            dir,
        }
    }

    fn store(&self) -> &Store {
        self.store.as_ref().unwrap()
    }

    fn crash(&mut self) {
        drop(self.store.take());
        let (store, r) = open(self.dir.path());
        let live = store.outbox_bytes();
        self.cap = OutboxCap::new(self.cap_bytes, self.max_width, sealer(r.epoch), live);
        (self.epoch, self.next_seq, self.pending) = (r.epoch, r.next_seq, r.counters);
        self.store = Some(store);
    }

    /// What the pipeline's tick does with closed windows, cap included.
    fn cut(&mut self, windows: Vec<WindowSummary>, mut counters: Counters) {
        counters.merge(&std::mem::take(&mut self.pending));
        let epoch = self.epoch;
        let seal =
            |counters: Counters, first: u64| sealer(epoch).seal(first.., &windows, counters, 0);
        let mut batches = seal(counters.clone(), self.next_seq);
        let incoming: u64 = batches.iter().map(|(_, b)| b.len() as u64).sum();
        let room = self.cap_bytes.saturating_sub(incoming);
        let mut loss = Counters::default();
        let store = self.store.as_ref().unwrap();
        self.cap
            .roll_up_to(store, room, &counters, &mut loss, 0)
            .unwrap();
        if !loss.is_empty() {
            counters.merge(&loss);
            batches = seal(counters, self.next_seq);
        }
        self.next_seq += batches.len() as u64;
        store
            .commit_batches(BatchCommit {
                batches,
                next_seq: self.next_seq,
                ..BatchCommit::default()
            })
            .unwrap();
        let mut loss = Counters::default();
        self.cap
            .enforce(store, self.cap_bytes, &Counters::default(), &mut loss, 0)
            .unwrap();
        self.pending = loss;
    }
}

/// A window of mean 1.5 (so a merged window's sum must be `count × 1.5`)
/// whose other fields differ from each other and from its neighbours'
/// (sevenths: full f64 mantissas), so batches are about as large as real ones.
fn window(series: &str, start_ms: i64, readings: u8) -> WindowSummary {
    let count = u64::from(readings);
    let v = 1.5 + (start_ms / WIDTH % 97) as f64 / 7e3;
    WindowSummary {
        device: "dev".into(),
        metric: series.into(),
        start_ms,
        end_ms: start_ms + WIDTH,
        count,
        sum: count as f64 * 1.5,
        min: v - 3.0 / 7.0,
        max: v + 2.0 / 7.0,
        mean: 1.5,
        stddev: 1.0 / 7.0 + v / 1e3,
        p50: v + 1.0 / 70.0,
        p95: v + 1.0 / 7.0,
        p99: v + 1.5 / 7.0,
        sketch_alpha: 0.01,
        first: v - 1.0 / 7.0,
        first_ms: start_ms,
        last: v + 1.0 / 21.0,
        last_ms: start_ms + WIDTH - 1,
        verdict: None,
        rolled_up: 0,
        template: None,
        escalations: Vec::new(),
    }
}

/// All outbox batches, read straight from a reopened view of the tree.
fn outbox_batches(store: &Store) -> Vec<(u64, Vec<u8>)> {
    let lock = store.lock_outbox();
    let mut all: Vec<(u64, Vec<u8>)> = store.outbox_first().unwrap().into_iter().collect();
    all.extend(lock.rewritable(0, usize::MAX).unwrap());
    all
}

fn check(agent: &Agent, model: &Model) -> Result<(), TestCaseError> {
    let store = agent.store();
    let outbox = outbox_batches(store);
    let bytes: u64 = outbox.iter().map(|(_, b)| b.len() as u64).sum();
    prop_assert_eq!(store.outbox_bytes(), bytes, "byte count drifted");
    prop_assert_eq!(store.outbox_len(), outbox.len(), "batch count drifted");
    prop_assert!(
        bytes <= agent.cap_bytes || outbox.len() <= 1,
        "outbox {} bytes over cap {}",
        bytes,
        agent.cap_bytes
    );
    let mut originals = 0u64;
    let mut readings: BTreeMap<String, u64> = BTreeMap::new();
    let mut counters = agent.pending.clone();
    let mut spans: BTreeMap<String, Vec<(i64, i64)>> = BTreeMap::new();
    // A batch sent just before a crash is both at the sink and still in the outbox.
    let mut all = model.sink.clone();
    for (seq, bytes) in &outbox {
        if let Some(sent) = all.get(seq) {
            prop_assert_eq!(
                sent,
                bytes,
                "outbox seq {} differs from what the sink holds",
                seq
            );
        }
        all.insert(*seq, bytes.clone());
    }
    for bytes in all.values() {
        let opened = Envelope::open(bytes);
        prop_assert!(
            opened.is_ok(),
            "a stored batch does not open: {:?}",
            opened.err()
        );
        let Ok((_, body)) = opened else {
            unreachable!()
        };
        counters.merge(&body.counters);
        for w in body.windows {
            originals += u64::from(w.rolled_up.max(1));
            *readings.entry(w.metric.clone()).or_default() += w.count;
            prop_assert!(
                (w.sum - w.count as f64 * 1.5).abs() < 1e-9,
                "sum not conserved: {:?}",
                w
            );
            spans
                .entry(w.metric)
                .or_default()
                .push((w.start_ms, w.end_ms));
        }
    }
    let dropped = counters.get(Reason::OutboxFull);
    prop_assert_eq!(
        originals + dropped,
        model.cut_windows,
        "windows unaccounted for"
    );
    if dropped == 0 {
        prop_assert_eq!(&readings, &model.cut_readings, "readings not conserved");
    }
    prop_assert_eq!(
        counters.get(Reason::Malformed),
        model.cut_malformed,
        "counters lost"
    );
    for (series, mut s) in spans {
        s.sort_unstable();
        for pair in s.windows(2) {
            prop_assert!(
                pair[0].1 <= pair[1].0,
                "{} windows overlap: {:?}",
                series,
                pair
            );
        }
    }
    Ok(())
}

fn deliver(agent: &Agent, model: &mut Model) -> Result<Option<u64>, TestCaseError> {
    let claimed = agent.store().outbox_claim_first();
    prop_assert!(claimed.is_ok(), "claim: {:?}", claimed.err());
    let Ok(Some((seq, bytes))) = claimed else {
        return Ok(None);
    };
    if let Some(earlier) = model.sink.get(&seq) {
        prop_assert_eq!(
            earlier,
            &bytes,
            "seq {} sent twice with different bytes",
            seq
        );
    }
    model.sink.insert(seq, bytes);
    Ok(Some(seq))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn outbox_keeps_every_window_accounted_for_under_its_cap(steps in prop::collection::vec(step(), 1..60)) {
        let mut agent = Agent::new(CAP, MAX_WIDTH);
        let mut model = Model::default();
        for step in steps {
            match step {
                Step::Cut { windows, readings, malformed } => {
                    let mut closed = Vec::new();
                    for (series, n) in SERIES.iter().zip(windows) {
                        for _ in 0..n {
                            let start = model.next_start.entry(series).or_insert(0);
                            closed.push(window(series, *start, readings));
                            *start += WIDTH;
                            model.cut_windows += 1;
                            *model.cut_readings.entry((*series).to_owned()).or_default() += u64::from(readings);
                        }
                    }
                    let mut counters = Counters::default();
                    counters.add(Reason::Malformed, u64::from(malformed));
                    model.cut_malformed += u64::from(malformed);
                    agent.cut(closed, counters);
                }
                Step::Deliver => {
                    if let Some(seq) = deliver(&agent, &mut model)? {
                        agent.store().outbox_remove(seq).unwrap();
                    }
                }
                Step::SendThenCrash => {
                    deliver(&agent, &mut model)?;
                    agent.crash();
                }
                Step::Crash => agent.crash(),
            }
            check(&agent, &model)?;
        }
        // Drain: everything left reaches the sink, still accounted for.
        while let Some(seq) = deliver(&agent, &mut model)? {
            agent.store().outbox_remove(seq).unwrap();
        }
        check(&agent, &model)?;
    }
}

#[test]
fn a_long_outage_rolls_up_before_it_drops_anything() {
    let mut agent = Agent::new(24 * 1024, 16_000);
    let mut model = Model::default();
    // 600 windows of one series ≈ 4× the cap at full resolution, well under it at 16×.
    for cut in 0..75 {
        let closed: Vec<WindowSummary> = (0..8)
            .map(|i| window("a", (cut * 8 + i) * WIDTH, 3))
            .collect();
        model.cut_windows += 8;
        *model.cut_readings.entry("a".into()).or_default() += 24;
        agent.cut(closed, Counters::default());
        assert!(agent.store().outbox_bytes() <= agent.cap_bytes);
    }
    check(&agent, &model).unwrap();
    let outbox = outbox_batches(agent.store());
    let mut counters = agent.pending.clone();
    for (_, bytes) in &outbox {
        counters.merge(&Envelope::open(bytes).unwrap().1.counters);
    }
    assert_eq!(
        counters.get(Reason::OutboxFull),
        0,
        "dropped while roll-up could still help"
    );
    assert!(counters.get(Reason::RolledUp) > 0, "never rolled up");
}
