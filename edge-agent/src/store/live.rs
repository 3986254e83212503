//! One open generation of sled files: opening it with the store's segment
//! size and page cache, and flushing it durably. It does not know the
//! store's key layout beyond the outbox's first batch, nor when to compact.

use std::io;
use std::path::Path;

use tracing::warn;

use super::{chunked, generation, StoreError};

/// One open generation of sled files ([`generation`]).
#[derive(Debug)]
pub(super) struct Live {
    pub(super) db: sled::Db,
    pub(super) tree: sled::Tree,
    pub(super) disk: crate::disk_sync::DiskSync,
    pub(super) generation: u64,
}

impl Live {
    /// Opens generation `n` of `data_dir` (creating it if new) with a page
    /// cache of `cache_bytes` ([`DEFAULT_CACHE_BYTES`]).
    pub(super) fn open(data_dir: &Path, n: u64, cache_bytes: u64) -> Result<Live, StoreError> {
        let dir = generation::dir_of(data_dir, n);
        remove_unfinished_snapshots(&dir).map_err(|e| StoreError::Sled(sled::Error::Io(e)))?;
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
    pub(super) fn flush(&self) -> Result<(), StoreError> {
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

    /// The store's error for a failed journal write or read: the disk is
    /// failing, so sled must not drop ([`keep_sled_from_dropping`]).
    pub(super) fn journal_failed(&self, e: io::Error) -> StoreError {
        keep_sled_from_dropping(&self.db);
        StoreError::Journal(e)
    }

    /// The oldest outbox batch, if any: `(seq, envelope bytes)`.
    pub(super) fn outbox_first(&self) -> Result<Option<(u64, Vec<u8>)>, StoreError> {
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
pub(super) fn keep_sled_from_dropping(db: &sled::Db) {
    std::mem::forget(db.clone());
}

/// sled 0.34 writes a snapshot (at open only) as `snap.<lsn>.generating`,
/// syncs it and renames it to `snap.<lsn>`: the rename is the commit. A write
/// that failed (a full disk) leaves the file behind, and sled's next open
/// takes it for the newest snapshot and reports the whole store corrupt (the
/// store would be set aside: everything in it lost to the agent). Such a file
/// was never a snapshot sled relied on, so it is deleted before sled opens;
/// the snapshot before it, or sled's log, still holds everything.
fn remove_unfinished_snapshots(dir: &Path) -> io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        other => other?,
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("snap.") && name.ends_with(".generating") {
            warn!(
                file = %entry.path().display(),
                "deleting a snapshot sled never finished writing (the disk was full?)"
            );
            std::fs::remove_file(entry.path())?;
        }
    }
    Ok(())
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
/// per message while the journal was in sled; since it left (its own log),
/// 4–16 MiB cost nothing at 10k msg/s either ("The journal out of sled").
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
