//! Unit tests of [`super::DiskGuard`]'s marks, allowances and stall rule (no pipeline; the
//! pipeline's waits are in `tests/disk_pressure.rs`).

use super::*;

const CAP: u64 = 100 * 1024 * 1024;

#[test]
fn marks_and_the_lowering_rate() {
    let mut g = DiskGuard::new(CAP);
    let t0 = Instant::now();
    assert_eq!(g.classify(CAP / 2, t0), Pressure::Calm);
    let high = CAP / 100 * 80;
    assert_eq!(g.classify(high, t0), Pressure::High { disk: high });
    // Not again within LOWER_EVERY ...
    assert_eq!(g.classify(high, t0 + LOWER_EVERY / 2), Pressure::Calm);
    // ... but full is reported every time.
    let full = CAP / 100 * 90;
    assert_eq!(
        g.classify(full, t0 + LOWER_EVERY / 2),
        Pressure::Full { disk: full }
    );
    assert_eq!(
        g.classify(high, t0 + LOWER_EVERY),
        Pressure::High { disk: high }
    );
    assert!(g.full_mark() < CAP && g.full_mark() > CAP / 100 * HIGH_PERCENT);
}

#[test]
fn compaction_only_when_the_copy_fits_and_pays() {
    let mut g = DiskGuard::new(CAP);
    let pct = |p: u64| CAP / 100 * p;
    // 80% on disk, 10% live: the snapshot (~10.2%) fits in the 20% left,
    // the fresh store (~30.5%) gives back ~49%.
    assert_eq!(
        g.compaction_allowance(pct(80), pct(10)),
        Some(pct(20) - COPY_MARGIN)
    );
    // 90% on disk, 10% live: the snapshot would not fit beside the old files.
    assert_eq!(g.compaction_allowance(pct(90), pct(10)), None);
    // At the full mark with the outbox at its budget floor (1/16): fits.
    assert!(g.compaction_allowance(g.full_mark(), CAP / 16).is_some());
    // 80% on disk, 20% live: the snapshot fits, but gives back under 25%.
    assert_eq!(g.compaction_allowance(pct(80), pct(20)), None);
    // Over the cap already: nothing fits.
    assert_eq!(g.compaction_allowance(CAP + 1, 0), None);
    // What fits is what the allowance takes.
    for disk in [pct(85), pct(90), pct(95)] {
        let live = g.live_that_fits(disk);
        assert!(g.compaction_allowance(disk, live).is_some(), "{disk}");
        assert!(
            g.compaction_allowance(disk, live + 4096).is_none(),
            "{disk}"
        );
    }
    assert_eq!(g.live_that_fits(CAP), 0);
    let t0 = Instant::now();
    assert!(g.may_try_compaction(t0));
    assert!(!g.may_try_compaction(t0 + COMPACT_EVERY / 2));
    assert!(g.may_try_compaction(t0 + COMPACT_EVERY));
    g.resumed_at = Some(pct(90));
    g.compacted(pct(20), t0);
    assert_eq!((g.last, g.resumed_at, g.compactions), (pct(20), None, 1));
}

#[test]
fn the_full_mark_keeps_room_for_the_largest_step_seen() {
    let mut g = DiskGuard::new(CAP);
    let pct = |p: u64| CAP / 100 * p;
    assert_eq!(g.full_mark(), pct(FULL_PERCENT));
    // Steps under the fixed margin leave the mark where it is.
    g.largest_step = pct(10);
    assert_eq!(g.full_mark(), pct(FULL_PERCENT));
    // A step of 20% of the cap: the mark keeps it and half of it more back.
    let step = pct(20);
    g.largest_step = step;
    assert_eq!(g.full_mark(), CAP - step - step / 100 * STEP_MARGIN_PERCENT);
    // Never below the high mark.
    g.largest_step = CAP;
    assert_eq!(g.full_mark(), pct(HIGH_PERCENT));
    // A stalled wait above the cap less that step does not resume ...
    g.largest_step = pct(10);
    let near = pct(91);
    assert_eq!(
        g.classify(near, Instant::now()),
        Pressure::Full { disk: near }
    );
    assert!(!g.resume_on_stall(near, STALL * 10));
    // ... below it, it does, and waits again at the ceiling at the latest.
    let lower = pct(87);
    assert!(g.resume_on_stall(lower, STALL));
    assert_ne!(
        g.classify(lower, Instant::now()),
        Pressure::Full { disk: lower }
    );
    assert_eq!(
        g.classify(pct(88) + 1, Instant::now()),
        Pressure::Full { disk: pct(88) + 1 }
    );
    // While waiting, a compaction that gives back 5–25% is worth it.
    assert_eq!(g.compaction_allowance(pct(70), pct(15)), None);
    assert!(g.compaction_allowance_waiting(pct(70), pct(15)).is_some());
}

#[test]
fn measuring_tracks_the_largest_step() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = Store::open(dir.path(), 0).unwrap();
    let mut g = DiskGuard::new(CAP);
    let t0 = Instant::now();
    g.check(&store, t0);
    assert_eq!(g.largest_step, 0, "the first measurement is no step");
    let before = g.last;
    std::fs::write(dir.path().join("ballast"), vec![1u8; 1 << 20]).unwrap();
    g.check(&store, t0 + MEASURE_EVERY);
    assert!(
        g.largest_step >= 1 << 20,
        "{} after {before}",
        g.largest_step
    );
    let step = g.largest_step;
    std::fs::remove_file(dir.path().join("ballast")).unwrap();
    g.check(&store, t0 + MEASURE_EVERY * 2);
    assert_eq!(g.largest_step, step, "shrinking is no step");
}

#[test]
fn a_stalled_wait_resumes_and_waits_again_only_on_growth() {
    let mut g = DiskGuard::new(CAP);
    let t0 = Instant::now();
    let full = CAP / 100 * 90;
    assert_eq!(g.classify(full, t0), Pressure::Full { disk: full });
    assert!(!g.resume_on_stall(full, STALL / 2), "too soon");
    assert!(g.resume_on_stall(full, STALL));
    // Near the level it resumed at: no wait; grown past it: wait again.
    let grown = full + CAP / 100 * REWAIT_GROWTH_PERCENT;
    assert_ne!(g.classify(grown, t0), Pressure::Full { disk: grown });
    assert_eq!(
        g.classify(grown + 1, t0),
        Pressure::Full { disk: grown + 1 }
    );
    // Below the full mark the level is forgotten.
    assert_eq!(g.classify(CAP / 2, t0), Pressure::Calm);
    assert_eq!(g.classify(full, t0), Pressure::Full { disk: full });
}

/// The wait that never ended (CI, then 1 of 3 local runs of
/// `fault_outbox_cap`'s burst): 16.72 MB on disk of a 16 MiB cap, the outbox
/// empty, 51 kB live. No snapshot fitted beside the old files and no roll-up
/// could make one fit; the ballast's blocks do.
#[test]
fn the_ballast_lets_a_store_at_its_cap_compact() {
    const SMALLEST: u64 = 16 * 1024 * 1024;
    let mut g = DiskGuard::new(SMALLEST);
    g.largest_step = SMALLEST / 2;
    let (disk, live) = (16_719_872, 51_293);
    assert_eq!(g.compaction_allowance_waiting(disk, live), None);
    assert_eq!(g.live_that_fits(disk), 0);
    assert_eq!(g.ballast_target(), 1 << 20);
    g.set_ballast(g.ballast_target());
    let allowance = g.compaction_allowance_waiting(disk, live).expect("fits");
    assert!(allowance >= live + live / 64 + SNAPSHOT_OVERHEAD);
    assert!(g.live_that_fits(disk) > live);
    // The fresh store and its ballast must fit under the cap after.
    assert_eq!(g.compaction_allowance_waiting(disk, SMALLEST / 3), None);
}

#[test]
fn the_ballast_is_added_only_under_the_full_mark() {
    let g = DiskGuard::new(CAP);
    let target = g.ballast_target();
    assert_eq!(target, MAX_BALLAST.min(CAP / BALLAST_DIVISOR));
    assert_eq!(g.ballast_to_add(CAP / 2, 0), target);
    assert_eq!(g.ballast_to_add(CAP / 2, target / 4), target - target / 4);
    assert_eq!(g.ballast_to_add(CAP / 2, target), 0);
    assert_eq!(g.ballast_to_add(g.full_mark() - target / 2, 0), 0);
}
