//! The outbox witness: (epoch, next batch seq) in a file beside sled's,
//! rewritten after every cut, so start-up notices when sled came back older
//! than its last cut (a torn log sled rolls back without complaint). It does
//! not decide what to do about it ([`super::recover`] does).

use super::live::Live;
use super::{u64_of, Store, StoreError, META_EPOCH};

impl Store {
    /// Records (epoch, next_seq) durably beside the sled files: write, fsync, rename, fsync dir.
    pub(super) fn write_witness(&self, live: &Live, next_seq: u64) -> Result<(), StoreError> {
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

    pub(super) fn read_witness(&self) -> Option<(u64, u64)> {
        let bytes = std::fs::read(&self.witness).ok()?;
        let epoch = u64::from_be_bytes(bytes.get(..8)?.try_into().ok()?);
        let next_seq = u64::from_be_bytes(bytes.get(8..16)?.try_into().ok()?);
        Some((epoch, next_seq))
    }
}
