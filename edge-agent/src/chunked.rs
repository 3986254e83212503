//! Large records in sled as runs of small chunk keys: `prefix, seq (u64 BE), chunk (u16 BE)`.
//!
//! sled 0.34 keeps values inline in its tree leaves, splits a leaf only
//! above 16 items, and writes a whole leaf again whenever it consolidates
//! one; a leaf larger than a quarter segment becomes a separate blob file that
//! stays on disk until the segment pointing at it is cleaned. Outbox batches
//! of tens of KiB made 300 KiB leaves and tripled disk use under roll-ups
//! (measured by `tests/outbox_disk.rs`). Stored as 1 KiB chunks, a leaf stays
//! near 16 KiB and a rewrite touches only the leaves of the records it changes.
//!
//! This module only lays records out; what a record means (and the checks on
//! its bytes) belongs to the caller.

use sled::IVec;

/// Bytes per chunk (the last chunk of a record may be shorter).
pub const CHUNK_BYTES: usize = 1024;

/// Length of a chunk key.
pub const KEY_LEN: usize = 11;

/// The key of chunk `chunk` of record `seq`.
pub fn key(prefix: u8, seq: u64, chunk: u16) -> [u8; KEY_LEN] {
    let mut k = [0u8; KEY_LEN];
    k[0] = prefix;
    k[1..9].copy_from_slice(&seq.to_be_bytes());
    k[9..].copy_from_slice(&chunk.to_be_bytes());
    k
}

/// The first key of record `seq` and the last possible one.
pub fn span(prefix: u8, seq: u64) -> std::ops::RangeInclusive<[u8; KEY_LEN]> {
    key(prefix, seq, 0)..=key(prefix, seq, u16::MAX)
}

/// Adds the chunks of `bytes` as record `seq` to `batch`. An empty record
/// still gets one (empty) chunk, so it exists.
///
/// # Panics
/// If `bytes` needs more than 65 536 chunks (64 MiB); callers cap far lower.
pub fn insert(batch: &mut sled::Batch, prefix: u8, seq: u64, bytes: &[u8]) {
    if bytes.is_empty() {
        batch.insert(&key(prefix, seq, 0), &[][..]);
    }
    for (i, chunk) in bytes.chunks(CHUNK_BYTES).enumerate() {
        let i = u16::try_from(i).expect("records are capped far below 64 MiB");
        batch.insert(&key(prefix, seq, i), chunk);
    }
}

/// Adds the removal of every chunk of record `seq` to `batch`; returns the
/// record's bytes as stored (`None` if it has no chunk).
pub fn remove(
    tree: &sled::Tree,
    batch: &mut sled::Batch,
    prefix: u8,
    seq: u64,
) -> sled::Result<Option<Vec<u8>>> {
    let mut found = None;
    for item in tree.range(span(prefix, seq)) {
        let (k, v) = item?;
        found.get_or_insert_with(Vec::new).extend_from_slice(&v);
        batch.remove(k);
    }
    Ok(found)
}

/// Record `seq`'s bytes (chunks concatenated), if it has any chunk.
pub fn get(tree: &sled::Tree, prefix: u8, seq: u64) -> sled::Result<Option<Vec<u8>>> {
    let mut found: Option<Vec<u8>> = None;
    for item in tree.range(span(prefix, seq)) {
        let (_, v) = item?;
        found.get_or_insert_with(Vec::new).extend_from_slice(&v);
    }
    Ok(found)
}

/// One record as read back, with what a check needs.
#[derive(Debug)]
pub struct Record {
    pub seq: u64,
    pub bytes: Vec<u8>,
    /// Every key it was read from (to move or remove it whole).
    pub keys: Vec<IVec>,
    /// True if the chunk numbers ran 0, 1, 2, … without a gap and every key
    /// had the chunk layout.
    pub well_formed: bool,
}

/// Records under `prefix` from `from_seq` on, in seq order, each whole.
pub struct Records {
    iter: sled::Iter,
    pending: Option<(IVec, IVec)>,
}

impl std::fmt::Debug for Records {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Records").finish_non_exhaustive()
    }
}

impl Records {
    pub fn new(tree: &sled::Tree, prefix: u8, from_seq: u64) -> Records {
        Records {
            iter: tree.range(key(prefix, from_seq, 0).to_vec()..vec![prefix.saturating_add(1)]),
            pending: None,
        }
    }
}

/// The seq of a chunk key; keys of another layout get `None`.
fn seq_of(k: &[u8]) -> Option<(u64, u16)> {
    if k.len() != KEY_LEN {
        return None;
    }
    let seq = u64::from_be_bytes(k[1..9].try_into().ok()?);
    let chunk = u16::from_be_bytes(k[9..].try_into().ok()?);
    Some((seq, chunk))
}

impl Iterator for Records {
    type Item = sled::Result<Record>;

    fn next(&mut self) -> Option<Self::Item> {
        let (k, v) = match self.pending.take() {
            Some(kv) => kv,
            None => match self.iter.next()? {
                Ok(kv) => kv,
                Err(e) => return Some(Err(e)),
            },
        };
        let Some((seq, chunk)) = seq_of(&k) else {
            // A key of another layout is a record of its own, and not well formed.
            let seq = k
                .get(1..9)
                .and_then(|b| b.try_into().ok())
                .map_or(0, u64::from_be_bytes);
            return Some(Ok(Record {
                seq,
                bytes: v.to_vec(),
                keys: vec![k],
                well_formed: false,
            }));
        };
        let mut record = Record {
            seq,
            bytes: v.to_vec(),
            keys: vec![k],
            well_formed: chunk == 0,
        };
        let mut expect = chunk.wrapping_add(1);
        loop {
            let (k, v) = match self.iter.next() {
                None => break,
                Some(Ok(kv)) => kv,
                Some(Err(e)) => return Some(Err(e)),
            };
            match seq_of(&k) {
                Some((s, c)) if s == seq => {
                    record.well_formed &= c == expect;
                    expect = c.wrapping_add(1);
                    record.bytes.extend_from_slice(&v);
                    record.keys.push(k);
                }
                _ => {
                    self.pending = Some((k, v));
                    break;
                }
            }
        }
        Some(Ok(record))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> (sled::Db, sled::Tree) {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let t = db.open_tree("t").unwrap();
        (db, t)
    }

    #[test]
    fn records_round_trip_whole_and_in_order() {
        let (_db, t) = tree();
        let big: Vec<u8> = (0..5000u32).map(|i| i as u8).collect();
        let mut b = sled::Batch::default();
        insert(&mut b, b'o', 7, &big);
        insert(&mut b, b'o', 3, b"small");
        insert(&mut b, b'o', 9, b"");
        insert(&mut b, b'p', 1, b"other prefix");
        t.apply_batch(b).unwrap();
        assert_eq!(get(&t, b'o', 7).unwrap().unwrap(), big);
        assert_eq!(get(&t, b'o', 8).unwrap(), None);
        let all: Vec<Record> = Records::new(&t, b'o', 0).map(Result::unwrap).collect();
        let seqs: Vec<u64> = all.iter().map(|r| r.seq).collect();
        assert_eq!(seqs, vec![3, 7, 9]);
        assert!(all.iter().all(|r| r.well_formed));
        assert_eq!(all[1].bytes, big);
        assert_eq!(all[1].keys.len(), 5);
        assert_eq!(all[2].bytes, b"");
        let from_7: Vec<u64> = Records::new(&t, b'o', 7).map(|r| r.unwrap().seq).collect();
        assert_eq!(from_7, vec![7, 9]);

        let mut b = sled::Batch::default();
        assert_eq!(remove(&t, &mut b, b'o', 7).unwrap().unwrap(), big);
        assert_eq!(remove(&t, &mut b, b'o', 8).unwrap(), None);
        t.apply_batch(b).unwrap();
        assert_eq!(get(&t, b'o', 7).unwrap(), None);
        assert_eq!(t.scan_prefix(b"o").count(), 2);
    }

    #[test]
    fn gaps_and_foreign_keys_are_not_well_formed() {
        let (_db, t) = tree();
        let mut b = sled::Batch::default();
        insert(&mut b, b'o', 1, &[1u8; 3000]);
        t.apply_batch(b).unwrap();
        t.remove(key(b'o', 1, 1)).unwrap();
        t.insert([b'o', 0, 0, 0, 0, 0, 0, 0, 2], &b"legacy"[..])
            .unwrap();
        let all: Vec<Record> = Records::new(&t, b'o', 0).map(Result::unwrap).collect();
        assert_eq!(all.len(), 2);
        assert!(!all[0].well_formed, "chunk 1 missing");
        assert!(!all[1].well_formed, "9-byte key");
        assert_eq!(all[1].keys.len(), 1);
    }
}
