//! The journal log's own tests: append and read back, releases deleting
//! segments, and what start-up does with uncommitted, torn and damaged bytes.

use super::*;

fn rec(id: u64) -> Vec<u8> {
    format!("record {id}").into_bytes()
}

fn append(log: &mut JournalLog, ids: std::ops::RangeInclusive<u64>) {
    let records: Vec<(u64, Vec<u8>)> = ids.map(|id| (id, rec(id))).collect();
    log.append(records.iter().map(|(id, r)| (*id, r))).unwrap();
}

/// A new, empty log in `dir`.
fn new_log(dir: &Path) -> JournalLog {
    let (log, reopened) = JournalLog::open(dir, CommitBound::Marker(0)).unwrap();
    assert!(reopened.records.is_empty());
    log
}

fn ids(r: &Reopened) -> Vec<u64> {
    r.records.iter().map(|(id, _)| *id).collect()
}

fn seg_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn committed_records_come_back_in_order_with_their_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, r) = JournalLog::open(dir.path(), CommitBound::Marker(0)).unwrap();
    assert!(r.records.is_empty());
    append(&mut log, 1..=3);
    append(&mut log, 4..=5);
    drop(log);
    let (_, r) = JournalLog::open(dir.path(), CommitBound::Marker(6)).unwrap();
    assert_eq!(ids(&r), vec![1, 2, 3, 4, 5]);
    assert_eq!(r.records[3].1, rec(4));
    assert_eq!((r.damaged, r.uncommitted), (0, 0));
}

#[test]
fn records_past_the_commit_marker_are_cut_off_and_their_ids_reusable() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = new_log(dir.path());
    append(&mut log, 1..=3);
    append(&mut log, 4..=6); // the sled marker never said 7
    drop(log);
    let (mut log, r) = JournalLog::open(dir.path(), CommitBound::Marker(4)).unwrap();
    assert_eq!(ids(&r), vec![1, 2, 3]);
    assert_eq!((r.damaged, r.uncommitted), (0, 3));
    // The ids are written again by the next life; the old copies must be gone.
    append(&mut log, 4..=4);
    drop(log);
    let (_, r) = JournalLog::open(dir.path(), CommitBound::Marker(5)).unwrap();
    assert_eq!(ids(&r), vec![1, 2, 3, 4]);
    assert_eq!(r.uncommitted, 0);
}

#[test]
fn a_store_without_a_marker_has_committed_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = new_log(dir.path());
    append(&mut log, 1..=2);
    drop(log);
    let (log, r) = JournalLog::open(dir.path(), CommitBound::Marker(0)).unwrap();
    assert!(r.records.is_empty());
    assert_eq!(r.uncommitted, 2);
    assert_eq!(log.segments(), 0);
    assert!(seg_files(dir.path()).is_empty());
}

#[test]
fn a_torn_tail_after_the_last_committed_record_is_not_damage() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = new_log(dir.path());
    append(&mut log, 1..=3);
    let path = log.segments[0].path.clone();
    let whole = std::fs::metadata(&path).unwrap().len();
    append(&mut log, 4..=4);
    drop(log);
    // A kill in the middle of the second group's write: half a frame.
    let f = OpenOptions::new().write(true).open(&path).unwrap();
    f.set_len(whole + 10).unwrap();
    let (_, r) = JournalLog::open(dir.path(), CommitBound::Marker(4)).unwrap();
    assert_eq!(ids(&r), vec![1, 2, 3]);
    assert_eq!((r.damaged, r.uncommitted), (0, 1));
    assert_eq!(
        std::fs::metadata(&path).unwrap().len(),
        whole,
        "the tail is cut"
    );
}

#[test]
fn a_torn_first_frame_of_a_new_segment_is_not_damage_either() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = new_log(dir.path()).with_segment_bytes(1);
    append(&mut log, 1..=1);
    log.release_below(2);
    append(&mut log, 2..=2); // segment 2 replaces segment 1, which is deleted
    let path = log.segments.last().unwrap().path.clone();
    drop(log);
    assert_eq!(seg_files(dir.path()).len(), 1);
    let f = OpenOptions::new().write(true).open(&path).unwrap();
    f.set_len(5).unwrap();
    let (_, r) = JournalLog::open(dir.path(), CommitBound::Marker(2)).unwrap();
    assert!(r.records.is_empty());
    assert_eq!((r.damaged, r.uncommitted), (0, 1));
}

#[test]
fn a_damaged_committed_frame_is_set_aside_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = new_log(dir.path());
    append(&mut log, 1..=3);
    let path = log.segments[0].path.clone();
    drop(log);
    let mut bytes = std::fs::read(&path).unwrap();
    let second = HEADER + 8 + rec(1).len();
    bytes[second + HEADER + 9] ^= 0x40; // a flipped bit in record 2
    std::fs::write(&path, &bytes).unwrap();
    let (_, r) = JournalLog::open(dir.path(), CommitBound::Marker(4)).unwrap();
    assert_eq!(ids(&r), vec![1]);
    assert_eq!(r.damaged, 1);
    let aside: Vec<String> = seg_files(dir.path())
        .into_iter()
        .filter(|n| n.starts_with("damaged-"))
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}");
    let kept = std::fs::read(dir.path().join(&aside[0])).unwrap();
    assert_eq!(
        kept,
        bytes[second..],
        "the damaged rest is kept for inspection"
    );
}

#[test]
fn a_segment_goes_once_all_its_records_are_below_the_mark_but_not_while_current() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = new_log(dir.path()).with_segment_bytes(40);
    append(&mut log, 1..=4); // segment 1, now past 40 bytes
    append(&mut log, 5..=6); // segment 5, current
    assert_eq!(log.segments(), 2);
    log.release_below(4);
    assert_eq!(log.segments(), 2, "record 4 is still needed");
    log.release_below(5);
    assert_eq!(seg_files(dir.path()), vec![format!("{:020}.seg", 5)]);
    log.release_below(7);
    assert_eq!(log.segments(), 1, "the current segment stays");
    // A lower mark later changes nothing.
    log.release_below(2);
    // The next group starts a new segment; the current one, all below the
    // mark, goes.
    append(&mut log, 7..=7);
    assert_eq!(seg_files(dir.path()), vec![format!("{:020}.seg", 7)]);
    assert_eq!(log.bytes(), (HEADER + 8 + rec(7).len()) as u64);
    // ...and a segment started below the mark goes as soon as it is full.
    append(&mut log, 8..=9);
    log.release_below(20);
    append(&mut log, 10..=10);
    assert_eq!(seg_files(dir.path()), vec![format!("{:020}.seg", 10)]);
}

#[test]
fn start_up_never_appends_to_a_segment_it_read() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = new_log(dir.path());
    append(&mut log, 1..=2);
    drop(log);
    let (mut log, r) = JournalLog::open(dir.path(), CommitBound::Marker(3)).unwrap();
    assert_eq!(ids(&r), vec![1, 2]);
    append(&mut log, 3..=3);
    assert_eq!(log.segments(), 2);
    // Records read back are released like any other.
    log.release_below(3);
    assert_eq!(seg_files(dir.path()), vec![format!("{:020}.seg", 3)]);
}

#[test]
fn with_frames_committing_every_whole_frame_comes_back() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = new_log(dir.path());
    append(&mut log, 1..=3);
    append(&mut log, 4..=5); // no marker anywhere
    drop(log);
    let (_, r) = JournalLog::open(dir.path(), CommitBound::Frames { known_end: 0 }).unwrap();
    assert_eq!(ids(&r), vec![1, 2, 3, 4, 5]);
    assert_eq!((r.damaged, r.uncommitted), (0, 0));
}

#[test]
fn with_frames_committing_a_torn_last_group_is_cut_off_not_counted() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = new_log(dir.path());
    append(&mut log, 1..=3);
    let path = log.segments[0].path.clone();
    let whole = std::fs::metadata(&path).unwrap().len();
    append(&mut log, 4..=5);
    drop(log);
    let f = OpenOptions::new().write(true).open(&path).unwrap();
    f.set_len(whole + HEADER as u64 + 3).unwrap(); // the kill came inside record 4
    let (_, r) = JournalLog::open(dir.path(), CommitBound::Frames { known_end: 3 }).unwrap();
    assert_eq!(ids(&r), vec![1, 2, 3]);
    assert_eq!((r.damaged, r.uncommitted), (0, 1));
    assert_eq!(std::fs::metadata(&path).unwrap().len(), whole);
}

#[test]
fn with_frames_committing_damage_below_what_a_cut_recorded_is_damage() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = new_log(dir.path());
    append(&mut log, 1..=3);
    let path = log.segments[0].path.clone();
    drop(log);
    let len = std::fs::metadata(&path).unwrap().len();
    let f = OpenOptions::new().write(true).open(&path).unwrap();
    f.set_len(len - 2).unwrap(); // record 3 lost its end after a cut said 4 was next
    let (_, r) = JournalLog::open(dir.path(), CommitBound::Frames { known_end: 4 }).unwrap();
    assert_eq!(ids(&r), vec![1, 2]);
    assert_eq!((r.damaged, r.uncommitted), (1, 0));
}
