//! Uplink bytes of the sensor pipeline on a SKAB fleet replay, with models on, and what they
//! are spent on: window columns, verdicts, escalations, counters and gauges.
//!
//! A fleet of `devices` pumps (named like fleet-sim names them, `dev-00`, `dev-01`, …) each
//! publishes one JSON reading per simulated second on `plant/<device>/sensors`, the payload
//! fleet-sim publishes (`{"seq":…,"ts":…,"<metric>":<value>,…}`). Device `d` reads SKAB file
//! `d mod N` (of [`crate::skab::list_files`]) from row `420·d` (minute `7·d`) on, wrapping
//! around the file's rows; event time is a minute-aligned start plus one second per row. The
//! readings go through the agent's real pipeline opened on `configs/demo.toml` (decode, dedup,
//! the sensor model with calibration, verdicts and escalations, windower, journal, cut into
//! sealed outbox batches) in a temporary store, one group commit and one cut per simulated
//! second on a simulated gateway clock; the outbox is drained after every cut, and once more
//! after a final cut an hour later that closes every open window (the "final flush").
//!
//! Each batch is counted as it leaves: sealed bytes (the CBOR envelope the syncer POSTs, before
//! HTTP and TLS), gzip bytes (what the agent sends by default), windows, verdicts, escalations,
//! counters-only batches (no window). Its bytes are attributed by re-sealing its opened body
//! with the agent's encoding, stripped step by step (verdicts, then escalations, then counters
//! and gauges) and gzip-compressing each variant: the differences are what those parts cost,
//! the last variant is the window columns, names and framing. Raw bytes are the JSON payloads
//! published (what forwarding every reading sends), and the same as newline-separated JSON
//! gzip-compressed one minute of the fleet at a time (a forwarder that batches each minute).
//!
//! It does not measure time or talk MQTT or HTTP. Sizes are not byte-for-byte repeatable:
//! each batch carries the store's disk use and the wall-clock time of its cut (tens of bytes
//! a run). [`Totals::sorted_gzip_bytes`] re-seals every batch with its windows in (device,
//! metric, start) order, the order the agent's cut seals them in.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use edge_agent::config::AgentConfig;
use edge_agent::pipeline::Pipeline;
use edge_agent::source::{AckToken, Delivery};
use serde::Serialize;
use tokio::sync::Notify;

mod batches;

use crate::plan::{device_name, reading_payload};
use crate::skab::{list_files, read_file, SkabError, SkabRow};
use batches::measure;
pub use batches::{Attribution, BatchRecord, Totals};

/// First event time of a replay: 2026-01-01T00:00:00Z, a minute (and hour) boundary.
pub const START_MS: i64 = 1_767_225_600_000;

/// Rows each device is offset by from the previous one in its file (7 minutes at 1 Hz).
pub const DEVICE_OFFSET_ROWS: usize = 7 * 60;

/// What to replay.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// SKAB folder (see [`crate::paths::skab_dir`]).
    pub skab_dir: PathBuf,
    /// Devices of the fleet.
    pub devices: usize,
    /// Simulated minutes, one reading per device and second.
    pub minutes: u32,
    /// Batches whose windows start before this minute (and raw readings before it) are
    /// left out of [`Report::steady`]: the sensor model calibrates on each device's first
    /// 400 rows before it judges any.
    pub warmup_minutes: u32,
    /// `uplink.relative_error`; `None` keeps `configs/demo.toml`'s (the default, 1e-4).
    pub relative_error: Option<f64>,
}

impl Options {
    /// `devices` × `minutes` with a 10-minute warm-up, SKAB from the shared data folder and
    /// the config's relative error.
    pub fn new(devices: usize, minutes: u32) -> Options {
        Options {
            skab_dir: crate::paths::skab_dir(),
            devices,
            minutes,
            warmup_minutes: 10,
            relative_error: None,
        }
    }
}

/// What one replay shipped.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Report {
    pub devices: usize,
    pub minutes: u32,
    pub warmup_minutes: u32,
    /// The `uplink.relative_error` the batches were sealed with.
    pub relative_error: f64,
    /// Distinct series (device, metric) with at least one window shipped.
    pub series: u64,
    /// Windows shipped per metric.
    pub windows_by_metric: BTreeMap<String, u64>,
    /// Most escalations the devices' hourly budgets allow over the replayed hours.
    pub escalation_budget: u64,
    /// Every batch, the final flush included.
    pub whole: Totals,
    /// Batches whose windows all start at or after the warm-up (counters-only batches:
    /// sealed at or after it), and the readings from the warm-up on.
    pub steady: Totals,
    /// The batches of the final cut alone (part of `whole`, and of `steady` when after the
    /// warm-up): the windows still open when the readings stopped.
    pub final_flush: Totals,
    /// Every batch in outbox order.
    pub batches: Vec<BatchRecord>,
    /// Batches whose body, re-sealed as opened, did not give back their exact bytes (the
    /// attribution of those is approximate); 0 expected.
    pub reseal_mismatches: u64,
}

/// Why a replay could not run.
#[derive(Debug, thiserror::Error)]
pub enum SensorUplinkError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Skab(#[from] SkabError),
    #[error("no SKAB files under {0}")]
    NoData(PathBuf),
    #[error("replay config: {0}")]
    Config(String),
    #[error("agent: {0}")]
    Agent(String),
    #[error("opening batch {seq}: {message}")]
    Open { seq: u64, message: String },
}

/// `configs/demo.toml` with `data_dir`, absolute model paths and the relative error set.
fn config(data_dir: &Path, relative_error: Option<f64>) -> Result<String, SensorUplinkError> {
    let configs = crate::paths::workspace_root().join("configs");
    let path = configs.join("demo.toml");
    let text = std::fs::read_to_string(&path).map_err(|source| SensorUplinkError::Io {
        path: path.clone(),
        source,
    })?;
    let bad = |what: &str| SensorUplinkError::Config(format!("{}: {what}", path.display()));
    let mut doc: toml::Table = text.parse().map_err(|e| bad(&format!("{e}")))?;
    doc.insert("data_dir".into(), data_dir.display().to_string().into());
    let absolute = |t: &mut toml::Table| {
        if let Some(p) = t.get("path").and_then(|p| p.as_str()) {
            let p = configs.join(p).display().to_string();
            t.insert("path".into(), p.into());
        }
    };
    if let Some(models) = doc.get_mut("models").and_then(|m| m.as_table_mut()) {
        let sensors = models.get_mut("sensor").and_then(|s| s.as_array_mut());
        for m in sensors.into_iter().flatten() {
            if let Some(t) = m.as_table_mut() {
                absolute(t);
            }
        }
        if let Some(t) = models.get_mut("log").and_then(|l| l.as_table_mut()) {
            absolute(t);
        }
    }
    if let Some(e) = relative_error {
        let uplink = doc
            .get_mut("uplink")
            .and_then(|u| u.as_table_mut())
            .ok_or_else(|| bad("no [uplink] table"))?;
        uplink.insert("relative_error".into(), e.into());
    }
    toml::to_string(&doc).map_err(|e| bad(&format!("{e}")))
}

/// The rows of every SKAB file a device of the fleet reads, by file index.
fn load_rows(skab_dir: &Path, devices: usize) -> Result<Vec<Vec<SkabRow>>, SensorUplinkError> {
    let files = list_files(skab_dir)?;
    let used = files.len().min(devices);
    let mut rows = Vec::with_capacity(used);
    for f in &files[..used] {
        let file = read_file(f)?;
        if file.rows.is_empty() {
            return Err(SensorUplinkError::NoData(f.clone()));
        }
        rows.push(file.rows);
    }
    if rows.is_empty() {
        return Err(SensorUplinkError::NoData(skab_dir.to_owned()));
    }
    Ok(rows)
}

/// Replays the fleet through the pipeline and measures every batch it seals.
pub fn replay(options: &Options) -> Result<Report, SensorUplinkError> {
    let files = load_rows(&options.skab_dir, options.devices)?;
    let dir = tempfile::tempdir().map_err(|source| SensorUplinkError::Io {
        path: std::env::temp_dir(),
        source,
    })?;
    let settings = AgentConfig::parse(&config(dir.path(), options.relative_error)?)
        .map_err(SensorUplinkError::Config)?
        .validate()
        .map_err(|p| SensorUplinkError::Config(format!("{p:?}")))?;
    let encoding = settings.uplink.body_encoding();
    let classify = edge_agent::agent::classify_stage(&settings)
        .map_err(|e| SensorUplinkError::Agent(e.to_string()))?;
    let mut pipeline = Pipeline::open(&settings, classify, Arc::new(Notify::new()))
        .map_err(|e| SensorUplinkError::Agent(e.to_string()))?;
    let agent = |e: edge_agent::store::StoreError| SensorUplinkError::Agent(e.to_string());

    let seconds = i64::from(options.minutes) * 60;
    let hours = (seconds as u64).div_ceil(3600).max(1);
    let mut report = Report {
        devices: options.devices,
        minutes: options.minutes,
        warmup_minutes: options.warmup_minutes,
        relative_error: settings.uplink.relative_error,
        escalation_budget: options.devices as u64
            * u64::from(settings.models.escalations_per_device_hour())
            * hours,
        ..Report::default()
    };
    let warmup_s = i64::from(options.warmup_minutes) * 60;
    let warmup_ms = START_MS + warmup_s * 1000;
    let topics: Vec<String> = (0..options.devices)
        .map(|d| format!("plant/{}/sensors", device_name(d)))
        .collect();
    let mut series: BTreeSet<(String, String)> = BTreeSet::new();
    let mut account = |report: &mut Report,
                       seq: u64,
                       bytes: &[u8],
                       second: i64,
                       last: bool|
     -> Result<(), SensorUplinkError> {
        let (mut sizes, body) = measure(seq, bytes, encoding)?;
        sizes.second = second;
        sizes.steady = if body.windows.is_empty() {
            second >= warmup_s
        } else {
            body.windows.iter().all(|w| w.start_ms >= warmup_ms)
        };
        for w in body.windows {
            *report
                .windows_by_metric
                .entry(w.metric.clone())
                .or_default() += 1;
            series.insert((w.device, w.metric));
        }
        report.reseal_mismatches += u64::from(sizes.mismatch);
        report.whole.add_batch(&sizes);
        if sizes.steady {
            report.steady.add_batch(&sizes);
        }
        if last {
            report.final_flush.add_batch(&sizes);
        }
        report.batches.push(sizes);
        Ok(())
    };

    let start = Instant::now();
    let mut minute_text: Vec<u8> = Vec::new();
    let mut deliveries: Vec<Delivery> = Vec::with_capacity(options.devices);
    for second in 0..seconds {
        let ts = START_MS + second * 1000;
        let steady = second >= warmup_s;
        deliveries.clear();
        for (d, topic) in topics.iter().enumerate() {
            let rows = &files[d % files.len()];
            let row = &rows[(d * DEVICE_OFFSET_ROWS + second as usize) % rows.len()];
            let payload = reading_payload(second as u64 + 1, ts, &row.values);
            report.whole.messages += 1;
            report.whole.raw_bytes += payload.len() as u64;
            if steady {
                report.steady.messages += 1;
                report.steady.raw_bytes += payload.len() as u64;
            }
            minute_text.extend_from_slice(&payload);
            minute_text.push(b'\n');
            deliveries.push(Delivery {
                topic: topic.clone(),
                payload: Bytes::from(payload),
                ack: AckToken::none(),
            });
        }
        if (second + 1) % 60 == 0 || second + 1 == seconds {
            let gz = wire::transport::gzip(&minute_text).len() as u64;
            report.whole.raw_gzip_bytes += gz;
            if steady {
                report.steady.raw_gzip_bytes += gz;
            }
            minute_text.clear();
        }
        let now = start + Duration::from_secs(second as u64);
        pipeline.ingest_at(&deliveries, now, ts).map_err(agent)?;
        pipeline.tick(now).map_err(agent)?;
        let store = pipeline.store();
        while let Some((seq, bytes)) = store.outbox_first().map_err(agent)? {
            account(&mut report, seq, &bytes, second, false)?;
            store.outbox_remove(seq).map_err(agent)?;
        }
    }
    // Close whatever is still open (idle close, an hour later) and drain.
    pipeline
        .tick(start + Duration::from_secs(seconds as u64 + 3600))
        .map_err(agent)?;
    let store = pipeline.store();
    while let Some((seq, bytes)) = store.outbox_first().map_err(agent)? {
        account(&mut report, seq, &bytes, seconds + 3600, true)?;
        store.outbox_remove(seq).map_err(agent)?;
    }
    report.series = series.len() as u64;
    Ok(report)
}
