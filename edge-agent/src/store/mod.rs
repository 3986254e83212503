//! The agent's durable state on sled: ingest journal, outbox, and bookkeeping.
//!
//! One sled tree, keys prefixed by kind, so every state change the pipeline
//! makes in sled is a single atomic `apply_batch` followed by `flush()`:
//!
//! | prefix | key                | value                                    |
//! |--------|--------------------|------------------------------------------|
//! | `j`    | message id (u64 BE)| journal record of a store from before the log (moved at start) |
//! | `o`    | batch seq (u64 BE) | sealed envelope bytes, ready to send      |
//! | `q`    | batch seq (u64 BE) | envelope refused as a conflict, or corrupt |
//! | `x`    | message id (u64 BE)| journal record that failed to decode      |
//! | `s`    | device \0 metric   | `closed_before` (i64 BE): shipped horizon |
//! | `d`    | device             | highest device sequence number seen (as of the seqs mark) |
//! | `c`    | series \0 device   | classifier state of a device (calibration)|
//! | `m`    | name               | epoch, next batch seq, pending counters, sensor mark, seqs mark, journal end, journal mode |
//!
//! The journal itself (the messages of open windows) is not in sled but in
//! a [`journal_log`] of segment files beside it, and its sync is a group
//! commit's commit point: each record carries its message's sequence number,
//! so a group that changed nothing else (no rejection counted, no classifier
//! state) writes nothing to sled at all. Sequence numbers reach sled with the
//! next cut (or with a group holding a message that left no record), with the
//! seqs mark: start-up takes sled's and then those of the journal records at
//! or past the mark.
//! A store from before (no journal mode key) wrote a journal end marker with
//! every commit; its log is read once up to that marker, then the mode is set.
//!
//! Nothing here decides *what* to write; the pipeline and syncer do. sled 0.34
//! `flush()` makes writes survive a process kill; [`crate::disk_sync`] adds
//! what a power cut needs (fdatasync of the log, fsync of blob files).
//! The sled files of one *generation* are open at a time ([`generation`]); a
//! compaction ([`compact`]) copies the records into the next one to give disk
//! space back, taking its room from the [`ballast`]. Start-up (reading back,
//! quarantine) is in [`recover`]; one open generation is a [`live`] set of
//! sled files; the outbox's records and rewrites are in [`outbox`].
//! sled's page cache size is configurable ([`DEFAULT_CACHE_BYTES`],
//! `[journal] cache_bytes`), the same for every generation opened.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard};

use tracing::{error, info};

use crate::chunked;

pub mod ballast;
mod commits;
mod compact;
mod generation;
mod journal_log;
mod live;
mod outbox;
mod recover;
mod snapshot;
mod windows;
mod witness;

use crate::journal_record::JournalRecord;
pub use commits::{BatchCommit, IngestCommit, Recovered};
pub use compact::{CompactError, Compaction};
use journal_log::{CommitBound, JournalLog};
use live::Live;
pub use live::{DEFAULT_CACHE_BYTES, MIN_CACHE_BYTES};
use outbox::OutboxShared;
pub use outbox::{OutboxLock, OutboxRewrite};

const META_EPOCH: &[u8] = b"mepoch";
const META_NEXT_SEQ: &[u8] = b"mnext_seq";
const META_COUNTERS: &[u8] = b"mcounters";
/// The first journal message id the stored sensor states do not include.
const META_SENSOR_MARK: &[u8] = b"msensor_mark";
/// Journal ids start at or after this, even when the log is empty (written
/// with cuts; before [`META_JOURNAL_MODE`], with every group commit, and the
/// log held nothing committed at or after it).
const META_JOURNAL_END: &[u8] = b"mjournal_end";
/// Present once the journal log's own frames are what is committed.
const META_JOURNAL_MODE: &[u8] = b"mjournal_mode";
/// The first journal message id whose sequence number the `d` keys do not include.
const META_SEQS_MARK: &[u8] = b"mseqs_mark";

/// The journal log's directory in the data directory.
pub const JOURNAL_DIR: &str = "journal";

/// Why the store failed. Any of these stops the pipeline: acking on top of a
/// broken store would lose data.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store I/O failed")]
    Sled(#[from] sled::Error),
    #[error("journal I/O failed")]
    Journal(#[source] std::io::Error),
    #[error("store is corrupt: {0}")]
    Corrupt(String),
}

/// Handle to the store; cheap to clone, safe to share between threads.
#[derive(Debug, Clone)]
pub struct Store {
    /// The open generation; a compaction swaps it under the write lock.
    live: Arc<RwLock<Live>>,
    /// The journal's segment files; written by the pipeline only.
    journal: Arc<Mutex<JournalLog>>,
    outbox: Arc<OutboxShared>,
    /// A file beside sled's own recording (epoch, next batch seq) after every
    /// cut: sled recovers a torn log to an *earlier consistent state* without
    /// complaint, and this is how start-up notices that batches went missing.
    witness: std::path::PathBuf,
    /// The data directory (all generations, the witness).
    dir: std::path::PathBuf,
    /// sled's page cache capacity for every generation opened ([`Store::open_with_cache`]).
    cache_bytes: u64,
}

/// Classifier states (key `c` series \0 device) and the sensor mark into `batch`.
/// Takes `states` by value: each encoded state is dropped once the batch holds
/// its copy, so a sensor snapshot (~23 KB per device) is not in memory twice.
fn put_classifier(
    batch: &mut sled::Batch,
    states: Vec<(String, String, Vec<u8>)>,
    sensor_mark: Option<u64>,
) {
    for (series, device, state) in states {
        let mut k = vec![b'c'];
        k.extend_from_slice(series.as_bytes());
        k.push(0);
        k.extend_from_slice(device.as_bytes());
        batch.insert(k, state.as_slice());
    }
    if let Some(mark) = sensor_mark {
        batch.insert(META_SENSOR_MARK, &mark.to_be_bytes());
    }
}

/// Device sequence numbers (key `d` device) and their mark into `batch`.
fn put_seqs(batch: &mut sled::Batch, seqs: &[(String, u64)], mark: Option<u64>) {
    for (device, seq) in seqs {
        let mut k = vec![b'd'];
        k.extend_from_slice(device.as_bytes());
        batch.insert(k, &seq.to_be_bytes());
    }
    if let Some(mark) = mark {
        batch.insert(META_SEQS_MARK, &mark.to_be_bytes());
    }
}

fn key(prefix: u8, id: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = prefix;
    k[1..].copy_from_slice(&id.to_be_bytes());
    k
}

fn u64_of(bytes: &[u8], what: &str) -> Result<u64, StoreError> {
    let arr: [u8; 8] = bytes
        .try_into()
        .map_err(|_| StoreError::Corrupt(format!("{what}: expected 8 bytes")))?;
    Ok(u64::from_be_bytes(arr))
}

/// 2000-01-01T00:00:00Z in ms: a clock earlier than this has not been set.
const SANE_CLOCK_MS: i64 = 946_684_800_000;

/// A new outbox epoch: the clock in ms when it is set (epochs then sort by
/// creation), else a random value above any sane clock reading, so two
/// stores wiped and recreated on a gateway that boots in 1970 never share
/// an epoch (they would collide at the sink as conflicts).
fn new_epoch(now_ms: i64) -> u64 {
    if now_ms >= SANE_CLOCK_MS {
        return now_ms as u64;
    }
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_i64(now_ms);
    h.write_u32(std::process::id());
    // Above year 3000 in ms, below 2^62: recognisable, and no sane clock reaches it.
    32_503_680_000_000 + h.finish() % (1 << 61)
}

impl Store {
    /// Opens (or creates) the store in `dir` and reads back everything needed
    /// to resume, with sled's page cache at [`DEFAULT_CACHE_BYTES`].
    pub fn open(dir: &Path, now_ms: i64) -> Result<(Store, Recovered), StoreError> {
        Self::open_with_cache(dir, now_ms, DEFAULT_CACHE_BYTES)
    }

    /// [`Store::open`] with sled's page cache capped at `cache_bytes` (this
    /// generation and every one a compaction opens later).
    pub fn open_with_cache(
        dir: &Path,
        now_ms: i64,
        cache_bytes: u64,
    ) -> Result<(Store, Recovered), StoreError> {
        let io = |e| StoreError::Sled(sled::Error::Io(e));
        let current = generation::current(dir).map_err(io)?;
        let n = current.n;
        let live = if current.loading {
            compact::load_generation(dir, n, cache_bytes)?
        } else {
            Live::open(dir, n, cache_bytes)?
        };
        let deleted = generation::delete_others(dir, n, false).map_err(io)?;
        if deleted > 0 {
            info!(
                generation = n,
                deleted, "deleted files of an earlier store generation"
            );
        }
        let journal_end = match live.tree.get(META_JOURNAL_END)? {
            Some(v) => u64_of(&v, "journal end")?,
            None => 0,
        };
        let bound = if live.tree.contains_key(META_JOURNAL_MODE)? {
            CommitBound::Frames {
                known_end: journal_end,
            }
        } else {
            CommitBound::Marker(journal_end)
        };
        let (log, reopened) =
            JournalLog::open(&dir.join(JOURNAL_DIR), bound).map_err(|e| live.journal_failed(e))?;
        if matches!(bound, CommitBound::Marker(_)) {
            // The log now holds only what the marker committed; from here on
            // its frames are the commit.
            live.tree.insert(META_JOURNAL_MODE, &[1u8])?;
            live.flush()?;
        }
        let store = Store {
            live: Arc::new(RwLock::new(live)),
            journal: Arc::new(Mutex::new(log)),
            outbox: Arc::default(),
            witness: dir.join("outbox-witness"),
            dir: dir.to_owned(),
            cache_bytes,
        };
        let mut recovered = store.recover(now_ms)?;
        recovered.journal_end = journal_end;
        store.recover_journal(reopened, &mut recovered)?;
        recovered.replay_seqs();
        Ok((store, recovered))
    }

    /// The open generation, shared (a compaction waits for every reader).
    fn live(&self) -> RwLockReadGuard<'_, Live> {
        self.live.read().unwrap_or_else(|p| p.into_inner())
    }

    fn journal(&self) -> MutexGuard<'_, JournalLog> {
        self.journal.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Journal records below `mark` are needed by no open window (found so
    /// at start-up, after the replay): their segments may go.
    pub fn release_journal_below(&self, mark: u64) {
        self.journal().release_below(mark);
    }

    /// Bytes the journal's segments hold (on disk, beside sled; a compaction
    /// does not give them back).
    pub fn journal_bytes(&self) -> u64 {
        self.journal().bytes()
    }

    /// Opens the store; if sled itself reports corruption (a torn or bit-flipped
    /// file), moves the whole directory aside as `<dir>.corrupt-<ms>` for
    /// inspection and starts an empty store (a new epoch), counting one
    /// `corrupt_record`. Unreadable data is lost either way; the agent keeps
    /// ingesting instead of crash-looping. Any other error stops start-up.
    /// sled's page cache is capped at `cache_bytes` ([`Store::open_with_cache`]).
    pub fn open_or_set_aside(
        dir: &Path,
        now_ms: i64,
        cache_bytes: u64,
    ) -> Result<(Store, Recovered), StoreError> {
        match Self::open_with_cache(dir, now_ms, cache_bytes) {
            Err(StoreError::Sled(sled::Error::Corruption { .. })) => {
                let aside = dir.with_extension(format!("corrupt-{}", now_ms));
                error!(
                    store = %dir.display(),
                    moved_to = %aside.display(),
                    "ALARM: the store is corrupt and cannot be opened; moved aside, starting empty"
                );
                std::fs::rename(dir, &aside).map_err(|e| {
                    StoreError::Corrupt(format!("moving the corrupt store aside: {e}"))
                })?;
                let (store, mut recovered) = Self::open_with_cache(dir, now_ms, cache_bytes)?;
                recovered.quarantined += 1;
                Ok((store, recovered))
            }
            other => other,
        }
    }

    /// Makes one group of ingested messages durable: the journal records are
    /// appended to the log and synced first, then the rest, with the
    /// journal's new end, is one sled batch; the sled flush is the commit.
    /// Takes the commit by value so its large parts are freed as they are copied.
    pub fn commit_ingest(&self, commit: IngestCommit) -> Result<(), StoreError> {
        if !commit.journal.is_empty() {
            self.journal()
                .append(commit.journal.iter().map(|(id, r)| (*id, r)))
                .map_err(|e| self.live().journal_failed(e))?;
        }
        let sled_part = !commit.device_seqs.is_empty()
            || commit.seqs_mark.is_some()
            || commit.counters.is_some()
            || !commit.classifier.is_empty()
            || commit.sensor_mark.is_some();
        if !sled_part {
            return Ok(()); // the journal's sync was the commit
        }
        // Taken after the journal's sync: a compaction waits for sled's part only.
        let live = self.live();
        let mut batch = sled::Batch::default();
        put_seqs(&mut batch, &commit.device_seqs, commit.seqs_mark);
        if let Some(counters) = &commit.counters {
            batch.insert(META_COUNTERS, wire::encode(counters));
        }
        put_classifier(&mut batch, commit.classifier, commit.sensor_mark);
        live.tree.apply_batch(batch)?;
        live.flush()?;
        Ok(())
    }

    /// Makes a cut durable: new outbox batches, shipped horizons, then releases
    /// the journal below the cut's low-water mark. Takes the commit by value:
    /// each sealed batch is freed once its chunks are in the sled batch, so a
    /// cut's outbox bytes are not held twice.
    pub fn commit_batches(&self, commit: BatchCommit) -> Result<(), StoreError> {
        let live = self.live();
        let mut batch = sled::Batch::default();
        let mut added = 0u64;
        let sealed = commit.batches.len() as u64;
        for (seq, bytes) in commit.batches {
            chunked::insert(&mut batch, b'o', seq, &bytes);
            added += bytes.len() as u64;
        }
        batch.insert(META_NEXT_SEQ, &commit.next_seq.to_be_bytes());
        batch.insert(META_COUNTERS, wire::encode(&commit.counters));
        for (device, metric, closed_before) in &commit.closed {
            let mut k = vec![b's'];
            k.extend_from_slice(device.as_bytes());
            k.push(0);
            k.extend_from_slice(metric.as_bytes());
            batch.insert(k, &(*closed_before as u64).to_be_bytes());
        }
        put_classifier(&mut batch, commit.classifier, commit.sensor_mark);
        put_seqs(&mut batch, &commit.device_seqs, commit.seqs_mark);
        if commit.journal_end > 0 {
            batch.insert(META_JOURNAL_END, &commit.journal_end.to_be_bytes());
        }
        if let Some((mark, bytes)) = commit.windows {
            windows::put(&live.tree, &mut batch, mark, &bytes)?;
        }
        live.tree.apply_batch(batch)?;
        self.outbox.bytes.fetch_add(added, Ordering::SeqCst);
        self.outbox.batches.fetch_add(sealed, Ordering::SeqCst);
        live.flush()?;
        self.write_witness(&live, commit.next_seq)?;
        // After the cut is durable: a crash before this replays the released
        // records into shipped windows, which skip them.
        self.journal().release_below(commit.journal_below);
        Ok(())
    }

    /// Bytes the whole store (sled files, blobs, witness) occupies on disk.
    pub fn disk_usage(&self) -> std::io::Result<u64> {
        crate::disk_usage::disk_usage(&self.dir)
    }

    /// The store's ballast ([`ballast`]): room a compaction's snapshot takes.
    pub fn ballast(&self) -> ballast::Ballast {
        ballast::Ballast::of(&self.dir)
    }
}

#[cfg(test)]
mod tests;
