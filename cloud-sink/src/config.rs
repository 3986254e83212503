//! The sink's TOML configuration: parsing (strict, unknown keys rejected) and a
//! second validation pass that reports every problem at once with its key path.
//!
//! This module only reads and checks the file; it opens no sockets, no store
//! and no model (teacher models are loaded by [`crate::teacher`] at start-up).

mod store;
mod teachers;

pub use store::{is_identifier, redact_url, Backend, PgSettings, StoreConfig};
pub use teachers::TeacherConfig;

use std::collections::HashSet;
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
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
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
    /// The gateways allowed to post batches, each with its token hash.
    #[serde(default)]
    pub gateways: Vec<GatewayConfig>,
    /// Teacher models re-judging escalations, one per judgement series; none
    /// by default (escalations are then stored without a teacher verdict).
    #[serde(default)]
    pub teachers: Vec<TeacherConfig>,
}

/// Limits applied before any parsing of untrusted input.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Largest accepted `POST /v1/batches` body, in bytes.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: default_max_body_bytes(),
        }
    }
}

fn default_max_body_bytes() -> usize {
    wire::MAX_ENVELOPE_BYTES
}

/// One gateway allowed to post batches.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    /// The gateway id; must equal the `gateway` field of every envelope it sends.
    pub id: String,
    /// Hex SHA-256 of the gateway's bearer token (the token itself is never stored).
    pub token_sha256: String,
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

/// Largest accepted gateway id length.
const MAX_GATEWAY_ID_LEN: usize = 64;

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

        if self.gateways.is_empty() {
            problems.push(ConfigProblem::new(
                "gateways",
                "at least one [[gateways]] entry is required",
            ));
        }
        let mut seen = HashSet::new();
        for (i, gw) in self.gateways.iter().enumerate() {
            let id_path = format!("gateways[{i}].id");
            if gw.id.is_empty() {
                problems.push(ConfigProblem::new(&id_path, "must not be empty"));
            } else if !is_valid_gateway_id(&gw.id) {
                problems.push(ConfigProblem::new(
                    &id_path,
                    format!(
                        "{:?} must be 1-{MAX_GATEWAY_ID_LEN} characters of A-Z a-z 0-9 . _ -",
                        gw.id
                    ),
                ));
            }
            if !gw.id.is_empty() && !seen.insert(gw.id.as_str()) {
                problems.push(ConfigProblem::new(
                    &id_path,
                    format!("duplicate gateway id {:?}", gw.id),
                ));
            }
            if parse_sha256_hex(&gw.token_sha256).is_none() {
                problems.push(ConfigProblem::new(
                    format!("gateways[{i}].token_sha256"),
                    "expected 64 hex characters (the SHA-256 of the token)",
                ));
            }
        }

        teachers::check(&self.teachers, &mut problems);

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

/// True when `id` is 1-64 characters of `[A-Za-z0-9._-]`.
pub fn is_valid_gateway_id(id: &str) -> bool {
    (1..=MAX_GATEWAY_ID_LEN).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Decodes a 64-character hex SHA-256 (either case); `None` if malformed.
pub fn parse_sha256_hex(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    hex::decode_to_slice(text, &mut out).ok()?;
    Some(out)
}

/// 1-based (line, column) of byte `offset` in `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

#[cfg(test)]
mod tests;
