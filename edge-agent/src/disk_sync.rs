//! Makes what sled has flushed survive a power cut, not just a process kill.
//!
//! sled 0.34's `flush()` writes its log with `sync_file_range`, which waits
//! for the data pages but not for the file's new size or block allocations
//! (sled's own `sync_all` runs only every 500 ms), and it never fsyncs the
//! blob files it writes for values above 128 KiB. A power cut after an ack
//! could then lose acked data (a test in hil-tests copies a loop-mounted image
//! without syncing to prove it). After each flush the store calls
//! [`DiskSync::sync`]: `fdatasync` on sled's log file, `fsync` on every blob
//! file not synced before, and on the directories whose entries changed.
//!
//! It does not decide when to sync; the store calls it at each durability point.

use std::collections::HashSet;
use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Open handles and bookkeeping for syncing one sled directory.
#[derive(Debug)]
pub struct DiskSync {
    dir: PathBuf,
    log: File,
    /// Blob files already fsynced (sled writes each blob once, then only deletes it).
    synced_blobs: Mutex<HashSet<OsString>>,
}

impl DiskSync {
    /// Opens sled's log file in `dir` (sled must have created it) and syncs
    /// the directory itself once, so its entries are durable too.
    pub fn open(dir: &Path) -> io::Result<DiskSync> {
        let log = File::open(dir.join("db"))?;
        let sync = DiskSync {
            dir: dir.to_owned(),
            log,
            synced_blobs: Mutex::new(HashSet::new()),
        };
        sync.sync()?;
        if let Ok(conf) = File::open(dir.join("conf")) {
            conf.sync_all()?;
        }
        sync_dir(dir)?;
        if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            sync_dir(parent)?;
        }
        Ok(sync)
    }

    /// fdatasync of the log, fsync of new blob files and of their directory.
    pub fn sync(&self) -> io::Result<()> {
        self.log.sync_data()?;
        let blobs = self.dir.join("blobs");
        let Ok(entries) = std::fs::read_dir(&blobs) else {
            return Ok(()); // no blob written yet
        };
        let mut synced = self.synced_blobs.lock().unwrap_or_else(|p| p.into_inner());
        let mut present = HashSet::new();
        let mut new = false;
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name();
            if !synced.contains(&name) {
                match File::open(entry.path()) {
                    Ok(f) => f.sync_all()?,
                    // Deleted by sled's blob GC between listing and opening.
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(e),
                }
                new = true;
            }
            present.insert(name);
        }
        if new {
            sync_dir(&blobs)?;
        }
        *synced = present;
        Ok(())
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syncs_a_sled_directory_with_blobs() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().path(dir.path()).open().unwrap();
        db.insert(b"big", vec![7u8; 300 * 1024]).unwrap();
        db.flush().unwrap();
        let sync = DiskSync::open(dir.path()).unwrap();
        sync.sync().unwrap();
        let blobs = std::fs::read_dir(dir.path().join("blobs")).unwrap().count();
        assert!(blobs >= 1, "a 300 KiB value is a blob in sled 0.34");
        assert_eq!(sync.synced_blobs.lock().unwrap().len(), blobs);
    }
}
