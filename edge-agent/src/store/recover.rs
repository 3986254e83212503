//! Start-up: read back what the store holds, notice what a torn log lost, and
//! move records that fail their checks to quarantine (counted), so the agent
//! starts anyway. It writes only to repair (quarantine, the seq floor) and to
//! move a store's journal from sled into the journal log.

use std::sync::atomic::Ordering;

use tracing::{error, warn};

use super::journal_log::Reopened;
use super::META_SEQS_MARK;
use super::{chunked, key, new_epoch, u64_of, JournalRecord, Recovered, Store, StoreError};
use super::{META_COUNTERS, META_EPOCH, META_JOURNAL_END, META_NEXT_SEQ, META_SENSOR_MARK};

impl Store {
    pub(super) fn recover(&self, now_ms: i64) -> Result<Recovered, StoreError> {
        let live = self.live();
        let epoch = match live.tree.get(META_EPOCH)? {
            Some(v) => u64_of(&v, "epoch")?,
            None => {
                // A fresh outbox starts a new epoch so its seqs never collide with an old one.
                let epoch = new_epoch(now_ms);
                live.tree.insert(META_EPOCH, &epoch.to_be_bytes())?;
                live.tree.insert(META_NEXT_SEQ, &1u64.to_be_bytes())?;
                live.flush()?;
                epoch
            }
        };
        let mut r = Recovered {
            epoch,
            ..Recovered::default()
        };
        r.next_seq = match live.tree.get(META_NEXT_SEQ)? {
            Some(v) => u64_of(&v, "next_seq")?,
            None => 1,
        };
        let witness = self.read_witness();
        if let Some((epoch, next_seq)) = witness.filter(|(epoch, _)| *epoch != r.epoch) {
            // sled came back empty although a store with cuts was here.
            error!(
                old_epoch = epoch,
                old_next_seq = next_seq,
                "ALARM: the store came back empty (torn or truncated file); its batches since \
                 the last delivery are lost, counted as one corrupt_record; new epoch {}",
                r.epoch
            );
            r.quarantined += 1;
            self.write_witness(&live, r.next_seq)?;
        }
        if let Some((epoch, next_seq)) = witness {
            if epoch == r.epoch && next_seq > r.next_seq {
                // The log was rolled back: batches r.next_seq..next_seq are gone.
                let lost = next_seq - r.next_seq;
                error!(
                    lost_batches = lost,
                    "ALARM: the store came back older than its last cut (torn or truncated file); \
                     the missing batches are counted as corrupt_record and their seqs are not reused"
                );
                r.quarantined += lost;
                r.next_seq = next_seq;
                live.tree.insert(META_NEXT_SEQ, &next_seq.to_be_bytes())?;
                live.flush()?;
            }
        }
        r.sensor_mark = match live.tree.get(META_SENSOR_MARK)? {
            Some(v) => Some(u64_of(&v, "sensor mark")?),
            None => None,
        };
        r.windows = super::windows::get(&live.tree)?;
        let mut bad: Vec<(Vec<u8>, Vec<u8>, sled::IVec)> = Vec::new();
        if let Some(v) = live.tree.get(META_COUNTERS)? {
            match wire::decode_capped(&v, 1 << 20) {
                Ok(c) => r.counters = c,
                Err(e) => {
                    warn!("pending counters are corrupt ({e}); starting them from zero");
                    bad.push((META_COUNTERS.to_vec(), [b"x", META_COUNTERS].concat(), v));
                }
            }
        }
        for item in live.tree.scan_prefix(b"s") {
            let (k, v) = item?;
            let text = std::str::from_utf8(&k[1..])
                .map_err(|_| StoreError::Corrupt("series key".into()))?;
            let (device, metric) = text
                .split_once('\0')
                .ok_or_else(|| StoreError::Corrupt("series key".into()))?;
            r.closed.push((
                device.to_owned(),
                metric.to_owned(),
                u64_of(&v, "closed_before")? as i64,
            ));
        }
        if let Some(v) = live.tree.get(META_SEQS_MARK)? {
            r.seqs_mark = u64_of(&v, "seqs mark")?;
        }
        for item in live.tree.scan_prefix(b"d") {
            let (k, v) = item?;
            let device = String::from_utf8(k[1..].to_vec())
                .map_err(|_| StoreError::Corrupt("device key".into()))?;
            r.device_seqs.insert(device, u64_of(&v, "device seq")?);
        }
        for item in live.tree.scan_prefix(b"j") {
            let (k, v) = item?;
            match (u64_of(&k[1..], "journal key"), JournalRecord::decode(&v)) {
                (Ok(id), Some(record)) => r.journal.push((id, record)),
                _ => bad.push((k.to_vec(), [b"x", &k[1..]].concat(), v)),
            }
        }
        for item in live.tree.scan_prefix(b"c") {
            let (k, v) = item?;
            let text = std::str::from_utf8(&k[1..])
                .map_err(|_| StoreError::Corrupt("classifier key".into()))?;
            let (series, device) = text
                .split_once('\0')
                .ok_or_else(|| StoreError::Corrupt("classifier key".into()))?;
            r.classifier
                .push((series.to_owned(), device.to_owned(), v.to_vec()));
        }
        let mut bytes = 0u64;
        let mut bad_batches = Vec::new();
        for record in chunked::Records::new(&live.tree, b'o', 0) {
            let record = record?;
            if !record.well_formed || wire::Envelope::open(&record.bytes).is_err() {
                bad_batches.push(record);
                continue;
            }
            bytes += record.bytes.len() as u64;
            r.outbox_len += 1;
        }
        self.outbox.bytes.store(bytes, Ordering::SeqCst);
        self.outbox
            .batches
            .store(r.outbox_len as u64, Ordering::SeqCst);
        if !bad.is_empty() || !bad_batches.is_empty() {
            // Start anyway: move what fails its checks aside, keep its bytes, count it.
            let mut batch = sled::Batch::default();
            for (from, to, value) in &bad {
                error!(key = %String::from_utf8_lossy(from), "corrupt store record moved to quarantine");
                batch.insert(to.as_slice(), value.clone());
                batch.remove(from.as_slice());
            }
            for record in &bad_batches {
                error!(seq = record.seq, "corrupt outbox batch moved to quarantine");
                batch.insert(&key(b'q', record.seq), record.bytes.as_slice());
                for k in &record.keys {
                    batch.remove(k);
                }
            }

            live.tree.apply_batch(batch)?;
            live.flush()?;
            r.quarantined += (bad.len() + bad_batches.len()) as u64;
        }
        Ok(r)
    }

    /// Adds the journal log's records to `r.journal` (after [`Store::recover`],
    /// which read sled's): records that do not decode go to quarantine
    /// (sled key `x`, counted once: the log keeps them until the low-water
    /// mark passes) like damaged stretches of the log (counted).
    /// Journal records a store from before the log kept in sled (`j` keys)
    /// are appended to the log, then removed from sled with the journal end
    /// set, in one batch: a crash between leaves them in sled and the log's
    /// copies uncommitted.
    pub(super) fn recover_journal(
        &self,
        reopened: Reopened,
        r: &mut Recovered,
    ) -> Result<(), StoreError> {
        let legacy = std::mem::take(&mut r.journal);
        r.quarantined += reopened.damaged;
        let mut bad = sled::Batch::default();
        let mut undecodable = 0;
        for (id, bytes) in reopened.records {
            match JournalRecord::decode(&bytes) {
                Some(record) => r.journal.push((id, record)),
                None if self.live().tree.contains_key(key(b'x', id))? => {}
                None => {
                    error!(id, "journal record does not decode; moved to quarantine");
                    bad.insert(&key(b'x', id), bytes);
                    undecodable += 1;
                }
            }
        }
        if undecodable > 0 {
            let live = self.live();
            live.tree.apply_batch(bad)?;
            live.flush()?;
            r.quarantined += undecodable;
        }
        let Some((last, _)) = legacy.last() else {
            return Ok(());
        };
        let live = self.live();
        self.journal()
            .append(legacy.iter().map(|(id, record)| (*id, record)))
            .map_err(|e| live.journal_failed(e))?;
        let end = (last + 1).max(r.journal_end);
        let mut batch = sled::Batch::default();
        for (id, _) in &legacy {
            batch.remove(&key(b'j', *id));
        }
        batch.insert(META_JOURNAL_END, &end.to_be_bytes());
        live.tree.apply_batch(batch)?;
        live.flush()?;
        tracing::info!(
            records = legacy.len(),
            "moved the journal from sled into the journal log"
        );
        r.journal_end = end;
        r.journal.extend(legacy);
        r.journal.sort_by_key(|(id, _)| *id);
        r.journal.dedup_by_key(|(id, _)| *id);
        Ok(())
    }
}
