//! The outbox byte cap: when sealed batches waiting for the uplink would
//! exceed `outbox.max_bytes`, old windows are rolled up into coarser ones, and
//! only when everything rewritable is already at `outbox.max_rollup_width` are
//! the oldest batches dropped. Every loss of resolution is counted
//! (`rolled_up`: windows merged away; `outbox_full`: original windows dropped) and the
//! counters of a dropped batch are carried forward, never lost.
//!
//! The cap is on disk use, not on the batches' own bytes: sled 0.34 keeps
//! stale copies of rewritten pages until it cleans their segments (measured:
//! 1.8–3× the live bytes in steady state, plus a floor of a few MiB), and the
//! journal shares the directory. So the cap keeps a *live budget* for the
//! batches and steers it from the store's measured disk use after each cut
//! ([`OutboxCap::observe_disk`]): above 65% of `max_bytes` it cuts the budget
//! to 95% of what is live, below 50% with the budget in use it grows it by
//! 1%. The margin above 65% absorbs one cut plus the transient of a roll-up
//! (the old copies stay on disk until sled cleans their segments); ingest
//! bursts are the job of [`crate::disk_guard`].
//!
//! This is policy only: the merge arithmetic is [`crate::rollup`], the atomic
//! rewrite is [`crate::store::OutboxLock`]. It runs on the pipeline thread
//! (the single writer) while the syncer is locked out of claiming a batch, and
//! it never touches the oldest batch or the one the syncer claimed: those may
//! already be at the sink, so their bytes are final (invariant 7). A rewrite
//! reuses the lowest seqs of the batches it replaces, which were never sent.

use std::time::Duration;

use tracing::{info, warn};
use wire::{Counters, Reason, WindowSummary};

use crate::rollup;
use crate::store::{OutboxRewrite, Store, StoreError};
use batches::open_all;
pub use batches::{worst_window_bytes, BatchExtras, BatchSealer};

/// Batches decoded and rolled up together in one step (bounds memory).
const CHUNK_BATCHES: usize = 16;
/// ... and at most `max_bytes / CHUNK_BYTES_DIVISOR` bytes of them (but at
/// least two batches, or nothing could merge): a rewrite's old copies stay
/// on disk until sled cleans them, so small rewrites keep the spike small.
const CHUNK_BYTES_DIVISOR: u64 = 64;

/// What one enforcement did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Enforced {
    pub bytes_before: u64,
    pub bytes_after: u64,
    /// Windows merged away by roll-ups.
    pub rolled_up: u64,
    /// Windows dropped with their batches.
    pub dropped: u64,
}

/// Above this share of `max_bytes` on disk, the live budget shrinks (at each
/// cut, and between cuts from [`crate::disk_guard`]).
pub const DISK_HIGH_PERCENT: u64 = 65;
/// Below this share of `max_bytes` on disk, a budget in use grows.
const DISK_LOW_PERCENT: u64 = 50;
/// Each observation above the high mark cuts the budget to this share of
/// what is live. Small steps: a roll-up rewrites about twice what it
/// reclaims, and sled holds the old copies until it cleans, so a big cut of
/// the budget would itself spike disk use.
const DECREASE_PERCENT: u64 = 95;
/// The budget never shrinks below `max_bytes / BUDGET_FLOOR_DIVISOR`, so a
/// full journal cannot squeeze the outbox to nothing.
const BUDGET_FLOOR_DIVISOR: u64 = 16;
/// A fresh store starts with `max_bytes / BUDGET_START_DIVISOR`, and a
/// compaction restores it: a freshly loaded sled takes ~2.7× its live bytes,
/// and one burst step (a cut and its roll-ups) then wrote 5–8 MB more before
/// the guard measured again (`fault_outbox_cap` at the smallest cap, 16 MiB).
/// At a quarter the peaks reached 16.0–16.6 MB of 16.8 once the ballast took
/// its 1 MiB (5 runs).
const BUDGET_START_DIVISOR: u64 = 6;

/// The cap and the state of the roll-up walk.
#[derive(Debug)]
pub struct OutboxCap {
    max_bytes: u64,
    /// Live bytes of sealed batches allowed now (steered by disk use).
    budget: u64,
    max_width_ms: i64,
    /// Seals the batches its roll-ups rewrite.
    sealer: BatchSealer,
    /// Batches at or below this seq are already as coarse as allowed.
    coarse_until: u64,
    /// Where the windows it rolls up and drops are counted, if anywhere.
    metrics: Option<crate::metrics::AgentMetrics>,
}

impl OutboxCap {
    /// A cap of `max_bytes` on disk for a store whose outbox holds `live`
    /// bytes now (a restart does not roll up what fit before it).
    pub fn new(
        max_bytes: u64,
        max_rollup_width: Duration,
        sealer: BatchSealer,
        live: u64,
    ) -> OutboxCap {
        let start = live.max(max_bytes / BUDGET_START_DIVISOR);
        OutboxCap {
            max_bytes,
            budget: start.clamp(max_bytes / BUDGET_FLOOR_DIVISOR, max_bytes),
            max_width_ms: i64::try_from(max_rollup_width.as_millis()).unwrap_or(i64::MAX),
            sealer,
            coarse_until: 0,
            metrics: None,
        }
    }

    /// Also counts what it rolls up and drops into `metrics`.
    pub fn with_metrics(mut self, metrics: crate::metrics::AgentMetrics) -> OutboxCap {
        self.metrics = Some(metrics);
        self
    }

    /// Counts a loss of its own making (not the counters a batch carried).
    fn count(&self, reason: Reason, n: u64) {
        if let Some(m) = &self.metrics {
            m.count(reason, n);
        }
    }

    /// The cap in bytes (disk use of the whole store).
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// After a compaction: disk use is back near what the records need, so
    /// the budget lowered against sled's old file may start again from a
    /// fresh store's (it never shrinks here).
    pub fn restart_budget(&mut self) {
        let start = self.max_bytes / BUDGET_START_DIVISOR;
        if self.budget < start {
            info!(
                budget_before = self.budget,
                budget = start,
                "store compacted: outbox budget restored"
            );
            self.budget = start;
        }
    }

    /// The coarsest width a roll-up may make, in milliseconds.
    pub fn max_width_ms(&self) -> i64 {
        self.max_width_ms
    }

    /// The live bytes sealed batches may hold now.
    pub fn budget(&self) -> u64 {
        self.budget
    }

    /// Steers the live budget from the store's disk use (`disk`) and the
    /// batches' live bytes (`live`), measured after a cut.
    pub fn observe_disk(&mut self, disk: u64, live: u64) {
        let floor = self.max_bytes / BUDGET_FLOOR_DIVISOR;
        let before = self.budget;
        if disk > self.max_bytes / 100 * DISK_HIGH_PERCENT {
            let shrunk = self.budget.min(live) / 100 * DECREASE_PERCENT;
            self.budget = shrunk.max(floor);
        } else if disk < self.max_bytes / 100 * DISK_LOW_PERCENT && live >= self.budget / 10 * 9 {
            self.budget = (self.budget + self.budget / 100).min(self.max_bytes);
        }
        if self.budget < before {
            info!(
                disk_bytes = disk,
                live_bytes = live,
                cap = self.max_bytes,
                budget_before = before,
                budget = self.budget,
                "store disk use near the outbox cap: live budget lowered"
            );
        }
    }

    /// Rolls up (then drops) until the outbox holds at most `target` bytes or
    /// nothing rewritable is left. Losses are added to `loss`; each rewrite
    /// persists `pending + loss` as the pending counters, so a crash at any
    /// point leaves every count on disk exactly once.
    pub fn enforce(
        &mut self,
        store: &Store,
        target: u64,
        pending: &Counters,
        loss: &mut Counters,
        now_ms: i64,
    ) -> Result<Enforced, StoreError> {
        self.walk(store, target, pending, loss, now_ms, true)
    }

    /// [`Self::enforce`] without the drops: rolls up until the outbox holds at
    /// most `target` bytes or nothing merges any more, and stops there. Before
    /// a cut lands its room is `budget − incoming`, which is 0 when one burst
    /// cut alone is over the budget: dropping towards it would empty the
    /// outbox of windows that could still roll up (the new batches among
    /// them, once they are in). The cut makes room with this; drops are
    /// decided after it commits, against the budget itself.
    pub fn roll_up_to(
        &mut self,
        store: &Store,
        target: u64,
        pending: &Counters,
        loss: &mut Counters,
        now_ms: i64,
    ) -> Result<Enforced, StoreError> {
        self.walk(store, target, pending, loss, now_ms, false)
    }

    fn walk(
        &mut self,
        store: &Store,
        target: u64,
        pending: &Counters,
        loss: &mut Counters,
        now_ms: i64,
        may_drop: bool,
    ) -> Result<Enforced, StoreError> {
        let mut done = Enforced {
            bytes_before: store.outbox_bytes(),
            ..Enforced::default()
        };
        let lock = store.lock_outbox();
        // Where this call's walk is: a chunk that merged nothing but is not yet
        // at the coarsest width is stepped past by one batch (its windows may
        // pair with the next batch's), not marked coarse.
        // A walk that reaches the end having merged something starts over
        // (the merged windows may pair again); one that merged nothing drops.
        let mut cursor = self.coarse_until;
        let mut pass_merged = false;
        // A small chunk that merged nothing is tried once more whole: its
        // batches may hold different series (a cut splits by window count).
        let mut widen = false;
        while store.outbox_bytes() > target {
            let mut chunk = lock.rewritable(cursor.max(self.coarse_until), CHUNK_BATCHES)?;
            let mut bytes = 0u64;
            let fits = chunk
                .iter()
                .take_while(|(_, b)| {
                    bytes += b.len() as u64;
                    bytes <= self.max_bytes / CHUNK_BYTES_DIVISOR
                })
                .count();
            let whole = chunk.len();
            if !widen {
                chunk.truncate(fits.max(2));
            }
            if chunk.is_empty() && pass_merged {
                (cursor, pass_merged) = (self.coarse_until, false);
                continue;
            }
            if chunk.is_empty() && !may_drop {
                break; // nothing merges any more; dropping is not ours to do here
            }
            let (rewrite, merged, dropped) = if chunk.is_empty() {
                // Nothing rewritable merges any more (all as coarse as allowed,
                // or no neighbours pair up): drop the oldest.
                let Some(oldest) = lock.rewritable(0, 1)?.pop() else {
                    break; // only the head (maybe in flight) is left
                };
                // Its gauges are left behind: later batches carry newer ones.
                let (windows, BatchExtras { counters, .. }, opened) =
                    open_all(std::slice::from_ref(&oldest));
                // Counted in original windows; a batch that does not open held at least one.
                let lost = if opened.is_empty() {
                    1
                } else {
                    windows.iter().map(|w| u64::from(w.rolled_up.max(1))).sum()
                };
                loss.add(Reason::OutboxFull, lost);
                loss.merge(&counters);
                let rewrite = OutboxRewrite {
                    remove: vec![oldest.0],
                    insert: Vec::new(),
                    counters: merged_counters(pending, loss),
                };
                (rewrite, 0, lost)
            } else {
                let last = chunk.last().map_or(0, |(seq, _)| *seq);
                let (windows, extras, seqs) = open_all(&chunk);
                let escalations_before = escalations_in(&windows);
                let (rolled, merged) = rollup::roll_up(windows, self.max_width_ms);
                // As coarse as allowed, for good (not merely unpaired in this chunk),
                // and `coarse_until` may move past the chunk only if the chunk
                // starts right after it: batches the walk stepped past on the
                // way here are not coarse. (A chunk of counters-only batches,
                // a cut's pending roll-up counts at the tail, has no window and
                // was taken for coarse, which froze everything before it.)
                let contiguous = cursor <= self.coarse_until;
                let coarsest = contiguous
                    && rolled
                        .iter()
                        .all(|w| w.end_ms.saturating_sub(w.start_ms) >= self.max_width_ms);
                if merged == 0 {
                    if !widen && whole > chunk.len() {
                        widen = true;
                        continue;
                    }
                    if coarsest {
                        self.coarse_until = last;
                    }
                    cursor = cursor.max(chunk[0].0);
                    widen = false;
                    continue;
                }
                (pass_merged, widen) = (true, false);
                loss.add(Reason::RolledUp, merged);
                // A merged window keeps at most its room of escalations.
                let refused = escalations_before - escalations_in(&rolled);
                loss.add(Reason::EscalationOverBudget, refused);
                self.count(Reason::EscalationOverBudget, refused);
                // Never more batches than it replaces: a roll-up has fewer windows.
                let insert = self
                    .sealer
                    .seal(seqs.iter().copied(), &rolled, extras, now_ms);
                if coarsest {
                    self.coarse_until = insert.last().map_or(seqs[0], |(seq, _)| *seq);
                }
                let rewrite = OutboxRewrite {
                    remove: seqs,
                    insert,
                    counters: merged_counters(pending, loss),
                };
                (rewrite, merged, 0)
            };
            lock.apply(&rewrite)?;
            self.count(Reason::RolledUp, merged);
            self.count(Reason::OutboxFull, dropped);
            done.rolled_up += merged;
            done.dropped += dropped;
        }
        drop(lock);
        done.bytes_after = store.outbox_bytes();
        if done.dropped > 0 {
            warn!(
                dropped_windows = done.dropped,
                cap = self.max_bytes,
                "outbox full even at the coarsest roll-up width: dropped the oldest windows (counted as outbox_full)"
            );
        }
        if done.rolled_up > 0 {
            info!(
                merged_windows = done.rolled_up,
                bytes_before = done.bytes_before,
                bytes_after = done.bytes_after,
                cap = self.max_bytes,
                "outbox at its cap: rolled old windows up into coarser ones (counted as rolled_up)"
            );
        }
        Ok(done)
    }
}

fn escalations_in(windows: &[WindowSummary]) -> u64 {
    windows.iter().map(|w| w.escalations.len() as u64).sum()
}

fn merged_counters(pending: &Counters, loss: &Counters) -> Counters {
    let mut all = pending.clone();
    all.merge(loss);
    all
}

mod batches;
#[cfg(test)]
mod tests;
