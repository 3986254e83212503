//! The ingest journal as an append-only log of segment files: a group commit
//! appends its records, one checksummed frame each, with one `write` and one
//! `fdatasync`; a segment is deleted once every record in it is below the
//! low-water mark (the oldest message an open window still holds).
//!
//! A group's `fdatasync` is its commit: [`JournalLog::open`] reads back every
//! whole frame, and a damaged tail of the last segment past what sled knows
//! was committed (its journal end, written with cuts) is a write a crash cut
//! short, never acknowledged. A store from before kept a commit marker in
//! sled with every group; its log is read once up to the marker
//! ([`CommitBound::Marker`]). The log does not decide where the low-water
//! mark is: the windower does. A
//! deletion a crash undid is harmless: start-up replays the records into
//! windows that have shipped, which skip them.
//!
//! Why not sled: every journaled message was a sled insert and, a window
//! later, a remove; sled rewrote its pages for both, its disk use ran at
//! ~1.3 KB per ~200-byte message and its page cache held the churn
//! (BENCHMARKS.md, "Where the CPU goes"). Here a message costs its bytes
//! plus 16 once, and nothing is rewritten.
//!
//! Segment `<first id, 20 digits>.seg`, a run of frames:
//! `u32 LE payload length | u32 LE CRC-32 of the payload | payload`, payload
//! `u64 LE message id | record bytes` ([`crate::journal_record`]). Ids rise
//! across frames and segments.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use tracing::{error, info, warn};

mod frame;
pub use frame::Encode;
#[cfg(test)]
use frame::HEADER;
use frame::{frame_into, Frame};

/// A segment takes appends until it holds this much; the next group commit
/// starts a new one. Small enough that a released minute of journal is
/// given back within a few segments' worth, large enough that creating
/// files (and syncing their directory) is rare: ~2 s of 10k msg/s.
pub const SEGMENT_BYTES: u64 = 4 * 1024 * 1024;

const EXTENSION: &str = "seg";

/// One segment file.
#[derive(Debug)]
struct Segment {
    /// One past the last id appended to it (its first id while empty).
    end: u64,
    path: PathBuf,
    bytes: u64,
}

/// What [`JournalLog::open`] takes as committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitBound {
    /// Every whole frame; records below `known_end` were committed before
    /// the last cut, so damage among them is damage, not a torn write.
    Frames { known_end: u64 },
    /// Records below the marker only (a store from before frames committed).
    Marker(u64),
}

impl CommitBound {
    /// Records at or past this were never committed.
    fn cut_off(self) -> u64 {
        match self {
            CommitBound::Frames { .. } => u64::MAX,
            CommitBound::Marker(end) => end,
        }
    }

    /// Every record below this is known committed.
    fn known_end(self) -> u64 {
        match self {
            CommitBound::Frames { known_end } | CommitBound::Marker(known_end) => known_end,
        }
    }
}

/// What [`JournalLog::open`] read back.
#[derive(Debug, Default)]
pub struct Reopened {
    /// Committed records in id order: `(id, record bytes)`.
    pub records: Vec<(u64, Vec<u8>)>,
    /// Damaged stretches of committed journal (set aside, counted).
    pub damaged: u64,
    /// Records cut off because they were appended but never committed.
    pub uncommitted: u64,
}

/// The journal's segment files in one directory; single writer.
#[derive(Debug)]
pub struct JournalLog {
    dir: PathBuf,
    /// Oldest first; the last one is `current`'s when it is open.
    segments: Vec<Segment>,
    /// The segment appends go to (always one this process created).
    current: Option<File>,
    /// One buffer reused for every group's frames.
    buf: Vec<u8>,
    segment_bytes: u64,
    /// Records below this id are no longer needed ([`JournalLog::release_below`]).
    below: u64,
}

impl JournalLog {
    /// Opens (creating it if new) the log in `dir` and reads back every
    /// record `bound` says is committed, cutting off the rest. A damaged
    /// frame (bad length or checksum) ends what can be read of its segment:
    /// the rest is copied to `damaged-<segment>-<offset>` for inspection and
    /// counted, unless it is the unsynced tail of the last segment past every
    /// record known committed (a write a crash cut short; never acknowledged).
    pub fn open(dir: &Path, bound: CommitBound) -> io::Result<(JournalLog, Reopened)> {
        if !dir.exists() {
            std::fs::create_dir_all(dir)?;
            if let Some(parent) = dir.parent() {
                File::open(parent)?.sync_all()?;
            }
        }
        let mut found: Vec<(u64, PathBuf)> = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            if path.extension().and_then(|e| e.to_str()) != Some(EXTENSION) {
                continue;
            }
            match path.file_stem().and_then(|s| s.to_str()?.parse().ok()) {
                Some(first) => found.push((first, path)),
                None => warn!(file = %path.display(), "not a journal segment name; left alone"),
            }
        }
        found.sort();
        let mut log = JournalLog {
            dir: dir.to_owned(),
            segments: Vec::new(),
            current: None,
            buf: Vec::new(),
            segment_bytes: SEGMENT_BYTES,
            below: 0,
        };
        let mut out = Reopened::default();
        let count = found.len();
        for (i, (first, path)) in found.into_iter().enumerate() {
            let last = i + 1 == count;
            let kept = log.read_segment(first, &path, bound, last, &mut out)?;
            match kept {
                Some((end, bytes)) if bytes > 0 => log.segments.push(Segment { end, path, bytes }),
                _ => {
                    std::fs::remove_file(&path)?;
                }
            }
        }
        if out.uncommitted > 0 {
            info!(
                records = out.uncommitted,
                "journal: cut off records appended but never committed (not acknowledged)"
            );
        }
        Ok((log, out))
    }

    /// Reads one segment's committed frames into `out`, truncating it where
    /// they end: its end (one past its last id) and bytes kept, `None` if
    /// nothing committed is left in it.
    fn read_segment(
        &self,
        first: u64,
        path: &Path,
        bound: CommitBound,
        last_segment: bool,
        out: &mut Reopened,
    ) -> io::Result<Option<(u64, u64)>> {
        let committed_below = bound.cut_off();
        let bytes = std::fs::read(path)?;
        let mut at = 0usize;
        let mut last_id = out.records.last().map(|(id, _)| *id);
        let mut seg_last = None;
        let end = loop {
            let Some(frame) = Frame::at(&bytes, at) else {
                break at; // a whole segment read, or a torn or damaged frame at `at`
            };
            if frame.id >= committed_below {
                out.uncommitted += 1 + Frame::count_from(&bytes, frame.end);
                break at;
            }
            if last_id.is_some_and(|l| frame.id <= l) {
                warn!(
                    id = frame.id,
                    "journal: a record id repeats; the later copy is skipped"
                );
            } else {
                out.records.push((frame.id, frame.record.to_vec()));
                last_id = Some(frame.id);
                seg_last = Some(frame.id);
            }
            at = frame.end;
        };
        if end < bytes.len() && out.uncommitted == 0 {
            // Frames stop short of the file's end without reaching uncommitted
            // ids. If the next id this segment could hold is at or past every
            // record known committed, the rest is the last group's write that
            // a crash cut short (its sync never returned, so nothing in it
            // was acknowledged).
            let next_here = match seg_last {
                Some(l) => l + 1,
                None => first,
            };
            if last_segment && next_here >= bound.known_end() {
                out.uncommitted += 1; // a torn write of a group that never committed
            } else {
                let aside = self.dir.join(format!("damaged-{}-{end}", file_stem(path)));
                std::fs::write(&aside, &bytes[end..])?;
                error!(
                    segment = %path.display(),
                    offset = end,
                    set_aside = %aside.display(),
                    "ALARM: a journal segment is damaged past this offset; the rest of it is \
                     set aside and counted as one corrupt_record"
                );
                out.damaged += 1;
            }
        }
        if end < bytes.len() {
            let f = OpenOptions::new().write(true).open(path)?;
            f.set_len(end as u64)?;
            f.sync_all()?;
        }
        Ok(seg_last.map(|l| (l + 1, end as u64)))
    }

    /// Appends `records` (id, record) as frames to the current segment (a new
    /// one when there is none or it is full) and syncs them to disk. Ids must
    /// rise. Once this returns they are committed. On error nothing may be
    /// acknowledged: what was written is given back, or cut off at the next
    /// start as a torn tail.
    pub fn append<'a, R>(
        &mut self,
        records: impl IntoIterator<Item = (u64, &'a R)>,
    ) -> io::Result<()>
    where
        R: Encode + ?Sized + 'a,
    {
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        let mut first = None;
        let mut last = 0;
        let framed = records.into_iter().try_for_each(|(id, record)| {
            first.get_or_insert(id);
            last = id;
            frame_into(&mut buf, id, record)
        });
        let result = match (framed, first) {
            (Err(e), _) => Err(e),
            (Ok(()), None) => Ok(()),
            (Ok(()), Some(first)) => self.write_synced((first, last), &buf),
        };
        self.buf = buf;
        result
    }

    fn write_synced(&mut self, (first, last): (u64, u64), frames: &[u8]) -> io::Result<()> {
        let full = self
            .segments
            .last()
            .is_none_or(|s| s.bytes >= self.segment_bytes);
        if self.current.is_none() || full {
            self.start_segment(first)?;
        }
        let file = self.current.as_mut().expect("a segment was just started");
        let before = self.segments.last().map_or(0, |s| s.bytes);
        if let Err(e) = file.write_all(frames).and_then(|()| file.sync_data()) {
            // Give back what a short write took (a full disk's last bytes are
            // what sled needs to open again); start-up would cut it anyway.
            let _ = file.set_len(before);
            return Err(e);
        }
        let segment = self.segments.last_mut().expect("the current segment");
        segment.end = last + 1;
        segment.bytes += frames.len() as u64;
        Ok(())
    }

    /// Creates segment `first` and makes its directory entry durable; the
    /// segment it replaces is deleted if nothing in it is needed any more.
    fn start_segment(&mut self, first: u64) -> io::Result<()> {
        let path = self.dir.join(format!("{first:020}.{EXTENSION}"));
        let file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&path)?;
        File::open(&self.dir)?.sync_all()?;
        self.current = Some(file);
        self.segments.push(Segment {
            end: first,
            path,
            bytes: 0,
        });
        self.delete_released();
        Ok(())
    }

    /// Records below `mark` are no longer needed (no open window holds
    /// them): deletes every segment, but the one taking appends, that holds
    /// nothing else. Marks only rise. A failed deletion only costs disk until
    /// the next start, which releases the records again.
    pub fn release_below(&mut self, mark: u64) {
        self.below = self.below.max(mark);
        self.delete_released();
    }

    fn delete_released(&mut self) {
        let current = self.current.is_some().then(|| self.segments.len() - 1);
        let below = self.below;
        let mut i = 0;
        self.segments.retain(|s| {
            let keep = s.end > below || Some(i) == current;
            i += 1;
            if !keep {
                remove(&s.path);
            }
            keep
        });
    }

    /// Bytes of the segments (their frames), for the disk guard.
    pub fn bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.bytes).sum()
    }

    /// Segment files held now.
    #[cfg(test)]
    fn segments(&self) -> usize {
        self.segments.len()
    }

    #[cfg(test)]
    fn with_segment_bytes(mut self, bytes: u64) -> JournalLog {
        self.segment_bytes = bytes;
        self
    }
}

fn file_stem(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn remove(path: &Path) {
    if let Err(e) = std::fs::remove_file(path) {
        warn!(segment = %path.display(), "journal segment not deleted ({e}); retried at the next start");
    }
}

#[cfg(test)]
mod tests;
