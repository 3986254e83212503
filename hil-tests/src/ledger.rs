//! The simulator's ledger: a JSON-lines record of exactly what the broker acknowledged.
//!
//! It defines the record types, a buffered writer and a reader; it does not decide what is
//! written (the simulator does) or compare anything (the checker does).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::malformed::MalformedKind;

/// A ledger I/O or format failure.
#[derive(Debug, Error)]
pub enum LedgerError {
    /// The file could not be created, written or read.
    #[error("ledger {path}: {source}")]
    Io {
        /// The ledger file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A line is not a valid record.
    #[error("ledger {path}:{line}: {source}")]
    Format {
        /// The ledger file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// The JSON error.
        source: serde_json::Error,
    },
}

/// One sensor reading message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReadingRecord {
    /// Device name, e.g. `dev-00`.
    pub device: String,
    /// Topic it was published to.
    pub topic: String,
    /// Per-device reading sequence number, from 1.
    pub seq: u64,
    /// Event time in epoch milliseconds (the payload's `ts`).
    pub ts_ms: i64,
    /// Metric values, exactly as published.
    pub values: BTreeMap<String, f64>,
}

/// One injected bad message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MalformedRecord {
    /// Device whose topic it went to.
    pub device: String,
    /// Topic it was published to.
    pub topic: String,
    /// The reject reason the agent should count (a wire `Reason` name).
    pub reason: String,
    /// Payload size in bytes.
    pub payload_len: usize,
    /// Which injected kind this was (absent in ledgers from other writers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub injected: Option<MalformedKind>,
}

/// One plain-text log line message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogRecord {
    /// Device whose topic it went to.
    pub device: String,
    /// Topic it was published to.
    pub topic: String,
    /// Per-device log sequence number, from 1 (not in the payload).
    pub seq: u64,
    /// The published text.
    pub line: String,
}

/// One ledger line. Records of a device appear in the order they were published.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LedgerRecord {
    /// A sensor reading.
    Reading(ReadingRecord),
    /// An injected bad message.
    Malformed(MalformedRecord),
    /// A log line.
    Log(LogRecord),
}

impl LedgerRecord {
    /// The device the record belongs to.
    pub fn device(&self) -> &str {
        match self {
            LedgerRecord::Reading(r) => &r.device,
            LedgerRecord::Malformed(r) => &r.device,
            LedgerRecord::Log(r) => &r.device,
        }
    }

    /// The topic the message went to.
    pub fn topic(&self) -> &str {
        match self {
            LedgerRecord::Reading(r) => &r.topic,
            LedgerRecord::Malformed(r) => &r.topic,
            LedgerRecord::Log(r) => &r.topic,
        }
    }
}

/// Buffered JSON-lines writer; call [`LedgerWriter::finish`] to flush and sync.
#[derive(Debug)]
pub struct LedgerWriter {
    path: PathBuf,
    out: BufWriter<File>,
}

impl LedgerWriter {
    /// Creates (truncates) the ledger file.
    pub fn create(path: &Path) -> Result<Self, LedgerError> {
        let file = File::create(path).map_err(|source| LedgerError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(Self {
            path: path.to_path_buf(),
            out: BufWriter::new(file),
        })
    }

    /// Appends one record as a line.
    pub fn append(&mut self, record: &LedgerRecord) -> Result<(), LedgerError> {
        let io = |source| LedgerError::Io {
            path: self.path.clone(),
            source,
        };
        serde_json::to_writer(&mut self.out, record).map_err(|e| io(e.into()))?;
        self.out.write_all(b"\n").map_err(io)
    }

    /// Flushes the buffer and syncs the file to disk.
    pub fn finish(self) -> Result<(), LedgerError> {
        let path = self.path;
        let io = |source| LedgerError::Io {
            path: path.clone(),
            source,
        };
        let file = self.out.into_inner().map_err(|e| io(e.into_error()))?;
        file.sync_all().map_err(io)
    }
}

/// Writes all `records` to `path` (create, append each, finish).
pub fn write_ledger<'a>(
    path: &Path,
    records: impl IntoIterator<Item = &'a LedgerRecord>,
) -> Result<(), LedgerError> {
    let mut writer = LedgerWriter::create(path)?;
    for record in records {
        writer.append(record)?;
    }
    writer.finish()
}

/// Reads every record of a ledger file, in file order. Blank lines are skipped.
pub fn read_ledger(path: &Path) -> Result<Vec<LedgerRecord>, LedgerError> {
    let io = |source| LedgerError::Io {
        path: path.to_path_buf(),
        source,
    };
    let reader = BufReader::new(File::open(path).map_err(io)?);
    let mut records = Vec::new();
    for (i, line) in reader.lines().enumerate() {
        let line = line.map_err(io)?;
        if line.trim().is_empty() {
            continue;
        }
        let record = serde_json::from_str(&line).map_err(|source| LedgerError::Format {
            path: path.to_path_buf(),
            line: i + 1,
            source,
        })?;
        records.push(record);
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_keeps_order_and_exact_floats() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.jsonl");
        let records = vec![
            LedgerRecord::Reading(ReadingRecord {
                device: "dev-00".into(),
                topic: "plant/dev-00/sensors".into(),
                seq: 1,
                ts_ms: -5,
                values: [("Current".to_string(), 0.1 + 0.2)].into_iter().collect(),
            }),
            LedgerRecord::Malformed(MalformedRecord {
                device: "dev-00".into(),
                topic: "plant/dev-00/sensors".into(),
                reason: "malformed".into(),
                payload_len: 7,
                injected: Some(MalformedKind::BadJson),
            }),
            LedgerRecord::Log(LogRecord {
                device: "dev-01".into(),
                topic: "plant/dev-01/logs".into(),
                seq: 1,
                line: "hello".into(),
            }),
        ];
        write_ledger(&path, &records).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("{\"kind\":\"reading\",\"device\":\"dev-00\""));
        assert_eq!(read_ledger(&path).unwrap(), records);
    }
}
