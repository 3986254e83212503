//! Ingest admission under the outbox cap: tells the pipeline, before each
//! group commit, whether the store's disk use is calm, high (lower the outbox
//! budget now, not at the next cut) or full (take no more messages until
//! there is room). It measures and decides; it does not roll up (that is
//! [`crate::outbox::OutboxCap`]) and does not wait (the pipeline does).
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
/// what one group commit and one roll-up step can write before the next
/// measurement.
const FULL_PERCENT: u64 = 85;
/// ... but sled's file does not shrink when its contents do: it reuses its
/// free segments and truncates only free ones at its tail. So disk use that
/// stays exactly the same for [`STALL`] while ingest waits means sled holds
/// free space it will reuse, and ingest resumes; it waits again only once
/// disk use grows past that level by [`REWAIT_GROWTH_PERCENT`]. Without
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
    /// After ingest resumed on a stall, the disk use it resumed at: it
    /// waits again only once disk use grows past it.
    resumed_at: Option<u64>,
    /// Times ingest had to wait for room, since start.
    pub pauses: u64,
}

impl DiskGuard {
    pub fn new(max_bytes: u64) -> DiskGuard {
        DiskGuard {
            max_bytes,
            measured_at: None,
            lowered_at: None,
            last: 0,
            resumed_at: None,
            pauses: 0,
        }
    }

    /// The cap's share at or above which ingest waits, in bytes.
    pub fn full_mark(&self) -> u64 {
        self.max_bytes / 100 * FULL_PERCENT
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
                self.last = disk;
                self.measured_at = Some(now);
            }
        }
        self.classify(self.last, now)
    }

    /// Whether a wait that has seen disk use at `disk` for `unchanged` may
    /// end on the ground that sled holds free space (see [`FULL_PERCENT`]).
    /// If so, records the level: waits start again only above it.
    pub fn resume_on_stall(&mut self, disk: u64, unchanged: Duration) -> bool {
        let may = unchanged >= STALL;
        if may {
            self.resumed_at = Some(disk);
        }
        may
    }

    fn classify(&mut self, disk: u64, now: Instant) -> Pressure {
        if disk < self.full_mark() {
            self.resumed_at = None;
        } else if self
            .resumed_at
            .is_none_or(|level| disk > level + self.max_bytes / 100 * REWAIT_GROWTH_PERCENT)
        {
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
        let due = self
            .lowered_at
            .is_none_or(|t| now.saturating_duration_since(t) >= LOWER_EVERY);
        if due {
            self.lowered_at = Some(now);
        }
        due
    }
}

#[cfg(test)]
mod tests {
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
}
