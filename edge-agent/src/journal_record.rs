//! The byte format of one journaled message: its device, its sequence number
//! (if it had one) and accepted readings.
//!
//! Internal to the agent (never on the wire), so a compact fixed layout with
//! `bytes` is enough: for a message with a sequence number `u16 0xFFFF, u64 seq`
//! first (never a device's length: names are capped far below 64 KiB), then
//! `u16 len, device, u32 n, n × (u16 len, metric, i64 ts, f64 value)`,
//! then, only if the message kept exemplars or escalations, `u32 m, m × (u16 len, metric, i64 ts,
//! u16 len, line)`, and then, only if it kept escalations, `u32 k ≥ 1, k × (u16 len, series, i64 ts,
//! u8 alarm, f64 score, f64 confidence, u16 f, f × f32)`, and then, only if one of them is
//! sparse or has an exemplar (log lines), `k × (u16 i, i × u32 index, u8 0 | u8 1 u16 len,
//! exemplar)`; big-endian. `m = 0` is written only before escalations, and the last part only
//! when it says something, so every record has one byte form, and a record without them is
//! byte-identical to the older layouts. Decoding checks every length against the buffer and
//! never panics.

use bytes::{Buf, BufMut};

use crate::classify::router::Escalated;
use crate::decode::{Exemplar, MetricName, Reading};

/// Leads a record that carries its message's sequence number.
const SEQ_TAG: u16 = u16::MAX;

/// A message as the journal keeps it until every window it touched has shipped.
#[derive(Debug, Clone, PartialEq)]
pub struct JournalRecord {
    pub device: String,
    /// The message's sequence number: start-up rebuilds the duplicate check
    /// from the journal, so a group commit need not write it to sled.
    pub seq: Option<u64>,
    pub readings: Vec<Reading>,
    /// Log lines the windows kept as exemplars (already redacted), replayed with the readings.
    pub exemplars: Vec<Exemplar>,
    /// Judged rows escalated to the cloud model, replayed into their windows.
    pub escalations: Vec<Escalated>,
}

impl JournalRecord {
    /// Encodes the record.
    pub fn encode(&self) -> Vec<u8> {
        let mut buf = Vec::with_capacity(self.encoded_len_hint());
        self.encode_into(&mut buf);
        buf
    }

    /// A lower bound of the encoded size (exact without escalations).
    fn encoded_len_hint(&self) -> usize {
        6 + self.device.len()
            + if self.seq.is_some() { 10 } else { 0 }
            + self
                .readings
                .iter()
                .map(|r| 18 + r.metric.len())
                .sum::<usize>()
            + self
                .exemplars
                .iter()
                .map(|e| 16 + e.metric.len() + e.line.len())
                .sum::<usize>()
    }

    /// Appends the encoded record to `buf` (the journal log frames records
    /// in one buffer per group commit, without a buffer per record).
    pub fn encode_into(&self, buf: &mut impl BufMut) {
        if let Some(seq) = self.seq {
            buf.put_u16(SEQ_TAG);
            buf.put_u64(seq);
        }
        put_str(buf, &self.device);
        buf.put_u32(u32::try_from(self.readings.len()).expect("readings per message fit u32"));
        for r in &self.readings {
            put_str(buf, &r.metric);
            buf.put_i64(r.ts_ms);
            buf.put_f64(r.value);
        }
        if !self.exemplars.is_empty() || !self.escalations.is_empty() {
            buf.put_u32(u32::try_from(self.exemplars.len()).expect("exemplars fit u32"));
            for e in &self.exemplars {
                put_str(buf, &e.metric);
                buf.put_i64(e.ts_ms);
                put_str(buf, &e.line);
            }
        }
        if !self.escalations.is_empty() {
            buf.put_u32(u32::try_from(self.escalations.len()).expect("escalations fit u32"));
            for x in &self.escalations {
                let e = &x.escalation;
                put_str(buf, &x.series);
                buf.put_i64(e.ts_ms);
                buf.put_u8(u8::from(e.alarm));
                buf.put_f64(e.score);
                buf.put_f64(e.confidence);
                buf.put_u16(u16::try_from(e.features.len()).expect("feature rows are capped"));
                for f in &e.features {
                    buf.put_f32(*f);
                }
            }
            let extended =
                |x: &Escalated| !x.escalation.indices.is_empty() || x.escalation.exemplar.is_some();
            if self.escalations.iter().any(extended) {
                for x in &self.escalations {
                    let e = &x.escalation;
                    buf.put_u16(u16::try_from(e.indices.len()).expect("sparse rows are capped"));
                    for i in &e.indices {
                        buf.put_u32(*i);
                    }
                    match &e.exemplar {
                        None => buf.put_u8(0),
                        Some(line) => {
                            buf.put_u8(1);
                            put_str(buf, line);
                        }
                    }
                }
            }
        }
    }

    /// Decodes a record; `None` if the bytes are not a whole, valid record.
    pub fn decode(mut bytes: &[u8]) -> Option<JournalRecord> {
        let seq = match bytes.get(..2) {
            Some(tag) if tag == SEQ_TAG.to_be_bytes() => {
                bytes.advance(2);
                if bytes.remaining() < 8 {
                    return None;
                }
                Some(bytes.get_u64())
            }
            _ => None,
        };
        let device = get_str(&mut bytes)?;
        if bytes.remaining() < 4 {
            return None;
        }
        let n = bytes.get_u32() as usize;
        let mut readings = Vec::with_capacity(n.min(bytes.remaining() / 18));
        for _ in 0..n {
            let metric: MetricName = get_str_as(&mut bytes)?;
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
            if m == 0 && bytes.is_empty() {
                // Not how `encode` writes "nothing kept": one byte form per record.
                return None;
            }
        }
        let mut escalations = Vec::new();
        if !bytes.is_empty() {
            if bytes.remaining() < 4 {
                return None;
            }
            let k = bytes.get_u32() as usize;
            if k == 0 {
                return None;
            }
            escalations.reserve(k.min(bytes.remaining() / 29));
            for _ in 0..k {
                escalations.push(get_escalated(&mut bytes)?);
            }
            if !bytes.is_empty() {
                for x in &mut escalations {
                    get_extension(&mut bytes, &mut x.escalation)?;
                }
                let said_something = escalations
                    .iter()
                    .any(|x| !x.escalation.indices.is_empty() || x.escalation.exemplar.is_some());
                if !said_something {
                    return None; // not how `encode` writes plain escalations
                }
            }
        }
        bytes.is_empty().then_some(JournalRecord {
            device,
            seq,
            readings,
            exemplars,
            escalations,
        })
    }
}

fn get_escalated(bytes: &mut &[u8]) -> Option<Escalated> {
    let series = get_str(bytes)?;
    if bytes.remaining() < 27 {
        return None;
    }
    let ts_ms = bytes.get_i64();
    let alarm = match bytes.get_u8() {
        0 => false,
        1 => true,
        _ => return None,
    };
    let (score, confidence) = (bytes.get_f64(), bytes.get_f64());
    let f = bytes.get_u16() as usize;
    if bytes.remaining() < 4 * f {
        return None;
    }
    let features = (0..f).map(|_| bytes.get_f32()).collect();
    Some(Escalated {
        series,
        redacted: Vec::new(),
        escalation: wire::Escalation {
            ts_ms,
            alarm,
            score,
            confidence,
            features,
            indices: Vec::new(),
            exemplar: None,
        },
    })
}

/// Reads one escalation's sparse indices and exemplar into `e`.
fn get_extension(bytes: &mut &[u8], e: &mut wire::Escalation) -> Option<()> {
    if bytes.remaining() < 2 {
        return None;
    }
    let i = bytes.get_u16() as usize;
    if bytes.remaining() < 4 * i + 1 {
        return None;
    }
    e.indices = (0..i).map(|_| bytes.get_u32()).collect();
    e.exemplar = match bytes.get_u8() {
        0 => None,
        1 => Some(get_str(bytes)?),
        _ => return None,
    };
    Some(())
}

fn put_str(buf: &mut impl BufMut, s: &str) {
    let len = u16::try_from(s.len())
        .ok()
        .filter(|&l| l != SEQ_TAG)
        .expect("names are capped far below 64 KiB");
    buf.put_u16(len);
    buf.put_slice(s.as_bytes());
}

fn get_str(bytes: &mut &[u8]) -> Option<String> {
    get_str_as(bytes)
}

fn get_str_as<'a, T: From<&'a str>>(bytes: &mut &'a [u8]) -> Option<T> {
    if bytes.remaining() < 2 {
        return None;
    }
    let len = bytes.get_u16() as usize;
    if bytes.remaining() < len {
        return None;
    }
    let (s, rest) = bytes.split_at(len);
    let s = T::from(std::str::from_utf8(s).ok()?);
    *bytes = rest;
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
            seq in prop::option::of(any::<u64>()),
            readings in prop::collection::vec((".{0,10}", any::<i64>(), -1e9f64..1e9), 0..20),
            exemplars in prop::collection::vec((".{0,10}", any::<i64>(), ".{0,40}"), 0..4),
            escalations in prop::collection::vec(
                (".{0,10}", any::<i64>(), any::<bool>(), -1e9f64..1e9, 0f64..1.0,
                 prop::collection::vec(-1e6f32..1e6, 0..30),
                 prop::collection::vec(any::<u32>(), 0..3), prop::option::of(".{0,40}")),
                0..3,
            ),
        ) {
            let rec = JournalRecord {
                device,
                seq,
                readings: readings.into_iter().map(|(metric, ts_ms, value)| Reading { metric: metric.into(), ts_ms, value }).collect(),
                exemplars: exemplars.into_iter().map(|(metric, ts_ms, line)| Exemplar { metric, ts_ms, line }).collect(),
                escalations: escalations
                    .into_iter()
                    .map(|(series, ts_ms, alarm, score, confidence, features, indices, exemplar)| Escalated {
                        series,
                        redacted: Vec::new(),
                        escalation: wire::Escalation { ts_ms, alarm, score, confidence, features, indices, exemplar },
                    })
                    .collect(),
            };
            prop_assert_eq!(JournalRecord::decode(&rec.encode()), Some(rec));
        }

        #[test]
        fn a_record_without_exemplars_keeps_the_older_layout(device in ".{0,20}", metric in ".{0,10}", ts in any::<i64>()) {
            let rec = JournalRecord { device, seq: None, readings: vec![Reading { metric: metric.into(), ts_ms: ts, value: 1.0 }], exemplars: vec![], escalations: vec![] };
            let bytes = rec.encode();
            // The older layout ends right after the last reading's value.
            prop_assert_eq!(bytes.len(), 2 + rec.device.len() + 4 + 2 + rec.readings[0].metric.len() + 16);
        }

        #[test]
        fn a_sequence_number_leads_the_older_layout(device in ".{0,20}", seq in any::<u64>()) {
            let plain = JournalRecord { device, seq: None, readings: vec![], exemplars: vec![], escalations: vec![] };
            let with = JournalRecord { seq: Some(seq), ..plain.clone() };
            let mut expected = vec![0xFF, 0xFF];
            expected.extend_from_slice(&seq.to_be_bytes());
            expected.extend_from_slice(&plain.encode());
            prop_assert_eq!(with.encode(), expected);
        }

        #[test]
        fn garbage_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            let _ = JournalRecord::decode(&bytes);
        }
    }
}
