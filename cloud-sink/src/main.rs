//! The `cloud-sink` binary: CLI parsing, logging setup, signal handling.
//!
//! All behaviour lives in the library; this file only turns arguments into
//! calls and errors into exit codes (anyhow is used here and in the
//! `calibrate` command's printer, nowhere in the library).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{CommandFactory, Parser, Subcommand};
use cloud_sink::metrics::SinkMetrics;
use cloud_sink::{ConfigError, Server, SinkConfig, Teachers};

mod calibrate_cli;

const ABOUT: &str =
    "Receives CBOR batches from edge gateways, stores each exactly once, serves a JSON query API.";

const LONG_ABOUT: &str = "\
cloud-sink is the cloud end of the edge pipeline. Gateways (edge-agent) POST sealed
batches of window summaries; the sink authenticates each gateway by its bearer token
(or its pinned client certificate with [tls] client_ca_file),
verifies the batch (size, schema version, body SHA-256), and stores it in an embedded
store (or PostgreSQL: [store] backend = \"postgres\") exactly once per (gateway, epoch, seq). It answers \"stored\" only once the data
is flushed to disk, answers a re-send with \"duplicate\", and rejects the same key with a
different body loudly (409 and an error log line).

HTTP endpoints:
  POST /v1/batches   body = wire envelope (application/cbor), `Authorization: Bearer TOKEN`
                     200 stored | 200 duplicate | 409 conflict | 400 bad envelope
                     401 bad token | 403 other gateway's key | 413 too large
                     429 over limits.batches_per_second (Retry-After) | 503 retry
                     (422: a value PostgreSQL cannot store, e.g. NUL in a gateway id)
  GET  /v1/health    status, version and ingest counters
  GET  /v1/gateways  per-gateway batches, windows, last seen, summed counters
  GET  /v1/series?gateway=&device=&metric=&from=&to=&limit=
                     stored windows, ordered by series and start time
                     (from inclusive, to exclusive, ms since the Unix epoch)
  GET  /v1/escalations?gateway=&device=&limit=
                     rows the gateways' models were unsure of: the gateway's
                     verdict and the teacher's (`[[teachers]]`, judged at ingest)
  GET  /v1/escalations/agreement?gateway=&device=&series=&buckets=&to=
                     local vs. teacher: totals, 2x2 table, per confidence bucket
  GET  /metrics      Prometheus text (format 0.0.4): cloud_sink_batches_total{outcome},
                     windows, bytes, rejections by reason, the gateways' counters,
                     sync lag per gateway, ingest and teacher latency histograms

With [telemetry] otlp_endpoint = \"http://collector:4318\" the same metrics and one
span per POST (ingest.batch, children teacher.judge and store.put) are pushed
over OTLP/HTTP (protobuf) to that collector.

On start it prints one line to stdout: `cloud-sink listening on http://ADDR`
(https:// with [tls]).
Logs go to stderr; set the level with RUST_LOG (default: info).
SIGTERM or Ctrl-C stop it gracefully.";

const EXAMPLES: &str = "\
Examples:
  cloud-sink --config configs/cloud-sink.example.toml
  cloud-sink check-config configs/cloud-sink.example.toml
  cloud-sink calibrate --data var/cloud-sink --min-agreement 0.99
  SINK_PG_URL=postgres://sink@db/sink cloud-sink calibrate --config configs/cloud-sink.postgres.toml
  curl -s 'http://127.0.0.1:8080/v1/series?gateway=gw-demo&device=pump-1&from=0'
  head -c 32 /dev/urandom | base64 | tr -d '/+=' > gw-7.token   # a new token
  cloud-sink hash-token < gw-7.token     # the token_sha256 to put in the config";

#[derive(Debug, Parser)]
#[command(
    name = "cloud-sink",
    version,
    about = ABOUT,
    long_about = LONG_ABOUT,
    after_help = EXAMPLES,
    args_conflicts_with_subcommands = true
)]
struct Cli {
    /// Run the sink with this TOML config file.
    #[arg(long, short, value_name = "FILE")]
    config: Option<PathBuf>,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Validate a config file and print every problem (exit code 1 if any).
    CheckConfig {
        /// The TOML config file to check.
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// Print the token_sha256 of a token read from stdin (first line; the
    /// token never goes on the command line, where `ps` and shell history see it).
    HashToken,
    /// Suggest each series' `escalate_below` from the teacher's verdicts (offline).
    #[command(long_about = CALIBRATE_ABOUT)]
    Calibrate(CalibrateArgs),
}

const CALIBRATE_ABOUT: &str = "\
Suggest, per judgement series, the gateway router's `escalate_below` from the
escalations stored in a sink's data directory and their teacher verdicts.

The suggestion is the LOWEST confidence t among the judged escalations such that
the rows with local confidence >= t agree with the teacher at least
--min-agreement of the time (and there are at least --min-rows of them). Rows
that confident could then be decided on the gateway; rows below t stay
escalated. Set it as `escalate_below` of that series' [[models.sensor]] in the
agent config. It prints the numbers behind each suggestion: rows at or above t
and below it, their agreement, and the 95% (Wilson) lower bound of the upper
agreement.

What it cannot know: rows at or above the gateway's CURRENT escalate_below are
never escalated, so the sink has no teacher verdict for them. It can only
suggest lowering the threshold, never raising it, and it assumes those rows
agree at least as well as the most confident escalated ones. Escalations are a
budgeted sample (escalations_per_device_hour), not every unsure row.

It reads the store directly (exact, every row, no token needed, and no load
on a serving sink), so the sink must be stopped: the store allows one process
at a time. Run it on a stopped sink or on a copy of a stopped sink's directory.
With --config naming a PostgreSQL store it reads the database, and the sinks
may keep running.";

/// `cloud-sink calibrate`.
#[derive(Debug, clap::Args)]
struct CalibrateArgs {
    /// The sink's data directory (`data_dir` of its config); the sink must be stopped.
    #[arg(long, value_name = "DIR", required_unless_present = "config")]
    data: Option<PathBuf>,
    /// Read the store the sink's config names instead (PostgreSQL: the sink
    /// may keep running; embedded: its data_dir, the sink must be stopped).
    #[arg(long, value_name = "FILE", conflicts_with = "data")]
    config: Option<PathBuf>,
    /// Agreement the rows decided locally must reach, in (0, 1].
    #[arg(long, default_value_t = 0.99, value_parser = parse_rate)]
    min_agreement: f64,
    /// Fewest judged rows at or above a suggested threshold.
    #[arg(long, default_value_t = 30)]
    min_rows: u64,
    /// Only this gateway's escalations.
    #[arg(long)]
    gateway: Option<String>,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

fn parse_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v > 0.0 && v <= 1.0 => Ok(v),
        _ => Err(format!("expected a rate in (0, 1], got {s:?}")),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::CheckConfig { file }) => check_config(&file),
        Some(Command::HashToken) => hash_token(),
        Some(Command::Calibrate(args)) => match calibrate_cli::run(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        },
        None => {
            let Some(config) = cli.config else {
                Cli::command()
                    .error(
                        clap::error::ErrorKind::MissingRequiredArgument,
                        "either --config FILE or the check-config subcommand is required",
                    )
                    .exit();
            };
            match run(&config) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// `cloud-sink check-config FILE`: prints `ok: FILE` or every problem; also
/// loads the teacher models, so a missing or wrong one shows here.
fn check_config(file: &Path) -> ExitCode {
    match SinkConfig::load(file) {
        Ok(config) => match Teachers::load(&config.teachers) {
            Ok(teachers) => {
                for (series, width) in teachers.series() {
                    println!("teacher for series {series:?}: {width} features");
                }
                println!("ok: {}", file.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{}: {:#}", file.display(), anyhow::Error::from(e));
                ExitCode::FAILURE
            }
        },
        Err(ConfigError::Invalid { path, problems }) => {
            eprintln!("{}: {} problem(s):", path.display(), problems.len());
            for p in &problems {
                eprintln!("  {p}");
            }
            ExitCode::FAILURE
        }
        Err(e) => {
            // Print the error with its causes (e.g. the OS error of a failed read).
            eprintln!("{:#}", anyhow::Error::from(e));
            ExitCode::FAILURE
        }
    }
}

/// `cloud-sink hash-token`: stdin's first line (trimmed, as the agent trims its
/// token file) → hex SHA-256 on stdout.
fn hash_token() -> ExitCode {
    let mut line = String::new();
    if let Err(e) = std::io::stdin().read_line(&mut line) {
        eprintln!("error: reading the token from stdin: {e}");
        return ExitCode::FAILURE;
    }
    let token = line.trim();
    if token.is_empty() {
        eprintln!("error: no token on stdin (e.g. `cloud-sink hash-token < gw-7.token`)");
        return ExitCode::FAILURE;
    }
    println!("{}", cloud_sink::auth::token_sha256_hex(token));
    ExitCode::SUCCESS
}

/// `cloud-sink --config FILE`: runs until SIGTERM or Ctrl-C.
fn run(config_path: &Path) -> anyhow::Result<()> {
    let config = SinkConfig::load(config_path)?;
    let metrics = SinkMetrics::new();
    // Kept until the runtime (declared after it) is gone: dropping it
    // flushes the last spans and metrics.
    let _telemetry = telemetry::init(
        "cloud-sink",
        &config.telemetry,
        &telemetry::LogOptions::default(),
        &metrics.registry,
    )
    .context("setting up logging and telemetry")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let server = Server::bind_with_metrics(&config, metrics).await?;
        // Handlers first: whoever reads the line below may signal at once.
        let shutdown = shutdown_signal()?;
        let addr = server.local_addr();
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "cloud-sink listening on {}://{addr}", server.scheme())?;
        stdout.flush()?;
        drop(stdout);
        tracing::info!(%addr, scheme = server.scheme(), otlp = config.telemetry.otlp_endpoint.as_deref().unwrap_or("off"), mtls = config.tls.as_ref().is_some_and(|t| t.client_ca_file.is_some()), store = %cloud_sink::SinkStore::describe(&config), gateways = config.gateways.len(), "cloud-sink started");
        server.run(shutdown).await?;
        tracing::info!("cloud-sink stopped");
        anyhow::Ok(())
    })
}

/// A future that completes on SIGINT (Ctrl-C) or SIGTERM. The handlers are
/// installed by this call, before the future is first polled, so a signal
/// sent right after start-up is never the default (killing) action.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut int = signal(SignalKind::interrupt()).context("listening for SIGINT")?;
    let mut term = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
    Ok(async move {
        tokio::select! {
            _ = int.recv() => tracing::info!("Ctrl-C received, shutting down"),
            _ = term.recv() => tracing::info!("SIGTERM received, shutting down"),
        }
    })
}
