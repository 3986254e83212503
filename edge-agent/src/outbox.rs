//! The outbox byte cap: when sealed batches waiting for the uplink would
//! exceed `outbox.max_bytes`, old windows are rolled up into coarser ones, and
//! only when everything rewritable is already at `outbox.max_rollup_width` are
//! the oldest batches dropped. Every loss of resolution is counted
//! (`rolled_up`: windows merged away; `outbox_full`: original windows dropped) and the
//! counters of a dropped batch are carried forward, never lost.
//!
//! This is policy only: the merge arithmetic is [`crate::rollup`], the atomic
//! rewrite is [`crate::store::OutboxLock`]. It runs on the pipeline thread
//! (the single writer) while the syncer is locked out of claiming a batch, and
//! it never touches the oldest batch or the one the syncer claimed: those may
//! already be at the sink, so their bytes are final (invariant 7). A rewrite
//! reuses the lowest seqs of the batches it replaces, which were never sent.

use std::time::Duration;

use tracing::{info, warn};
use wire::{BatchKey, Body, Counters, Envelope, Reason, WindowSummary};

use crate::rollup;
use crate::store::{OutboxRewrite, Store, StoreError};

/// Batches decoded and rolled up together in one step (bounds memory).
const CHUNK_BATCHES: usize = 16;

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

/// The cap and the state of the roll-up walk.
#[derive(Debug)]
pub struct OutboxCap {
    max_bytes: u64,
    max_width_ms: i64,
    max_windows_per_batch: usize,
    key: BatchKey,
    /// Batches at or below this seq are already as coarse as allowed.
    coarse_until: u64,
}

impl OutboxCap {
    pub fn new(
        max_bytes: u64,
        max_rollup_width: Duration,
        max_windows_per_batch: usize,
        gateway: &str,
        epoch: u64,
    ) -> OutboxCap {
        OutboxCap {
            max_bytes,
            max_width_ms: i64::try_from(max_rollup_width.as_millis()).unwrap_or(i64::MAX),
            max_windows_per_batch: max_windows_per_batch.max(1),
            key: BatchKey {
                gateway: gateway.to_owned(),
                epoch,
                seq: 0,
            },
            coarse_until: 0,
        }
    }

    /// The cap in bytes.
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
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
        let mut done = Enforced {
            bytes_before: store.outbox_bytes(),
            ..Enforced::default()
        };
        let lock = store.lock_outbox();
        while store.outbox_bytes() > target {
            let chunk = lock.rewritable(self.coarse_until, CHUNK_BATCHES)?;
            let (rewrite, merged, dropped) = if chunk.is_empty() {
                // Everything rewritable is as coarse as allowed: drop the oldest.
                let Some(oldest) = lock.rewritable(0, 1)?.pop() else {
                    break; // only the head (maybe in flight) is left
                };
                let (windows, counters, opened) = open_all(std::slice::from_ref(&oldest));
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
                let (windows, counters, seqs) = open_all(&chunk);
                let (rolled, merged) = rollup::roll_up(windows, self.max_width_ms);
                let coarsest = rollup::is_coarsest(&rolled, self.max_width_ms);
                if merged == 0 {
                    // Nothing to merge here: these batches are as coarse as allowed.
                    self.coarse_until = last;
                    continue;
                }
                loss.add(Reason::RolledUp, merged);
                let insert = self.seal(&seqs, rolled, counters, now_ms);
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

    /// Seals `windows` (plus the replaced batches' counters) into batches
    /// under the lowest of `seqs`; there are always enough seqs because a
    /// roll-up never has more windows than the batches it replaces.
    fn seal(
        &self,
        seqs: &[u64],
        windows: Vec<WindowSummary>,
        mut counters: Counters,
        now_ms: i64,
    ) -> Vec<(u64, Vec<u8>)> {
        let mut out = Vec::new();
        let mut chunks: Vec<Vec<WindowSummary>> = windows
            .chunks(self.max_windows_per_batch)
            .map(<[WindowSummary]>::to_vec)
            .collect();
        if chunks.is_empty() && !counters.is_empty() {
            chunks.push(Vec::new());
        }
        for (seq, windows) in seqs.iter().zip(chunks) {
            let key = BatchKey {
                seq: *seq,
                ..self.key.clone()
            };
            let body = Body {
                windows,
                counters: std::mem::take(&mut counters),
            };
            out.push((*seq, Envelope::seal(&key, now_ms, &body).to_bytes()));
        }
        out
    }
}

/// Windows, counters and seqs of the given sealed batches that open. A batch
/// that does not open (start-up quarantines those) is left out and left alone.
fn open_all(batches: &[(u64, Vec<u8>)]) -> (Vec<WindowSummary>, Counters, Vec<u64>) {
    let mut windows = Vec::new();
    let mut counters = Counters::default();
    let mut opened = Vec::new();
    for (seq, bytes) in batches {
        match Envelope::open(bytes) {
            Ok((_, body)) => {
                windows.extend(body.windows);
                counters.merge(&body.counters);
                opened.push(*seq);
            }
            Err(e) => warn!(seq, "outbox batch does not open during roll-up: {e}"),
        }
    }
    (windows, counters, opened)
}

fn merged_counters(pending: &Counters, loss: &Counters) -> Counters {
    let mut all = pending.clone();
    all.merge(loss);
    all
}
