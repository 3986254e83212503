//! The agent's configuration file: what users write (TOML, unknown keys rejected).
//!
//! This layer only describes the file; `validate.rs` checks it as a whole and
//! produces the typed [`Settings`] the agent runs with. Secrets never live here:
//! tokens and passwords are named by environment variable or file.

mod models;
mod templates;
mod validate;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::decode::{Format, TimeUnit};

pub use models::{LogModelConfig, ModelsConfig, SensorModelConfig};
pub use templates::TemplatesConfig;
pub use validate::{Problem, Route, Settings};

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// This gateway's id at the sink.
    pub gateway_id: String,
    /// Directory of the durable journal and outbox.
    pub data_dir: PathBuf,
    pub mqtt: MqttConfig,
    pub routes: Vec<RouteConfig>,
    #[serde(default)]
    pub window: WindowConfig,
    #[serde(default)]
    pub limits: LimitsConfig,
    pub uplink: UplinkConfig,
    #[serde(default)]
    pub journal: JournalConfig,
    #[serde(default)]
    pub outbox: OutboxConfig,
    /// Models that classify windows (none by default).
    #[serde(default)]
    pub models: ModelsConfig,
    /// Template mining of log lines (off by default).
    #[serde(default)]
    pub templates: TemplatesConfig,
    /// Where to serve Prometheus text on `GET /metrics` (`ip:port`, e.g.
    /// `127.0.0.1:9464`); off when absent. A top-level key: the shared
    /// `[telemetry]` section rejects keys the sink does not use.
    #[serde(default)]
    pub metrics_listen: Option<String>,
    /// OpenTelemetry export (OTLP/HTTP); off unless `otlp_endpoint` is set.
    #[serde(default)]
    pub telemetry: telemetry::TelemetryConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttConfig {
    #[serde(default = "defaults::host")]
    pub host: String,
    #[serde(default = "defaults::port")]
    pub port: u16,
    pub client_id: String,
    /// Topic filters to subscribe to (QoS 1).
    pub subscribe: Vec<String>,
    #[serde(default = "defaults::keep_alive", with = "humantime_serde")]
    pub keep_alive: Duration,
    #[serde(default = "defaults::max_packet_size")]
    pub max_packet_size: usize,
    #[serde(default)]
    pub username: Option<String>,
    /// Environment variable holding the MQTT password.
    #[serde(default)]
    pub password_env: Option<String>,
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    #[serde(default = "defaults::reconnect_min", with = "humantime_serde")]
    pub reconnect_min: Duration,
    #[serde(default = "defaults::reconnect_max", with = "humantime_serde")]
    pub reconnect_max: Duration,
}

/// A TLS client identity and trust (`[mqtt.tls]`, `[uplink.tls]`). Paths are
/// used as written (relative ones against the working directory).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file of the CA(s) that signed the server's certificate; only these are trusted.
    pub ca_file: PathBuf,
    /// PEM client certificate and key, for mTLS.
    #[serde(default)]
    pub client_cert_file: Option<PathBuf>,
    #[serde(default)]
    pub client_key_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Topic filter this route handles (first matching route wins).
    pub topic: String,
    pub format: Format,
    #[serde(default = "defaults::device_segment")]
    pub device_segment: usize,
    #[serde(default = "defaults::time_field")]
    pub time_field: String,
    #[serde(default)]
    pub time_unit: Option<TimeUnit>,
    #[serde(default)]
    pub seq_field: Option<String>,
    #[serde(default = "defaults::device_tag")]
    pub device_tag: String,
    /// `format = "sparkplug"` only: ask an edge node whose data the agent
    /// cannot read (no birth seen, unknown alias) for a rebirth with an NCMD.
    /// Default true; false where the agent must not write to the plant.
    #[serde(default)]
    pub request_rebirth: Option<bool>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowConfig {
    #[serde(default = "defaults::width", with = "humantime_serde")]
    pub width: Duration,
    #[serde(default = "defaults::lateness", with = "humantime_serde")]
    pub allowed_lateness: Duration,
    #[serde(default = "defaults::idle_close", with = "humantime_serde")]
    pub idle_close: Duration,
    #[serde(default = "defaults::alpha")]
    pub sketch_alpha: f64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    #[serde(default = "defaults::max_payload_bytes")]
    pub max_payload_bytes: usize,
    #[serde(default = "defaults::max_name_bytes")]
    pub max_name_bytes: usize,
    #[serde(default = "defaults::max_series")]
    pub max_series: usize,
    #[serde(default = "defaults::max_future", with = "humantime_serde")]
    pub max_future_skew: Duration,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UplinkConfig {
    /// Base URL of cloud-sink, e.g. `https://sink.example.com`.
    pub url: String,
    /// Environment variable holding this gateway's bearer token.
    #[serde(default)]
    pub token_env: Option<String>,
    /// File holding this gateway's bearer token (first line).
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// HTTPS to the sink with a private CA and, optionally, a client
    /// certificate (mTLS). Without it an `https://` url is checked against the
    /// public web roots built into the agent.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    #[serde(default = "defaults::batch_interval", with = "humantime_serde")]
    pub batch_interval: Duration,
    /// Loss and health counts with no window to ride with (a stream of only
    /// malformed messages, over-budget escalations between window ends) are
    /// sent on their own at most this often. They are durable on the gateway
    /// from the commit that counted them; this only bounds how late the sink
    /// sees them (never sooner than the next cut, `batch_interval`). Each such
    /// batch costs ~300 bytes on the uplink.
    #[serde(default = "defaults::counters_interval", with = "humantime_serde")]
    pub counters_interval: Duration,
    #[serde(default = "defaults::max_windows_per_batch")]
    pub max_windows_per_batch: usize,
    #[serde(default = "defaults::request_timeout", with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Slowest uplink (bytes/s) a batch must still get through: each request's
    /// timeout is `request_timeout` plus the batch's size at this rate, so a
    /// large batch on a slow link is not cut off and retried forever.
    #[serde(default = "defaults::min_link_rate")]
    pub min_link_rate: u64,
    #[serde(default = "defaults::retry_min", with = "humantime_serde")]
    pub retry_min: Duration,
    #[serde(default = "defaults::retry_max", with = "humantime_serde")]
    pub retry_max: Duration,
    /// How batches travel: "gzip" (default; the sink inflates them) or "none".
    #[serde(default)]
    pub compression: Compression,
    /// Window values (sum, min, max, mean, stddev, quantiles, first, last)
    /// travel rounded to within this relative error: 0.0001 keeps 20.00 °C
    /// within 0.002 °C (measured: a 1 Hz fleet's uplink 73–77× smaller than
    /// its raw JSON with the models on, BENCHMARKS.md). 0 sends them exact
    /// (~3× the bytes).
    /// Counts, times, names and verdict counts are always exact (a verdict's
    /// score and confidence are rounded like the values), and so is a series
    /// whose readings and sums are integers rounding would change (counters,
    /// meters). At most 0.01 (the quantile sketch's own default error).
    #[serde(default = "defaults::relative_error")]
    pub relative_error: f64,
}

impl UplinkConfig {
    /// The body encoding batches are sealed with (schema version 4).
    pub fn body_encoding(&self) -> wire::BodyEncoding {
        wire::BodyEncoding::Columnar {
            relative_error: self.relative_error,
        }
    }
}

/// Transport compression of batches on the uplink.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// `Content-Encoding: gzip`: CBOR summaries shrink several-fold.
    #[default]
    Gzip,
    /// The sealed bytes as they are (for a proxy in between that cannot pass gzip).
    None,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JournalConfig {
    /// Most messages made durable (and then acked) by one group commit.
    #[serde(default = "defaults::commit_max_messages")]
    pub commit_max_messages: usize,
    /// How long a group commit may wait, after its first message, for more
    /// while they keep arriving (it stops at the first 2 ms without one, or
    /// at `commit_max_messages`). Each commit costs a write and an fdatasync
    /// whatever its size, so at low rates this is most of the agent's CPU;
    /// acks are delayed by at most this. `0ms` commits whatever is queued.
    #[serde(default = "defaults::commit_linger", with = "humantime_serde")]
    pub commit_linger: Duration,
    /// Queue between the MQTT client and the pipeline (messages).
    #[serde(default = "defaults::queue_capacity")]
    pub queue_capacity: usize,
    /// Capacity of sled's page cache (bytes) for the outbox and bookkeeping
    /// (the journal is a log of its own); RSS grows with the store up to it.
    /// Since the journal left sled, 4–16 MiB cost no CPU at 10k msg/s
    /// (BENCHMARKS.md). Default [`crate::store::DEFAULT_CACHE_BYTES`] (sled's own, 1 GiB).
    #[serde(default = "defaults::cache_bytes")]
    pub cache_bytes: u64,
    /// Journal growth (bytes) since the last checkpoint at which a cut
    /// checkpoints the open windows and lets the journal go below it.
    /// Without checkpoints the journal keeps a window's every message until
    /// the window ships (60 s at 30k msg/s is ~0.5 GB, past the store cap).
    /// A checkpoint writes every open window (~0.5 KiB each), so small values
    /// cost more than they save. `0`: at every cut that follows new messages.
    #[serde(default = "defaults::checkpoint_bytes")]
    pub checkpoint_bytes: u64,
}

/// How much disk the outbox may use while the uplink is down.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboxConfig {
    /// Cap on the store's disk use (journal, outbox, sled's own overhead and
    /// the store's ballast, 1/16 of it) while the uplink is down. Near the
    /// cap, old windows are rolled up into coarser ones (counted as
    /// `rolled_up`); only when all are at `max_rollup_width` are the oldest
    /// dropped (counted as `outbox_full`). sled keeps stale copies until it
    /// cleans, so the batches themselves start with a sixth of it.
    #[serde(default = "defaults::outbox_max_bytes")]
    pub max_bytes: u64,
    /// Coarsest window a roll-up may produce.
    #[serde(default = "defaults::max_rollup_width", with = "humantime_serde")]
    pub max_rollup_width: Duration,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        toml::from_str("").expect("outbox defaults")
    }
}

impl Default for WindowConfig {
    fn default() -> Self {
        toml::from_str("").expect("window defaults")
    }
}
impl Default for LimitsConfig {
    fn default() -> Self {
        toml::from_str("").expect("limits defaults")
    }
}
impl Default for JournalConfig {
    fn default() -> Self {
        toml::from_str("").expect("journal defaults")
    }
}

/// Why a config file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}: {} problem(s):\n{}", problems.len(), problems.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
    Invalid {
        path: PathBuf,
        problems: Vec<Problem>,
    },
}

impl AgentConfig {
    /// Parses TOML text (syntax and types only).
    pub fn parse(text: &str) -> Result<AgentConfig, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    /// Reads, parses and validates a config file.
    pub fn load(path: &Path) -> Result<Settings, ConfigError> {
        AgentConfig::read(path)?.settle(path)
    }

    /// Reads and parses a config file (syntax and types only).
    pub fn read(path: &Path) -> Result<AgentConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        AgentConfig::parse(&text).map_err(|message| ConfigError::Parse {
            path: path.to_owned(),
            message,
        })
    }

    /// Validates a config read from `path` and resolves its paths against
    /// the file's directory.
    pub fn settle(&self, path: &Path) -> Result<Settings, ConfigError> {
        let mut settings = self.validate().map_err(|problems| ConfigError::Invalid {
            path: path.to_owned(),
            problems,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        settings.models.resolve_paths(base);
        Ok(settings)
    }
}

mod defaults {
    use std::time::Duration;

    pub fn host() -> String {
        "127.0.0.1".into()
    }
    pub fn port() -> u16 {
        1883
    }
    pub fn keep_alive() -> Duration {
        Duration::from_secs(30)
    }
    pub fn max_packet_size() -> usize {
        1024 * 1024
    }
    pub fn reconnect_min() -> Duration {
        Duration::from_millis(200)
    }
    pub fn reconnect_max() -> Duration {
        Duration::from_secs(30)
    }
    pub fn device_segment() -> usize {
        1
    }
    pub fn time_field() -> String {
        "ts".into()
    }
    pub fn device_tag() -> String {
        "device".into()
    }
    pub fn width() -> Duration {
        Duration::from_secs(60)
    }
    pub fn lateness() -> Duration {
        Duration::from_secs(5)
    }
    pub fn idle_close() -> Duration {
        Duration::from_secs(120)
    }
    pub fn alpha() -> f64 {
        0.01
    }
    pub fn max_payload_bytes() -> usize {
        64 * 1024
    }
    pub fn max_name_bytes() -> usize {
        128
    }
    pub fn max_series() -> usize {
        10_000
    }
    pub fn max_future() -> Duration {
        Duration::from_secs(24 * 3600)
    }
    pub fn batch_interval() -> Duration {
        Duration::from_secs(1)
    }
    pub fn counters_interval() -> Duration {
        Duration::from_secs(60)
    }
    pub fn max_windows_per_batch() -> usize {
        2000
    }
    pub fn relative_error() -> f64 {
        1e-4
    }
    pub fn min_link_rate() -> u64 {
        4 * 1024
    }
    pub fn request_timeout() -> Duration {
        Duration::from_secs(10)
    }
    pub fn retry_min() -> Duration {
        Duration::from_millis(500)
    }
    pub fn retry_max() -> Duration {
        Duration::from_secs(60)
    }
    pub fn commit_max_messages() -> usize {
        1024
    }
    pub fn queue_capacity() -> usize {
        8192
    }
    pub fn commit_linger() -> Duration {
        Duration::from_millis(20)
    }
    pub fn checkpoint_bytes() -> u64 {
        32 << 20
    }
    pub fn cache_bytes() -> u64 {
        crate::store::DEFAULT_CACHE_BYTES
    }
    pub fn outbox_max_bytes() -> u64 {
        256 * 1024 * 1024
    }
    pub fn max_rollup_width() -> Duration {
        Duration::from_secs(24 * 3600)
    }
}
