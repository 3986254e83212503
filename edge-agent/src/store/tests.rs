//! Store unit tests: commits survive reopen, epochs, quarantine, compaction.

use super::*;
use crate::decode::Reading;
use wire::Counters;

#[test]
fn commits_survive_reopen_and_batches_leave_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let record = JournalRecord {
        device: "d".into(),
        seq: None,
        readings: vec![Reading {
            metric: "m".into(),
            ts_ms: 5,
            value: 1.5,
        }],
        exemplars: Vec::new(),
        escalations: Vec::new(),
    };
    let epoch = {
        let (store, r) = Store::open(dir.path(), T).unwrap();
        assert_eq!((r.epoch, r.next_seq), (T as u64, 1));
        let mut counters = Counters::default();
        counters.add(wire::Reason::Late, 3);
        store
            .commit_ingest(IngestCommit {
                journal: vec![(7, record.clone()), (8, record.clone())],
                device_seqs: vec![("d".into(), 99)],
                counters: Some(counters),
                classifier: vec![("anomaly".into(), "d".into(), vec![1, 2, 3])],
                sensor_mark: None,
                seqs_mark: Some(9),
            })
            .unwrap();
        store
            .commit_batches(BatchCommit {
                batches: vec![(1, envelope(1)), (2, envelope(2))],
                next_seq: 3,
                counters: Counters::default(),
                closed: vec![("d".into(), "m".into(), -60_000)],
                journal_below: 8,
                classifier: vec![("anomaly".into(), "d".into(), vec![4])],
                sensor_mark: Some(9),
                windows: None,
                device_seqs: Vec::new(),
                seqs_mark: None,
                journal_end: 9,
            })
            .unwrap();
        store.outbox_remove(1).unwrap();
        r.epoch
    };
    let (store, r) = Store::open(dir.path(), T + 1000).unwrap();
    assert_eq!((r.epoch, r.next_seq), (epoch, 3));
    assert!(r.counters.is_empty());
    assert_eq!(r.closed, vec![("d".into(), "m".into(), -60_000)]);
    assert_eq!(r.device_seqs["d"], 99);
    // Released record 7 shares its segment with 8, which is still needed:
    // it comes back too, and the replay skips it (its window has shipped).
    assert_eq!(r.journal, vec![(7, record.clone()), (8, record)]);
    assert_eq!(r.journal_end, 9);
    assert_eq!(r.classifier, vec![("anomaly".into(), "d".into(), vec![4])]);
    assert_eq!(r.sensor_mark, Some(9), "the cut's snapshot and mark");
    assert_eq!(store.outbox_first().unwrap(), Some((2, envelope(2))));
    store.outbox_quarantine(2).unwrap();
    assert_eq!(store.outbox_len(), 0);
}

/// A set gateway clock (2026-01-01).
const T: i64 = 1_767_225_600_000;

fn envelope(seq: u64) -> Vec<u8> {
    let key = wire::BatchKey {
        gateway: "g".into(),
        epoch: 42,
        seq,
    };
    wire::Envelope::seal(&key, 0, &wire::Body::default()).to_bytes()
}

#[test]
fn stores_created_with_an_unset_clock_get_distinct_epochs() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (_, ra) = Store::open(a.path(), 10_000).unwrap();
    let (_, rb) = Store::open(b.path(), 10_000).unwrap();
    assert_ne!(ra.epoch, rb.epoch);
    assert!(ra.epoch > 32_503_680_000_000 && rb.epoch > 32_503_680_000_000);
    let (_, rc) = Store::open(tempfile::tempdir().unwrap().path(), 1_767_225_600_000).unwrap();
    assert_eq!(rc.epoch, 1_767_225_600_000, "a set clock is the epoch");
}

#[test]
fn corrupt_records_are_quarantined_counted_and_start_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (store, _) = Store::open(dir.path(), 42).unwrap();
        let good = envelope(1);
        let mut flipped = good.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 0x40;
        let mut batch = sled::Batch::default();
        chunked::insert(&mut batch, b'o', 1, &good);
        chunked::insert(&mut batch, b'o', 2, &flipped);
        let live = store.live();
        live.tree.apply_batch(batch).unwrap();
        live.tree.insert(key(b'j', 7), &b"\xff\x00"[..]).unwrap();
        live.tree.insert(META_COUNTERS, &b"\xff"[..]).unwrap();
        live.db.flush().unwrap();
    }
    let (store, r) = reopen(dir.path());
    assert_eq!(
        r.quarantined, 3,
        "flipped batch, bad journal record, bad counters"
    );
    assert_eq!((r.outbox_len, r.journal.len()), (1, 0));
    assert_eq!(store.outbox_first().unwrap().map(|(seq, _)| seq), Some(1));
    assert!(
        store.live().tree.get(key(b'q', 2)).unwrap().is_some(),
        "batch kept aside"
    );
    assert!(
        store.live().tree.get(key(b'x', 7)).unwrap().is_some(),
        "record kept aside"
    );
    drop(store);
    let (_, again) = reopen(dir.path());
    assert_eq!(again.quarantined, 0, "quarantine is counted once");
}

/// Reopens in-process; sled's flusher may hold the file lock for a moment.
fn reopen(dir: &Path) -> (Store, Recovered) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match Store::open(dir, 1000) {
            Err(e) if format!("{e:?}").contains("could not acquire lock") => {
                assert!(std::time::Instant::now() < deadline, "{e}");
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            other => return other.unwrap(),
        }
    }
}

/// A store with `n` outbox batches of `size` bytes each, all but the last `keep` sent.
fn churned_store(dir: &Path, n: u64, size: usize, keep: u64) -> Store {
    let (store, _) = Store::open(dir, T).unwrap();
    for seq in 1..=n {
        let key = wire::BatchKey {
            gateway: "g".repeat(size),
            epoch: 42,
            seq,
        };
        let bytes = wire::Envelope::seal(&key, 0, &wire::Body::default()).to_bytes();
        store
            .commit_batches(BatchCommit {
                batches: vec![(seq, bytes)],
                next_seq: seq + 1,
                ..BatchCommit::default()
            })
            .unwrap();
        if seq + keep <= n {
            store.outbox_remove(seq).unwrap();
        }
    }
    store
}

#[test]
fn compaction_keeps_every_record_and_gives_the_disk_back() {
    let dir = tempfile::tempdir().unwrap();
    let store = churned_store(dir.path(), 400, 16 * 1024, 5);
    let (first, len, bytes) = (
        store.outbox_first().unwrap(),
        store.outbox_len(),
        store.outbox_bytes(),
    );
    let live = store.live_bytes().unwrap();
    let done = store.compact(u64::MAX).unwrap();
    println!("{done:?}");
    assert_eq!(done.generation, 1);
    assert_eq!(done.live_bytes, live);
    assert!(
        done.disk_after < done.disk_before / 2,
        "a churned store should shrink: {done:?}"
    );
    assert!(dir.path().join("gen-1").is_dir() && !dir.path().join("db").exists());
    // The handle keeps working on the new generation, and so does a clone.
    let clone = store.clone();
    assert_eq!(clone.outbox_first().unwrap(), first);
    assert_eq!((clone.outbox_len(), clone.outbox_bytes()), (len, bytes));
    clone.outbox_remove(first.unwrap().0).unwrap();
    assert_eq!(store.compact(u64::MAX).unwrap().generation, 2);
    assert!(!dir.path().join("gen-1").exists(), "generation 1 deleted");
    drop((store, clone));
    let (store, r) = reopen(dir.path());
    assert_eq!((r.epoch, r.next_seq, r.outbox_len), (T as u64, 401, 4));
    assert_eq!(store.outbox_first().unwrap().map(|(s, _)| s), Some(397));
    assert_eq!(r.quarantined, 0, "the witness agrees with the copy");
}

#[test]
fn a_copy_over_its_allowance_is_deleted_and_the_old_generation_stays() {
    let dir = tempfile::tempdir().unwrap();
    let store = churned_store(dir.path(), 200, 16 * 1024, 100);
    let before = store.outbox_first().unwrap();
    match store.compact(64 * 1024) {
        Err(CompactError::OverAllowance { allowance }) => assert_eq!(allowance, 64 * 1024),
        other => panic!("expected OverAllowance, got {other:?}"),
    }
    assert!(!dir.path().join("gen-1").exists(), "the copy is deleted");
    assert_eq!(store.outbox_first().unwrap(), before);
    store.outbox_remove(before.unwrap().0).unwrap();
    drop(store);
    let (_, r) = reopen(dir.path());
    assert_eq!(r.outbox_len, 99);
}

#[test]
fn start_up_deletes_a_copy_that_never_committed() {
    let dir = tempfile::tempdir().unwrap();
    drop(churned_store(dir.path(), 10, 1024, 3));
    // A compaction killed mid-copy leaves gen-1 without the generation file.
    std::fs::create_dir_all(dir.path().join("gen-1")).unwrap();
    std::fs::write(dir.path().join("gen-1/db"), b"half a copy").unwrap();
    let (store, r) = reopen(dir.path());
    assert_eq!(r.outbox_len, 3);
    assert!(!dir.path().join("gen-1").exists());
    assert_eq!(store.live().generation, 0);
}

#[test]
fn a_compaction_writes_the_ballast_back_however_it_ends() {
    let dir = tempfile::tempdir().unwrap();
    let store = churned_store(dir.path(), 200, 16 * 1024, 20);
    let ballast = store.ballast();
    ballast.fill(1 << 20).unwrap();
    let live = store.live_bytes().unwrap();
    assert!(live < 1 << 19, "{live}");
    // Abandoned (the allowance is under the live bytes): the ballast is back.
    assert!(matches!(
        store.compact(live / 2),
        Err(CompactError::OverAllowance { .. })
    ));
    assert_eq!(ballast.bytes().unwrap(), 1 << 20);
    // Done (the snapshot took the ballast's blocks): the ballast is back.
    let done = store.compact(1 << 20).unwrap();
    assert_eq!(ballast.bytes().unwrap(), 1 << 20);
    assert!(done.disk_after >= 1 << 20, "the ballast is counted");
    drop(store);
    let (store, r) = reopen(dir.path());
    assert_eq!(r.outbox_len, 20);
    assert_eq!(
        store.ballast().bytes().unwrap(),
        1 << 20,
        "start-up keeps it"
    );
}

fn record_of(device: &str, ts_ms: i64) -> JournalRecord {
    JournalRecord {
        device: device.into(),
        seq: None,
        readings: vec![crate::decode::Reading {
            metric: "m".into(),
            ts_ms,
            value: 1.0,
        }],
        exemplars: Vec::new(),
        escalations: Vec::new(),
    }
}

#[test]
fn a_journal_kept_in_sled_moves_into_the_log_once() {
    let dir = tempfile::tempdir().unwrap();
    {
        // A store as agents before the journal log left it: records under `j`.
        let (store, _) = Store::open(dir.path(), T).unwrap();
        let live = store.live();
        for id in [3u64, 4, 9] {
            let record = record_of("legacy", id as i64);
            live.tree.insert(key(b'j', id), record.encode()).unwrap();
        }
        live.tree.remove(META_JOURNAL_END).unwrap();
        live.tree.remove(META_JOURNAL_MODE).unwrap();
        live.db.flush().unwrap();
    }
    let want: Vec<u64> = vec![3, 4, 9];
    let (store, r) = reopen(dir.path());
    assert_eq!(
        r.journal.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
        want
    );
    assert_eq!(r.journal[2].1, record_of("legacy", 9));
    assert_eq!(r.journal_end, 10);
    assert_eq!(
        store.live().tree.scan_prefix(b"j").count(),
        0,
        "gone from sled"
    );
    assert!(store.journal_bytes() > 0, "in the log");
    drop(store);
    let (_, again) = reopen(dir.path());
    assert_eq!(
        again.journal.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
        want,
        "read from the log, once"
    );
    assert_eq!(again.quarantined, 0);
}

#[test]
fn a_synced_journal_group_is_committed_without_sled() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (store, _) = Store::open(dir.path(), T).unwrap();
        store
            .commit_ingest(IngestCommit {
                journal: vec![(1, record_of("d", 1)), (2, record_of("d", 2))],
                ..IngestCommit::default()
            })
            .unwrap();
        // A kill after the next group's sync: it is committed (and may not be acked).
        let late = [(3u64, record_of("d", 3)), (4, record_of("d", 4))];
        store
            .journal()
            .append(late.iter().map(|(id, r)| (*id, r)))
            .unwrap();
    }
    let (_, r) = reopen(dir.path());
    assert_eq!(
        r.journal.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
        [1, 2, 3, 4]
    );
    assert_eq!(r.quarantined, 0);
}

#[test]
fn a_store_from_before_frames_committed_is_cut_at_its_marker_once() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (store, _) = Store::open(dir.path(), T).unwrap();
        let early = [(1u64, record_of("d", 1)), (2, record_of("d", 2))];
        store
            .journal()
            .append(early.iter().map(|(id, r)| (*id, r)))
            .unwrap();
        // As an older agent left it: the marker says 3, and a group appended
        // after it never had its sled commit.
        let live = store.live();
        live.tree
            .insert(META_JOURNAL_END, &3u64.to_be_bytes())
            .unwrap();
        live.tree.remove(META_JOURNAL_MODE).unwrap();
        live.db.flush().unwrap();
        drop(live);
        let late = [(3u64, record_of("d", 3)), (4, record_of("d", 4))];
        store
            .journal()
            .append(late.iter().map(|(id, r)| (*id, r)))
            .unwrap();
    }
    let ids = |r: &Recovered| r.journal.iter().map(|(id, _)| *id).collect::<Vec<_>>();
    let (store, r) = reopen(dir.path());
    assert_eq!((ids(&r), r.journal_end, r.quarantined), (vec![1, 2], 3, 0));
    // The next life reuses ids 3 and 4 for other messages, committed by their frames.
    store
        .commit_ingest(IngestCommit {
            journal: vec![(3, record_of("e", 30))],
            ..IngestCommit::default()
        })
        .unwrap();
    drop(store);
    let (_, r) = reopen(dir.path());
    assert_eq!(r.journal.last(), Some(&(3, record_of("e", 30))));
    assert_eq!(r.journal.len(), 3);
}

#[test]
fn sequence_numbers_come_back_from_sled_and_the_journal_past_its_mark() {
    let dir = tempfile::tempdir().unwrap();
    let with_seq = |device: &str, id: u64, seq: u64| {
        let mut r = record_of(device, id as i64);
        r.seq = Some(seq);
        (id, r)
    };
    {
        let (store, _) = Store::open(dir.path(), T).unwrap();
        // Before the mark: in sled, and the journal's copies are older.
        store
            .commit_ingest(IngestCommit {
                journal: vec![with_seq("a", 1, 10), with_seq("b", 2, 20)],
                device_seqs: vec![("a".into(), 11), ("b".into(), 20)],
                seqs_mark: Some(3),
                ..IngestCommit::default()
            })
            .unwrap();
        // Past it: only in the journal; "a" restarted its counter.
        store
            .commit_ingest(IngestCommit {
                journal: vec![
                    with_seq("a", 3, 2),
                    with_seq("c", 4, 7),
                    with_seq("a", 5, 3),
                ],
                ..IngestCommit::default()
            })
            .unwrap();
    }
    let (_, r) = reopen(dir.path());
    let mut seqs: Vec<_> = r.device_seqs.into_iter().collect();
    seqs.sort();
    assert_eq!(seqs, [("a".into(), 3), ("b".into(), 20), ("c".into(), 7)]);
}

#[test]
fn a_snapshot_sled_never_finished_writing_does_not_cost_the_store() {
    // sled writes `snap.<lsn>.generating` and renames it when complete; on a
    // full disk the write fails and the file stays, and sled 0.34's next open
    // takes it for the newest snapshot and calls the store corrupt.
    let dir = tempfile::tempdir().unwrap();
    {
        let (store, _) = Store::open(dir.path(), T).unwrap();
        store
            .commit_ingest(IngestCommit {
                journal: vec![(1, record_of("d", 1))],
                device_seqs: vec![("d".into(), 41)],
                ..IngestCommit::default()
            })
            .unwrap();
    }
    let sled_dir = generation::dir_of(dir.path(), 0);
    for (name, bytes) in [
        ("snap.7FFFFFFFFFFFFFF0.generating", &b""[..]),
        ("snap.7FFFFFFFFFFFFFF1.generating", &[7u8; 40][..]),
    ] {
        std::fs::write(sled_dir.join(name), bytes).unwrap();
    }
    let (_, r) = reopen(dir.path());
    assert_eq!(r.device_seqs["d"], 41, "the store is the one written");
    assert_eq!(r.journal, vec![(1, record_of("d", 1))]);
    assert_eq!(r.quarantined, 0);
    let left: Vec<_> = std::fs::read_dir(&sled_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".generating"))
        .collect();
    assert!(left.is_empty(), "unfinished snapshots removed: {left:?}");
}

#[test]
fn a_journal_record_that_does_not_decode_is_quarantined_and_counted_once() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (store, _) = Store::open(dir.path(), T).unwrap();
        let commit = |id: u64| IngestCommit {
            journal: vec![(id, record_of("d", id as i64))],
            ..IngestCommit::default()
        };
        store.commit_ingest(commit(1)).unwrap();
        // Bytes this agent cannot read, committed by their own synced frame.
        let unreadable: &[u8] = b"\xff\xfe";
        store.journal().append([(2u64, unreadable)]).unwrap();
        store.commit_ingest(commit(3)).unwrap();
    }
    let ids = |r: &Recovered| r.journal.iter().map(|(id, _)| *id).collect::<Vec<_>>();
    let (store, r) = reopen(dir.path());
    assert_eq!((ids(&r), r.quarantined), (vec![1, 3], 1));
    assert!(store.live().tree.get(key(b'x', 2)).unwrap().is_some());
    drop(store);
    // The log keeps it until the low-water mark passes; it is not counted again.
    let (_, r) = reopen(dir.path());
    assert_eq!((ids(&r), r.quarantined), (vec![1, 3], 0));
}
