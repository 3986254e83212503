//! `uplink-sizes`: bytes per window of each uplink body encoding on SKAB, and the raw ÷ uplink
//! ratio they give; a measurement of the wire encoder alone (no pipeline, no network).
//!
//! It prints a table and changes no data. The pipeline's own numbers come from
//! `hil-tests/bench/uplink_live.sh` and `outage_drain.sh`.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Parser;
use hil_tests::skab::{list_files, read_file, SkabFile};
use hil_tests::windows::summarize;
use wire::{BatchKey, Body, BodyEncoding, Envelope, WindowSummary};

/// Measure the uplink body encodings on SKAB windows.
///
/// Windows are summarized here from the CSV rows (60 rows = 60 s at 1 Hz per window; count,
/// sum, min, max, mean, population stddev, p50/p95/p99 as exact order statistics, first and
/// last), not by the agent's windower, so sketch quantiles and model verdicts are left out.
/// Raw bytes are the JSON payloads fleet-sim and load-gen publish for the same rows
/// ({"seq":…,"ts":…,"<metric>":<value>,…}), one message per row and device.
///
/// Two batch shapes:
///   day   one device's windows of SKAB's anomaly-free file (all 8 metrics, ~2.6 h) in one
///         body, as a drained outage's batches hold many windows per series;
///   live  one minute of a fleet: --devices devices (device d reads file d mod N of the SKAB
///         files, from minute 7·d on), one window per series per body, as a live cut.
/// Each is encoded as wire schema 2 (packed rows), schema 3 exact, and schema 3 rounded to
/// each --relative-error, then gzip-compressed as the agent sends it.
///
/// Example:
///   uplink-sizes --relative-error 1e-3 --relative-error 1e-4 --relative-error 1e-5
#[derive(Debug, Parser)]
#[command(name = "uplink-sizes", version, verbatim_doc_comment)]
struct Cli {
    /// SKAB folder; default <workspace>/../shared/data/SKAB (or $EDGE_DATA_DIR/SKAB).
    #[arg(long)]
    skab_dir: Option<PathBuf>,
    /// Devices of the live cut (8 series each).
    #[arg(long, default_value_t = 125)]
    devices: usize,
    /// Minutes of live cuts measured.
    #[arg(long, default_value_t = 10)]
    minutes: usize,
    /// Relative errors of the rounded encodings (repeatable).
    #[arg(long = "relative-error", default_values_t = [1e-3, 1e-4, 1e-5])]
    relative_errors: Vec<f64>,
}

const WINDOW_ROWS: usize = 60;
const T0: i64 = 1_767_225_600_000;

/// One device's windows of `file` (in start, then metric order) and the raw bytes of the
/// rows they cover.
fn windows_of(file: &SkabFile, device: &str) -> (Vec<WindowSummary>, usize) {
    let whole = file.rows.len() / WINDOW_ROWS * WINDOW_ROWS;
    let raw = file.rows[..whole]
        .iter()
        .enumerate()
        .map(|(i, row)| {
            let fields: String = row
                .values
                .iter()
                .map(|(m, v)| format!(r#","{m}":{v}"#))
                .collect();
            format!(
                r#"{{"seq":{},"ts":{}{fields}}}"#,
                i + 1,
                T0 + i as i64 * 1000
            )
            .len()
        })
        .sum();
    let mut windows = Vec::new();
    for (k, rows) in file.rows[..whole].chunks(WINDOW_ROWS).enumerate() {
        let start_ms = T0 + k as i64 * 60_000;
        for (j, (metric, _)) in rows[0].values.iter().enumerate() {
            let v: Vec<f64> = rows.iter().map(|r| r.values[j].1).collect();
            windows.push(summary(device, metric, start_ms, &v));
        }
    }
    (windows, raw)
}

/// The exact window of `v` (one reading per second from `start_ms`) as the agent would send
/// it, without a verdict: `hil_tests::windows::summarize`, the checker's own arithmetic.
fn summary(device: &str, metric: &str, start_ms: i64, v: &[f64]) -> WindowSummary {
    let points: Vec<(i64, f64)> = (start_ms..).step_by(1000).zip(v.iter().copied()).collect();
    let key = (device.to_owned(), metric.to_owned(), start_ms);
    let e = summarize(&key, 60_000, &points);
    WindowSummary {
        device: e.device,
        metric: e.metric,
        start_ms: e.start_ms,
        end_ms: e.end_ms,
        count: e.count,
        sum: e.sum,
        min: e.min,
        max: e.max,
        mean: e.mean,
        stddev: e.stddev,
        p50: e.p50,
        p95: e.p95,
        p99: e.p99,
        sketch_alpha: 0.01,
        first: e.first,
        first_ms: e.first_ms,
        last: e.last,
        last_ms: e.last_ms,
        verdict: None,
        rolled_up: 0,
        template: None,
        escalations: Vec::new(),
    }
}

/// (encoded bytes, gzip bytes) of `windows` sealed as one envelope.
fn sizes(windows: &[WindowSummary], encoding: BodyEncoding) -> (usize, usize) {
    let key = BatchKey {
        gateway: "gw".into(),
        epoch: 1,
        seq: 1,
    };
    let body = Body {
        windows: windows.to_vec(),
        ..Body::default()
    };
    let bytes = Envelope::seal_as(&key, 0, &body, encoding).to_bytes();
    (bytes.len(), wire::transport::gzip(&bytes).len())
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let skab = cli.skab_dir.unwrap_or_else(hil_tests::paths::skab_dir);
    let day_file = read_file(&skab.join("data/anomaly-free/anomaly-free.csv"))
        .with_context(|| format!("reading SKAB under {}", skab.display()))?;
    let (day, day_raw) = windows_of(&day_file, "dev-000");
    let files = list_files(&skab)?;
    if files.is_empty() || cli.devices == 0 {
        bail!("no SKAB files under {} (or no devices)", skab.display());
    }
    // Per device: its windows (8 per minute) and raw bytes per minute.
    let fleet: Vec<(Vec<WindowSummary>, usize)> = (0..cli.devices)
        .map(|d| {
            let file = read_file(&files[d % files.len()])?;
            let (w, raw) = windows_of(&file, &format!("dev-{d:03}"));
            let minutes = (w.len() / 8).max(1);
            Ok((w, raw / minutes))
        })
        .collect::<anyhow::Result<_>>()?;
    let cut = |minute: usize| -> Vec<WindowSummary> {
        fleet
            .iter()
            .enumerate()
            .flat_map(|(d, (w, _))| {
                let k = (minute + 7 * d) % (w.len() / 8).max(1);
                w[k * 8..(k * 8 + 8).min(w.len())].iter().map(move |x| {
                    let mut x = x.clone();
                    x.start_ms = T0 + minute as i64 * 60_000;
                    (x.end_ms, x.first_ms) = (x.start_ms + 60_000, x.start_ms);
                    x.last_ms = x.start_ms + 59_000;
                    x
                })
            })
            .collect()
    };
    let live_raw: usize = fleet.iter().map(|(_, raw)| raw).sum::<usize>() * cli.minutes;
    let live_windows: usize = (0..cli.minutes).map(|m| cut(m).len()).sum();
    println!(
        "day: {} windows ({day_raw} raw bytes); live: {} devices x {} min = {live_windows} windows ({live_raw} raw bytes)",
        day.len(),
        cli.devices,
        cli.minutes
    );
    println!(
        "{:<22} {:>10} {:>10} {:>11} | {:>10} {:>10} {:>11}",
        "encoding",
        "day B/win",
        "gzip B/win",
        "raw/uplink",
        "live B/win",
        "gzip B/win",
        "raw/uplink"
    );
    let mut encodings = vec![
        ("schema 2 (packed rows)".to_owned(), BodyEncoding::Packed),
        ("schema 3 exact".to_owned(), BodyEncoding::EXACT),
    ];
    for &a in &cli.relative_errors {
        let encoding = BodyEncoding::Columnar { relative_error: a };
        if let Err(why) = encoding.validate() {
            bail!("--relative-error {a}: {why}");
        }
        encodings.push((format!("schema 3 at {a:e}"), encoding));
    }
    for (name, encoding) in encodings {
        let (d, dz) = sizes(&day, encoding);
        let (mut l, mut lz) = (0, 0);
        for minute in 0..cli.minutes {
            let (a, b) = sizes(&cut(minute), encoding);
            (l, lz) = (l + a, lz + b);
        }
        let per = |b: usize, n: usize| b as f64 / n as f64;
        println!(
            "{name:<22} {:>10.1} {:>10.1} {:>10.1}x | {:>10.1} {:>10.1} {:>10.1}x",
            per(d, day.len()),
            per(dz, day.len()),
            day_raw as f64 / dz as f64,
            per(l, live_windows),
            per(lz, live_windows),
            live_raw as f64 / lz as f64
        );
    }
    Ok(())
}
