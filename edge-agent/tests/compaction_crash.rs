//! Crash test of store compaction, in the style of sled's own: a child process
//! compacts the store in a loop and is killed with SIGKILL at a random moment,
//! over and over; every restart must find every record intact, exactly one
//! generation on disk, and the store must still take writes. Kills land in
//! every step: while the snapshot is written, after it is committed and
//! before it is loaded (start-up loads it), while loading, after.
//!
//! The child is this test binary re-run with `COMPACTION_CRASH_DIR` set (the
//! `child_compacts_until_killed` test does nothing without it). It does not
//! test when the pipeline decides to compact (`disk_guard` unit tests,
//! `hil-tests/tests/fault_outbox_cap.rs`).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use edge_agent::store::{BatchCommit, Store};

const BATCHES: u64 = 60;
/// Kill cycles in the normal test run.
const CYCLES: usize = 25;
/// The kill lands this long (at most) after the child starts compacting: a
/// few compactions' worth, so kills fall in every phase of one.
const KILL_WITHIN_US: u64 = 150_000;
/// A set clock (2026-01-01).
const T: i64 = 1_767_225_600_000;

fn envelope(seq: u64) -> Vec<u8> {
    let key = wire::BatchKey {
        gateway: format!("gw-{seq}-{}", "x".repeat(2000 + seq as usize * 37)),
        epoch: 42,
        seq,
    };
    wire::Envelope::seal(&key, 0, &wire::Body::default()).to_bytes()
}

/// Opens the store, retrying while a killed child's sled lock lingers.
fn open(dir: &Path) -> Store {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match Store::open(dir, T) {
            Ok((store, recovered)) => {
                assert_eq!(recovered.quarantined, 0, "nothing may look corrupt");
                return store;
            }
            Err(e) if std::time::Instant::now() < deadline => {
                eprintln!("store not open yet: {e}");
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("store does not open: {e}"),
        }
    }
}

/// Every batch `2..=BATCHES` (batch 1 was delivered), byte for byte, and one generation.
fn check(dir: &Path, store: &Store) {
    assert_eq!(store.outbox_len() as u64, BATCHES - 1);
    let lock = store.lock_outbox();
    let all = lock.rewritable(0, usize::MAX).unwrap();
    drop(lock);
    // `rewritable` skips the oldest; check it apart.
    assert_eq!(store.outbox_first().unwrap(), Some((2, envelope(2))));
    assert_eq!(all.len() as u64, BATCHES - 2);
    for (seq, bytes) in all {
        assert_eq!(bytes, envelope(seq), "batch {seq} changed");
    }
    let generations = std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| {
            let name = e.as_ref().unwrap().file_name();
            let name = name.to_string_lossy();
            name.starts_with("gen-") || name == "db"
        })
        .count();
    assert_eq!(generations, 1, "exactly one generation's files on disk");
}

#[test]
fn compaction_killed_at_random_points_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (store, _) = Store::open(dir.path(), T).unwrap();
        for seq in 1..=BATCHES {
            store
                .commit_batches(BatchCommit {
                    batches: vec![(seq, envelope(seq))],
                    next_seq: seq + 1,
                    ..BatchCommit::default()
                })
                .unwrap();
        }
        store.outbox_remove(1).unwrap();
    }
    let me = std::env::current_exe().unwrap();
    // Kills after a snapshot was committed and before it was loaded: start-up finishes those.
    let mut to_load = 0;
    for cycle in 0..CYCLES {
        let mut child = Command::new(&me)
            .args(["--exact", "child_compacts_until_killed", "--nocapture"])
            .env("COMPACTION_CRASH_DIR", dir.path())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        // Wait until the child has checked the store and started compacting ...
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        loop {
            let line = lines.next().expect("child ended early").unwrap();
            if line.starts_with("compacting") {
                break;
            }
        }
        // ... then kill it somewhere inside one of its next compactions.
        std::thread::sleep(Duration::from_micros(fastrand::u64(0..KILL_WITHIN_US)));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let current = std::fs::read_to_string(dir.path().join("generation")).ok();
        eprintln!("cycle {cycle}: killed; current generation {current:?}");
        if current.is_some_and(|c| c.contains("from-snapshot")) {
            to_load += 1;
        }
    }
    let store = open(dir.path());
    check(dir.path(), &store);
    // The store still takes writes after all that.
    store
        .commit_batches(BatchCommit {
            batches: vec![(BATCHES + 1, envelope(BATCHES + 1))],
            next_seq: BATCHES + 2,
            ..BatchCommit::default()
        })
        .unwrap();
    assert_eq!(store.outbox_len() as u64, BATCHES);
    // Each committed compaction advanced the generation by one.
    let committed: u64 = std::fs::read_to_string(dir.path().join("generation"))
        .expect("no compaction ever committed")
        .trim()
        .parse()
        .unwrap();
    println!(
        "{CYCLES} kills, {committed} compactions committed between them, \
         {to_load} kills left a snapshot for start-up to load"
    );
    assert!(to_load > 0, "no kill landed between snapshot and load");
    assert!(
        committed as usize > CYCLES / 2,
        "most kills should land after some compaction committed"
    );
}

/// The child: check, then compact until killed. Does nothing as a normal test.
#[test]
fn child_compacts_until_killed() {
    let Some(dir) = std::env::var_os("COMPACTION_CRASH_DIR") else {
        return;
    };
    let dir = Path::new(&dir);
    let store = open(dir);
    check(dir, &store);
    println!("compacting");
    loop {
        let done = store.compact(u64::MAX).unwrap();
        println!(
            "compacted into generation {} in {:?}",
            done.generation, done.took
        );
    }
}
