//! What the pipeline hands the store to make durable (a group commit, a
//! cut) and what start-up reads back. The writes and reads themselves are in
//! the parent module and `recover.rs`.

use std::collections::HashMap;

use wire::Counters;

use crate::journal_record::JournalRecord;

/// State found on disk at start-up.
#[derive(Debug, Default)]
pub struct Recovered {
    pub epoch: u64,
    pub next_seq: u64,
    pub counters: Counters,
    pub closed: Vec<(String, String, i64)>,
    pub device_seqs: HashMap<String, u64>,
    /// Journaled messages in id order.
    pub journal: Vec<(u64, JournalRecord)>,
    pub outbox_len: usize,
    /// Classifier state per (model series, device).
    pub classifier: Vec<(String, String, Vec<u8>)>,
    /// Sensor states are current up to this journal message id; later
    /// journaled messages must be re-judged. `None`: a store from before
    /// snapshots, whose states were committed with every message.
    pub sensor_mark: Option<u64>,
    /// Records that failed their checks and were moved to quarantine.
    pub quarantined: u64,
    /// The next message id as of the last cut (0: none; stores from before
    /// `mjournal_mode` wrote it with every commit): ids start at or after it.
    pub journal_end: u64,
    /// The newest window checkpoint: its journal mark and its bytes
    /// (`windower::checkpoint`); journal records below the mark are not
    /// for the windows.
    pub windows: Option<(u64, Vec<u8>)>,
    /// The first journal id whose sequence number sled's `device_seqs` do
    /// not include (0: none stored; records before the mode carry none).
    pub seqs_mark: u64,
}

impl Recovered {
    /// Takes the sequence numbers of the journal records at or past the seqs
    /// mark (in id order, the last one a device sent wins, as when it ran).
    pub(super) fn replay_seqs(&mut self) {
        for (id, record) in &self.journal {
            if let (true, Some(seq)) = (*id >= self.seqs_mark, record.seq) {
                self.device_seqs.insert(record.device.clone(), seq);
            }
        }
    }
}

/// One group commit of ingested messages.
#[derive(Debug, Default)]
pub struct IngestCommit {
    pub journal: Vec<(u64, JournalRecord)>,
    /// Sequence numbers for sled (empty when the journal carries them all),
    /// current up to message id `seqs_mark`.
    pub device_seqs: Vec<(String, u64)>,
    pub seqs_mark: Option<u64>,
    pub counters: Option<Counters>,
    /// Classifier state per (model series, device), replacing the old.
    pub classifier: Vec<(String, String, Vec<u8>)>,
    /// With a sensor snapshot in `classifier`: the next message id it does not include.
    pub sensor_mark: Option<u64>,
}

/// One cut of closed windows into outbox batches.
#[derive(Debug, Default)]
pub struct BatchCommit {
    pub batches: Vec<(u64, Vec<u8>)>,
    pub next_seq: u64,
    /// Counters left pending after the cut (normally empty).
    pub counters: Counters,
    pub closed: Vec<(String, String, i64)>,
    /// The journal's new low-water mark: no open window holds a message
    /// below it, so those records may go once the cut is durable (0: none).
    pub journal_below: u64,
    /// Sensor snapshot: required whenever `journal_below` rises, since a
    /// released message can no longer be re-judged at start-up.
    pub classifier: Vec<(String, String, Vec<u8>)>,
    pub sensor_mark: Option<u64>,
    /// A window checkpoint (its mark and bytes), replacing the stored one;
    /// `journal_below` is then the mark (and the sensor snapshot's).
    pub windows: Option<(u64, Vec<u8>)>,
    /// Sequence numbers not yet in sled, current up to message id `seqs_mark`.
    pub device_seqs: Vec<(String, u64)>,
    pub seqs_mark: Option<u64>,
    /// The next message id: ids start at or after it, even once the journal is empty.
    pub journal_end: u64,
}
