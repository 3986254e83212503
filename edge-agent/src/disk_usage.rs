//! How many bytes a directory tree occupies on disk, for the outbox cap.
//!
//! Counts allocated blocks (`st_blocks × 512`), not file lengths, so sparse
//! files count what they really take and a file's tail block counts whole.
//! Files that vanish during the walk (sled deletes blobs and snapshots while
//! it runs) are skipped. It measures; [`crate::outbox::OutboxCap`] decides.

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Bytes allocated on disk by `dir` and everything below it.
pub fn disk_usage(dir: &Path) -> io::Result<u64> {
    let mut total = std::fs::symlink_metadata(dir)?.blocks() * 512;
    for entry in std::fs::read_dir(dir)? {
        let entry = match entry {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        let meta = match entry.metadata() {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        total += if meta.is_dir() {
            match disk_usage(&entry.path()) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::NotFound => 0,
                Err(e) => return Err(e),
            }
        } else {
            meta.blocks() * 512
        };
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_files_in_subdirectories_by_allocated_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let empty = disk_usage(dir.path()).unwrap();
        std::fs::create_dir(dir.path().join("blobs")).unwrap();
        std::fs::write(dir.path().join("blobs/1"), vec![7u8; 100_000]).unwrap();
        std::fs::write(dir.path().join("db"), vec![7u8; 10]).unwrap();
        let used = disk_usage(dir.path()).unwrap() - empty;
        // 100 000 bytes need at least that many allocated; the 10-byte file a whole block.
        assert!(used >= 100_000 + 512, "used {used}");
        assert!(used < 100_000 + 64 * 1024, "used {used}");
        assert!(disk_usage(&dir.path().join("missing")).is_err());
    }
}
