//! The fleet simulator's library entry: replays SKAB files (plus optional log lines and
//! injected bad messages) for N devices over MQTT QoS 1 and writes the acknowledged ledger.
//!
//! It does not check the pipeline's output (see `checker`) or start a broker (see `mosquitto`).

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use thiserror::Error;

use crate::ledger::{write_ledger, LedgerError, LedgerRecord};
use crate::loglines::{read_log_lines, LogReadError};
use crate::plan::{build_plan, join_timeline, PlanInput};
use crate::publisher::{AckedPublisher, BrokerUnreachable, PublisherConfig};
use crate::skab::{list_files, read_file, SkabError};

/// Everything the simulator can be told. [`SimOptions::default`] matches the CLI defaults.
#[derive(Debug, Clone)]
pub struct SimOptions {
    /// Broker `HOST:PORT`.
    pub broker: String,
    /// Number of devices (`dev-00` …).
    pub devices: usize,
    /// Topic prefix: readings go to `{prefix}/{device}/sensors`, logs to `…/logs`.
    pub topic_prefix: String,
    /// SKAB dataset root (the folder holding `data/`).
    pub skab_dir: PathBuf,
    /// Keep at most this many readings per device.
    pub max_rows_per_device: Option<usize>,
    /// Event-time seconds per wall second; 0 = as fast as possible.
    pub speedup: f64,
    /// Plain-text log files whose lines are published round-robin to devices.
    pub loghub: Vec<PathBuf>,
    /// Keep at most this many lines of each log file.
    pub max_log_lines: Option<usize>,
    /// Bad messages to inject of each [`crate::MalformedKind`].
    pub malformed: usize,
    /// Where to write the ledger (JSON lines); `None` = do not write one.
    pub ledger: Option<PathBuf>,
    /// Print one progress line per second to stderr.
    pub progress: bool,
    /// MQTT client id; default `fleet-sim-<pid>` (plus `-<n>` for later runs in a process).
    pub client_id: Option<String>,
    /// Max unacknowledged publishes in flight.
    pub inflight: u16,
    /// Fail when the broker stays unreachable this long.
    pub retry_timeout: Duration,
}

impl Default for SimOptions {
    fn default() -> Self {
        Self {
            broker: "127.0.0.1:1883".into(),
            devices: 10,
            topic_prefix: "plant".into(),
            skab_dir: crate::paths::skab_dir(),
            max_rows_per_device: None,
            speedup: 0.0,
            loghub: Vec::new(),
            max_log_lines: None,
            malformed: 0,
            ledger: None,
            progress: false,
            client_id: None,
            inflight: 500,
            retry_timeout: Duration::from_secs(30),
        }
    }
}

/// What a run published (every count here was acknowledged by the broker).
#[derive(Debug, Clone)]
pub struct SimReport {
    /// Reading messages.
    pub readings: usize,
    /// Log line messages.
    pub logs: usize,
    /// Injected bad messages.
    pub malformed: usize,
    /// The broker address used.
    pub broker: String,
    /// Wall time of the run.
    pub elapsed: Duration,
    /// Successful connections (1 = never reconnected).
    pub connects: u64,
    /// The ledger records, in file order (also written to `ledger` when set).
    pub records: Vec<LedgerRecord>,
}

impl std::fmt::Display for SimReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "published {} readings, {} logs, {} malformed to {} in {:.1}s",
            self.readings,
            self.logs,
            self.malformed,
            self.broker,
            self.elapsed.as_secs_f64()
        )
    }
}

/// Why a run failed.
#[derive(Debug, Error)]
pub enum SimError {
    /// Bad options.
    #[error("invalid option: {0}")]
    Options(String),
    /// SKAB data could not be read.
    #[error(transparent)]
    Skab(#[from] SkabError),
    /// A log file could not be read.
    #[error(transparent)]
    Log(#[from] LogReadError),
    /// The broker could not be reached (after retries).
    #[error(transparent)]
    Broker(#[from] BrokerUnreachable),
    /// The ledger could not be written.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// A publishing task panicked.
    #[error("publisher task failed: {0}")]
    Task(String),
}

static RUNS: AtomicU64 = AtomicU64::new(0);

fn parse_broker(broker: &str) -> Result<(String, u16), SimError> {
    let bad = || SimError::Options(format!("--broker must be HOST:PORT, got {broker:?}"));
    let (host, port) = broker.rsplit_once(':').ok_or_else(bad)?;
    let port = port.parse().map_err(|_| bad())?;
    if host.is_empty() {
        return Err(bad());
    }
    Ok((host.trim_matches(['[', ']']).to_owned(), port))
}

/// Runs the simulator to completion: returns once every message was PUBACKed and the ledger
/// (if any) is written.
pub async fn run(opts: SimOptions) -> Result<SimReport, SimError> {
    let started = Instant::now();
    if opts.devices == 0 {
        return Err(SimError::Options("--devices must be at least 1".into()));
    }
    if !(opts.speedup >= 0.0 && opts.speedup.is_finite()) {
        return Err(SimError::Options(
            "--speedup must be a finite number ≥ 0".into(),
        ));
    }
    let (host, port) = parse_broker(&opts.broker)?;

    // Plan: per-device timelines from the SKAB files assigned round-robin.
    let files = list_files(&opts.skab_dir)?;
    if files.is_empty() {
        return Err(SimError::Options(format!(
            "no SKAB csv files below {}",
            opts.skab_dir.display()
        )));
    }
    let mut per_device: Vec<Vec<Vec<crate::skab::SkabRow>>> = vec![Vec::new(); opts.devices];
    for (i, path) in files.iter().enumerate() {
        let device = i % opts.devices;
        let have: usize = per_device[device].iter().map(Vec::len).sum();
        if opts.max_rows_per_device.is_some_and(|max| have >= max) {
            continue;
        }
        per_device[device].push(read_file(path)?.rows);
    }
    let timelines: Vec<_> = per_device
        .into_iter()
        .map(|f| join_timeline(f, opts.max_rows_per_device))
        .collect();
    let mut log_lines = Vec::new();
    for path in &opts.loghub {
        log_lines.extend(read_log_lines(path, opts.max_log_lines)?);
    }
    let fallback_ts_ms = timelines
        .iter()
        .find_map(|t| t.first().map(|r| r.ts_ms))
        .unwrap_or(1_600_000_000_000);
    let plan = build_plan(PlanInput {
        prefix: opts.topic_prefix.clone(),
        timelines,
        log_lines,
        malformed_per_kind: opts.malformed,
        fallback_ts_ms,
    });

    // Flatten: message index = device offset + position, so index order keeps device order.
    let mut messages = Vec::new();
    let mut records = Vec::new();
    let mut schedules: Vec<Vec<(usize, i64)>> = Vec::new();
    for device in plan {
        let mut schedule = Vec::with_capacity(device.messages.len());
        for m in device.messages {
            schedule.push((messages.len(), m.due_ms));
            messages.push((m.topic, Bytes::from(m.payload)));
            records.push(m.record);
        }
        schedules.push(schedule);
    }

    let run_no = RUNS.fetch_add(1, Ordering::Relaxed);
    let client_id = opts.client_id.clone().unwrap_or_else(|| match run_no {
        0 => format!("fleet-sim-{}", std::process::id()),
        n => format!("fleet-sim-{}-{n}", std::process::id()),
    });
    let total = messages.len();
    let publisher = Arc::new(AckedPublisher::start(
        PublisherConfig {
            host,
            port,
            client_id,
            inflight: opts.inflight,
            max_packet_size: 1 << 20,
            retry_timeout: opts.retry_timeout,
        },
        messages,
    ));

    // One task per device, paced by event time when a speedup is set.
    let speedup = opts.speedup;
    let tasks: Vec<_> = schedules
        .into_iter()
        .map(|schedule| {
            let publisher = Arc::clone(&publisher);
            tokio::spawn(async move {
                let t0 = tokio::time::Instant::now();
                for (index, due_ms) in schedule {
                    if speedup > 0.0 {
                        let wait = Duration::from_secs_f64(due_ms.max(0) as f64 / 1000.0 / speedup);
                        tokio::time::sleep_until(t0 + wait).await;
                    }
                    publisher.publish(index).await;
                }
            })
        })
        .collect();
    let progress_task = opts
        .progress
        .then(|| tokio::spawn(report_progress(Arc::clone(&publisher), total)));

    let mut task_error = None;
    let all_published = async {
        for task in tasks {
            if let Err(e) = task.await {
                task_error = Some(e.to_string());
            }
        }
    };
    let supervised = publisher.supervise(all_published).await;
    if let Some(task) = progress_task {
        task.abort();
    }
    publisher.shutdown().await;
    supervised?;
    if let Some(e) = task_error {
        return Err(SimError::Task(e));
    }

    // Every message is acked here; write them in first-publication order.
    let (acked, order) = publisher.outcome();
    let ledger: Vec<LedgerRecord> = order
        .into_iter()
        .filter(|&i| acked[i])
        .map(|i| records[i].clone())
        .collect();
    if let Some(path) = &opts.ledger {
        write_ledger(path, &ledger)?;
    }
    let count = |f: fn(&LedgerRecord) -> bool| ledger.iter().filter(|r| f(r)).count();
    Ok(SimReport {
        readings: count(|r| matches!(r, LedgerRecord::Reading(_))),
        logs: count(|r| matches!(r, LedgerRecord::Log(_))),
        malformed: count(|r| matches!(r, LedgerRecord::Malformed(_))),
        broker: opts.broker,
        elapsed: started.elapsed(),
        connects: publisher.progress().connects,
        records: ledger,
    })
}

/// Prints `published/acked/rate` to stderr once a second.
async fn report_progress(publisher: Arc<AckedPublisher>, total: usize) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    let mut last_acked = 0;
    loop {
        tick.tick().await;
        let p = publisher.progress();
        eprintln!(
            "fleet-sim: published {}/{total}, acked {}, {} msg/s, connects {}",
            p.published,
            p.acked,
            p.acked.saturating_sub(last_acked),
            p.connects
        );
        last_acked = p.acked;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_addresses() {
        assert_eq!(
            parse_broker("127.0.0.1:1883").unwrap(),
            ("127.0.0.1".into(), 1883)
        );
        assert_eq!(parse_broker("[::1]:9").unwrap(), ("::1".into(), 9));
        assert!(parse_broker("nohost").is_err());
        assert!(parse_broker(":1").is_err());
    }
}
