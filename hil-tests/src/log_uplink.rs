//! Uplink reduction on a log replay: bytes the agent would ship for a Loghub file vs. its raw lines.
//!
//! Each system's `*_2k.log` is replayed through the agent's real pipeline (decode, template
//! stage with exemplars and redaction, windower, journal, cut into sealed outbox batches) in
//! a temporary store, at a chosen line rate: the lines arrive evenly spaced on a simulated
//! gateway clock, one MQTT message per line, one group commit per simulated second. What
//! leaves is the sealed batches' bytes (CBOR envelopes, what the syncer POSTs, before HTTP
//! and TLS), and gzip-compressed as the syncer sends them; what would leave without summaries
//! is every raw line plus its newline, and that gzip-compressed one minute at a time (a
//! forwarder that batches and compresses each minute, a generous peer). It does not
//! measure time (see BENCHMARKS.md's throughput rows) and does not talk MQTT or HTTP.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use edge_agent::classify::templates::{template_id, NEW_TEMPLATE_METRIC};
use edge_agent::config::AgentConfig;
use edge_agent::pipeline::Pipeline;
use edge_agent::source::{AckToken, Delivery};
use tokio::sync::Notify;
use wire::Envelope;

use crate::loghub_eval::System;

/// The agent's config for a replay: one text route, one-minute windows, templates on.
fn config(dir: &Path, exemplars: usize) -> String {
    format!(
        r#"
gateway_id = "replay"
data_dir = "{dir}"
[mqtt]
client_id = "replay"
subscribe = ["plant/+/logs"]
[[routes]]
topic = "plant/+/logs"
format = "text"
device_segment = 1
[window]
width = "60s"
allowed_lateness = "1s"
[uplink]
url = "http://127.0.0.1:9/v1/batches"
token_env = "UNUSED"
batch_interval = "1s"
[templates]
enabled = true
exemplars = {exemplars}
"#,
        dir = dir.display()
    )
}

/// What one replay shipped.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Replay {
    pub lines: u64,
    /// Raw lines with their newlines: what forwarding the log would send.
    pub raw_bytes: u64,
    /// Raw lines gzip-compressed one minute at a time.
    pub raw_gzip_bytes: u64,
    /// Sealed batch bytes.
    pub shipped_bytes: u64,
    /// Sealed batches gzip-compressed one by one: what the agent sends by default.
    pub shipped_gzip_bytes: u64,
    pub windows: u64,
    pub batches: u64,
    /// Lines counted by the template windows (must equal `lines`).
    pub template_lines: u64,
    /// Templates founded (`log.template.new`).
    pub new_templates: u64,
    /// Exemplar lines shipped.
    pub exemplars: u64,
}

impl Replay {
    /// Raw bytes per shipped byte, both uncompressed.
    pub fn reduction(&self) -> f64 {
        self.raw_bytes as f64 / self.shipped_bytes.max(1) as f64
    }

    /// Raw bytes per shipped byte, both gzip-compressed.
    pub fn gzip_reduction(&self) -> f64 {
        self.raw_gzip_bytes as f64 / self.shipped_gzip_bytes.max(1) as f64
    }
}

/// Why a replay could not run.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("{path}: {source}")]
    Io {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("replay config: {0}")]
    Config(String),
    #[error("agent: {0}")]
    Agent(String),
}

/// The raw log file next to a system's structured CSV (`X_2k.log_structured.csv` → `X_2k.log`).
pub fn raw_log(system: &System) -> std::path::PathBuf {
    let name = system
        .structured
        .file_name()
        .map(|n| n.to_string_lossy().replace("_structured.csv", ""))
        .unwrap_or_default();
    system.structured.with_file_name(name)
}

/// Replays `lines` at `per_minute` lines per minute of gateway time and drains the outbox.
pub fn replay(lines: &[String], per_minute: u32, exemplars: usize) -> Result<Replay, ReplayError> {
    let dir = tempfile::tempdir().map_err(|source| ReplayError::Io {
        path: std::env::temp_dir(),
        source,
    })?;
    let settings = AgentConfig::parse(&config(dir.path(), exemplars))
        .map_err(|e| ReplayError::Config(e.to_string()))?
        .validate()
        .map_err(|p| ReplayError::Config(format!("{p:?}")))?;
    let classify = edge_agent::agent::classify_stage(&settings)
        .map_err(|e| ReplayError::Agent(e.to_string()))?;
    let mut pipeline = Pipeline::open(&settings, classify, Arc::new(Notify::new()))
        .map_err(|e| ReplayError::Agent(e.to_string()))?;
    let agent = |e: edge_agent::store::StoreError| ReplayError::Agent(e.to_string());

    let mut out = Replay::default();
    let start_ms: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z
    let start = Instant::now();
    let per_second = (f64::from(per_minute.max(1)) / 60.0).max(f64::MIN_POSITIVE);
    let mut at = 0usize;
    let mut second = 0i64;
    let mut minute = String::new();
    while at < lines.len() {
        let upto = (((second + 1) as f64 * per_second).floor() as usize).clamp(at, lines.len());
        let deliveries: Vec<Delivery> = lines[at..upto]
            .iter()
            .map(|l| Delivery {
                topic: "plant/host-1/logs".into(),
                payload: Bytes::from(l.clone()),
                ack: AckToken::none(),
            })
            .collect();
        let now = start + Duration::from_secs(second as u64);
        if !deliveries.is_empty() {
            pipeline
                .ingest_at(&deliveries, now, start_ms + second * 1000)
                .map_err(agent)?;
        }
        pipeline.tick(now).map_err(agent)?;
        out.lines += (upto - at) as u64;
        for l in &lines[at..upto] {
            out.raw_bytes += l.len() as u64 + 1;
            minute.push_str(l);
            minute.push('\n');
        }
        at = upto;
        second += 1;
        if second % 60 == 0 || at == lines.len() {
            out.raw_gzip_bytes += wire::transport::gzip(minute.as_bytes()).len() as u64;
            minute.clear();
        }
    }
    // Close whatever is still open (idle close, an hour later) and drain.
    pipeline
        .tick(start + Duration::from_secs(second as u64 + 3600))
        .map_err(agent)?;
    let store = pipeline.store();
    while let Some((seq, bytes)) = store.outbox_first().map_err(agent)? {
        out.shipped_bytes += bytes.len() as u64;
        out.shipped_gzip_bytes += wire::transport::gzip(&bytes).len() as u64;
        out.batches += 1;
        let (_, body) = Envelope::open(&bytes).map_err(|e| ReplayError::Agent(e.to_string()))?;
        for w in &body.windows {
            out.windows += 1;
            if template_id(&w.metric).is_some() {
                out.template_lines += w.count;
            }
            if w.metric == NEW_TEMPLATE_METRIC {
                out.new_templates += w.count;
            }
            out.exemplars += w.template.as_ref().map_or(0, |t| t.exemplars.len() as u64);
        }
        store.outbox_remove(seq).map_err(agent)?;
    }
    Ok(out)
}

/// The non-empty lines of a log file.
pub fn read_lines(path: &Path) -> Result<Vec<String>, ReplayError> {
    let text = std::fs::read(path).map_err(|source| ReplayError::Io {
        path: path.to_owned(),
        source,
    })?;
    Ok(String::from_utf8_lossy(&text)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_owned)
        .collect())
}
