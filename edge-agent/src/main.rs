//! The `edge-agent` command line: run the agent, or check a config file.
//!
//! Only argument handling, logging set-up and exit codes live here; everything
//! else is in the library.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use edge_agent::config::{AgentConfig, ConfigError};

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
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .init();
    let result = match (cli.command, cli.config) {
        (Some(Command::CheckConfig { file }), _) => return check_config(&file),
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

fn run(config: &std::path::Path) -> anyhow::Result<()> {
    let settings = AgentConfig::load(config)?;
    rustls::crypto::ring::default_provider()
        .install_default()
        .map_err(|_| anyhow::anyhow!("a TLS crypto provider was already installed"))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(edge_agent::agent::run(settings, shutdown_signal()))?;
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
