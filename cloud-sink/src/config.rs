//! The sink's TOML configuration: parsing (strict, unknown keys rejected) and a
//! second validation pass that reports every problem at once with its key path.
//!
//! This module only reads and checks the file; it opens no sockets, no store
//! and no model (teacher models are loaded by [`crate::teacher`] at start-up).

mod gateways;
mod store;
mod store_tls;
mod teachers;
mod tls;

pub use gateways::{is_valid_gateway_id, parse_sha256_hex, GatewayConfig, Hashes};
pub use store::{is_identifier, redact_url, Backend, PgSettings, StoreConfig};
pub use store_tls::{PgTlsConfig, PgTlsMode};
pub use teachers::TeacherConfig;
pub use tls::SinkTlsConfig;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Everything `cloud-sink --config FILE` reads.
///
/// ```toml
/// listen = "127.0.0.1:8080"
/// data_dir = "var/cloud-sink"
/// [store]
/// backend = "embedded"      # or "postgres" with url_env = "SINK_PG_URL"
/// [limits]
/// max_body_bytes = 8388608
/// [[gateways]]
/// id = "gw-demo"
/// token_sha256 = "<64 hex chars>"
/// [[teachers]]
/// series = "anomaly"
/// path = "../models/sensor/teacher.onnx"
/// [telemetry]
/// otlp_endpoint = "http://otel-collector:4318"
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkConfig {
    /// Socket address to listen on (`host:port`); port 0 picks a free port.
    pub listen: String,
    /// Directory of the embedded (sled) store. A relative path is resolved
    /// against the current working directory of the process, not the config file.
    /// Required with the embedded backend, absent with PostgreSQL.
    #[serde(default)]
    pub data_dir: PathBuf,
    /// Which store keeps the batches; embedded by default.
    #[serde(default)]
    pub store: StoreConfig,
    /// Request limits; every key has a default.
    #[serde(default)]
    pub limits: Limits,
    /// The gateways allowed to post batches, each with its token hash(es).
    #[serde(default)]
    pub gateways: Vec<GatewayConfig>,
    /// HTTPS (and optionally mTLS) instead of plain HTTP.
    #[serde(default)]
    pub tls: Option<SinkTlsConfig>,
    /// Teacher models re-judging escalations, one per judgement series; none
    /// by default (escalations are then stored without a teacher verdict).
    #[serde(default)]
    pub teachers: Vec<TeacherConfig>,
    /// OpenTelemetry export (OTLP/HTTP); off unless `otlp_endpoint` is set.
    #[serde(default)]
    pub telemetry: telemetry::TelemetryConfig,
}

/// Limits applied before any parsing of untrusted input.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Largest accepted `POST /v1/batches` body, in bytes.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    /// Batches per second each gateway may post (sustained); 0 (default) = no limit.
    /// Over it the sink answers 429 with `Retry-After`, and the agent waits.
    #[serde(default)]
    pub batches_per_second: f64,
    /// Batches a gateway may post back to back before the rate applies.
    #[serde(default = "default_burst")]
    pub burst: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: default_max_body_bytes(),
            batches_per_second: 0.0,
            burst: default_burst(),
        }
    }
}

fn default_burst() -> u32 {
    20
}

fn default_max_body_bytes() -> usize {
    wire::MAX_ENVELOPE_BYTES
}

/// One thing wrong with a parsed config, located by its key path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// Where the problem is, e.g. `gateways[1].token_sha256`.
    pub path: String,
    /// What is wrong, e.g. `expected 64 hex characters`.
    pub message: String,
}

impl ConfigProblem {
    pub(crate) fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigProblem {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Why a config file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: cannot read")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML or does not fit the schema (unknown key, wrong type).
    #[error("{path}:{line}:{column}: {message}")]
    Parse {
        path: PathBuf,
        /// 1-based line of the offending text (1 when unknown).
        line: usize,
        /// 1-based column of the offending text (1 when unknown).
        column: usize,
        message: String,
    },
    /// The file parsed but failed validation; every problem is listed.
    #[error("{path}: {} problem(s): {}", problems.len(), join_problems(problems))]
    Invalid {
        path: PathBuf,
        problems: Vec<ConfigProblem>,
    },
}

fn join_problems(problems: &[ConfigProblem]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

impl SinkConfig {
    /// Reads, parses and validates the config at `path`; teacher paths are
    /// made relative to the file's folder (not the working directory).
    pub fn load(path: impl AsRef<Path>) -> Result<SinkConfig, ConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut config = SinkConfig::parse(path, &text)?;
        let base = path.parent().unwrap_or(Path::new(""));
        for t in &mut config.teachers {
            t.resolve_paths(base);
        }
        if let Some(tls) = &mut config.tls {
            tls.resolve_paths(base);
        }
        if let Some(tls) = &mut config.store.tls {
            tls.resolve_paths(base);
        }
        config.validate().map_err(|problems| ConfigError::Invalid {
            path: path.to_owned(),
            problems,
        })?;
        Ok(config)
    }

    /// Parses TOML text without validating it; `path` is only used in errors.
    pub fn parse(path: &Path, text: &str) -> Result<SinkConfig, ConfigError> {
        toml::from_str(text).map_err(|e| {
            let (line, column) = e
                .span()
                .map(|span| line_column(text, span.start))
                .unwrap_or((1, 1));
            ConfigError::Parse {
                path: path.to_owned(),
                line,
                column,
                message: e.message().to_owned(),
            }
        })
    }

    /// Checks everything serde cannot; returns every problem found, not just the first.
    pub fn validate(&self) -> Result<(), Vec<ConfigProblem>> {
        let mut problems = Vec::new();

        if let Err(e) = self.listen.parse::<SocketAddr>() {
            problems.push(ConfigProblem::new(
                "listen",
                format!("expected a socket address like 127.0.0.1:8080 ({e})"),
            ));
        }
        self.store.check(&self.data_dir, &mut problems);
        let max = self.limits.max_body_bytes;
        if !(1..=wire::MAX_ENVELOPE_BYTES).contains(&max) {
            problems.push(ConfigProblem::new(
                "limits.max_body_bytes",
                format!(
                    "must be between 1 and {} bytes, got {max}",
                    wire::MAX_ENVELOPE_BYTES
                ),
            ));
        }

        let rate = self.limits.batches_per_second;
        if !(rate.is_finite() && rate >= 0.0) {
            problems.push(ConfigProblem::new(
                "limits.batches_per_second",
                format!("must be 0 (no limit) or a positive number, got {rate}"),
            ));
        }
        if self.limits.burst == 0 {
            problems.push(ConfigProblem::new("limits.burst", "must be at least 1"));
        }
        gateways::check(&self.gateways, &mut problems);
        if let Some(tls) = &self.tls {
            tls.check(&mut problems);
        }
        let pins = self.gateways.iter().any(|g| !g.cert_sha256.0.is_empty());
        if pins && self.tls.as_ref().is_none_or(|t| t.client_ca_file.is_none()) {
            problems.push(ConfigProblem::new(
                "gateways",
                "cert_sha256 needs [tls] client_ca_file (client certificates are only seen with mTLS)",
            ));
        }
        teachers::check(&self.teachers, &mut problems);
        for p in self.telemetry.problems("telemetry") {
            problems.push(ConfigProblem::new(p.key, p.message));
        }

        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }

    /// The listen address. Only meaningful after [`SinkConfig::validate`] succeeded.
    pub fn listen_addr(&self) -> Result<SocketAddr, std::net::AddrParseError> {
        self.listen.parse()
    }
}

/// 1-based (line, column) of byte `offset` in `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

#[cfg(test)]
mod store_tls_tests;
#[cfg(test)]
mod tests;
