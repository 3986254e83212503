//! The byte format of one journaled message: its device and accepted readings.
//!
//! Internal to the agent (never on the wire), so a compact fixed layout with
//! `bytes` is enough: `u16 len, device, u32 n, n × (u16 len, metric, i64 ts, f64 value)`,
//! then, only if the message kept exemplars, `u32 m, m × (u16 len, metric, i64 ts, u16 len,
//! line)`; big-endian. A record without exemplars is byte-identical to the older layout.
//! Decoding checks every length against the buffer and never panics.

use bytes::{Buf, BufMut, BytesMut};

use crate::decode::{Exemplar, Reading};

/// A message as the journal keeps it until every window it touched has shipped.
#[derive(Debug, Clone, PartialEq)]
pub struct JournalRecord {
    pub device: String,
    pub readings: Vec<Reading>,
    /// Log lines the windows kept as exemplars (already redacted), replayed with the readings.
    pub exemplars: Vec<Exemplar>,
}

impl JournalRecord {
    /// Encodes the record.
    pub fn encode(&self) -> Vec<u8> {
        let size = 6
            + self.device.len()
            + self
                .readings
                .iter()
                .map(|r| 18 + r.metric.len())
                .sum::<usize>()
            + self
                .exemplars
                .iter()
                .map(|e| 16 + e.metric.len() + e.line.len())
                .sum::<usize>();
        let mut buf = BytesMut::with_capacity(size);
        put_str(&mut buf, &self.device);
        buf.put_u32(u32::try_from(self.readings.len()).expect("readings per message fit u32"));
        for r in &self.readings {
            put_str(&mut buf, &r.metric);
            buf.put_i64(r.ts_ms);
            buf.put_f64(r.value);
        }
        if !self.exemplars.is_empty() {
            buf.put_u32(u32::try_from(self.exemplars.len()).expect("exemplars fit u32"));
            for e in &self.exemplars {
                put_str(&mut buf, &e.metric);
                buf.put_i64(e.ts_ms);
                put_str(&mut buf, &e.line);
            }
        }
        buf.to_vec()
    }

    /// Decodes a record; `None` if the bytes are not a whole, valid record.
    pub fn decode(mut bytes: &[u8]) -> Option<JournalRecord> {
        let device = get_str(&mut bytes)?;
        if bytes.remaining() < 4 {
            return None;
        }
        let n = bytes.get_u32() as usize;
        let mut readings = Vec::with_capacity(n.min(bytes.remaining() / 18));
        for _ in 0..n {
            let metric = get_str(&mut bytes)?;
            if bytes.remaining() < 16 {
                return None;
            }
            readings.push(Reading {
                metric,
                ts_ms: bytes.get_i64(),
                value: bytes.get_f64(),
            });
        }
        let mut exemplars = Vec::new();
        if !bytes.is_empty() {
            if bytes.remaining() < 4 {
                return None;
            }
            let m = bytes.get_u32() as usize;
            if m == 0 {
                // Not how `encode` writes "no exemplars": only one byte form per record.
                return None;
            }
            exemplars.reserve(m.min(bytes.remaining() / 12));
            for _ in 0..m {
                let metric = get_str(&mut bytes)?;
                if bytes.remaining() < 8 {
                    return None;
                }
                let ts_ms = bytes.get_i64();
                let line = get_str(&mut bytes)?;
                exemplars.push(Exemplar {
                    metric,
                    ts_ms,
                    line,
                });
            }
        }
        bytes.is_empty().then_some(JournalRecord {
            device,
            readings,
            exemplars,
        })
    }
}

fn put_str(buf: &mut BytesMut, s: &str) {
    buf.put_u16(u16::try_from(s.len()).expect("names are capped far below 64 KiB"));
    buf.put_slice(s.as_bytes());
}

fn get_str(bytes: &mut &[u8]) -> Option<String> {
    if bytes.remaining() < 2 {
        return None;
    }
    let len = bytes.get_u16() as usize;
    if bytes.remaining() < len {
        return None;
    }
    let s = std::str::from_utf8(&bytes[..len]).ok()?.to_owned();
    bytes.advance(len);
    Some(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn round_trips(
            device in ".{0,20}",
            readings in prop::collection::vec((".{0,10}", any::<i64>(), -1e9f64..1e9), 0..20),
            exemplars in prop::collection::vec((".{0,10}", any::<i64>(), ".{0,40}"), 0..4),
        ) {
            let rec = JournalRecord {
                device,
                readings: readings.into_iter().map(|(metric, ts_ms, value)| Reading { metric, ts_ms, value }).collect(),
                exemplars: exemplars.into_iter().map(|(metric, ts_ms, line)| Exemplar { metric, ts_ms, line }).collect(),
            };
            prop_assert_eq!(JournalRecord::decode(&rec.encode()), Some(rec));
        }

        #[test]
        fn a_record_without_exemplars_keeps_the_older_layout(device in ".{0,20}", metric in ".{0,10}", ts in any::<i64>()) {
            let rec = JournalRecord { device, readings: vec![Reading { metric, ts_ms: ts, value: 1.0 }], exemplars: vec![] };
            let bytes = rec.encode();
            // The older layout ends right after the last reading's value.
            prop_assert_eq!(bytes.len(), 2 + rec.device.len() + 4 + 2 + rec.readings[0].metric.len() + 16);
        }

        #[test]
        fn garbage_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            let _ = JournalRecord::decode(&bytes);
        }
    }
}
