//! The journal log's frame: `u32 LE payload length | u32 LE CRC-32 of the
//! payload | payload`, payload `u64 LE message id | record bytes`; writing one
//! into a buffer and reading whole, checksummed ones back. It knows nothing
//! of segments or commits (the parent module does).

use std::io;

/// A frame's payload is at most this (a message is capped far below it by
/// `[limits]`); a larger length is a damaged frame, not an allocation.
pub(super) const MAX_FRAME: usize = 64 * 1024 * 1024;

/// Frame header: payload length + CRC-32.
pub(super) const HEADER: usize = 8;

/// What the log can frame: a record that encodes itself into a buffer.
pub trait Encode {
    fn encode_into(&self, buf: &mut Vec<u8>);
}

impl Encode for crate::journal_record::JournalRecord {
    fn encode_into(&self, buf: &mut Vec<u8>) {
        crate::journal_record::JournalRecord::encode_into(self, buf);
    }
}

impl Encode for [u8] {
    fn encode_into(&self, buf: &mut Vec<u8>) {
        buf.extend_from_slice(self);
    }
}

impl Encode for Vec<u8> {
    fn encode_into(&self, buf: &mut Vec<u8>) {
        buf.extend_from_slice(self);
    }
}

/// Appends one frame (header, id, record) to `buf`; a record too large to
/// read back is refused instead of written.
pub(super) fn frame_into<R: Encode + ?Sized>(
    buf: &mut Vec<u8>,
    id: u64,
    record: &R,
) -> io::Result<()> {
    let start = buf.len();
    buf.extend_from_slice(&[0; HEADER]);
    buf.extend_from_slice(&id.to_le_bytes());
    record.encode_into(buf);
    let payload = &buf[start + HEADER..];
    let len = u32::try_from(payload.len())
        .ok()
        .filter(|len| *len as usize <= MAX_FRAME)
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "journal record {id} of {} bytes is over the frame cap",
                    payload.len()
                ),
            )
        })?;
    let crc = crc32fast::hash(payload);
    buf[start..start + 4].copy_from_slice(&len.to_le_bytes());
    buf[start + 4..start + HEADER].copy_from_slice(&crc.to_le_bytes());
    Ok(())
}

/// One whole, checksummed frame read from a segment.
pub(super) struct Frame<'a> {
    pub(super) id: u64,
    pub(super) record: &'a [u8],
    pub(super) end: usize,
}

impl<'a> Frame<'a> {
    /// The frame starting at `at`, if the bytes hold a whole one whose checksum matches.
    pub(super) fn at(bytes: &'a [u8], at: usize) -> Option<Frame<'a>> {
        let header = bytes.get(at..at + HEADER)?;
        let len = u32::from_le_bytes(header[..4].try_into().ok()?) as usize;
        let crc = u32::from_le_bytes(header[4..].try_into().ok()?);
        if !(8..=MAX_FRAME).contains(&len) {
            return None;
        }
        let payload = bytes.get(at + HEADER..at + HEADER + len)?;
        if crc32fast::hash(payload) != crc {
            return None;
        }
        Some(Frame {
            id: u64::from_le_bytes(payload[..8].try_into().ok()?),
            record: &payload[8..],
            end: at + HEADER + len,
        })
    }

    /// Whole frames from `at` on (what an uncommitted tail held, for the log).
    pub(super) fn count_from(bytes: &[u8], mut at: usize) -> u64 {
        let mut n = 0;
        while let Some(frame) = Frame::at(bytes, at) {
            n += 1;
            at = frame.end;
        }
        n
    }
}
