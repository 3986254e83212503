//! `sensor-uplink`: how many bytes leave the gateway for a SKAB fleet with models on, vs. the
//! raw readings, and what the bytes carry (columns, verdicts, escalations, counters).
//!
//! A thin CLI over `hil_tests::sensor_uplink`; it prints a table (or one JSON line) and
//! changes no data.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Parser;
use hil_tests::sensor_uplink::{replay, Attribution, Options, Report, Totals};

/// Measure the sensor pipeline's uplink bytes on a simulated SKAB fleet, models on.
///
/// --devices pumps each publish one JSON reading a second ({"seq":…,"ts":…,"<metric>":…}
/// on plant/dev-NN/sensors, as fleet-sim does; device d reads SKAB file d mod N from minute
/// 7·d on, wrapping) for --minutes of simulated time, through the agent's own pipeline on
/// configs/demo.toml: the sensor model calibrates on each device's first 400 rows, then
/// judges every row (verdicts on the `anomaly` windows, unsure rows escalated within the
/// hourly budget), one-minute windows, a cut every simulated second into the durable
/// outbox, drained after each cut and after a final cut an hour later (the final flush).
///
/// Printed for the whole run and for its steady part (batches whose windows start after
/// --warmup-minutes, and the readings from then on):
///   raw bytes        the JSON payloads published (what forwarding every reading sends);
///   raw gzip         the same as NDJSON, gzip-compressed one fleet-minute at a time;
///   uplink gzip      the sealed batches gzip-compressed one by one, as the agent sends them
///                    (and re-sealed with each batch's windows sorted by device and metric,
///                    the order the agent's cut seals them in: a check; and as wire
///                    schema 3, verdicts as CBOR, for comparison);
///   raw ÷ uplink     both ratios; bytes per window; batches (counters-only ones: no window),
///                    windows, verdicts, escalations shipped (and kept local over budget);
///   attribution      the uplink gzip bytes by what they carry, measured by re-sealing each
///                    batch without verdicts, then without escalations, then without
///                    counters and gauges: columns (+ names, framing), verdicts,
///                    escalations, counters + gauges.
/// It measures bytes only: no time, no MQTT, no HTTP.
///
/// Examples:
///   sensor-uplink                                   # 125 devices x 30 min, demo's 1e-4
///   sensor-uplink --relative-error 0                # exact values
///   sensor-uplink --devices 4 --minutes 12 --json   # one JSON line for scripts
#[derive(Debug, Parser)]
#[command(name = "sensor-uplink", version, verbatim_doc_comment)]
struct Cli {
    /// SKAB folder; default <workspace>/../shared/data/SKAB (or $EDGE_DATA_DIR/SKAB).
    #[arg(long)]
    skab_dir: Option<PathBuf>,
    /// Devices of the fleet (8 SKAB channels each, plus the `anomaly` series).
    #[arg(long, default_value_t = 125)]
    devices: usize,
    /// Minutes of simulated time (one reading per device and second).
    #[arg(long, default_value_t = 30)]
    minutes: u32,
    /// Minutes left out of the steady part (the model judges from row 400 on).
    #[arg(long, default_value_t = 10)]
    warmup_minutes: u32,
    /// uplink.relative_error (0 = exact); default: configs/demo.toml's.
    #[arg(long)]
    relative_error: Option<f64>,
    /// Print the report as one JSON line instead of the table.
    #[arg(long)]
    json: bool,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if cli.devices == 0 || cli.minutes == 0 {
        bail!("--devices and --minutes must be at least 1");
    }
    let options = Options {
        skab_dir: cli.skab_dir.unwrap_or_else(hil_tests::paths::skab_dir),
        devices: cli.devices,
        minutes: cli.minutes,
        warmup_minutes: cli.warmup_minutes,
        relative_error: cli.relative_error,
    };
    let report = replay(&options)
        .with_context(|| format!("replaying SKAB under {}", options.skab_dir.display()))?;
    if cli.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print_table(&report);
    }
    Ok(())
}

fn print_table(r: &Report) {
    println!(
        "{} devices x {} min, relative error {}, warm-up {} min; {} series shipped, escalation budget {}",
        r.devices,
        r.minutes,
        if r.relative_error == 0.0 {
            "0 (exact)".to_owned()
        } else {
            format!("{:e}", r.relative_error)
        },
        r.warmup_minutes,
        r.series,
        r.escalation_budget
    );
    let per_metric: Vec<String> = r
        .windows_by_metric
        .iter()
        .map(|(m, n)| format!("{m} {n}"))
        .collect();
    println!("windows by metric: {}", per_metric.join(", "));
    let alone: Vec<String> = r
        .batches
        .iter()
        .filter(|b| b.windows == 0)
        .map(|b| {
            let counts: Vec<String> = b.counters.iter().map(|(k, n)| format!("{k}={n}")).collect();
            format!("s {} ({} B: {})", b.second, b.gzip, counts.join(" "))
        })
        .collect();
    if !alone.is_empty() {
        let more = alone.len().saturating_sub(10);
        let tail = if more > 0 {
            format!(", … {more} more")
        } else {
            String::new()
        };
        println!(
            "counters-only batches at: {}{tail}",
            alone[..alone.len().min(10)].join(", ")
        );
    }
    if r.reseal_mismatches > 0 {
        println!(
            "WARNING: {} batches did not re-seal to their own bytes; their attribution is approximate",
            r.reseal_mismatches
        );
    }
    println!();
    let cols: [(&str, &Totals); 3] = [
        ("whole run", &r.whole),
        ("steady", &r.steady),
        ("final flush", &r.final_flush),
    ];
    println!("| | {} | {} | {} |", cols[0].0, cols[1].0, cols[2].0);
    println!("|---|---:|---:|---:|");
    let row = |name: &str, f: &dyn Fn(&Totals) -> String| {
        println!(
            "| {name} | {} | {} | {} |",
            f(cols[0].1),
            f(cols[1].1),
            f(cols[2].1)
        );
    };
    row("readings", &|t| t.messages.to_string());
    row("raw bytes", &|t| t.raw_bytes.to_string());
    row("raw gzip bytes (per minute)", &|t| {
        t.raw_gzip_bytes.to_string()
    });
    row("uplink sealed bytes", &|t| t.sealed_bytes.to_string());
    row("uplink gzip bytes", &|t| t.gzip_bytes.to_string());
    row("  with windows sorted (device, metric)", &|t| {
        t.sorted_gzip_bytes.to_string()
    });
    row("  as wire schema 3 (verdicts as CBOR)", &|t| {
        t.schema3_gzip_bytes.to_string()
    });
    row("raw ÷ uplink gzip", &|t| ratio(t.messages, t.ratio()));
    row("raw gzip ÷ uplink gzip", &|t| {
        ratio(t.messages, t.gzip_ratio())
    });
    row("uplink gzip bytes per window", &|t| {
        format!("{:.1}", t.bytes_per_window())
    });
    row("batches", &|t| t.batches.to_string());
    row("  counters-only batches", &|t| {
        format!(
            "{} ({} B)",
            t.counters_only_batches, t.counters_only_gzip_bytes
        )
    });
    row("windows", &|t| t.windows.to_string());
    row("verdicts", &|t| t.verdicts.to_string());
    row("escalations shipped", &|t| t.escalations.to_string());
    row("escalations over budget (kept local)", &|t| {
        t.escalations_over_budget.to_string()
    });
    let part = |name: &str, f: fn(&Attribution) -> i64| {
        row(name, &|t| {
            let total = t.attribution.total().max(1) as f64;
            let v = f(&t.attribution);
            format!("{v} ({:.1}%)", 100.0 * v as f64 / total)
        });
    };
    part("bytes: columns + names + framing", |a| a.columns);
    part("bytes: verdicts", |a| a.verdicts);
    part("bytes: escalations", |a| a.escalations);
    part("bytes: counters + gauges", |a| a.counters_gauges);
}

/// A ratio, or "-" where no reading was published (the final flush).
fn ratio(messages: u64, value: f64) -> String {
    if messages == 0 {
        "-".into()
    } else {
        format!("{value:.1}")
    }
}
