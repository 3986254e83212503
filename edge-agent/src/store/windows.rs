//! Where a window checkpoint lives in sled: its bytes as chunks of record 0
//! under prefix `w` ([`chunked`]), and its journal mark beside them. Only the
//! newest checkpoint is kept. What the bytes mean is the windower's
//! (`windower/checkpoint.rs`); the journal's release is the cut's.

use super::{chunked, u64_of, StoreError};

/// The journal mark of the stored window checkpoint: the windows hold the
/// effect of every message below it and of none from it on.
const META_WINDOWS_MARK: &[u8] = b"mwindows_mark";
const PREFIX: u8 = b'w';

/// Adds a checkpoint taken at `mark` to `batch`, replacing the stored one
/// (chunks past the new one's end are removed).
pub(super) fn put(
    tree: &sled::Tree,
    batch: &mut sled::Batch,
    mark: u64,
    bytes: &[u8],
) -> Result<(), StoreError> {
    chunked::insert(batch, PREFIX, 0, bytes);
    let chunks = bytes.len().div_ceil(chunked::CHUNK_BYTES).max(1);
    let first_stale = u16::try_from(chunks).unwrap_or(u16::MAX);
    let stale = chunked::key(PREFIX, 0, first_stale)..=chunked::key(PREFIX, 0, u16::MAX);
    for item in tree.range(stale) {
        let (k, _) = item?;
        batch.remove(k);
    }
    batch.insert(META_WINDOWS_MARK, &mark.to_be_bytes());
    Ok(())
}

/// The stored checkpoint's mark and bytes, if one was ever written.
pub(super) fn get(tree: &sled::Tree) -> Result<Option<(u64, Vec<u8>)>, StoreError> {
    let Some(mark) = tree.get(META_WINDOWS_MARK)? else {
        return Ok(None);
    };
    let mark = u64_of(&mark, "windows mark")?;
    let bytes = chunked::get(tree, PREFIX, 0)?.unwrap_or_default();
    Ok(Some((mark, bytes)))
}

#[cfg(test)]
mod tests {
    use super::super::{BatchCommit, Store};

    fn cut_with(store: &Store, next_seq: u64, mark: u64, bytes: Vec<u8>) {
        store
            .commit_batches(BatchCommit {
                next_seq,
                journal_below: mark,
                sensor_mark: Some(mark),
                windows: Some((mark, bytes)),
                ..BatchCommit::default()
            })
            .unwrap();
    }

    #[test]
    fn the_newest_checkpoint_replaces_a_longer_one_whole() {
        let dir = tempfile::tempdir().unwrap();
        let long: Vec<u8> = (0..3000u32).map(|i| (i % 251) as u8).collect();
        {
            let (store, r) = Store::open(dir.path(), 1_767_225_600_000).unwrap();
            assert_eq!(r.windows, None, "a new store has no checkpoint");
            cut_with(&store, 1, 40, long.clone());
        }
        {
            let (store, r) = Store::open(dir.path(), 1_767_225_600_000).unwrap();
            assert_eq!(r.windows, Some((40, long)));
            cut_with(&store, 1, 90, vec![7; 10]);
        }
        let (_, r) = Store::open(dir.path(), 1_767_225_600_000).unwrap();
        assert_eq!(
            r.windows,
            Some((90, vec![7; 10])),
            "no chunk of the old one left"
        );
    }
}
