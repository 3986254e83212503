//! `fleet-sim`: replays SKAB sensor files (and optional log lines and bad messages) for a
//! simulated fleet over MQTT QoS 1, writing a ledger of what the broker acknowledged.
//!
//! A thin CLI over `hil_tests::sim::run`; it does not check the pipeline's output.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use hil_tests::sim::{run, SimOptions};

/// Replay real sensor data from a simulated device fleet to an MQTT broker.
///
/// Devices dev-00 … dev-(N-1) each replay SKAB water-pump files (file i goes to device
/// i % N) as one continuous timeline: the first file keeps its timestamps, each next file is
/// shifted to start 1 s after the previous one ended. Everything is published at QoS 1 and
/// a message enters the ledger only after the broker acknowledged it; on connection loss
/// the simulator reconnects with backoff and republishes what was not acknowledged.
///
/// Topics and payloads:
///   {prefix}/{device}/sensors  JSON {"seq":1,"ts":1583748873000,"Current":1.3302,...}
///                              seq counts per device from 1, ts is epoch ms (UTC),
///                              all 8 SKAB sensors as metric fields
///   {prefix}/{device}/logs     one plain-text log line per message (--loghub)
///   {prefix}/{device}/unknown  injected unknown-topic messages (--malformed)
///
/// Injected bad messages (--malformed N sends N of each; expected reject reason in
/// brackets): truncated JSON [malformed], a string metric [wrong_type], the number 1e999
/// [malformed], a 200 KiB string [too_large], the unknown topic [unknown_topic], and
/// {"ts":…} with no metric [empty]. None carries a seq or a usable metric value.
///
/// Ledger (--ledger FILE): JSON lines, one record per acknowledged message, each device's
/// records in publish order: {"kind":"reading",...}, {"kind":"log",...},
/// {"kind":"malformed",...}.
///
/// Example:
///   fleet-sim --broker 127.0.0.1:1883 --devices 4 --speedup 60 --malformed 2 \
///     --loghub ../shared/data/loghub/HDFS/HDFS_2k.log --ledger /tmp/ledger.jsonl
#[derive(Debug, Parser)]
#[command(name = "fleet-sim", version, verbatim_doc_comment)]
struct Cli {
    /// Broker address HOST:PORT.
    #[arg(long, default_value = "127.0.0.1:1883")]
    broker: String,

    /// Number of simulated devices.
    #[arg(long, default_value_t = 10)]
    devices: usize,

    /// Topic prefix ({prefix}/{device}/sensors, …/logs).
    #[arg(long, default_value = "plant")]
    topic_prefix: String,

    /// SKAB dataset folder (holding data/); default <workspace>/../shared/data/SKAB or
    /// $EDGE_DATA_DIR/SKAB.
    #[arg(long)]
    skab_dir: Option<PathBuf>,

    /// Publish at most K readings per device.
    #[arg(long, value_name = "K")]
    max_rows_per_device: Option<usize>,

    /// Event-time seconds per wall-clock second; 0 = as fast as possible.
    #[arg(long, default_value_t = 0.0, value_name = "X")]
    speedup: f64,

    /// A plain-text log file whose lines are published round-robin to the devices'
    /// logs topics (repeatable).
    #[arg(long, value_name = "FILE")]
    loghub: Vec<PathBuf>,

    /// Publish at most this many lines of each --loghub file.
    #[arg(long, value_name = "N")]
    max_log_lines: Option<usize>,

    /// Inject N bad messages of each kind, spread through the run.
    #[arg(long, default_value_t = 0, value_name = "N")]
    malformed: usize,

    /// Write the ledger of acknowledged messages here (JSON lines).
    #[arg(long, value_name = "FILE")]
    ledger: Option<PathBuf>,

    /// Max unacknowledged publishes in flight.
    #[arg(long, default_value_t = 500)]
    inflight: u16,

    /// Give up when the broker stays unreachable this many seconds.
    #[arg(long, default_value_t = 30, value_name = "SECS")]
    retry_timeout: u64,

    /// No per-second progress lines on stderr.
    #[arg(long)]
    quiet: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let defaults = SimOptions::default();
    let opts = SimOptions {
        broker: cli.broker,
        devices: cli.devices,
        topic_prefix: cli.topic_prefix,
        skab_dir: cli.skab_dir.unwrap_or(defaults.skab_dir),
        max_rows_per_device: cli.max_rows_per_device,
        speedup: cli.speedup,
        loghub: cli.loghub,
        max_log_lines: cli.max_log_lines,
        malformed: cli.malformed,
        ledger: cli.ledger,
        progress: !cli.quiet,
        client_id: None,
        inflight: cli.inflight,
        retry_timeout: Duration::from_secs(cli.retry_timeout),
    };
    let report = run(opts).await.context("fleet-sim failed")?;
    println!("{report}");
    Ok(())
}
