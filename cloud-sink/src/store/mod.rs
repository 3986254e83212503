//! The embedded store: stores each batch exactly once per (gateway, epoch, seq)
//! in sled and answers the gateway and series queries.
//!
//! Every call here is blocking (sled I/O, `flush`); async callers must use
//! `tokio::task::spawn_blocking`. It knows nothing about HTTP or auth.

mod keys;
mod records;

use std::path::Path;
use std::sync::{Mutex, PoisonError};

use serde::de::DeserializeOwned;
use wire::{BatchKey, Body, CodecError, Envelope};

use records::WindowRecord;
pub use records::{
    BatchRecord, EscalationQuery, GatewayInfo, PutOutcome, SeriesQuery, StoredEscalation,
    StoredWindow, TeacherJudgement, TeacherSkip, TeacherVerdict, DEFAULT_SERIES_LIMIT,
};

/// Largest value the store will decode (its own values are far smaller).
const VALUE_CAP: usize = 2 * wire::MAX_ENVELOPE_BYTES;

/// sled page cache size; the store holds aggregates, so this is plenty.
const CACHE_BYTES: u64 = 64 * 1024 * 1024;

/// Why a store operation failed. All of these are worth a retry by the client
/// except `Corrupt`, which needs an operator.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// sled reported an I/O or internal error.
    #[error("store I/O")]
    Sled(#[from] sled::Error),
    /// A stored value did not decode.
    #[error("corrupt value under key {key}")]
    Corrupt {
        key: String,
        #[source]
        source: CodecError,
    },
}

/// The sled-backed store. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct EmbeddedStore {
    db: sled::Db,
    /// Serializes check-then-write in `put_batch`, so two concurrent posts of
    /// the same key cannot both see "absent" and both store.
    writer: Mutex<()>,
}

impl EmbeddedStore {
    /// Opens (or creates) the store in `dir`. Fails if another process holds it.
    pub fn open(dir: impl AsRef<Path>) -> Result<EmbeddedStore, StoreError> {
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(CACHE_BYTES)
            .open()?;
        Ok(EmbeddedStore {
            db,
            writer: Mutex::new(()),
        })
    }

    /// Stores a verified batch once.
    ///
    /// `teacher[w][e]` is the teacher's judgement of escalation `e` of window
    /// `w` (judged by the caller before the call, so no model runs under the
    /// writer lock); a missing entry is stored as `no_teacher`. A duplicate
    /// discards them: the first stored judgement is the only one.
    ///
    /// * key absent → writes the batch record, every window, every escalation
    ///   with its teacher judgement and the gateway's updated totals in ONE
    ///   atomic `apply_batch`, flushes, returns `Stored`;
    /// * key present, same body hash → writes nothing, returns `Duplicate`;
    /// * key present, other hash → writes nothing, returns `Conflict`.
    ///
    /// `Stored` and `Duplicate` are only returned after a `flush()` that began
    /// after the batch was written, so either answer means "durable". The flush
    /// runs outside the writer lock, so concurrent posts share flushes (group
    /// commit) instead of queueing behind each other's disk writes.
    pub fn put_batch(
        &self,
        env: &Envelope,
        body: &Body,
        teacher: &[Vec<TeacherJudgement>],
        received_ms: i64,
    ) -> Result<PutOutcome, StoreError> {
        let key = env.key();
        let hash = env.body_hash_hex();
        let batch_key = keys::batch(&key);
        {
            let guard = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(stored) = self.get::<BatchRecord>(&batch_key)? {
                if stored.body_sha256 != hash {
                    return Ok(PutOutcome::Conflict {
                        stored_hash: stored.body_sha256,
                    });
                }
                // The first post of this key may not be flushed yet; "duplicate"
                // also means "durable", so flush before answering.
                drop(guard);
                self.db.flush()?;
                return Ok(PutOutcome::Duplicate);
            }
            let batch = self.build_batch(&key, env, body, teacher, &hash, received_ms)?;
            self.db.apply_batch(batch)?;
        }
        self.db.flush()?;
        Ok(PutOutcome::Stored)
    }

    /// Everything one stored batch writes, as one atomic sled batch.
    fn build_batch(
        &self,
        key: &BatchKey,
        env: &Envelope,
        body: &Body,
        teacher: &[Vec<TeacherJudgement>],
        hash: &str,
        received_ms: i64,
    ) -> Result<sled::Batch, StoreError> {
        let mut batch = sled::Batch::default();
        let windows = body.windows.len() as u64;
        let record = BatchRecord {
            body_sha256: hash.to_owned(),
            received_ms,
            created_ms: env.created_ms,
            windows,
        };
        batch.insert(keys::batch(key), wire::encode(&record));

        for ((index, w), judged) in body
            .windows
            .iter()
            .enumerate()
            .zip(teacher.iter().map(Some).chain(std::iter::repeat(None)))
        {
            // An envelope is capped at a few MB, so the index fits in u32.
            let index = u32::try_from(index).unwrap_or(u32::MAX);
            let wkey = keys::window(key, &w.device, &w.metric, w.start_ms, index);
            let value = WindowRecord {
                gateway: key.gateway.clone(),
                epoch: key.epoch,
                seq: key.seq,
                window: w.clone(),
            };
            batch.insert(wkey, wire::encode(&value));
            for (e_index, e) in w.escalations.iter().enumerate() {
                let judgement = judged.and_then(|j| j.get(e_index)).copied();
                let (teacher, teacher_skipped) = match judgement {
                    Some(TeacherJudgement::Judged(v)) => (Some(v), None),
                    Some(TeacherJudgement::Skipped(why)) => (None, Some(why)),
                    None => (None, Some(TeacherSkip::NoTeacher)),
                };
                let e_index = u32::try_from(e_index).unwrap_or(u32::MAX);
                let ekey = keys::escalation(key, &w.device, e.ts_ms, index, e_index);
                let record = StoredEscalation {
                    gateway: key.gateway.clone(),
                    epoch: key.epoch,
                    seq: key.seq,
                    device: w.device.clone(),
                    series: w.metric.clone(),
                    window_start_ms: w.start_ms,
                    escalation: e.clone(),
                    teacher,
                    teacher_skipped,
                };
                batch.insert(ekey, wire::encode(&record));
            }
        }

        let gkey = keys::gateway(&key.gateway);
        let mut info = self
            .get::<GatewayInfo>(&gkey)?
            .unwrap_or_else(|| GatewayInfo::empty(&key.gateway));
        info.batches += 1;
        info.windows += windows;
        info.last_seen_ms = received_ms;
        info.last_batch = Some(key.clone());
        info.counters.merge(&body.counters);
        // Newest by the batch's key, not by arrival: a retried old batch
        // (or one that went to another replica first) does not win.
        let this = (key.epoch, key.seq);
        if !body.gauges.is_empty() && this > info.gauges_batch {
            info.gauges.clone_from(&body.gauges);
            info.gauges_batch = this;
            info.gauges_ms = received_ms;
        }
        batch.insert(gkey, wire::encode(&info));
        Ok(batch)
    }

    /// The stored record of batch `key`, if any.
    pub fn batch(&self, key: &BatchKey) -> Result<Option<BatchRecord>, StoreError> {
        self.get(&keys::batch(key))
    }

    /// Totals of every gateway that has stored at least one batch, by id.
    pub fn gateways(&self) -> Result<Vec<GatewayInfo>, StoreError> {
        self.db
            .scan_prefix([keys::GATEWAY])
            .map(|item| {
                let (k, v) = item?;
                decode(&k, &v)
            })
            .collect()
    }

    /// Windows matching `q`, ordered by gateway, device, metric, start_ms (then
    /// epoch, seq, index in batch), at most `q.limit` of them.
    pub fn series(&self, q: &SeriesQuery) -> Result<Vec<StoredWindow>, StoreError> {
        let prefix = keys::series_prefix(
            q.gateway.as_deref(),
            q.device.as_deref(),
            q.metric.as_deref(),
        );
        // With the whole series fixed, keys are in time order: seek to `from`
        // and stop at `to`. Otherwise scan the prefix and filter.
        let full = q.gateway.is_some() && q.device.is_some() && q.metric.is_some();
        let mut start = prefix.clone();
        if let (true, Some(from)) = (full, q.from_ms) {
            keys::push_i64(&mut start, from);
        }

        let mut out = Vec::new();
        if q.limit == 0 {
            return Ok(out);
        }
        for item in self.db.range(start..) {
            let (k, v) = item?;
            if !k.starts_with(&prefix) {
                break;
            }
            let w: StoredWindow = decode::<WindowRecord>(&k, &v)?.into();
            if full && q.to_ms.is_some_and(|to| w.window.start_ms >= to) {
                break;
            }
            if q.matches(&w) {
                out.push(w);
                if out.len() >= q.limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// Escalations matching `q`, ordered by gateway, device, row time (then
    /// epoch, seq, position), at most `q.limit` of them.
    pub fn escalations(&self, q: &EscalationQuery) -> Result<Vec<StoredEscalation>, StoreError> {
        let prefix = keys::escalation_prefix(q.gateway.as_deref(), q.device.as_deref());
        let mut out = Vec::new();
        for item in self.db.scan_prefix(&prefix) {
            if out.len() >= q.limit {
                break;
            }
            let (k, v) = item?;
            let e: StoredEscalation = decode(&k, &v)?;
            if q.device.as_deref().is_none_or(|d| d == e.device)
                && q.series.as_deref().is_none_or(|s| s == e.series)
            {
                out.push(e);
            }
        }
        Ok(out)
    }

    /// Calls `f` on every escalation under the (gateway, device) filters, in
    /// key order, without collecting them (for statistics over all of them).
    pub fn for_each_escalation(
        &self,
        gateway: Option<&str>,
        device: Option<&str>,
        mut f: impl FnMut(StoredEscalation),
    ) -> Result<(), StoreError> {
        // A device filter without a gateway is not part of the key prefix.
        let prefix = keys::escalation_prefix(gateway, device.filter(|_| gateway.is_some()));
        for item in self.db.scan_prefix(&prefix) {
            let (k, v) = item?;
            let e: StoredEscalation = decode(&k, &v)?;
            if device.is_none_or(|d| d == e.device) {
                f(e);
            }
        }
        Ok(())
    }

    /// Flushes everything written so far to disk.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        Ok(())
    }

    fn get<T: DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, StoreError> {
        self.db.get(key)?.map(|v| decode(key, &v)).transpose()
    }
}

fn decode<T: DeserializeOwned>(key: &[u8], value: &[u8]) -> Result<T, StoreError> {
    wire::decode_capped(value, VALUE_CAP).map_err(|source| StoreError::Corrupt {
        key: String::from_utf8_lossy(key).into_owned(),
        source,
    })
}

#[cfg(test)]
mod tests;
