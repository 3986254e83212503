//! Ingest admission under the outbox cap: tells the pipeline, before each
//! group commit, whether the store's disk use is calm, high (lower the outbox
//! budget now, not at the next cut) or full (take no more messages until
//! there is room), and whether a store compaction would fit and pay. It
//! measures and decides; it does not roll up (that is
//! [`crate::outbox::OutboxCap`]), compact ([`Store::compact`]) or wait (the
//! pipeline does).
//!
//! Why the ingest side needs a guard at all: the cap steers the outbox's live
//! bytes, but sled's log grows with every write, and an ingest burst writes
//! journal records faster than sled cleans the segments they leave behind
//! (measured on SKAB replays: the store reached 13–17 MB on disk with only
//! 2–3 MB of live batches). Pausing ingest is backpressure the pipeline
//! already speaks: un-acked messages stay with the broker, the source's
//! bounded channel fills and the broker stops sending once its in-flight
//! window is full. Nothing acknowledged is at risk; only a write is withheld.

use std::time::{Duration, Instant};

use crate::outbox::DISK_HIGH_PERCENT as HIGH_PERCENT;
use crate::store::Store;

/// Disk use is measured at most this often (a walk of the store's files;
/// a large outbox holds many blobs).
const MEASURE_EVERY: Duration = Duration::from_millis(50);
/// At or above this share, ingest waits for room. The margin to 100% takes
/// what one group commit and one cut (with its roll-ups) can write before the
/// next measurement; when a step has been seen to write more than that margin
/// (measured: 2–5 MB per step in a burst of 2 s windows, sled's write
/// amplification included, a third of a 16 MiB cap), the margin is that step
/// plus [`STEP_MARGIN_PERCENT`], up to [`MAX_RESERVE_PERCENT`] of the cap.
const FULL_PERCENT: u64 = 85;
/// Extra share of the largest step kept back beside it (a later step may be
/// larger than any seen before).
const STEP_MARGIN_PERCENT: u64 = 50;
/// The full mark never falls below `100 - MAX_RESERVE_PERCENT` of the cap
/// (the high mark), however large the steps seen.
const MAX_RESERVE_PERCENT: u64 = 100 - HIGH_PERCENT;
/// ... but sled's file does not shrink when its contents do: it reuses its
/// free segments and truncates only free ones at its tail. So disk use that
/// stays exactly the same for [`STALL`] while ingest waits means sled holds
/// free space it will reuse, and ingest resumes; it waits again only once
/// disk use grows past that level by [`REWAIT_GROWTH_PERCENT`], or past the
/// cap less the largest step seen. Above that ceiling it never resumes on a
/// stall (it did, and crept 1% at a time past the cap, measured in CI at
/// 17.2 MB of 16.8): it waits for a compaction, which while ingest waits
/// needs to give back only [`WAITING_GAIN_PERCENT`]. Without
/// this it would wait forever (measured: a store whose outbox had drained
/// to 0 bytes stayed at 15.1 MB with nothing writing). Waiting on is no
/// answer either: held messages pile up at the broker, whose queue is
/// finite.
pub const STALL: Duration = Duration::from_secs(2);
/// The budget is lowered from the ingest side at most this often: each
/// lowering cuts it by 5%, and roll-ups lose resolution.
const LOWER_EVERY: Duration = Duration::from_millis(500);
/// After a resume on a stall, ingest waits again once disk use has grown by
/// this share of `max_bytes` past the level it resumed at (commits append
/// to sled's current segment, so some growth is the normal case).
const REWAIT_GROWTH_PERCENT: u64 = 1;

/// A compaction ([`Store::compact`]) is considered at most this often (each
/// consideration scans the store for its live bytes).
const COMPACT_EVERY: Duration = Duration::from_millis(200);
/// A compaction first writes a snapshot of the live records beside the old
/// files (its bytes, plus 8 per record: records are ≤ 1 KiB chunks, so
/// under 1/64 more, plus this) ...
const SNAPSHOT_OVERHEAD: u64 = 64 * 1024;
/// ... then deletes the old files and loads a fresh sled from it, which
/// takes the live bytes × this: sled writes a bulk load with the same
/// amplification as any other (every leaf is rewritten as it fills and
/// splits; measured under `fault_outbox_cap`: 1.1–2.8 MB of records took
/// 2.5–2.6× on disk) ...
const FRESH_AMPLIFICATION: u64 = 3;
/// ... plus this (sled's config, snapshot and partly filled segments).
const FRESH_OVERHEAD: u64 = 512 * 1024;
/// Room under the cap kept back beside the snapshot (block rounding, the
/// generation file, directory entries).
const COPY_MARGIN: u64 = 256 * 1024;
/// The store's ballast ([`crate::store::ballast`]) is this share of
/// `max_bytes` (1 MiB at the smallest cap): a compaction's snapshot of up to
/// ~0.7 MiB always fits however close to the cap disk use has come ...
const BALLAST_DIVISOR: u64 = 16;
/// ... and at most this (a larger cap leaves more room beside the ballast).
const MAX_BALLAST: u64 = 16 * 1024 * 1024;
/// A compaction is worth it only if it gives back this share of `max_bytes`.
const COMPACT_GAIN_PERCENT: u64 = 25;
/// ... or this share while ingest waits at the full mark (waiting on is worse
/// than compacting more often).
const WAITING_GAIN_PERCENT: u64 = 5;

/// What the store's disk use asks of the pipeline now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pressure {
    /// Below the high mark (or not measured this time): ingest as usual.
    Calm,
    /// Above the high mark: lower the outbox budget (`disk` bytes measured).
    High { disk: u64 },
    /// Above the full mark: take no messages until there is room.
    Full { disk: u64 },
}

/// Throttled disk measurement and the marks.
#[derive(Debug)]
pub struct DiskGuard {
    max_bytes: u64,
    measured_at: Option<Instant>,
    lowered_at: Option<Instant>,
    last: u64,
    /// The most disk use grew between two measurements, since start: what one
    /// step (group commit, cut, roll-ups) can write before the guard sees it.
    largest_step: u64,
    /// After ingest resumed on a stall, the disk use it resumed at: it
    /// waits again only once disk use grows past it.
    resumed_at: Option<u64>,
    /// Times ingest had to wait for room, since start.
    pub pauses: u64,
    considered_at: Option<Instant>,
    /// Compactions since start.
    pub compactions: u64,
    /// Bytes of ballast the store holds now (a compaction frees them for its
    /// snapshot and writes them back).
    ballast: u64,
    /// Bytes of the journal log's segments (outside sled: a compaction keeps them).
    journal: u64,
}

impl DiskGuard {
    pub fn new(max_bytes: u64) -> DiskGuard {
        DiskGuard {
            max_bytes,
            measured_at: None,
            lowered_at: None,
            last: 0,
            largest_step: 0,
            resumed_at: None,
            pauses: 0,
            considered_at: None,
            compactions: 0,
            ballast: 0,
            journal: 0,
        }
    }

    /// The ballast the store should hold (see [`BALLAST_DIVISOR`]).
    pub fn ballast_target(&self) -> u64 {
        (self.max_bytes / BALLAST_DIVISOR).min(MAX_BALLAST)
    }

    /// How much ballast to add to a store that holds `present` bytes of it
    /// and uses `disk` bytes in all: the rest of the target, if it fits under
    /// the full mark (else 0: it is added after a compaction).
    pub fn ballast_to_add(&self, disk: u64, present: u64) -> u64 {
        let missing = self.ballast_target().saturating_sub(present);
        if disk + missing <= self.full_mark() {
            missing
        } else {
            0
        }
    }

    /// The store now holds `bytes` of ballast.
    pub fn set_ballast(&mut self, bytes: u64) {
        self.ballast = bytes;
    }

    /// The journal log's segments now hold `bytes` ([`Store::journal_bytes`]).
    pub fn set_journal(&mut self, bytes: u64) {
        self.journal = bytes;
    }

    /// The disk use at or above which ingest waits, in bytes: the cap less
    /// what the largest step seen (plus [`STEP_MARGIN_PERCENT`]) or
    /// `100 - FULL_PERCENT` percent takes, whichever is more (see [`FULL_PERCENT`]).
    pub fn full_mark(&self) -> u64 {
        let pct = self.max_bytes / 100;
        let step = self.largest_step + self.largest_step / 100 * STEP_MARGIN_PERCENT;
        let reserve = step
            .max(pct * (100 - FULL_PERCENT))
            .min(pct * MAX_RESERVE_PERCENT);
        self.max_bytes - reserve
    }

    /// Above this, ingest does not resume on a stall: the cap less the
    /// largest step seen, at least [`REWAIT_GROWTH_PERCENT`] and at most
    /// `100 - FULL_PERCENT` percent of it (a larger step, or an outside file
    /// that appeared at once, would otherwise forbid resuming at all).
    fn stall_ceiling(&self) -> u64 {
        let pct = self.max_bytes / 100;
        let kept = self
            .largest_step
            .clamp(pct * REWAIT_GROWTH_PERCENT, pct * (100 - FULL_PERCENT));
        self.max_bytes - kept
    }

    /// The pressure now: measures if the last measurement is older than
    /// [`MEASURE_EVERY`]; a failed measurement counts as calm (the cut's own
    /// steering still runs and logs it). `High` is returned at most once per
    /// [`LOWER_EVERY`].
    pub fn check(&mut self, store: &Store, now: Instant) -> Pressure {
        let stale = self
            .measured_at
            .is_none_or(|t| now.saturating_duration_since(t) >= MEASURE_EVERY);
        if stale {
            if let Ok(disk) = store.disk_usage() {
                self.observe(disk, now);
            }
        }
        self.classify(self.last, now)
    }

    /// A measurement taken elsewhere (the pipeline's cut measures before it
    /// writes): growth since the last one is a step (see [`FULL_PERCENT`]).
    pub fn observe(&mut self, disk: u64, now: Instant) {
        if self.measured_at.is_some() {
            self.largest_step = self.largest_step.max(disk.saturating_sub(self.last));
        }
        self.last = disk;
        self.measured_at = Some(now);
    }

    /// Whether to consider a compaction now (at most once per
    /// [`COMPACT_EVERY`]); a `true` counts as a consideration.
    pub fn may_try_compaction(&mut self, now: Instant) -> bool {
        take_if_due(&mut self.considered_at, now, COMPACT_EVERY)
    }

    /// The disk allowance for the snapshot of a compaction of a store that
    /// uses `disk` bytes and holds `live` bytes of records: the room left
    /// under `max_bytes` beside the old files (a snapshot that would pass it
    /// is abandoned), if the snapshot is expected to fit in it, the fresh
    /// generation loaded beside the snapshot (after the old files are gone)
    /// to fit under `max_bytes` with the journal's segments, and the
    /// compaction to give back at least [`COMPACT_GAIN_PERCENT`] of `max_bytes`.
    pub fn compaction_allowance(&self, disk: u64, live: u64) -> Option<u64> {
        self.allowance(disk, live, COMPACT_GAIN_PERCENT)
    }

    /// [`Self::compaction_allowance`] while ingest waits at the full mark:
    /// giving back [`WAITING_GAIN_PERCENT`] of `max_bytes` is enough.
    pub fn compaction_allowance_waiting(&self, disk: u64, live: u64) -> Option<u64> {
        self.allowance(disk, live, WAITING_GAIN_PERCENT)
    }

    /// `disk` includes the ballast, which the compaction deletes before its
    /// snapshot (so its bytes are room) and writes back after the load, and
    /// the journal log, which a compaction leaves as it is (so its bytes
    /// count with the fresh generation and are no gain).
    fn allowance(&self, disk: u64, live: u64, gain_percent: u64) -> Option<u64> {
        let snapshot = live + live / 64 + SNAPSHOT_OVERHEAD;
        let fresh = live * FRESH_AMPLIFICATION + FRESH_OVERHEAD + self.journal;
        let room = (self.max_bytes + self.ballast)
            .checked_sub(disk)?
            .checked_sub(COPY_MARGIN)?;
        let after = fresh + snapshot.max(self.ballast);
        let load_fits = after <= self.max_bytes - COPY_MARGIN.min(self.max_bytes);
        let gain = disk.saturating_sub(fresh + self.ballast);
        (snapshot <= room && load_fits && gain >= self.max_bytes / 100 * gain_percent)
            .then_some(room)
    }

    /// The most live bytes whose snapshot fits beside `disk` bytes of old
    /// files (ballast deleted) under `max_bytes` (0 if none do): what
    /// roll-ups aim for when a compaction is due but its snapshot would not fit.
    pub fn live_that_fits(&self, disk: u64) -> u64 {
        let room = (self.max_bytes + self.ballast)
            .saturating_sub(disk)
            .saturating_sub(COPY_MARGIN + SNAPSHOT_OVERHEAD);
        room / 65 * 64
    }

    /// After a compaction: `disk` is the fresh measurement and any wait level is forgotten.
    pub fn compacted(&mut self, disk: u64, now: Instant) {
        self.last = disk;
        self.measured_at = Some(now);
        self.resumed_at = None;
        self.compactions += 1;
    }

    /// Whether a wait that has seen disk use at `disk` for `unchanged` may
    /// end on the ground that sled holds free space (see [`FULL_PERCENT`]).
    /// If so, records the level: waits start again only above it.
    pub fn resume_on_stall(&mut self, disk: u64, unchanged: Duration) -> bool {
        let growth = self.max_bytes / 100 * REWAIT_GROWTH_PERCENT;
        let may = unchanged >= STALL && disk + growth <= self.stall_ceiling();
        if may {
            self.resumed_at = Some(disk);
        }
        may
    }

    fn classify(&mut self, disk: u64, now: Instant) -> Pressure {
        if disk < self.full_mark() {
            self.resumed_at = None;
        } else if self.resumed_at.is_none_or(|level| {
            disk > level + self.max_bytes / 100 * REWAIT_GROWTH_PERCENT
                || disk > self.stall_ceiling()
        }) {
            return Pressure::Full { disk };
        }
        if disk >= self.max_bytes / 100 * HIGH_PERCENT && self.may_lower(now) {
            return Pressure::High { disk };
        }
        Pressure::Calm
    }

    /// Whether the budget may be lowered now (at most once per
    /// [`LOWER_EVERY`]); a `true` counts as a lowering.
    pub fn may_lower(&mut self, now: Instant) -> bool {
        take_if_due(&mut self.lowered_at, now, LOWER_EVERY)
    }
}

/// Whether `every` has passed since `*last` (or it never happened); if so,
/// `now` becomes the last time.
fn take_if_due(last: &mut Option<Instant>, now: Instant, every: Duration) -> bool {
    let due = last.is_none_or(|t| now.saturating_duration_since(t) >= every);
    if due {
        *last = Some(now);
    }
    due
}

#[cfg(test)]
mod tests;
