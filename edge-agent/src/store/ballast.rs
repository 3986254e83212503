//! The store's ballast: a file of zeros kept in the store directory, counted
//! in its disk use, that a compaction deletes first so that its snapshot
//! always has room under the cap, and writes back after. It does not decide
//! its size or when a compaction runs ([`crate::disk_guard`] does).
//!
//! Why: a compaction writes its snapshot beside the old sled files, so it
//! needs room under the cap. One burst step (a group commit and a cut with its
//! roll-ups) can grow sled's files by several MB before the guard measures
//! again (measured under `fault_outbox_cap`: 1.1 → 11.5 MB in 0.4 s after a
//! compaction), so disk use can land anywhere below the cap. It once landed at
//! 16.6 MB of a 16.8 MB cap with an empty outbox and 0.4 MB live: no snapshot
//! fitted, nothing could be rolled up, and ingest waited forever. With the
//! ballast the room is always there: deleting it frees what the snapshot
//! takes. The same trick as CockroachDB's emergency ballast.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// The ballast's file name in the store directory (start-up's clean-up of
/// stale generations leaves it alone).
pub const FILE_NAME: &str = "reserve.ballast";

/// Zeros written per call while filling.
const CHUNK: usize = 64 * 1024;

/// The ballast file of one store directory.
#[derive(Debug, Clone)]
pub struct Ballast {
    path: PathBuf,
}

impl Ballast {
    pub fn of(data_dir: &Path) -> Ballast {
        Ballast {
            path: data_dir.join(FILE_NAME),
        }
    }

    /// Its length in bytes, 0 if it is missing.
    pub fn bytes(&self) -> io::Result<u64> {
        match std::fs::metadata(&self.path) {
            Ok(m) => Ok(m.len()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(e),
        }
    }

    /// Makes the ballast `bytes` long and allocated (not sparse: it must hold
    /// blocks to give them back): `fallocate` where the file system has it
    /// (nothing is written), else zeros. Not synced: a ballast lost in a
    /// crash is made again at start-up.
    pub fn fill(&self, bytes: u64) -> io::Result<()> {
        let had = self.bytes()?;
        if had == bytes {
            return Ok(());
        }
        if had > bytes {
            return File::options().write(true).open(&self.path)?.set_len(bytes);
        }
        let mut file = File::options().create(true).append(true).open(&self.path)?;
        let flags = rustix::fs::FallocateFlags::empty();
        match rustix::fs::fallocate(&file, flags, had, bytes - had) {
            Ok(()) => return Ok(()),
            Err(e) if e == rustix::io::Errno::OPNOTSUPP || e == rustix::io::Errno::NOSYS => {}
            Err(e) => return Err(e.into()),
        }
        write_zeros(&mut file, bytes - had)
    }

    /// Deletes the ballast (its blocks are free for a snapshot); returns the
    /// length it had.
    pub fn release(&self) -> io::Result<u64> {
        let had = self.bytes()?;
        match std::fs::remove_file(&self.path) {
            Ok(()) => Ok(had),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(e),
        }
    }
}

/// Appends `bytes` zeros to `file` (where `fallocate` is not supported).
fn write_zeros(file: &mut File, bytes: u64) -> io::Result<()> {
    let zeros = [0u8; CHUNK];
    let mut left = bytes;
    while left > 0 {
        let n = left.min(CHUNK as u64) as usize;
        file.write_all(&zeros[..n])?;
        left -= n as u64;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filled_ballast_holds_its_blocks_and_release_gives_them_back() {
        let dir = tempfile::tempdir().unwrap();
        let b = Ballast::of(dir.path());
        assert_eq!(b.bytes().unwrap(), 0);
        let before = crate::disk_usage::disk_usage(dir.path()).unwrap();
        b.fill(1 << 20).unwrap();
        let filled = crate::disk_usage::disk_usage(dir.path()).unwrap();
        assert!(filled >= before + (1 << 20), "{before} -> {filled}");
        b.fill(1 << 19).unwrap();
        assert_eq!(b.bytes().unwrap(), 1 << 19);
        b.fill(3 << 19).unwrap();
        assert_eq!(b.bytes().unwrap(), 3 << 19);
        assert_eq!(b.release().unwrap(), 3 << 19);
        assert_eq!(b.release().unwrap(), 0);
        assert_eq!(crate::disk_usage::disk_usage(dir.path()).unwrap(), before);
    }

    #[test]
    fn zeros_where_fallocate_is_missing_are_allocated_too() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        let mut file = File::create(&path).unwrap();
        write_zeros(&mut file, 200_000).unwrap();
        file.sync_all().unwrap();
        assert_eq!(Ballast::of(dir.path()).bytes().unwrap(), 200_000);
        let total = crate::disk_usage::disk_usage(dir.path()).unwrap();
        assert!(total >= 200_000, "{total} bytes allocated");
    }
}
