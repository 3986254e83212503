//! The `edge-agent` command line: run the agent, or check a config file.
//!
//! Only argument handling, logging set-up and exit codes live here; everything
//! else is in the library.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use edge_agent::config::{AgentConfig, ConfigError};
use edge_agent::metrics::AgentMetrics;

/// Edge agent for industrial IoT gateways.
///
/// Subscribes to MQTT sensor and log topics, decodes JSON / CBOR / Influx line
/// protocol / text payloads, folds readings into per-series tumbling windows
/// (count, min, max, mean, stddev, p50/p95/p99, first/last), keeps everything
/// durable in a local journal before acking the broker, and ships only closed
/// window summaries to cloud-sink, retrying for as long as the uplink is down.
///
/// Examples:
///   edge-agent --config configs/gateway.example.toml
///   edge-agent check-config configs/gateway.example.toml
///
/// Logging: RUST_LOG=debug (default info). The bearer token for the sink is read
/// from the environment variable or file named in [uplink], never from the config.
///
/// Metrics: with metrics_listen = "127.0.0.1:9464" the agent answers GET /metrics
/// (Prometheus text); with [telemetry] otlp_endpoint = "http://collector:4318" the
/// same metrics and its spans (pipeline.commit, sync.batch) go out over OTLP/HTTP.
#[derive(Debug, Parser)]
#[command(version, verbatim_doc_comment, subcommand_negates_reqs = true)]
struct Cli {
    /// Config file (TOML) to run with.
    #[arg(long, short, value_name = "FILE", required = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Validate a config file and print every problem with its key (exit 1 if any).
    CheckConfig {
        /// Config file to check.
        file: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match (cli.command, cli.config) {
        (Some(Command::CheckConfig { file }), _) => {
            // Logs only (a config's warnings); nothing is exported.
            let metrics = AgentMetrics::new();
            return match init_telemetry(&telemetry::TelemetryConfig::default(), &metrics) {
                Ok(_log) => check_config(&file),
                Err(e) => {
                    eprintln!("edge-agent: {e:#}");
                    ExitCode::FAILURE
                }
            };
        }
        (None, Some(config)) => run(&config),
        (None, None) => unreachable!("clap requires --config without a subcommand"),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("edge-agent: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn check_config(file: &std::path::Path) -> ExitCode {
    match AgentConfig::load(file) {
        Ok(_) => {
            println!("ok: {}", file.display());
            ExitCode::SUCCESS
        }
        Err(ConfigError::Invalid { path, problems }) => {
            println!("{}: {} problem(s)", path.display(), problems.len());
            for p in problems {
                println!("  {p}");
            }
            ExitCode::FAILURE
        }
        Err(e) => {
            println!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// Logging to stdout (RUST_LOG, default info) and, with `otlp_endpoint`,
/// OTLP export of spans and `metrics`; the guard flushes them when dropped.
fn init_telemetry(
    config: &telemetry::TelemetryConfig,
    metrics: &AgentMetrics,
) -> anyhow::Result<telemetry::TelemetryGuard> {
    let log = telemetry::LogOptions {
        stderr: false,
        with_target: false,
        ..telemetry::LogOptions::default()
    };
    telemetry::init("edge-agent", config, &log, &metrics.registry)
        .context("setting up logging and telemetry")
}

fn run(config: &std::path::Path) -> anyhow::Result<()> {
    let file = AgentConfig::read(config)?;
    let metrics = AgentMetrics::new();
    // Logging is up before validation so its warnings show; a bad [telemetry]
    // section is reported below with every other problem.
    let telemetry = if file.telemetry.problems("telemetry").is_empty() {
        file.telemetry.clone()
    } else {
        telemetry::TelemetryConfig::default()
    };
    // Kept until the runtime (declared after it) is gone: dropping it
    // flushes the last spans and metrics.
    let _telemetry = init_telemetry(&telemetry, &metrics)?;
    let settings = file.settle(config)?;
    rustls::crypto::ring::default_provider()
        .install_default()
        .map_err(|_| anyhow::anyhow!("a TLS crypto provider was already installed"))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(edge_agent::agent::run_with_metrics(
        settings,
        metrics,
        shutdown_signal(),
    ))?;
    Ok(())
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing the SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
