//! `log-uplink`: how many bytes leave the gateway for a log, summaries vs. raw lines.
//!
//! A thin CLI over `hil_tests::log_uplink`; it prints a table and changes no data.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Parser;
use hil_tests::log_uplink::{raw_log, read_lines, replay, Replay};
use hil_tests::loghub_eval::discover;

/// Measure the uplink reduction of log summaries on the Loghub samples.
///
/// Each system's `*_2k.log` is replayed through the agent's own pipeline (template mining,
/// exemplars redacted, one-minute windows, durable outbox) at each given rate of lines per
/// minute of simulated gateway time, one MQTT message per line. Printed per system and rate:
/// raw bytes (every line and its newline, what forwarding the log sends), shipped bytes (the
/// sealed CBOR batches, before HTTP/TLS), their ratio; the same two gzip-compressed (raw
/// lines one minute at a time, batches one by one as the agent sends them by default) and
/// their ratio; windows and exemplar lines shipped. The line counts of the template windows must add up to the lines
/// replayed, or the command fails.
///
/// Examples:
///   log-uplink                                # rates 100, 1000, 10000 lines/min, 3 exemplars
///   log-uplink --rate 6000 --exemplars 0      # no raw line leaves at all
///   log-uplink --system HDFS --system OpenSSH
#[derive(Debug, Parser)]
#[command(name = "log-uplink", version, verbatim_doc_comment)]
struct Cli {
    /// Loghub folder; default <workspace>/../shared/data/loghub (or $EDGE_DATA_DIR/loghub).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Lines per minute of gateway time (repeatable).
    #[arg(long = "rate", default_values_t = [100u32, 1000, 10_000])]
    rates: Vec<u32>,
    /// Exemplar lines per template window (0..10).
    #[arg(long, default_value_t = 3)]
    exemplars: usize,
    /// Only these systems (repeatable).
    #[arg(long = "system")]
    systems: Vec<String>,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let loghub = cli
        .data_dir
        .unwrap_or_else(|| hil_tests::paths::data_dir().join("loghub"));
    let mut systems = discover(&loghub).with_context(|| format!("reading {}", loghub.display()))?;
    if !cli.systems.is_empty() {
        systems.retain(|s| cli.systems.contains(&s.name));
    }
    if systems.is_empty() {
        bail!("no Loghub systems under {}", loghub.display());
    }
    println!(
        "| system | lines/min | lines | raw bytes | shipped bytes | raw ÷ shipped | raw gzip | shipped gzip | raw gzip ÷ shipped gzip | windows | exemplars |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut totals: Vec<(u32, Replay)> =
        cli.rates.iter().map(|r| (*r, Replay::default())).collect();
    for system in &systems {
        let path = raw_log(system);
        let lines = read_lines(&path)?;
        for (rate, total) in &mut totals {
            let r = replay(&lines, *rate, cli.exemplars)
                .with_context(|| format!("replaying {}", path.display()))?;
            if r.template_lines != r.lines {
                bail!(
                    "{}: template windows count {} lines, {} were replayed",
                    system.name,
                    r.template_lines,
                    r.lines
                );
            }
            println!(
                "| {} | {rate} | {} | {} | {} | {:.1} | {} | {} | {:.1} | {} | {} |",
                system.name,
                r.lines,
                r.raw_bytes,
                r.shipped_bytes,
                r.reduction(),
                r.raw_gzip_bytes,
                r.shipped_gzip_bytes,
                r.gzip_reduction(),
                r.windows,
                r.exemplars
            );
            total.lines += r.lines;
            total.raw_bytes += r.raw_bytes;
            total.shipped_bytes += r.shipped_bytes;
            total.raw_gzip_bytes += r.raw_gzip_bytes;
            total.shipped_gzip_bytes += r.shipped_gzip_bytes;
            total.windows += r.windows;
            total.exemplars += r.exemplars;
        }
    }
    for (rate, t) in &totals {
        println!(
            "| **all** | {rate} | {} | {} | {} | **{:.1}** | {} | {} | **{:.1}** | {} | {} |",
            t.lines,
            t.raw_bytes,
            t.shipped_bytes,
            t.reduction(),
            t.raw_gzip_bytes,
            t.shipped_gzip_bytes,
            t.gzip_reduction(),
            t.windows,
            t.exemplars
        );
    }
    Ok(())
}
