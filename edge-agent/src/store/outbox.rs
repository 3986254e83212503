//! The outbox's records in the store: the oldest batch, claims by the syncer,
//! removal and quarantine of sent or refused batches, and the roll-up's
//! rewrites under [`OutboxLock`], with the live byte and batch counts kept
//! beside them. It does not decide what to roll up or drop ([`crate::outbox`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use wire::Counters;

use super::{chunked, key, Store, StoreError, META_COUNTERS};

/// What pipeline and syncer share about the outbox, in memory.
#[derive(Debug, Default)]
pub(super) struct OutboxShared {
    /// The batch the syncer has sent or is sending (its bytes may be at the
    /// sink already). Held while the outbox is rewritten, so the syncer
    /// cannot claim a batch that a roll-up is replacing.
    pub(super) claimed: Mutex<Option<u64>>,
    /// Live bytes of all outbox batches (sum of envelope lengths).
    pub(super) bytes: AtomicU64,
    /// Number of outbox batches (kept with `bytes`, so reading it walks nothing).
    pub(super) batches: AtomicU64,
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

impl Store {
    /// The oldest outbox batch, if any: `(seq, envelope bytes)`.
    pub fn outbox_first(&self) -> Result<Option<(u64, Vec<u8>)>, StoreError> {
        self.live().outbox_first()
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
        usize::try_from(self.outbox.batches.load(Ordering::SeqCst)).unwrap_or(usize::MAX)
    }

    /// Forgets a batch the sink confirmed it stored (durably).
    pub fn outbox_remove(&self, seq: u64) -> Result<(), StoreError> {
        let live = self.live();
        let mut batch = sled::Batch::default();
        if let Some(old) = chunked::remove(&live.tree, &mut batch, b'o', seq)? {
            live.tree.apply_batch(batch)?;
            self.outbox
                .bytes
                .fetch_sub(old.len() as u64, Ordering::SeqCst);
            self.outbox.batches.fetch_sub(1, Ordering::SeqCst);
        }
        live.flush()?;
        Ok(())
    }

    /// Moves a batch the sink refused as a conflict aside, keeping its bytes for inspection.
    pub fn outbox_quarantine(&self, seq: u64) -> Result<(), StoreError> {
        let live = self.live();
        let mut batch = sled::Batch::default();
        if let Some(v) = chunked::remove(&live.tree, &mut batch, b'o', seq)? {
            let len = v.len() as u64;
            batch.insert(&key(b'q', seq), v);
            live.tree.apply_batch(batch)?;
            self.outbox.bytes.fetch_sub(len, Ordering::SeqCst);
            self.outbox.batches.fetch_sub(1, Ordering::SeqCst);
            live.flush()?;
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
        let live = self.store.live();
        let Some((head, _)) = live.outbox_first()? else {
            return Ok(Vec::new());
        };
        let floor = head.max(self.claimed.unwrap_or(0)).max(after_seq);
        let Some(start) = floor.checked_add(1) else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for record in chunked::Records::new(&live.tree, b'o', start).take(limit) {
            let record = record?;
            out.push((record.seq, record.bytes));
        }
        Ok(out)
    }

    /// Applies one rewrite atomically and durably, keeping the byte count.
    pub fn apply(&self, rewrite: &OutboxRewrite) -> Result<(), StoreError> {
        let store = self.store;
        let live = store.live();
        let (mut removed, mut removed_batches) = (0u64, 0u64);
        let mut batch = sled::Batch::default();
        for seq in &rewrite.remove {
            if let Some(v) = chunked::remove(&live.tree, &mut batch, b'o', *seq)? {
                removed += v.len() as u64;
                removed_batches += 1;
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
        live.tree.apply_batch(batch)?;
        store.outbox.bytes.fetch_add(added, Ordering::SeqCst);
        store.outbox.bytes.fetch_sub(removed, Ordering::SeqCst);
        let inserted = rewrite.insert.len() as u64;
        store.outbox.batches.fetch_add(inserted, Ordering::SeqCst);
        store
            .outbox
            .batches
            .fetch_sub(removed_batches, Ordering::SeqCst);
        live.flush()?;
        Ok(())
    }
}
