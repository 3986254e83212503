//! Where the store's sled files live: which generation is current, and the
//! crash-safe switch from one generation to the next.
//!
//! Generation 0 is sled's files directly in the data directory (every store
//! starts there); generation `n ≥ 1` is the subdirectory `gen-<n>`, written
//! by a compaction ([`super::compact`]). The file `generation` names the
//! current one; writing it (temp file, fsync, rename, fsync of the directory)
//! is the compaction's commit point. A crash before it leaves a half-written
//! `gen-<n+1>` that start-up deletes; a crash after it leaves the old
//! generation's files, which start-up deletes too. Only names sled itself
//! creates are ever deleted from the data directory (it may be shared).
//!
//! It does not open sled or copy anything.

use std::io;
use std::path::{Path, PathBuf};

/// The file naming the current generation.
const CURRENT: &str = "generation";
/// What sled 0.34 writes into its directory (generation 0's files).
const SLED_FILES: &[&str] = &["conf", "db", "blobs"];
const SLED_PREFIXES: &[&str] = &["snap."];

/// The directory generation `n` keeps its sled files in.
pub fn dir_of(data_dir: &Path, n: u64) -> PathBuf {
    if n == 0 {
        data_dir.to_owned()
    } else {
        data_dir.join(format!("gen-{n}"))
    }
}

/// What the `generation` file says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Current {
    pub n: u64,
    /// Generation `n` is still to be loaded from its snapshot
    /// ([`super::snapshot`]); its sled directory, if any, is partial.
    pub loading: bool,
}

const LOADING: &str = "from-snapshot";

/// The current generation (0 when the file is absent: a store never compacted).
pub fn current(data_dir: &Path) -> io::Result<Current> {
    let path = data_dir.join(CURRENT);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let mut words = text.split_whitespace();
            let n = words.next().and_then(|w| w.parse().ok());
            let loading = match words.next() {
                None => Some(false),
                Some(LOADING) => Some(true),
                Some(_) => None,
            };
            match (n, loading, words.next()) {
                (Some(n), Some(loading), None) => Ok(Current { n, loading }),
                _ => Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "{}: expected a generation number (and optionally `{LOADING}`), found {:?}",
                        path.display(),
                        text.trim()
                    ),
                )),
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Current {
            n: 0,
            loading: false,
        }),
        Err(e) => Err(e),
    }
}

/// Makes generation `n` current, durably: the commit point of a compaction.
pub fn commit(data_dir: &Path, n: u64) -> io::Result<()> {
    write_current(data_dir, &format!("{n}\n"))
}

/// Makes generation `n` current as "to be loaded from its snapshot": from
/// here on a restart rebuilds `n` from the snapshot, whatever else is on disk.
pub fn commit_loading(data_dir: &Path, n: u64) -> io::Result<()> {
    write_current(data_dir, &format!("{n} {LOADING}\n"))
}

fn write_current(data_dir: &Path, text: &str) -> io::Result<()> {
    let path = data_dir.join(CURRENT);
    let tmp = path.with_extension("tmp");
    {
        let mut f = std::fs::File::create(&tmp)?;
        io::Write::write_all(&mut f, text.as_bytes())?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, &path)?;
    std::fs::File::open(data_dir)?.sync_all()
}

/// Deletes every generation but `keep`: `gen-*` directories (a compaction
/// that did not commit, or one that did and whose predecessor was not yet
/// deleted), unfinished snapshots, snapshots of other generations (and of
/// `keep` itself unless `keep_snapshot`) and, when `keep ≥ 1`, generation
/// 0's sled files. Returns how many entries it deleted.
pub fn delete_others(data_dir: &Path, keep: u64, keep_snapshot: bool) -> io::Result<usize> {
    let mut deleted = 0;
    for entry in std::fs::read_dir(data_dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let stale = match name.strip_prefix("gen-") {
            Some(rest) if rest.ends_with(".snapshot.tmp") => true,
            Some(rest) => match rest.strip_suffix(".snapshot") {
                Some(n) => n
                    .parse::<u64>()
                    .map(|n| n != keep || !keep_snapshot)
                    .unwrap_or(false),
                None => rest.parse::<u64>().map(|n| n != keep).unwrap_or(false),
            },
            None => {
                keep >= 1
                    && (SLED_FILES.contains(&name)
                        || SLED_PREFIXES.iter().any(|p| name.starts_with(p)))
            }
        };
        if !stale {
            continue;
        }
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            std::fs::remove_dir_all(&path)?;
        } else {
            std::fs::remove_file(&path)?;
        }
        deleted += 1;
    }
    if deleted > 0 {
        std::fs::File::open(data_dir)?.sync_all()?;
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_committed_generation_is_current_and_the_rest_is_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        assert_eq!(current(d).unwrap().n, 0, "no file: generation 0");
        for f in ["conf", "db", "snap.0000AB", "outbox-witness", "notes.txt"] {
            std::fs::write(d.join(f), b"x").unwrap();
        }
        std::fs::create_dir_all(d.join("blobs")).unwrap();
        std::fs::create_dir_all(dir_of(d, 1)).unwrap();
        std::fs::create_dir_all(dir_of(d, 2)).unwrap();
        assert_eq!(
            delete_others(d, 0, false).unwrap(),
            2,
            "gen-1 and gen-2 only"
        );
        assert!(d.join("db").exists() && d.join("blobs").exists());

        std::fs::create_dir_all(dir_of(d, 1)).unwrap();
        commit(d, 1).unwrap();
        assert_eq!(
            current(d).unwrap(),
            Current {
                n: 1,
                loading: false
            }
        );
        assert_eq!(
            delete_others(d, 1, false).unwrap(),
            4,
            "conf, db, snap.*, blobs"
        );
        let mut left: Vec<String> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left, ["gen-1", "generation", "notes.txt", "outbox-witness"]);
    }

    #[test]
    fn a_garbled_generation_file_is_an_error_not_a_fresh_store() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(CURRENT), b"seven").unwrap();
        let e = current(dir.path()).unwrap_err();
        assert!(
            e.to_string().contains("expected a generation number"),
            "{e}"
        );
        std::fs::write(dir.path().join(CURRENT), b"3 later\n").unwrap();
        assert!(current(dir.path()).is_err());
    }

    #[test]
    fn a_loading_generation_keeps_its_snapshot_until_loaded() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for f in [
            "gen-1.snapshot",
            "gen-2.snapshot",
            "gen-2.snapshot.tmp",
            "db",
        ] {
            std::fs::write(d.join(f), b"x").unwrap();
        }
        std::fs::create_dir_all(dir_of(d, 2)).unwrap();
        commit_loading(d, 2).unwrap();
        assert_eq!(
            current(d).unwrap(),
            Current {
                n: 2,
                loading: true
            }
        );
        assert_eq!(
            delete_others(d, 2, true).unwrap(),
            3,
            "gen-1.snapshot, tmp, db"
        );
        assert!(d.join("gen-2.snapshot").exists() && dir_of(d, 2).exists());
        commit(d, 2).unwrap();
        assert_eq!(
            delete_others(d, 2, false).unwrap(),
            1,
            "the loaded snapshot"
        );
        assert!(dir_of(d, 2).exists());
    }
}
