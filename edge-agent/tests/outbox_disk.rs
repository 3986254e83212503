//! The outbox cap is a cap on disk use: a long outage through the real
//! pipeline never lets the store directory grow past `outbox.max_bytes`.
//!
//! The sink is "down" for the whole run (nothing is ever sent), so sealed
//! batches pile up until the cap rolls them up. After every cut the test
//! measures the store's allocated bytes (`Store::disk_usage`, the same
//! measurement the cap steers by, checked against `du` semantics by its unit
//! test). Conservation of windows under roll-ups is `outbox_model.rs`'s job.
//! `OUTBOX_DISK_ROUNDS` makes it a soak (default: a CI-sized run). sled never
//! shrinks its file, so on a long soak at this small cap its high-water mark
//! squeezes the outbox to the budget floor (cap/16): measured in RELIABILITY.md.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use edge_agent::classify::ClassifyStage;
use edge_agent::config::Settings;
use edge_agent::pipeline::Pipeline;
use edge_agent::source::{AckToken, Delivery};
use tokio::sync::Notify;
use wire::{Envelope, Reason};

const T0: i64 = 1_583_748_840_000; // 2020-03-09T10:14:00Z
const CAP: u64 = 16 * 1024 * 1024;
const DEVICES: usize = 100;
const METRICS: usize = 10;

fn settings(dir: &std::path::Path) -> Settings {
    common::demo_settings(dir, |c| {
        c.window.width = Duration::from_secs(10);
        c.window.allowed_lateness = Duration::ZERO;
        c.outbox.max_bytes = CAP;
        c.outbox.max_rollup_width = Duration::from_secs(24 * 3600);
        c.uplink.batch_interval = Duration::from_millis(10);
        c.uplink.relative_error = 0.0;
    })
}

/// One message per device for round `r`: `METRICS` readings, one window each.
/// The tests run with exact uplink values (`uplink.relative_error = 0`): they
/// are about the cap, and exact batches fill it soonest.
fn round(r: usize) -> Vec<Delivery> {
    (0..DEVICES)
        .map(|d| {
            let fields: Vec<String> = (0..METRICS)
                // Sevenths: full f64 mantissas, as real sensors give; spread
                // over many values, so neighbouring series do not repeat each
                // other (the columnar body would shrink them below the cap).
                .map(|m| {
                    let v = (r * 7_919 + d * 104_729 + m * 1_299_709) % 100_003;
                    format!(r#""m{m}":{}"#, v as f64 / 7.0)
                })
                .collect();
            let ts = T0 + r as i64 * 10_000;
            Delivery {
                topic: format!("plant/dev-{d}/sensors"),
                payload: Bytes::from(format!(
                    r#"{{"seq":{},"ts":{ts},{}}}"#,
                    r + 1,
                    fields.join(",")
                )),
                ack: AckToken::none(),
            }
        })
        .collect()
}

#[test]
fn store_disk_use_stays_under_the_cap_through_a_long_outage() {
    let rounds: usize = std::env::var("OUTBOX_DISK_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let dir = tempfile::tempdir().unwrap();
    let mut p = Pipeline::open(
        &settings(dir.path()),
        ClassifyStage::default(),
        Arc::new(Notify::new()),
    )
    .unwrap();
    let start = Instant::now();
    let (mut max_disk, mut windows_sealed, mut rolled_up, mut dropped) = (0u64, 0usize, 0u64, 0u64);
    for r in 0..rounds {
        let now = start + Duration::from_millis(10 * (r as u64 + 1));
        p.ingest(&round(r), now).unwrap();
        if let Some(cut) = p.tick(now).unwrap() {
            windows_sealed += cut.windows;
            rolled_up += cut.counters.get(Reason::RolledUp);
            dropped += cut.counters.get(Reason::OutboxFull);
        }
        let disk = p.store().disk_usage().unwrap();
        max_disk = max_disk.max(disk);
        if r % 50 == 0 {
            eprintln!("round {r}: disk {disk} live {}", p.store().outbox_bytes());
        }
        assert!(
            disk <= CAP,
            "round {r}: store uses {disk} bytes on disk, over the {CAP}-byte cap (outbox live {})",
            p.store().outbox_bytes()
        );
    }
    // Roll-up losses of the last cuts are still pending: count what the outbox says.
    let mut in_outbox = 0u64;
    let lock = p.store().lock_outbox();
    for (_, bytes) in lock.rewritable(0, usize::MAX).unwrap() {
        let (_, body) = Envelope::open(&bytes).unwrap();
        rolled_up += body.counters.get(Reason::RolledUp);
        dropped += body.counters.get(Reason::OutboxFull);
        in_outbox += body.windows.len() as u64;
    }
    drop(lock);
    let live = p.store().outbox_bytes();
    eprintln!(
        "{rounds} rounds: {windows_sealed} windows sealed, {in_outbox} windows in the outbox \
         ({live} live bytes), max disk {max_disk} of {CAP}"
    );
    // The run must have pushed against the cap, or it proved nothing.
    assert!(
        windows_sealed as u64 > in_outbox,
        "the outage never reached the cap: nothing was rolled up"
    );
    assert!(rolled_up > 0, "no roll-up was counted");
    // 100 rounds of 10 s windows are far from the 24 h coarsest width: rolling
    // up always finds room, so nothing may be dropped.
    assert_eq!(
        dropped, 0,
        "windows dropped while roll-ups could still merge"
    );
}

/// A burst cut larger than the outbox's budget is rolled up before it is
/// written, not written fine and rewritten: the cut seals fewer batches than
/// its windows would fill, says what it merged, and every reading is still
/// in the outbox, once.
#[test]
fn a_burst_cut_over_the_budget_is_rolled_up_before_it_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let settings = common::demo_settings(dir.path(), |c| {
        c.window.width = Duration::from_secs(2);
        c.window.allowed_lateness = Duration::ZERO;
        c.outbox.max_bytes = CAP;
        c.outbox.max_rollup_width = Duration::from_secs(3600);
        c.uplink.batch_interval = Duration::from_secs(3600);
        c.uplink.relative_error = 0.0;
    });
    let per_batch = settings.uplink.max_windows_per_batch;
    let mut p =
        Pipeline::open(&settings, ClassifyStage::default(), Arc::new(Notify::new())).unwrap();
    let start = Instant::now();
    // 2 s windows, one reading each, all closed in one cut (an hour later: idle).
    let rounds = 150;
    for r in 0..rounds {
        let burst: Vec<Delivery> = round(r)
            .into_iter()
            .map(|mut d| {
                let text = String::from_utf8(d.payload.to_vec()).unwrap();
                let ts = T0 + r as i64 * 2_000;
                let old = format!(r#""ts":{}"#, T0 + r as i64 * 10_000);
                d.payload = Bytes::from(text.replace(&old, &format!(r#""ts":{ts}"#)));
                d
            })
            .collect();
        p.ingest(&burst, start).unwrap();
    }
    let cut = p
        .tick(start + Duration::from_secs(3600))
        .unwrap()
        .expect("a cut");
    let closed = DEVICES * METRICS * rounds;
    assert_eq!(cut.windows, closed);
    let merged = cut.counters.get(Reason::RolledUp);
    assert!(merged > 0, "the cut was not rolled up: {cut:?}");
    assert!(
        cut.batches * per_batch < closed,
        "{} batches of up to {per_batch} windows: the cut was written fine",
        cut.batches
    );
    // Every merge is counted in the batches the sink will get: the cut's own,
    // and those of the roll-ups after its commit (carried in rewritten batches).
    let (mut windows, mut originals, mut readings, mut counted) = (0u64, 0u64, 0u64, 0u64);
    let oldest = p.store().outbox_first().unwrap();
    let lock = p.store().lock_outbox();
    // `rewritable` leaves out the oldest batch.
    let all = oldest
        .into_iter()
        .chain(lock.rewritable(0, usize::MAX).unwrap());
    for (_, bytes) in all {
        let (_, body) = Envelope::open(&bytes).unwrap();
        windows += body.windows.len() as u64;
        counted += body.counters.get(Reason::RolledUp);
        originals += body
            .windows
            .iter()
            .map(|w| u64::from(w.rolled_up.max(1)))
            .sum::<u64>();
        readings += body.windows.iter().map(|w| w.count).sum::<u64>();
    }
    drop(lock);
    assert_eq!(originals, closed as u64, "windows lost or counted twice");
    assert_eq!(readings, closed as u64, "readings lost or counted twice");
    assert!(
        counted >= merged,
        "the cut's merges are in the outbox's counters"
    );
    // Merges after the commit wait in the store's pending counters for the next cut.
    let budget_ok = p.store().outbox_bytes() <= CAP / 4;
    drop(p);
    let (_, recovered) = edge_agent::store::Store::open(dir.path(), T0).unwrap();
    let pending = recovered.counters.get(Reason::RolledUp);
    assert_eq!(
        windows + counted + pending,
        closed as u64,
        "merged windows miscounted"
    );
    assert!(budget_ok, "over the starting budget");
}
