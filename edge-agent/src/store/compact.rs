//! Store compaction: copy every live record into a fresh sled generation and
//! switch to it, so disk use falls back to what the records need.
//!
//! Why: sled 0.34 appends every write to its log and reclaims a segment only
//! once at most half of it is live, and its file shrinks only when the
//! segments at its tail are free. Under roll-ups and bursts the store's disk
//! use therefore drifts to 2–3× its live bytes and stays there (measured: a
//! store whose outbox had drained to 0 bytes held 15.1 MB). The outbox cap is
//! on disk use, so the pipeline compacts when disk use is high and the live
//! bytes are low ([`crate::disk_guard`] decides when).
//!
//! The copy is made while every reader and writer waits (the store's write
//! lock), flushed and synced, and committed by naming the new generation
//! current ([`super::generation`]); a crash at any point leaves one complete
//! generation. The copy gives up, deleting itself, when its disk use passes
//! the allowance the caller grants, so old and new together never pass the
//! cap. It does not decide when to compact.

use std::time::{Duration, Instant};

use tracing::warn;

use super::{generation, Live, Store, StoreError};

/// Bytes of records per sled batch while copying.
const COPY_BATCH_BYTES: u64 = 256 * 1024;
/// The copy's disk use is measured after every this many bytes of records
/// (sled writes about 2.5× that; the caller's allowance keeps a margin).
const MEASURE_EVERY_BYTES: u64 = 128 * 1024;

/// What one compaction did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compaction {
    /// The generation now current.
    pub generation: u64,
    pub records: u64,
    /// Bytes of keys and values copied.
    pub live_bytes: u64,
    pub disk_before: u64,
    pub disk_after: u64,
    pub took: Duration,
}

/// Why a compaction did not switch generations. The old generation is intact.
#[derive(Debug, thiserror::Error)]
pub enum CompactError {
    #[error("the copy passed its allowance of {allowance} bytes on disk; deleted it")]
    OverAllowance { allowance: u64 },
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn io(e: std::io::Error) -> StoreError {
    StoreError::Sled(sled::Error::Io(e))
}

impl Store {
    /// Bytes of keys and values the store holds: what a compaction copies.
    pub fn live_bytes(&self) -> Result<u64, StoreError> {
        let live = self.live();
        let mut total = 0u64;
        for item in live.tree.iter() {
            let (k, v) = item?;
            total += (k.len() + v.len()) as u64;
        }
        Ok(total)
    }

    /// Copies every record into a new generation and makes it current,
    /// unless the copy's disk use passes `allowance` bytes. Everything else
    /// that uses the store waits meanwhile.
    pub fn compact(&self, allowance: u64) -> Result<Compaction, CompactError> {
        let started = Instant::now();
        let mut live = self.live.write().unwrap_or_else(|p| p.into_inner());
        let disk_before = self.disk_usage().map_err(io)?;
        let next = live.generation + 1;
        let next_dir = generation::dir_of(&self.dir, next);
        let give_up = |fresh: Live| {
            drop(fresh);
            if let Err(e) = std::fs::remove_dir_all(&next_dir) {
                warn!(dir = %next_dir.display(), "could not delete an abandoned store copy: {e}");
            }
        };
        if next_dir.exists() {
            std::fs::remove_dir_all(&next_dir).map_err(io)?;
        }
        let fresh = Live::open(&self.dir, next)?;
        let (mut records, mut bytes, mut in_batch, mut since_measured) = (0u64, 0u64, 0u64, 0u64);
        let mut batch = sled::Batch::default();
        let within_allowance = || -> Result<(), CompactError> {
            match crate::disk_usage::disk_usage(&next_dir).map_err(io)? {
                used if used > allowance => Err(CompactError::OverAllowance { allowance }),
                _ => Ok(()),
            }
        };
        let copied = (|| -> Result<(), CompactError> {
            for item in live.tree.iter() {
                let (k, v) = item.map_err(StoreError::from)?;
                let n = (k.len() + v.len()) as u64;
                batch.insert(k, v);
                (records, bytes, in_batch, since_measured) =
                    (records + 1, bytes + n, in_batch + n, since_measured + n);
                if in_batch >= COPY_BATCH_BYTES {
                    fresh
                        .tree
                        .apply_batch(std::mem::take(&mut batch))
                        .map_err(StoreError::from)?;
                    in_batch = 0;
                }
                if since_measured >= MEASURE_EVERY_BYTES {
                    since_measured = 0;
                    within_allowance()?;
                }
            }
            fresh.tree.apply_batch(batch).map_err(StoreError::from)?;
            fresh.flush()?;
            within_allowance()
        })();
        if let Err(e) = copied {
            give_up(fresh);
            return Err(e);
        }
        // The commit point: from here on a restart opens the copy.
        if let Err(e) = generation::commit(&self.dir, next) {
            give_up(fresh);
            return Err(io(e).into());
        }
        let old = std::mem::replace(&mut *live, fresh);
        drop(old);
        if let Err(e) = generation::delete_others(&self.dir, next) {
            warn!("old store generation not deleted yet (start-up retries): {e}");
        }
        let disk_after = self.disk_usage().map_err(io)?;
        Ok(Compaction {
            generation: next,
            records,
            live_bytes: bytes,
            disk_before,
            disk_after,
            took: started.elapsed(),
        })
    }
}
