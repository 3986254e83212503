//! Builds each simulated device's ordered list of messages: its SKAB timeline as JSON
//! readings, with log lines and injected bad messages spread evenly between them.
//!
//! It is pure (no I/O, no network); it does not pace or publish anything.

use std::collections::BTreeMap;

use crate::ledger::{LedgerRecord, LogRecord, MalformedRecord, ReadingRecord};
use crate::malformed::MalformedKind;
use crate::skab::SkabRow;

/// Gap between the last row of one file and the first row of the next on a device timeline.
pub const FILE_GAP_MS: i64 = 1000;

/// One message to publish, with the ledger record it becomes once acknowledged.
#[derive(Debug, Clone)]
pub struct PlannedMessage {
    /// MQTT topic.
    pub topic: String,
    /// Payload bytes.
    pub payload: Vec<u8>,
    /// Event-time offset (ms) from the device's first reading; used for pacing.
    pub due_ms: i64,
    /// What goes into the ledger.
    pub record: LedgerRecord,
}

/// All messages of one device, in publish order.
#[derive(Debug, Clone)]
pub struct DevicePlan {
    /// Device name, e.g. `dev-03`.
    pub device: String,
    /// Messages in the order they must be published.
    pub messages: Vec<PlannedMessage>,
}

/// `dev-00`, `dev-01`, … (two digits minimum).
pub fn device_name(index: usize) -> String {
    format!("dev-{index:02}")
}

/// Joins a device's files into one timeline: the first keeps its timestamps, each next file
/// is shifted so its first row lands `FILE_GAP_MS` after the previous last row. At most
/// `max_rows` rows are kept.
pub fn join_timeline(files: Vec<Vec<SkabRow>>, max_rows: Option<usize>) -> Vec<SkabRow> {
    let limit = max_rows.unwrap_or(usize::MAX);
    let mut out: Vec<SkabRow> = Vec::new();
    for rows in files {
        let Some(first) = rows.first() else { continue };
        let shift = match out.last() {
            Some(prev) => prev.ts_ms + FILE_GAP_MS - first.ts_ms,
            None => 0,
        };
        for mut row in rows {
            if out.len() >= limit {
                return out;
            }
            row.ts_ms += shift;
            out.push(row);
        }
    }
    out
}

/// The JSON payload of a reading: `{"seq":N,"ts":T,"<metric>":v,…}` in column order.
/// Floats use serde_json's shortest round-trip formatting, so receivers parse the same f64.
pub fn reading_payload(seq: u64, ts_ms: i64, values: &[(String, f64)]) -> Vec<u8> {
    let mut s = format!("{{\"seq\":{seq},\"ts\":{ts_ms}");
    for (name, value) in values {
        // Both conversions only fail for non-finite floats, which the SKAB reader rejects.
        let key = serde_json::to_string(name).unwrap_or_default();
        let num = serde_json::to_string(value).unwrap_or_else(|_| "null".into());
        s.push(',');
        s.push_str(&key);
        s.push(':');
        s.push_str(&num);
    }
    s.push('}');
    s.into_bytes()
}

/// Something inserted between readings.
#[derive(Debug, Clone)]
enum Extra {
    Log(String),
    Bad(MalformedKind),
}

/// Inputs for [`build_plan`].
#[derive(Debug, Clone)]
pub struct PlanInput {
    /// Topic prefix (`plant`).
    pub prefix: String,
    /// One joined timeline per device (index = device number).
    pub timelines: Vec<Vec<SkabRow>>,
    /// Log lines, assigned to devices round-robin.
    pub log_lines: Vec<String>,
    /// How many messages of each [`MalformedKind`] to inject.
    pub malformed_per_kind: usize,
    /// Timestamp used for bad messages on a device without readings.
    pub fallback_ts_ms: i64,
}

/// Builds every device's message list.
pub fn build_plan(input: PlanInput) -> Vec<DevicePlan> {
    let devices = input.timelines.len();
    if devices == 0 {
        return Vec::new();
    }
    let mut logs: Vec<Vec<Extra>> = vec![Vec::new(); devices];
    for (i, line) in input.log_lines.into_iter().enumerate() {
        logs[i % devices].push(Extra::Log(line));
    }
    let mut bad: Vec<Vec<Extra>> = vec![Vec::new(); devices];
    let kinds = (0..input.malformed_per_kind).flat_map(|_| MalformedKind::ALL);
    for (i, kind) in kinds.enumerate() {
        bad[i % devices].push(Extra::Bad(kind));
    }

    input
        .timelines
        .into_iter()
        .zip(logs.into_iter().zip(bad))
        .enumerate()
        .map(|(index, (rows, (logs, bad)))| {
            let device = device_name(index);
            let extras = spread(rows.len(), logs, bad);
            let messages =
                device_messages(&input.prefix, &device, rows, extras, input.fallback_ts_ms);
            DevicePlan { device, messages }
        })
        .collect()
}

/// Gives each extra a slot in `0..=readings` (inserted before that reading), evenly spread;
/// the two lists are spread independently and merged (logs first within a slot).
fn spread(readings: usize, a: Vec<Extra>, b: Vec<Extra>) -> Vec<(usize, Extra)> {
    let place = |list: Vec<Extra>| {
        let n = list.len();
        list.into_iter()
            .enumerate()
            .map(move |(j, e)| ((j + 1) * readings / (n + 1), e))
    };
    let mut all: Vec<(usize, Extra)> = place(a).chain(place(b)).collect();
    all.sort_by_key(|(slot, _)| *slot); // stable: keeps per-list order
    all
}

fn device_messages(
    prefix: &str,
    device: &str,
    rows: Vec<SkabRow>,
    extras: Vec<(usize, Extra)>,
    fallback_ts_ms: i64,
) -> Vec<PlannedMessage> {
    let sensors_topic = format!("{prefix}/{device}/sensors");
    let logs_topic = format!("{prefix}/{device}/logs");
    let first_ts = rows.first().map_or(fallback_ts_ms, |r| r.ts_ms);
    let mut out = Vec::with_capacity(rows.len() + extras.len());
    let mut extras = extras.into_iter().peekable();
    let (mut reading_seq, mut log_seq) = (0u64, 0u64);
    // Timestamp of the latest reading (or the first one before any).
    let mut last_ts = first_ts;

    for index in 0..=rows.len() {
        while let Some((_, extra)) = extras.next_if(|(slot, _)| *slot <= index) {
            let due_ms = last_ts - first_ts;
            match extra {
                Extra::Log(line) => {
                    log_seq += 1;
                    out.push(PlannedMessage {
                        topic: logs_topic.clone(),
                        payload: line.clone().into_bytes(),
                        due_ms,
                        record: LedgerRecord::Log(LogRecord {
                            device: device.to_owned(),
                            topic: logs_topic.clone(),
                            seq: log_seq,
                            line,
                        }),
                    });
                }
                Extra::Bad(kind) => {
                    let topic = format!("{prefix}/{device}/{}", kind.topic_suffix());
                    let payload = kind.payload(last_ts);
                    out.push(PlannedMessage {
                        record: LedgerRecord::Malformed(MalformedRecord {
                            device: device.to_owned(),
                            topic: topic.clone(),
                            reason: kind.expected_reason().to_owned(),
                            payload_len: payload.len(),
                            injected: Some(kind),
                        }),
                        topic,
                        payload,
                        due_ms,
                    });
                }
            }
        }
        let Some(row) = rows.get(index) else { break };
        reading_seq += 1;
        last_ts = row.ts_ms;
        out.push(PlannedMessage {
            topic: sensors_topic.clone(),
            payload: reading_payload(reading_seq, row.ts_ms, &row.values),
            due_ms: row.ts_ms - first_ts,
            record: LedgerRecord::Reading(ReadingRecord {
                device: device.to_owned(),
                topic: sensors_topic.clone(),
                seq: reading_seq,
                ts_ms: row.ts_ms,
                values: row.values.iter().cloned().collect::<BTreeMap<_, _>>(),
            }),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(ts: &[i64]) -> Vec<SkabRow> {
        ts.iter()
            .map(|&ts_ms| SkabRow {
                ts_ms,
                values: vec![("Current".into(), ts_ms as f64 / 7.0)],
            })
            .collect()
    }

    #[test]
    fn timeline_shifts_following_files() {
        let joined = join_timeline(vec![rows(&[5000, 6000]), rows(&[100, 300])], None);
        let ts: Vec<i64> = joined.iter().map(|r| r.ts_ms).collect();
        assert_eq!(ts, [5000, 6000, 7000, 7200]);
        assert_eq!(
            join_timeline(vec![rows(&[1, 2]), rows(&[1])], Some(3)).len(),
            3
        );
    }

    #[test]
    fn extras_are_spread_and_seqs_count_per_kind() {
        let plan = build_plan(PlanInput {
            prefix: "plant".into(),
            timelines: vec![rows(&[1000, 2000, 3000, 4000]), rows(&[])],
            log_lines: vec!["a".into(), "b".into(), "c".into()],
            malformed_per_kind: 1,
            fallback_ts_ms: 42,
        });
        assert_eq!(plan.len(), 2);
        let dev0 = &plan[0].messages;
        // 4 readings, logs a + c, malformed kinds 0, 2, 4, ... (every other kind).
        let kinds = MalformedKind::ALL.len();
        assert_eq!(dev0.len(), 4 + 2 + kinds.div_ceil(2));
        let first_reading = dev0
            .iter()
            .find(|m| matches!(m.record, LedgerRecord::Reading(_)))
            .unwrap();
        let seqs: Vec<u64> = dev0
            .iter()
            .filter_map(|m| match &m.record {
                LedgerRecord::Reading(r) => Some(r.seq),
                _ => None,
            })
            .collect();
        assert_eq!(seqs, [1, 2, 3, 4]);
        let payload: serde_json::Value = serde_json::from_slice(&first_reading.payload).unwrap();
        assert_eq!(payload["seq"], 1);
        assert_eq!(payload["ts"], 1000);
        assert_eq!(payload["Current"].as_f64(), Some(1000.0 / 7.0));
        // Device without readings still gets its extras, with the fallback timestamp.
        let dev1 = &plan[1].messages;
        assert_eq!(dev1.len(), 1 + kinds / 2);
        assert_eq!(dev1[0].topic, "plant/dev-01/logs");
        assert_eq!(dev1[1].payload, MalformedKind::WrongType.payload(42));
    }
}
