//! Store compaction: write every live record into a snapshot, switch to a
//! fresh sled generation loaded from it, so disk use falls back to what the
//! records need.
//!
//! Why: sled 0.34 appends every write to its log and reclaims a segment only
//! once at most half of it is live, and its file shrinks only when the
//! segments at its tail are free. Under roll-ups and bursts the store's disk
//! use therefore drifts to 2–3× its live bytes and stays there (measured: a
//! store whose outbox had drained to 0 bytes held 15.1 MB). The outbox cap is
//! on disk use, so the pipeline compacts when disk use is high and the live
//! bytes are low ([`crate::disk_guard`] decides when).
//!
//! Steps, all while every reader and writer waits (the store's write lock):
//! 1. write the records to a flat snapshot ([`super::snapshot`]: records +
//!    8 bytes each, synced); it gives up, deleting itself, past the
//!    caller's allowance, so old files and snapshot never pass the cap;
//! 2. commit "generation n+1, from its snapshot" ([`super::generation`]);
//! 3. close and delete the old generation: its space is free *before* the
//!    new sled is written (a fresh sled takes 2.5–3× its records, which is
//!    why sled is not copied to sled beside the old files);
//! 4. load the snapshot into an empty generation n+1, flush, commit it,
//!    delete the snapshot.
//!
//! The store's ballast ([`super::ballast`]) is deleted before step 1 (its
//! blocks are the snapshot's room) and written back at the end.
//!
//! A crash before 2 leaves the old generation current; after it, start-up
//! redoes 3 and 4 from the snapshot ([`load_generation`]). An I/O error at
//! or after 2 aborts the process for the same reason: the old generation in
//! memory may no longer be what a restart would open. It does not decide when to compact.

use std::time::{Duration, Instant};

use std::path::Path;

use tracing::{error, info, warn};

use super::ballast::Ballast;
use super::snapshot::{self, SnapshotWriter, Stop};
use super::{generation, Live, Store, StoreError};

/// Bytes of records per sled batch while loading a snapshot.
const LOAD_BATCH_BYTES: u64 = 256 * 1024;

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
    #[error("the snapshot would pass its allowance of {allowance} bytes on disk; deleted it")]
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

    /// Snapshots every record and makes a fresh generation loaded from it
    /// current, unless the snapshot would pass `allowance` bytes. Everything
    /// else that uses the store waits meanwhile.
    pub fn compact(&self, allowance: u64) -> Result<Compaction, CompactError> {
        let started = Instant::now();
        let mut live = self.live.write().unwrap_or_else(|p| p.into_inner());
        let disk_before = self.disk_usage().map_err(io)?;
        let next = live.generation + 1;
        let next_dir = generation::dir_of(&self.dir, next);
        if next_dir.exists() {
            std::fs::remove_dir_all(&next_dir).map_err(io)?;
        }
        // The ballast's blocks are the snapshot's room (see [`super::ballast`]);
        // it is written back however the compaction ends.
        let ballast = Ballast::of(&self.dir);
        let had = ballast.release().map_err(io)?;
        let restore = |why: &str| {
            if let Err(e) = ballast.fill(had) {
                warn!("store ballast not written back after {why}: {e}");
            }
        };
        let path = snapshot::path_of(&self.dir, next);
        let mut out = match SnapshotWriter::create(path.clone(), allowance) {
            Ok(out) => out,
            Err(e) => {
                restore("a failed compaction");
                return Err(io(e).into());
            }
        };
        let (mut records, mut bytes) = (0u64, 0u64);
        for item in live.tree.iter() {
            let written = match item {
                Ok((k, v)) => {
                    bytes += (k.len() + v.len()) as u64;
                    out.record(&k, &v).map_err(io)
                }
                Err(e) => Err(e.into()),
            };
            match written {
                Ok(Ok(())) => records += 1,
                Ok(Err(Stop)) => {
                    restore("an abandoned compaction");
                    return Err(CompactError::OverAllowance { allowance });
                }
                Err(e) => {
                    out.abandon();
                    restore("a failed compaction");
                    return Err(e.into());
                }
            }
        }
        if let Err(e) = out.finish() {
            // Not committed: the snapshot is not needed (start-up would delete it too).
            let _ = std::fs::remove_file(&path);
            restore("a failed compaction");
            return Err(io(e).into());
        }
        // The commit point. If writing it fails, whether it landed is
        // unknown (the rename may be on disk), so the snapshot must stay and
        // the old generation must not take another write: that failure is
        // handled like one after the commit, and start-up decides by the
        // generation file (it loads the snapshot, or deletes it as stale).
        // After the commit a restart loads the snapshot.
        let after_commit = generation::commit_loading(&self.dir, next)
            .map_err(io)
            .and_then(|()| Live::open(&self.dir, next, self.cache_bytes))
            .and_then(|fresh| {
                drop(std::mem::replace(&mut *live, fresh));
                load_into(&self.dir, &live)
            });
        if let Err(e) = after_commit {
            error!(
                "store compaction failed at or after its commit point: {e}; stopping so that \
                 start-up finishes it from the snapshot or keeps the old generation"
            );
            std::process::abort();
        }
        restore("a compaction");
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

/// Opens generation `n` of `data_dir` whose generation file says "from
/// snapshot": a compaction committed it and stopped before loading it.
/// Discards the partial sled directory, then loads as [`load_into`] does.
pub(super) fn load_generation(
    data_dir: &Path,
    n: u64,
    cache_bytes: u64,
) -> Result<Live, StoreError> {
    let dir = generation::dir_of(data_dir, n);
    if n > 0 && dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(io)?;
    }
    let live = Live::open(data_dir, n, cache_bytes)?;
    let records = load_into(data_dir, &live)?;
    info!(
        generation = n,
        records, "finished a store compaction cut short: loaded its snapshot"
    );
    Ok(live)
}

/// Deletes every other generation, loads `fresh` (empty, generation `n`)
/// from `n`'s snapshot, flushes it, commits `n` and deletes the snapshot.
fn load_into(data_dir: &Path, fresh: &Live) -> Result<u64, StoreError> {
    let n = fresh.generation;
    generation::delete_others(data_dir, n, true).map_err(io)?;
    let mut batch = sled::Batch::default();
    let mut in_batch = 0u64;
    let mut failed = None;
    let records = snapshot::read(&snapshot::path_of(data_dir, n), |k, v| {
        in_batch += (k.len() + v.len()) as u64;
        batch.insert(k, v);
        if in_batch >= LOAD_BATCH_BYTES {
            in_batch = 0;
            if let Err(e) = fresh.tree.apply_batch(std::mem::take(&mut batch)) {
                failed = Some(e);
                return Err(std::io::Error::other("sled apply_batch failed"));
            }
        }
        Ok(())
    });
    if let Some(e) = failed {
        return Err(e.into());
    }
    let records = records.map_err(io)?;
    fresh.tree.apply_batch(batch)?;
    fresh.flush()?;
    generation::commit(data_dir, n).map_err(io)?;
    // Loaded and committed: a snapshot left behind only costs disk until
    // the next start-up deletes it, so failing here would be out of proportion.
    if let Err(e) = generation::delete_others(data_dir, n, false) {
        warn!("loaded store snapshot not deleted yet (start-up retries): {e}");
    }
    Ok(records)
}
