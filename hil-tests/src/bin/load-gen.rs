//! `load-gen`: a rate-paced MQTT load generator for the benchmark harness
//! (`hil-tests/bench/compare.sh`). Publishes SKAB sensor rows for a fleet of devices at a
//! fixed offered rate, QoS 1, and reports how many the broker acknowledged.
//!
//! With `--log-file` it publishes plain-text log lines (e.g. a Loghub sample) instead.
//!
//! Unlike `fleet-sim` it keeps no ledger and never republishes: it is built to offer a steady
//! rate for a long time with little CPU of its own.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use bytes::Bytes;
use clap::Parser;
use rumqttc::{AsyncClient, Event, MqttOptions, Outgoing, Packet, QoS};

/// Offer a fixed rate of SKAB sensor messages to an MQTT broker.
///
/// Message i goes to device i % devices (dev-000 …), so every device publishes at
/// rate / devices Hz. Topic {prefix}/{device}/sensors, payload as fleet-sim's:
///   {"seq":k,"ts":<epoch ms>,"Accelerometer1RMS":…, … 8 SKAB metrics}
/// seq counts per device from 1. Values cycle through the rows of one SKAB file (device d
/// starts at row 37·d). ts is the wall clock at publish time, unless --event-start-ms is
/// given: then device message k carries event-start-ms + k·event-step-ms (a simulated
/// timeline, e.g. a day offline published in seconds).
///
/// With --log-file, message i is instead one line of that file as plain text (device d starts
/// at line 37·d and cycles), on topic {prefix}/{device}/logs; no seq, no ts.
///
/// Pacing: message i is due at start + i/rate; due messages are handed to the client in
/// bursts of at most 1 ms worth. The run ends after --secs seconds or --count messages,
/// whichever comes first, then waits (at most --ack-timeout) for the broker's PUBACKs.
///
/// Output: one JSON line on stdout:
///   {"published":N,"acked":N,"secs":S,"offered_rate":R,"achieved_rate":A,"start_unix":T,
///    "payload_bytes":B}   (B = the JSON payloads' bytes, topics and MQTT framing excluded)
/// and with --progress FILE, one line "unix_secs published acked" per second.
#[derive(Debug, Parser)]
#[command(name = "load-gen", version, verbatim_doc_comment)]
struct Cli {
    /// Broker address HOST:PORT.
    #[arg(long, default_value = "127.0.0.1:1883")]
    broker: String,
    /// Number of devices (each carries 8 series).
    #[arg(long, default_value_t = 125)]
    devices: usize,
    /// Offered messages per second, all devices together.
    #[arg(long, default_value_t = 1000.0)]
    rate: f64,
    /// Stop after this many seconds.
    #[arg(long, default_value_t = 60.0)]
    secs: f64,
    /// Stop after this many messages.
    #[arg(long)]
    count: Option<u64>,
    /// Topic prefix.
    #[arg(long, default_value = "plant")]
    topic_prefix: String,
    /// SKAB csv whose rows supply the values; default <data>/SKAB/data/anomaly-free/anomaly-free.csv.
    #[arg(long)]
    skab_file: Option<PathBuf>,
    /// Publish the lines of this log file (plain text, topic {prefix}/{device}/logs) instead of
    /// SKAB rows.
    #[arg(long)]
    log_file: Option<PathBuf>,
    /// Simulated timeline: first event time (epoch ms) of every device.
    #[arg(long)]
    event_start_ms: Option<i64>,
    /// Simulated timeline: event-time step between one device's messages (ms).
    #[arg(long, default_value_t = 1000)]
    event_step_ms: i64,
    /// Max unacknowledged publishes in flight.
    #[arg(long, default_value_t = 1000)]
    inflight: u16,
    /// MQTT client id.
    #[arg(long, default_value = "load-gen")]
    client_id: String,
    /// Seconds to wait for the last PUBACKs.
    #[arg(long, default_value_t = 30.0)]
    ack_timeout: f64,
    /// Append "unix_secs published acked" once a second to this file.
    #[arg(long)]
    progress: Option<PathBuf>,
}

/// Each SKAB row's metric fields rendered once: `"Name":value,…`.
fn sensor_bodies(file: Option<PathBuf>) -> anyhow::Result<Vec<String>> {
    let path = file
        .unwrap_or_else(|| hil_tests::paths::skab_dir().join("data/anomaly-free/anomaly-free.csv"));
    let file =
        hil_tests::skab::read_file(&path).with_context(|| format!("reading {}", path.display()))?;
    Ok(file
        .rows
        .iter()
        .map(|r| {
            let mut s = String::new();
            for (i, (name, v)) in r.values.iter().enumerate() {
                if i > 0 {
                    s.push(',');
                }
                let _ = write!(s, "\"{name}\":{v}");
            }
            s
        })
        .collect())
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if cli.rate.is_nan() || cli.rate <= 0.0 || cli.devices == 0 {
        bail!("--rate and --devices must be positive");
    }
    let bodies = match &cli.log_file {
        Some(path) => hil_tests::loglines::read_log_lines(path, None)?,
        None => sensor_bodies(cli.skab_file.clone())?,
    };
    if bodies.is_empty() {
        bail!("no rows or lines to publish");
    }
    let kind = if cli.log_file.is_some() {
        "logs"
    } else {
        "sensors"
    };
    let topics: Vec<String> = (0..cli.devices)
        .map(|d| format!("{}/dev-{d:03}/{kind}", cli.topic_prefix))
        .collect();

    let (host, port) = cli
        .broker
        .rsplit_once(':')
        .context("--broker must be HOST:PORT")?;
    let mut opts = MqttOptions::new(&cli.client_id, host, port.parse()?);
    opts.set_keep_alive(Duration::from_secs(30));
    opts.set_inflight(cli.inflight);
    opts.set_max_packet_size(1 << 20, 1 << 20);
    let (client, mut eventloop) = AsyncClient::new(opts, 4096);

    let acked = Arc::new(AtomicU64::new(0));
    let acked_loop = acked.clone();
    let (connected_tx, connected_rx) = tokio::sync::oneshot::channel();
    let driver = tokio::spawn(async move {
        let mut connected_tx = Some(connected_tx);
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    if let Some(tx) = connected_tx.take() {
                        let _ = tx.send(());
                    }
                }
                Ok(Event::Incoming(Packet::PubAck(_))) => {
                    acked_loop.fetch_add(1, Ordering::Relaxed);
                }
                Ok(Event::Outgoing(Outgoing::Disconnect)) => break,
                Ok(_) => {}
                Err(e) => {
                    eprintln!("load-gen: connection error: {e}");
                    break;
                }
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(10), connected_rx)
        .await
        .context("no CONNACK within 10 s")?
        .context("connection failed")?;

    let limit = cli.count.unwrap_or(u64::MAX);
    let run_for = Duration::from_secs_f64(cli.secs);
    let mut progress = match &cli.progress {
        Some(p) => Some(std::fs::File::create(p)?),
        None => None,
    };
    let start_unix = now_ms() as f64 / 1000.0;
    let start = Instant::now();
    let mut next_report = 1.0_f64;
    let mut i: u64 = 0;
    let devices = cli.devices as u64;
    let mut payload = String::with_capacity(256);
    let mut payload_bytes: u64 = 0;
    'outer: loop {
        let elapsed = start.elapsed();
        if elapsed >= run_for || i >= limit {
            break;
        }
        let el = elapsed.as_secs_f64();
        if let Some(f) = progress.as_mut() {
            if el >= next_report {
                use std::io::Write as _;
                let _ = writeln!(
                    f,
                    "{:.3} {} {}",
                    now_ms() as f64 / 1000.0,
                    i,
                    acked.load(Ordering::Relaxed)
                );
                next_report += 1.0;
            }
        }
        let due = ((el * cli.rate) as u64 + 1).min(limit);
        let wall = now_ms();
        while i < due {
            let d = (i % devices) as usize;
            let k = i / devices; // this device's message number, from 0
            let row = &bodies[(d * 37 + k as usize) % bodies.len()];
            let ts = match cli.event_start_ms {
                Some(s) => s + k as i64 * cli.event_step_ms,
                None => wall,
            };
            payload.clear();
            if cli.log_file.is_some() {
                payload.push_str(row);
            } else {
                let _ = write!(payload, "{{\"seq\":{},\"ts\":{ts},{row}}}", k + 1);
            }
            if client
                .publish_bytes(
                    topics[d].clone(),
                    QoS::AtLeastOnce,
                    false,
                    Bytes::copy_from_slice(payload.as_bytes()),
                )
                .await
                .is_err()
            {
                eprintln!("load-gen: client closed after {i} messages");
                break 'outer;
            }
            payload_bytes += payload.len() as u64;
            i += 1;
            if start.elapsed() >= run_for {
                break;
            }
        }
        // Sleep until the next message is due (at least 1 ms: the timer's resolution).
        let next_due = Duration::from_secs_f64(i as f64 / cli.rate);
        let now = start.elapsed();
        if next_due > now {
            tokio::time::sleep((next_due - now).max(Duration::from_millis(1))).await;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let published = i;
    let deadline = Instant::now() + Duration::from_secs_f64(cli.ack_timeout);
    while acked.load(Ordering::Relaxed) < published && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let acked_n = acked.load(Ordering::Relaxed);
    if let Some(f) = progress.as_mut() {
        use std::io::Write as _;
        let _ = writeln!(f, "{:.3} {} {}", now_ms() as f64 / 1000.0, i, acked_n);
    }
    let _ = client.disconnect().await;
    let _ = tokio::time::timeout(Duration::from_secs(2), driver).await;
    println!(
        "{{\"published\":{published},\"acked\":{acked_n},\"secs\":{secs:.3},\"offered_rate\":{},\"achieved_rate\":{:.1},\"start_unix\":{start_unix:.3},\"payload_bytes\":{payload_bytes}}}",
        cli.rate,
        published as f64 / secs
    );
    if acked_n < published {
        bail!("only {acked_n} of {published} publishes acknowledged");
    }
    Ok(())
}
