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
//! | `m`    | name               | epoch, next batch seq, pending counters   |
//!
//! Nothing here decides *what* to write; the pipeline and syncer do. sled 0.34
//! `flush()` makes writes survive a process kill; [`crate::disk_sync`] adds
//! what a power cut needs (fdatasync of the log, fsync of blob files).

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tracing::{error, warn};
use wire::Counters;

use crate::chunked;
use crate::journal_record::JournalRecord;

const META_EPOCH: &[u8] = b"mepoch";
const META_NEXT_SEQ: &[u8] = b"mnext_seq";
const META_COUNTERS: &[u8] = b"mcounters";

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
}

/// Handle to the store; cheap to clone, safe to share between threads.
#[derive(Debug, Clone)]
pub struct Store {
    db: sled::Db,
    tree: sled::Tree,
    outbox: Arc<OutboxShared>,
    /// A file beside sled's own recording (epoch, next batch seq) after every
    /// cut: sled recovers a torn log to an *earlier consistent state* without
    /// complaint, and this is how start-up notices that batches went missing.
    witness: std::path::PathBuf,
    disk: Arc<crate::disk_sync::DiskSync>,
    dir: std::path::PathBuf,
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
    /// Opens (or creates) the store in `dir` and reads back everything needed to resume.
    pub fn open(dir: &Path, now_ms: i64) -> Result<(Store, Recovered), StoreError> {
        let db = sled::Config::new()
            .path(dir)
            .segment_size(segment_size(dir))
            .open()?;
        let tree = db.open_tree("agent")?;
        let disk = match crate::disk_sync::DiskSync::open(dir) {
            Ok(d) => d,
            Err(e) => {
                keep_sled_from_dropping(&db);
                return Err(StoreError::Sled(sled::Error::Io(e)));
            }
        };
        let store = Store {
            db,
            tree,
            outbox: Arc::default(),
            witness: dir.join("outbox-witness"),
            dir: dir.to_owned(),
            disk: Arc::new(disk),
        };
        let recovered = store.recover(now_ms)?;
        Ok((store, recovered))
    }

    /// Opens the store; if sled itself reports corruption (a torn or bit-flipped
    /// file), moves the whole directory aside as `<dir>.corrupt-<ms>` for
    /// inspection and starts an empty store (a new epoch), counting one
    /// `corrupt_record`. Unreadable data is lost either way; the agent keeps
    /// ingesting instead of crash-looping. Any other error stops start-up.
    pub fn open_or_set_aside(dir: &Path, now_ms: i64) -> Result<(Store, Recovered), StoreError> {
        match Self::open(dir, now_ms) {
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
                let (store, mut recovered) = Self::open(dir, now_ms)?;
                recovered.quarantined += 1;
                Ok((store, recovered))
            }
            other => other,
        }
    }

    fn recover(&self, now_ms: i64) -> Result<Recovered, StoreError> {
        let epoch = match self.tree.get(META_EPOCH)? {
            Some(v) => u64_of(&v, "epoch")?,
            None => {
                // A fresh outbox starts a new epoch so its seqs never collide with an old one.
                let epoch = new_epoch(now_ms);
                self.tree.insert(META_EPOCH, &epoch.to_be_bytes())?;
                self.tree.insert(META_NEXT_SEQ, &1u64.to_be_bytes())?;
                self.flush()?;
                epoch
            }
        };
        let mut r = Recovered {
            epoch,
            ..Recovered::default()
        };
        r.next_seq = match self.tree.get(META_NEXT_SEQ)? {
            Some(v) => u64_of(&v, "next_seq")?,
            None => 1,
        };
        let witness = self.read_witness();
        if let Some((epoch, next_seq)) = witness.filter(|(epoch, _)| *epoch != r.epoch) {
            // sled came back empty although a store with cuts was here.
            error!(
                old_epoch = epoch,
                old_next_seq = next_seq,
                "ALARM: the store came back empty (torn or truncated file); its batches since \
                 the last delivery are lost, counted as one corrupt_record; new epoch {}",
                r.epoch
            );
            r.quarantined += 1;
            self.write_witness(r.next_seq)?;
        }
        if let Some((epoch, next_seq)) = witness {
            if epoch == r.epoch && next_seq > r.next_seq {
                // The log was rolled back: batches r.next_seq..next_seq are gone.
                let lost = next_seq - r.next_seq;
                error!(
                    lost_batches = lost,
                    "ALARM: the store came back older than its last cut (torn or truncated file); \
                     the missing batches are counted as corrupt_record and their seqs are not reused"
                );
                r.quarantined += lost;
                r.next_seq = next_seq;
                self.tree.insert(META_NEXT_SEQ, &next_seq.to_be_bytes())?;
                self.flush()?;
            }
        }
        let mut bad: Vec<(Vec<u8>, Vec<u8>, sled::IVec)> = Vec::new();
        if let Some(v) = self.tree.get(META_COUNTERS)? {
            match wire::decode_capped(&v, 1 << 20) {
                Ok(c) => r.counters = c,
                Err(e) => {
                    warn!("pending counters are corrupt ({e}); starting them from zero");
                    bad.push((META_COUNTERS.to_vec(), [b"x", META_COUNTERS].concat(), v));
                }
            }
        }
        for item in self.tree.scan_prefix(b"s") {
            let (k, v) = item?;
            let text = std::str::from_utf8(&k[1..])
                .map_err(|_| StoreError::Corrupt("series key".into()))?;
            let (device, metric) = text
                .split_once('\0')
                .ok_or_else(|| StoreError::Corrupt("series key".into()))?;
            r.closed.push((
                device.to_owned(),
                metric.to_owned(),
                u64_of(&v, "closed_before")? as i64,
            ));
        }
        for item in self.tree.scan_prefix(b"d") {
            let (k, v) = item?;
            let device = String::from_utf8(k[1..].to_vec())
                .map_err(|_| StoreError::Corrupt("device key".into()))?;
            r.device_seqs.insert(device, u64_of(&v, "device seq")?);
        }
        for item in self.tree.scan_prefix(b"j") {
            let (k, v) = item?;
            match (u64_of(&k[1..], "journal key"), JournalRecord::decode(&v)) {
                (Ok(id), Some(record)) => r.journal.push((id, record)),
                _ => bad.push((k.to_vec(), [b"x", &k[1..]].concat(), v)),
            }
        }
        for item in self.tree.scan_prefix(b"c") {
            let (k, v) = item?;
            let text = std::str::from_utf8(&k[1..])
                .map_err(|_| StoreError::Corrupt("classifier key".into()))?;
            let (series, device) = text
                .split_once('\0')
                .ok_or_else(|| StoreError::Corrupt("classifier key".into()))?;
            r.classifier
                .push((series.to_owned(), device.to_owned(), v.to_vec()));
        }
        let mut bytes = 0u64;
        let mut bad_batches = Vec::new();
        for record in chunked::Records::new(&self.tree, b'o', 0) {
            let record = record?;
            if !record.well_formed || wire::Envelope::open(&record.bytes).is_err() {
                bad_batches.push(record);
                continue;
            }
            bytes += record.bytes.len() as u64;
            r.outbox_len += 1;
        }
        self.outbox.bytes.store(bytes, Ordering::SeqCst);
        if !bad.is_empty() || !bad_batches.is_empty() {
            // Start anyway: move what fails its checks aside, keep its bytes, count it.
            let mut batch = sled::Batch::default();
            for (from, to, value) in &bad {
                error!(key = %String::from_utf8_lossy(from), "corrupt store record moved to quarantine");
                batch.insert(to.as_slice(), value.clone());
                batch.remove(from.as_slice());
            }
            for record in &bad_batches {
                error!(seq = record.seq, "corrupt outbox batch moved to quarantine");
                batch.insert(&key(b'q', record.seq), record.bytes.as_slice());
                for k in &record.keys {
                    batch.remove(k);
                }
            }

            self.tree.apply_batch(batch)?;
            self.flush()?;
            r.quarantined += (bad.len() + bad_batches.len()) as u64;
        }
        Ok(r)
    }

    /// Makes one group of ingested messages durable.
    pub fn commit_ingest(&self, commit: &IngestCommit) -> Result<(), StoreError> {
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
        for (series, device, state) in &commit.classifier {
            let mut k = vec![b'c'];
            k.extend_from_slice(series.as_bytes());
            k.push(0);
            k.extend_from_slice(device.as_bytes());
            batch.insert(k, state.as_slice());
        }
        self.tree.apply_batch(batch)?;
        self.flush()?;
        Ok(())
    }

    /// Makes a cut durable: new outbox batches, shipped horizons, released journal entries.
    pub fn commit_batches(&self, commit: &BatchCommit) -> Result<(), StoreError> {
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
        self.tree.apply_batch(batch)?;
        self.outbox.bytes.fetch_add(added, Ordering::SeqCst);
        self.flush()?;
        self.write_witness(commit.next_seq)?;
        Ok(())
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

    /// Records (epoch, next_seq) durably beside the sled files: write, fsync, rename, fsync dir.
    fn write_witness(&self, next_seq: u64) -> Result<(), StoreError> {
        let epoch = match self.tree.get(META_EPOCH)? {
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
            self.disk.sync_dir_of()
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
        match chunked::Records::new(&self.tree, b'o', 0).next() {
            Some(record) => {
                let record = record?;
                Ok(Some((record.seq, record.bytes)))
            }
            None => Ok(None),
        }
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
        chunked::Records::new(&self.tree, b'o', 0).count()
    }

    /// Forgets a batch the sink confirmed it stored (durably).
    pub fn outbox_remove(&self, seq: u64) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        if let Some(old) = chunked::remove(&self.tree, &mut batch, b'o', seq)? {
            self.tree.apply_batch(batch)?;
            self.outbox
                .bytes
                .fetch_sub(old.len() as u64, Ordering::SeqCst);
        }
        self.flush()?;
        Ok(())
    }

    /// Moves a batch the sink refused as a conflict aside, keeping its bytes for inspection.
    pub fn outbox_quarantine(&self, seq: u64) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        if let Some(v) = chunked::remove(&self.tree, &mut batch, b'o', seq)? {
            let len = v.len() as u64;
            batch.insert(&key(b'q', seq), v);
            self.tree.apply_batch(batch)?;
            self.outbox.bytes.fetch_sub(len, Ordering::SeqCst);
            self.flush()?;
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
        let Some((head, _)) = self.store.outbox_first()? else {
            return Ok(Vec::new());
        };
        let floor = head.max(self.claimed.unwrap_or(0)).max(after_seq);
        let Some(start) = floor.checked_add(1) else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for record in chunked::Records::new(&self.store.tree, b'o', start).take(limit) {
            let record = record?;
            out.push((record.seq, record.bytes));
        }
        Ok(out)
    }

    /// Applies one rewrite atomically and durably, keeping the byte count.
    pub fn apply(&self, rewrite: &OutboxRewrite) -> Result<(), StoreError> {
        let store = self.store;
        let mut removed = 0u64;
        let mut batch = sled::Batch::default();
        for seq in &rewrite.remove {
            if let Some(v) = chunked::remove(&store.tree, &mut batch, b'o', *seq)? {
                removed += v.len() as u64;
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
        store.tree.apply_batch(batch)?;
        store.outbox.bytes.fetch_add(added, Ordering::SeqCst);
        store.outbox.bytes.fetch_sub(removed, Ordering::SeqCst);
        store.flush()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::Reading;

    #[test]
    fn commits_survive_reopen_and_batches_leave_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let record = JournalRecord {
            device: "d".into(),
            readings: vec![Reading {
                metric: "m".into(),
                ts_ms: 5,
                value: 1.5,
            }],
            exemplars: Vec::new(),
            escalations: Vec::new(),
        };
        let epoch = {
            let (store, r) = Store::open(dir.path(), T).unwrap();
            assert_eq!((r.epoch, r.next_seq), (T as u64, 1));
            let mut counters = Counters::default();
            counters.add(wire::Reason::Late, 3);
            store
                .commit_ingest(&IngestCommit {
                    journal: vec![(7, record.clone()), (8, record.clone())],
                    device_seqs: vec![("d".into(), 99)],
                    counters: Some(counters),
                    classifier: vec![("anomaly".into(), "d".into(), vec![1, 2, 3])],
                })
                .unwrap();
            store
                .commit_batches(&BatchCommit {
                    batches: vec![(1, envelope(1)), (2, envelope(2))],
                    next_seq: 3,
                    counters: Counters::default(),
                    closed: vec![("d".into(), "m".into(), -60_000)],
                    released: vec![7],
                })
                .unwrap();
            store.outbox_remove(1).unwrap();
            r.epoch
        };
        let (store, r) = Store::open(dir.path(), T + 1000).unwrap();
        assert_eq!((r.epoch, r.next_seq), (epoch, 3));
        assert!(r.counters.is_empty());
        assert_eq!(r.closed, vec![("d".into(), "m".into(), -60_000)]);
        assert_eq!(r.device_seqs["d"], 99);
        assert_eq!(r.journal, vec![(8, record)]);
        assert_eq!(
            r.classifier,
            vec![("anomaly".into(), "d".into(), vec![1, 2, 3])]
        );
        assert_eq!(store.outbox_first().unwrap(), Some((2, envelope(2))));
        store.outbox_quarantine(2).unwrap();
        assert_eq!(store.outbox_len(), 0);
    }

    /// A set gateway clock (2026-01-01).
    const T: i64 = 1_767_225_600_000;

    fn envelope(seq: u64) -> Vec<u8> {
        let key = wire::BatchKey {
            gateway: "g".into(),
            epoch: 42,
            seq,
        };
        wire::Envelope::seal(&key, 0, &wire::Body::default()).to_bytes()
    }

    #[test]
    fn stores_created_with_an_unset_clock_get_distinct_epochs() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (_, ra) = Store::open(a.path(), 10_000).unwrap();
        let (_, rb) = Store::open(b.path(), 10_000).unwrap();
        assert_ne!(ra.epoch, rb.epoch);
        assert!(ra.epoch > 32_503_680_000_000 && rb.epoch > 32_503_680_000_000);
        let (_, rc) = Store::open(tempfile::tempdir().unwrap().path(), 1_767_225_600_000).unwrap();
        assert_eq!(rc.epoch, 1_767_225_600_000, "a set clock is the epoch");
    }

    #[test]
    fn corrupt_records_are_quarantined_counted_and_start_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (store, _) = Store::open(dir.path(), 42).unwrap();
            let good = envelope(1);
            let mut flipped = good.clone();
            let last = flipped.len() - 1;
            flipped[last] ^= 0x40;
            let mut batch = sled::Batch::default();
            chunked::insert(&mut batch, b'o', 1, &good);
            chunked::insert(&mut batch, b'o', 2, &flipped);
            store.tree.apply_batch(batch).unwrap();
            store.tree.insert(key(b'j', 7), &b"\xff\x00"[..]).unwrap();
            store.tree.insert(META_COUNTERS, &b"\xff"[..]).unwrap();
            store.db.flush().unwrap();
        }
        let (store, r) = reopen(dir.path());
        assert_eq!(
            r.quarantined, 3,
            "flipped batch, bad journal record, bad counters"
        );
        assert_eq!((r.outbox_len, r.journal.len()), (1, 0));
        assert_eq!(store.outbox_first().unwrap().map(|(seq, _)| seq), Some(1));
        assert!(
            store.tree.get(key(b'q', 2)).unwrap().is_some(),
            "batch kept aside"
        );
        assert!(
            store.tree.get(key(b'x', 7)).unwrap().is_some(),
            "record kept aside"
        );
        drop(store);
        let (_, again) = reopen(dir.path());
        assert_eq!(again.quarantined, 0, "quarantine is counted once");
    }

    /// Reopens in-process; sled's flusher may hold the file lock for a moment.
    fn reopen(dir: &Path) -> (Store, Recovered) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            match Store::open(dir, 1000) {
                Err(e) if format!("{e:?}").contains("could not acquire lock") => {
                    assert!(std::time::Instant::now() < deadline, "{e}");
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                other => return other.unwrap(),
            }
        }
    }
}
