//! A store snapshot: every record of one generation in one flat, checksummed
//! file, written beside the old generation and read back into the next.
//!
//! Why a flat file and not a second sled directory: a fresh sled takes
//! 2.5–3× its records on disk (it rewrites each leaf as it fills), so copying
//! sled to sled needs that much room beside the old files, and the store
//! needs compacting exactly when that room is gone. A snapshot takes its
//! records plus 8 bytes each; once it is durable and named current
//! ([`super::generation`]), the old generation can be deleted *before* the
//! new one is loaded.
//!
//! Layout: `MAGIC`, then per record `u32 LE key length, key, u32 LE value
//! length, value`, then `u32::MAX`, `u64 LE record count` and the SHA-256 of
//! every byte before it. It neither opens sled nor decides when to snapshot.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

const MAGIC: &[u8; 8] = b"EASNAP01";
const END: u32 = u32::MAX;
/// The trailer's bytes: `END`, the record count and the SHA-256.
const TRAILER: u64 = 4 + 8 + 32;
/// Largest key or value a snapshot holds (the store's are far smaller).
const MAX_FIELD: u32 = 64 * 1024 * 1024;

/// The snapshot file of generation `n`.
pub fn path_of(data_dir: &Path, n: u64) -> PathBuf {
    data_dir.join(format!("gen-{n}.snapshot"))
}

/// Bytes a snapshot of records with `kv_bytes` of keys and values takes.
#[cfg(test)]
fn size_of(records: u64, kv_bytes: u64) -> u64 {
    MAGIC.len() as u64 + records * 8 + kv_bytes + TRAILER
}

/// Writes a snapshot to a temporary name, stopping (and deleting it) with
/// [`Stop`] once it would pass `max_bytes`; `finish` makes it durable under
/// its real name.
pub struct SnapshotWriter {
    out: BufWriter<File>,
    hash: Sha256,
    tmp: PathBuf,
    path: PathBuf,
    records: u64,
    bytes: u64,
    max_bytes: u64,
}

/// The snapshot would pass its allowance; it was deleted.
#[derive(Debug)]
pub struct Stop;

impl SnapshotWriter {
    pub fn create(path: PathBuf, max_bytes: u64) -> io::Result<SnapshotWriter> {
        let tmp = path.with_extension("snapshot.tmp");
        let mut w = SnapshotWriter {
            out: BufWriter::with_capacity(256 * 1024, File::create(&tmp)?),
            hash: Sha256::new(),
            tmp,
            path,
            records: 0,
            bytes: 0,
            max_bytes,
        };
        w.put(MAGIC)?;
        Ok(w)
    }

    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.hash.update(bytes);
        self.bytes += bytes.len() as u64;
        self.out.write_all(bytes)
    }

    /// Appends one record; `Ok(Err(Stop))` when the allowance is used up.
    pub fn record(&mut self, key: &[u8], value: &[u8]) -> io::Result<Result<(), Stop>> {
        if self.bytes + 8 + (key.len() + value.len()) as u64 + TRAILER > self.max_bytes {
            self.abandon();
            return Ok(Err(Stop));
        }
        for field in [key, value] {
            self.put(&(field.len() as u32).to_le_bytes())?;
            self.put(field)?;
        }
        self.records += 1;
        Ok(Ok(()))
    }

    /// Writes the trailer, syncs the file, renames it to its real name and
    /// syncs the directory. Returns the records written.
    pub fn finish(mut self) -> io::Result<u64> {
        self.put(&END.to_le_bytes())?;
        self.put(&self.records.to_le_bytes())?;
        let digest = self.hash.clone().finalize();
        self.out.write_all(&digest)?;
        let file = self.out.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        std::fs::rename(&self.tmp, &self.path)?;
        sync_parent(&self.path)?;
        Ok(self.records)
    }

    /// Deletes the unfinished file.
    pub fn abandon(&mut self) {
        let _ = std::fs::remove_file(&self.tmp);
    }
}

fn sync_parent(path: &Path) -> io::Result<()> {
    match path.parent() {
        Some(dir) => File::open(dir)?.sync_all(),
        None => Ok(()),
    }
}

fn invalid(path: &Path, what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("store snapshot {}: {what}", path.display()),
    )
}

/// Reads a snapshot: checks it whole first (magic, lengths, count, SHA-256),
/// then calls `each` for every record in order. A snapshot that fails a
/// check is an error before any record is handed out.
pub fn read(
    path: &Path,
    mut each: impl FnMut(Vec<u8>, Vec<u8>) -> io::Result<()>,
) -> io::Result<u64> {
    let count = scan(path, &mut |_, _| Ok(()))?;
    scan(path, &mut each)?;
    Ok(count)
}

/// The file being read, and the hash of every byte read so far.
struct Input<'a> {
    path: &'a Path,
    file: BufReader<File>,
    hash: Sha256,
}

impl Input<'_> {
    fn fill(&mut self, buf: &mut [u8]) -> io::Result<()> {
        self.file
            .read_exact(buf)
            .map_err(|_| invalid(self.path, "truncated"))?;
        self.hash.update(&*buf);
        Ok(())
    }

    fn bytes(&mut self, n: u32) -> io::Result<Vec<u8>> {
        if n > MAX_FIELD {
            return Err(invalid(self.path, "implausible key or value length"));
        }
        let mut buf = vec![0; n as usize];
        self.fill(&mut buf)?;
        Ok(buf)
    }

    fn u32(&mut self) -> io::Result<u32> {
        let mut buf = [0; 4];
        self.fill(&mut buf)?;
        Ok(u32::from_le_bytes(buf))
    }

    fn u64(&mut self) -> io::Result<u64> {
        let mut buf = [0; 8];
        self.fill(&mut buf)?;
        Ok(u64::from_le_bytes(buf))
    }
}

fn scan(path: &Path, each: &mut dyn FnMut(Vec<u8>, Vec<u8>) -> io::Result<()>) -> io::Result<u64> {
    let mut input = Input {
        path,
        file: BufReader::with_capacity(256 * 1024, File::open(path)?),
        hash: Sha256::new(),
    };
    let mut magic = [0; MAGIC.len()];
    input.fill(&mut magic)?;
    if &magic != MAGIC {
        return Err(invalid(path, "not a snapshot (magic)"));
    }
    let mut records = 0u64;
    loop {
        let len = input.u32()?;
        if len == END {
            break;
        }
        let key = input.bytes(len)?;
        let len = input.u32()?;
        let value = input.bytes(len)?;
        each(key, value)?;
        records += 1;
    }
    let count = input.u64()?;
    let digest = input.hash.finalize();
    let mut stored = [0u8; 32];
    input
        .file
        .read_exact(&mut stored)
        .map_err(|_| invalid(path, "truncated checksum"))?;
    if stored[..] != digest[..] || count != records {
        return Err(invalid(path, "checksum or record count does not match"));
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, records: &[(&[u8], &[u8])]) -> PathBuf {
        let path = path_of(dir, 3);
        let mut w = SnapshotWriter::create(path.clone(), u64::MAX).unwrap();
        for (k, v) in records {
            w.record(k, v).unwrap().unwrap();
        }
        assert_eq!(w.finish().unwrap(), records.len() as u64);
        path
    }

    #[test]
    fn records_come_back_in_order_and_the_size_is_known() {
        let dir = tempfile::tempdir().unwrap();
        let records: &[(&[u8], &[u8])] = &[(b"a", b"1"), (b"bb", b""), (b"c", &[7; 3000])];
        let path = write(dir.path(), records);
        let kv: u64 = records
            .iter()
            .map(|(k, v)| (k.len() + v.len()) as u64)
            .sum();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), size_of(3, kv));
        let mut back = Vec::new();
        assert_eq!(
            read(&path, |k, v| {
                back.push((k, v));
                Ok(())
            })
            .unwrap(),
            3
        );
        let want: Vec<(Vec<u8>, Vec<u8>)> = records
            .iter()
            .map(|(k, v)| (k.to_vec(), v.to_vec()))
            .collect();
        assert_eq!(back, want);
        assert!(!path.with_extension("snapshot.tmp").exists());
    }

    #[test]
    fn a_damaged_snapshot_hands_out_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), &[(b"key", b"value"), (b"k2", b"v2")]);
        let good = std::fs::read(&path).unwrap();
        for damage in 0..good.len() {
            let mut bad = good.clone();
            bad[damage] ^= 0x40;
            std::fs::write(&path, &bad).unwrap();
            let mut handed = 0;
            assert!(
                read(&path, |_, _| {
                    handed += 1;
                    Ok(())
                })
                .is_err(),
                "flip at {damage}"
            );
            assert_eq!(handed, 0);
        }
        std::fs::write(&path, &good[..good.len() - 1]).unwrap();
        assert!(read(&path, |_, _| Ok(())).is_err(), "truncated");
    }

    #[test]
    fn the_allowance_stops_the_writer_and_deletes_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = path_of(dir.path(), 1);
        let mut w = SnapshotWriter::create(path.clone(), 100).unwrap();
        w.record(b"k", &[0; 20]).unwrap().unwrap();
        assert!(w.record(b"k", &[0; 60]).unwrap().is_err());
        assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none());
    }
}
