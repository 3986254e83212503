//! The agent's durable state on sled: ingest journal, outbox, and bookkeeping.
//!
//! One sled tree, keys prefixed by kind, so every state change the pipeline
//! makes is a single atomic `apply_batch` followed by `flush()`:
//!
//! | prefix | key                | value                                    |
//! |--------|--------------------|------------------------------------------|
//! | `j`    | message id (u64 BE)| journal record of a store from before the log (moved at start) |
//! | `o`    | batch seq (u64 BE) | sealed envelope bytes, ready to send      |
//! | `q`    | batch seq (u64 BE) | envelope refused as a conflict, or corrupt |
//! | `x`    | message id (u64 BE)| journal record that failed to decode      |
//! | `s`    | device \0 metric   | `closed_before` (i64 BE): shipped horizon |
//! | `d`    | device             | highest device sequence number seen       |
//! | `c`    | series \0 device   | classifier state of a device (calibration)|
//! | `m`    | name               | epoch, next batch seq, pending counters, sensor mark, journal end |
//!
//! The journal itself (the messages of open windows) is not in sled but in
//! a [`journal_log`] of segment files beside it: a group commit appends its
//! records there first, then commits the rest with the journal's end marker
//! in sled; start-up cuts off whatever the log holds past the marker.
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

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard};

use tracing::{error, info};
use wire::Counters;

use crate::chunked;

pub mod ballast;
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
pub use compact::{CompactError, Compaction};
use journal_log::JournalLog;
use live::Live;
pub use live::{DEFAULT_CACHE_BYTES, MIN_CACHE_BYTES};
use outbox::OutboxShared;
pub use outbox::{OutboxLock, OutboxRewrite};

const META_EPOCH: &[u8] = b"mepoch";
const META_NEXT_SEQ: &[u8] = b"mnext_seq";
const META_COUNTERS: &[u8] = b"mcounters";
/// The first journal message id the stored sensor states do not include.
const META_SENSOR_MARK: &[u8] = b"msensor_mark";
/// One past the last journal record committed (the journal log holds
/// nothing committed at or after it).
const META_JOURNAL_END: &[u8] = b"mjournal_end";

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

/// State found on disk at start-up.
#[derive(Debug, Default)]
pub struct Recovered {
    pub epoch: u64,
    pub next_seq: u64,
    pub counters: Counters,
    pub closed: Vec<(String, String, i64)>,
    pub device_seqs: HashMap<String, u64>,
    /// Journaled messages in id order.
    pub journal: Vec<(u64, JournalRecord)>,
    pub outbox_len: usize,
    /// Classifier state per (model series, device).
    pub classifier: Vec<(String, String, Vec<u8>)>,
    /// Sensor states are current up to this journal message id; later
    /// journaled messages must be re-judged. `None`: a store from before
    /// snapshots, whose states were committed with every message.
    pub sensor_mark: Option<u64>,
    /// Records that failed their checks and were moved to quarantine.
    pub quarantined: u64,
    /// One past the last journal record ever committed (0: none): message
    /// ids start at or after it, even when the journal is empty.
    pub journal_end: u64,
    /// The newest window checkpoint: its journal mark and its bytes
    /// (`windower::checkpoint`); journal records below the mark are not
    /// for the windows.
    pub windows: Option<(u64, Vec<u8>)>,
}

/// One group commit of ingested messages.
#[derive(Debug, Default)]
pub struct IngestCommit {
    pub journal: Vec<(u64, JournalRecord)>,
    pub device_seqs: Vec<(String, u64)>,
    pub counters: Option<Counters>,
    /// Classifier state per (model series, device), replacing the old.
    pub classifier: Vec<(String, String, Vec<u8>)>,
    /// With a sensor snapshot in `classifier`: the next message id it does not include.
    pub sensor_mark: Option<u64>,
}

/// One cut of closed windows into outbox batches.
#[derive(Debug, Default)]
pub struct BatchCommit {
    pub batches: Vec<(u64, Vec<u8>)>,
    pub next_seq: u64,
    /// Counters left pending after the cut (normally empty).
    pub counters: Counters,
    pub closed: Vec<(String, String, i64)>,
    /// The journal's new low-water mark: no open window holds a message
    /// below it, so those records may go once the cut is durable (0: none).
    pub journal_below: u64,
    /// Sensor snapshot: required whenever `journal_below` rises, since a
    /// released message can no longer be re-judged at start-up.
    pub classifier: Vec<(String, String, Vec<u8>)>,
    pub sensor_mark: Option<u64>,
    /// A window checkpoint (its mark and bytes), replacing the stored one;
    /// `journal_below` is then the mark (and the sensor snapshot's).
    pub windows: Option<(u64, Vec<u8>)>,
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
fn put_classifier(
    batch: &mut sled::Batch,
    states: &[(String, String, Vec<u8>)],
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
        let (log, reopened) = JournalLog::open(&dir.join(JOURNAL_DIR), journal_end)
            .map_err(|e| live.journal_failed(e))?;
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
    pub fn commit_ingest(&self, commit: &IngestCommit) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        if let Some((last, _)) = commit.journal.last() {
            self.journal()
                .append(commit.journal.iter().map(|(id, r)| (*id, r)))
                .map_err(|e| self.live().journal_failed(e))?;
            batch.insert(META_JOURNAL_END, &(last + 1).to_be_bytes());
        }
        // Taken after the journal's sync: a compaction waits for sled's part only.
        let live = self.live();
        for (device, seq) in &commit.device_seqs {
            let mut k = vec![b'd'];
            k.extend_from_slice(device.as_bytes());
            batch.insert(k, &seq.to_be_bytes());
        }
        if let Some(counters) = &commit.counters {
            batch.insert(META_COUNTERS, wire::encode(counters));
        }
        put_classifier(&mut batch, &commit.classifier, commit.sensor_mark);
        live.tree.apply_batch(batch)?;
        live.flush()?;
        Ok(())
    }

    /// Makes a cut durable: new outbox batches, shipped horizons, then releases
    /// the journal below the cut's low-water mark.
    pub fn commit_batches(&self, commit: &BatchCommit) -> Result<(), StoreError> {
        let live = self.live();
        let mut batch = sled::Batch::default();
        let mut added = 0u64;
        for (seq, bytes) in &commit.batches {
            chunked::insert(&mut batch, b'o', *seq, bytes);
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
        put_classifier(&mut batch, &commit.classifier, commit.sensor_mark);
        if let Some((mark, bytes)) = &commit.windows {
            windows::put(&live.tree, &mut batch, *mark, bytes)?;
        }
        live.tree.apply_batch(batch)?;
        self.outbox.bytes.fetch_add(added, Ordering::SeqCst);
        self.outbox
            .batches
            .fetch_add(commit.batches.len() as u64, Ordering::SeqCst);
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
