//! A store whose files were torn or bit-flipped on disk (a power cut, a failing
//! SD card): the agent must start anyway, keep what still checks out, and count
//! what it could not keep. Each case corrupts a copy of one written store.
//!
//! It does not test sled's crash atomicity on a real power cut (the loop-mounted
//! image scenario of the fault suite does).

use std::path::Path;

use edge_agent::store::{BatchCommit, Store};
use wire::{BatchKey, Body, Envelope};

const BATCHES: u64 = 200;

/// Damage done to the bytes of sled's `db` file.
type Corruption = Box<dyn Fn(&mut Vec<u8>)>;

fn write_store(dir: &Path) {
    let (store, r) = Store::open(dir, 1_000).unwrap();
    for seq in 1..=BATCHES {
        let key = BatchKey {
            gateway: "g".into(),
            epoch: r.epoch,
            seq,
        };
        let bytes = Envelope::seal(&key, 0, &Body::default()).to_bytes();
        store
            .commit_batches(BatchCommit {
                batches: vec![(seq, bytes)],
                next_seq: seq + 1,
                ..BatchCommit::default()
            })
            .unwrap();
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[test]
fn torn_or_flipped_store_files_never_stop_start_up() {
    let original = tempfile::tempdir().unwrap();
    let data = original.path().join("data");
    write_store(&data);
    let db_len = std::fs::metadata(data.join("db")).unwrap().len();
    let cases: Vec<(String, Corruption)> = vec![
        (
            "truncated to half".into(),
            Box::new(|b: &mut Vec<u8>| b.truncate(b.len() / 2)),
        ),
        (
            "truncated to 100 bytes".into(),
            Box::new(|b: &mut Vec<u8>| b.truncate(100)),
        ),
        ("emptied".into(), Box::new(|b: &mut Vec<u8>| b.clear())),
        (
            "bits flipped at 1/3".into(),
            Box::new(|b: &mut Vec<u8>| {
                let i = b.len() / 3;
                b[i] ^= 0x5a;
            }),
        ),
        (
            "bits flipped near the end".into(),
            Box::new(|b: &mut Vec<u8>| {
                let i = b.len() - 64;
                b[i] ^= 0x01;
            }),
        ),
        (
            "header zeroed".into(),
            Box::new(|b: &mut Vec<u8>| {
                let n = 64.min(b.len());
                b[..n].fill(0)
            }),
        ),
    ];
    for (name, corrupt) in cases {
        let case = tempfile::tempdir().unwrap();
        let dir = case.path().join("data");
        copy_dir(&data, &dir);
        let mut bytes = std::fs::read(dir.join("db")).unwrap();
        corrupt(&mut bytes);
        std::fs::write(dir.join("db"), &bytes).unwrap();
        let opened = Store::open_or_set_aside(&dir, 2_000, edge_agent::store::DEFAULT_CACHE_BYTES);
        let (store, r) = opened.unwrap_or_else(|e| panic!("{name}: start-up failed: {e}"));
        let set_aside = std::fs::read_dir(case.path()).unwrap().count() > 1;
        println!(
            "{name}: db {db_len} -> {} bytes; {} of {BATCHES} batches kept, {} quarantined, store set aside: {set_aside}",
            bytes.len(),
            r.outbox_len,
            r.quarantined,
        );
        // What is kept opens; what is not kept was counted or the store was set aside.
        assert!(r.outbox_len as u64 <= BATCHES);
        if (r.outbox_len as u64) < BATCHES {
            assert!(
                r.quarantined > 0 || set_aside || r.outbox_len == 0,
                "{name}: loss not counted"
            );
        }
        while let Some((seq, bytes)) = store.outbox_first().unwrap() {
            Envelope::open(&bytes)
                .unwrap_or_else(|e| panic!("{name}: kept batch {seq} does not open: {e}"));
            store.outbox_remove(seq).unwrap();
        }
    }
}
