//! The agent's durable state on sled: ingest journal, outbox, and bookkeeping.
//!
//! One sled tree, keys prefixed by kind, so every state change the pipeline
//! makes is a single atomic `apply_batch` followed by `flush()`:
//!
//! | prefix | key                | value                                    |
//! |--------|--------------------|------------------------------------------|
//! | `j`    | message id (u64 BE)| [`JournalRecord`]: readings of open windows |
//! | `o`    | batch seq (u64 BE) | sealed envelope bytes, ready to send      |
//! | `q`    | batch seq (u64 BE) | envelope refused as a conflict, or corrupt |
//! | `x`    | message id (u64 BE)| journal record that failed to decode      |
//! | `s`    | device \0 metric   | `closed_before` (i64 BE): shipped horizon |
//! | `d`    | device             | highest device sequence number seen       |
//! | `c`    | series \0 device   | classifier state of a device (calibration)|
//! | `m`    | name               | epoch, next batch seq, pending counters, sensor mark |
//!
//! Nothing here decides *what* to write; the pipeline and syncer do. sled 0.34
//! `flush()` makes writes survive a process kill; [`crate::disk_sync`] adds
//! what a power cut needs (fdatasync of the log, fsync of blob files).
//! The sled files of one *generation* are open at a time ([`generation`]); a
//! compaction ([`compact`]) copies the records into the next one to give disk
//! space back. Start-up (reading back, quarantine) is in [`recover`].
//! sled's page cache size is configurable ([`DEFAULT_CACHE_BYTES`],
//! `[journal] cache_bytes`), the same for every generation opened.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard};

use tracing::{error, info};
use wire::Counters;

use crate::chunked;

pub mod ballast;
mod compact;
mod generation;
mod recover;
mod snapshot;

use crate::journal_record::JournalRecord;
pub use compact::{CompactError, Compaction};

const META_EPOCH: &[u8] = b"mepoch";
const META_NEXT_SEQ: &[u8] = b"mnext_seq";
const META_COUNTERS: &[u8] = b"mcounters";
/// The first journal message id the stored sensor states do not include.
const META_SENSOR_MARK: &[u8] = b"msensor_mark";

/// Why the store failed. Any of these stops the pipeline: acking on top of a
/// broken store would lose data.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store I/O failed")]
    Sled(#[from] sled::Error),
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
    pub released: Vec<u64>,
    /// Sensor snapshot: required whenever `released` is not empty, since a
    /// released message can no longer be re-judged at start-up.
    pub classifier: Vec<(String, String, Vec<u8>)>,
    pub sensor_mark: Option<u64>,
}

/// Handle to the store; cheap to clone, safe to share between threads.
#[derive(Debug, Clone)]
pub struct Store {
    /// The open generation; a compaction swaps it under the write lock.
    live: Arc<RwLock<Live>>,
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

/// One open generation of sled files ([`generation`]).
#[derive(Debug)]
struct Live {
    db: sled::Db,
    tree: sled::Tree,
    disk: crate::disk_sync::DiskSync,
    generation: u64,
}

impl Live {
    /// Opens generation `n` of `data_dir` (creating it if new) with a page
    /// cache of `cache_bytes` ([`DEFAULT_CACHE_BYTES`]).
    fn open(data_dir: &Path, n: u64, cache_bytes: u64) -> Result<Live, StoreError> {
        let dir = generation::dir_of(data_dir, n);
        let db = sled::Config::new()
            .path(&dir)
            .segment_size(segment_size(&dir))
            .cache_capacity(cache_bytes.max(MIN_CACHE_BYTES))
            .open()?;
        let tree = db.open_tree("agent")?;
        match crate::disk_sync::DiskSync::open(&dir) {
            Ok(disk) => Ok(Live {
                db,
                tree,
                disk,
                generation: n,
            }),
            Err(e) => {
                keep_sled_from_dropping(&db);
                Err(StoreError::Sled(sled::Error::Io(e)))
            }
        }
    }

    /// sled's flush plus what it leaves out for power-cut durability ([`crate::disk_sync`]).
    fn flush(&self) -> Result<(), StoreError> {
        let synced = match self.db.flush() {
            Ok(_) => self
                .disk
                .sync()
                .map_err(|e| StoreError::Sled(sled::Error::Io(e))),
            Err(e) => Err(e.into()),
        };
        if synced.is_err() {
            keep_sled_from_dropping(&self.db);
        }
        synced
    }

    /// The oldest outbox batch, if any: `(seq, envelope bytes)`.
    fn outbox_first(&self) -> Result<Option<(u64, Vec<u8>)>, StoreError> {
        match chunked::Records::new(&self.tree, b'o', 0).next() {
            Some(record) => {
                let record = record?;
                Ok(Some((record.seq, record.bytes)))
            }
            None => Ok(None),
        }
    }
}

/// After a failed flush or sync, sled's last handle must not drop: its
/// `Drop` syncs once more and unwraps the result, a panic that would hide the
/// I/O error (measured by hil-tests' `fault_io`). Leaking one handle keeps
/// sled alive until the process exits, which it is about to: nothing unsynced
/// was acknowledged, and a crash would skip that last sync too.
fn keep_sled_from_dropping(db: &sled::Db) {
    std::mem::forget(db.clone());
}

/// sled's segment size for new stores. Smaller than sled's 512 KiB default:
/// measured under outbox churn, disk use settles near 1.8× the live bytes
/// with 128 KiB segments against 2.5–3× with 512 KiB (the outbox cap is on
/// disk use, so this is more windows per byte of SD card).
const SEGMENT_SIZE: usize = 128 * 1024;

/// sled's page cache capacity unless the config says otherwise
/// (`[journal] cache_bytes`): sled 0.34's own default, 1 GiB. Measured
/// (BENCHMARKS.md, "sled page cache"): 4–64 MiB took ~25 MiB off the RSS at
/// 1k msg/s at no CPU cost, but at 10k msg/s 16–64 MiB cost 1.5–2× the CPU
/// per message and RSS spiked higher, so the default stays sled's; gateways
/// at low rates can lower it.
pub const DEFAULT_CACHE_BYTES: u64 = 1024 * 1024 * 1024;

/// Smallest cache handed to sled (it asserts at least 256 bytes; below a few
/// hundred KiB every read goes to disk). The config refuses less.
pub const MIN_CACHE_BYTES: u64 = 1024 * 1024;

/// The segment size an existing store was created with (sled refuses to open
/// with another), else [`SEGMENT_SIZE`].
fn segment_size(dir: &Path) -> usize {
    std::fs::read_to_string(dir.join("conf"))
        .ok()
        .and_then(|conf| {
            conf.lines()
                .find_map(|l| l.strip_prefix("segment_size: "))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(SEGMENT_SIZE)
}

/// What pipeline and syncer share about the outbox, in memory.
#[derive(Debug, Default)]
struct OutboxShared {
    /// The batch the syncer has sent or is sending (its bytes may be at the
    /// sink already). Held while the outbox is rewritten, so the syncer
    /// cannot claim a batch that a roll-up is replacing.
    claimed: Mutex<Option<u64>>,
    /// Live bytes of all outbox batches (sum of envelope lengths).
    bytes: AtomicU64,
    /// Number of outbox batches (kept with `bytes`, so reading it walks nothing).
    batches: AtomicU64,
}

/// The outbox locked against the syncer claiming a new batch; see [`Store::lock_outbox`].
#[derive(Debug)]
pub struct OutboxLock<'a> {
    store: &'a Store,
    claimed: MutexGuard<'a, Option<u64>>,
}

/// One rewrite of outbox batches (a roll-up or a drop), applied atomically.
#[derive(Debug, Default)]
pub struct OutboxRewrite {
    /// Batches to delete.
    pub remove: Vec<u64>,
    /// Batches to write (seqs taken from `remove`, never new ones).
    pub insert: Vec<(u64, Vec<u8>)>,
    /// Pending counters to persist with the rewrite.
    pub counters: Counters,
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
        let store = Store {
            live: Arc::new(RwLock::new(live)),
            outbox: Arc::default(),
            witness: dir.join("outbox-witness"),
            dir: dir.to_owned(),
            cache_bytes,
        };
        let recovered = store.recover(now_ms)?;
        Ok((store, recovered))
    }

    /// The open generation, shared (a compaction waits for every reader).
    fn live(&self) -> RwLockReadGuard<'_, Live> {
        self.live.read().unwrap_or_else(|p| p.into_inner())
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

    /// Makes one group of ingested messages durable.
    pub fn commit_ingest(&self, commit: &IngestCommit) -> Result<(), StoreError> {
        let live = self.live();
        let mut batch = sled::Batch::default();
        for (id, record) in &commit.journal {
            batch.insert(&key(b'j', *id), record.encode());
        }
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

    /// Makes a cut durable: new outbox batches, shipped horizons, released journal entries.
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
        for id in &commit.released {
            batch.remove(&key(b'j', *id));
        }
        put_classifier(&mut batch, &commit.classifier, commit.sensor_mark);
        live.tree.apply_batch(batch)?;
        self.outbox.bytes.fetch_add(added, Ordering::SeqCst);
        self.outbox
            .batches
            .fetch_add(commit.batches.len() as u64, Ordering::SeqCst);
        live.flush()?;
        self.write_witness(&live, commit.next_seq)?;
        Ok(())
    }

    /// Records (epoch, next_seq) durably beside the sled files: write, fsync, rename, fsync dir.
    fn write_witness(&self, live: &Live, next_seq: u64) -> Result<(), StoreError> {
        let epoch = match live.tree.get(META_EPOCH)? {
            Some(v) => u64_of(&v, "epoch")?,
            None => return Ok(()),
        };
        let mut bytes = epoch.to_be_bytes().to_vec();
        bytes.extend_from_slice(&next_seq.to_be_bytes());
        let tmp = self.witness.with_extension("tmp");
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            std::io::Write::write_all(&mut f, &bytes)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &self.witness)?;
            std::fs::File::open(&self.dir)?.sync_all()
        };
        write().map_err(|e| StoreError::Sled(sled::Error::Io(e)))
    }

    fn read_witness(&self) -> Option<(u64, u64)> {
        let bytes = std::fs::read(&self.witness).ok()?;
        let epoch = u64::from_be_bytes(bytes.get(..8)?.try_into().ok()?);
        let next_seq = u64::from_be_bytes(bytes.get(8..16)?.try_into().ok()?);
        Some((epoch, next_seq))
    }

    /// The oldest outbox batch, if any: `(seq, envelope bytes)`.
    pub fn outbox_first(&self) -> Result<Option<(u64, Vec<u8>)>, StoreError> {
        self.live().outbox_first()
    }

    /// The oldest outbox batch, claimed for sending: from now on no roll-up
    /// rewrites it (its bytes may reach the sink, so they are final).
    pub fn outbox_claim_first(&self) -> Result<Option<(u64, Vec<u8>)>, StoreError> {
        let mut claimed = self
            .outbox
            .claimed
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let first = self.outbox_first()?;
        if let Some((seq, _)) = &first {
            *claimed = Some(*seq);
        }
        Ok(first)
    }

    /// Bytes the whole store (sled files, blobs, witness) occupies on disk.
    pub fn disk_usage(&self) -> std::io::Result<u64> {
        crate::disk_usage::disk_usage(&self.dir)
    }

    /// The store's ballast ([`ballast`]): room a compaction's snapshot takes.
    pub fn ballast(&self) -> ballast::Ballast {
        ballast::Ballast::of(&self.dir)
    }

    /// Live bytes of the outbox (sum of the sealed envelopes waiting).
    pub fn outbox_bytes(&self) -> u64 {
        self.outbox.bytes.load(Ordering::SeqCst)
    }

    /// Locks the syncer out of claiming batches while the pipeline rewrites the outbox.
    pub fn lock_outbox(&self) -> OutboxLock<'_> {
        OutboxLock {
            store: self,
            claimed: self
                .outbox
                .claimed
                .lock()
                .unwrap_or_else(|p| p.into_inner()),
        }
    }

    /// Number of batches waiting to be sent.
    pub fn outbox_len(&self) -> usize {
        usize::try_from(self.outbox.batches.load(Ordering::SeqCst)).unwrap_or(usize::MAX)
    }

    /// Forgets a batch the sink confirmed it stored (durably).
    pub fn outbox_remove(&self, seq: u64) -> Result<(), StoreError> {
        let live = self.live();
        let mut batch = sled::Batch::default();
        if let Some(old) = chunked::remove(&live.tree, &mut batch, b'o', seq)? {
            live.tree.apply_batch(batch)?;
            self.outbox
                .bytes
                .fetch_sub(old.len() as u64, Ordering::SeqCst);
            self.outbox.batches.fetch_sub(1, Ordering::SeqCst);
        }
        live.flush()?;
        Ok(())
    }

    /// Moves a batch the sink refused as a conflict aside, keeping its bytes for inspection.
    pub fn outbox_quarantine(&self, seq: u64) -> Result<(), StoreError> {
        let live = self.live();
        let mut batch = sled::Batch::default();
        if let Some(v) = chunked::remove(&live.tree, &mut batch, b'o', seq)? {
            let len = v.len() as u64;
            batch.insert(&key(b'q', seq), v);
            live.tree.apply_batch(batch)?;
            self.outbox.bytes.fetch_sub(len, Ordering::SeqCst);
            self.outbox.batches.fetch_sub(1, Ordering::SeqCst);
            live.flush()?;
        }
        Ok(())
    }
}

impl OutboxLock<'_> {
    /// Up to `limit` outbox batches after `after_seq` that may be rewritten:
    /// never the oldest (it may have been sent before a restart) and never
    /// the one the syncer claimed. `(seq, envelope bytes)` in seq order.
    pub fn rewritable(
        &self,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        let live = self.store.live();
        let Some((head, _)) = live.outbox_first()? else {
            return Ok(Vec::new());
        };
        let floor = head.max(self.claimed.unwrap_or(0)).max(after_seq);
        let Some(start) = floor.checked_add(1) else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for record in chunked::Records::new(&live.tree, b'o', start).take(limit) {
            let record = record?;
            out.push((record.seq, record.bytes));
        }
        Ok(out)
    }

    /// Applies one rewrite atomically and durably, keeping the byte count.
    pub fn apply(&self, rewrite: &OutboxRewrite) -> Result<(), StoreError> {
        let store = self.store;
        let live = store.live();
        let (mut removed, mut removed_batches) = (0u64, 0u64);
        let mut batch = sled::Batch::default();
        for seq in &rewrite.remove {
            if let Some(v) = chunked::remove(&live.tree, &mut batch, b'o', *seq)? {
                removed += v.len() as u64;
                removed_batches += 1;
            }
        }
        let mut added = 0u64;
        for (seq, bytes) in &rewrite.insert {
            debug_assert!(
                rewrite.remove.contains(seq),
                "a rewrite reuses removed seqs only"
            );
            chunked::insert(&mut batch, b'o', *seq, bytes);
            added += bytes.len() as u64;
        }
        batch.insert(META_COUNTERS, wire::encode(&rewrite.counters));
        live.tree.apply_batch(batch)?;
        store.outbox.bytes.fetch_add(added, Ordering::SeqCst);
        store.outbox.bytes.fetch_sub(removed, Ordering::SeqCst);
        let inserted = rewrite.insert.len() as u64;
        store.outbox.batches.fetch_add(inserted, Ordering::SeqCst);
        store
            .outbox
            .batches
            .fetch_sub(removed_batches, Ordering::SeqCst);
        live.flush()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
