//! Observability shared by `edge-agent` and `cloud-sink`, and the only user of
//! the OpenTelemetry crates: the `[telemetry]` config section, a metrics
//! registry ([`Metrics`]) that is the single source of truth for both the
//! Prometheus text exposition and OTLP metrics, and [`init`], which installs
//! the tracing subscriber (fmt + `EnvFilter` + OpenTelemetry layer) and the
//! OTLP/HTTP (protobuf) exporters.
//!
//! What it does not do: decide what a binary measures, serve HTTP (a binary
//! routes `GET /metrics` to [`Metrics::encode_prometheus`]), or export logs.
//!
//! # Names
//!
//! `Metrics::new("cloud_sink").counter("batches", ..)` is exported over OTLP
//! as the monotonic sum `cloud_sink_batches` and in Prometheus text as
//! `cloud_sink_batches_total`; gauges and histograms keep their name
//! (`_bucket`, `_sum`, `_count` in Prometheus). Label names become attribute
//! keys. Counters and gauges are read at each OTLP export (observable
//! instruments); a histogram records into both sides as it is observed, from
//! [`init`] on (observations made before it are only in Prometheus).
//!
//! # Adopting it in a binary (e.g. `edge-agent`)
//!
//! ```toml
//! # Cargo.toml
//! telemetry = { workspace = true }
//! ```
//! ```ignore
//! // config: a section beside the others, validated with the rest
//! #[serde(default)]
//! pub telemetry: telemetry::TelemetryConfig,
//! // ... in validation: for p in config.telemetry.problems("telemetry") { push(p.key, p.message) }
//!
//! // main.rs: replaces `tracing_subscriber::fmt()...init()`; keep the guard until exit
//! let metrics = telemetry::Metrics::new("edge_agent");
//! let log = telemetry::LogOptions { stderr: false, with_target: false, ..Default::default() };
//! let _telemetry = telemetry::init("edge-agent", &settings.telemetry, &log, &metrics)?;
//! // hand `metrics` (cheap to clone) to the pipeline; register instruments once:
//! let ingested = metrics.counter_vec("messages", "MQTT messages by outcome", &["outcome"]);
//! ingested.with(&["ok"]).inc();
//! let lag = metrics.gauge("sync_lag_seconds", "Age of the oldest unsent batch");
//! let infer = metrics.histogram("inference_seconds", "Model latency", telemetry::LATENCY_BUCKETS);
//! // and, if it serves HTTP, answer GET /metrics with
//! // (telemetry::PROMETHEUS_CONTENT_TYPE, metrics.encode_prometheus())
//! ```
//!
//! Spans are ordinary `tracing` spans (`tracing::info_span!("ingest.batch", gateway = %id)`);
//! every span passing the filter (`RUST_LOG`) is exported when
//! `otlp_endpoint` is set. `otel.kind = "server"` sets a span's kind.

mod config;
mod exposition;
mod metrics;
mod otlp;
mod setup;
#[cfg(feature = "testing")]
pub mod testing;

pub use config::{TelemetryConfig, TelemetryProblem, MAX_EXPORT_INTERVAL, MIN_EXPORT_INTERVAL};
pub use metrics::{
    Counter, CounterVec, Gauge, GaugeVec, Histogram, HistogramVec, Metrics, LATENCY_BUCKETS,
    PROMETHEUS_CONTENT_TYPE,
};
pub use setup::{init, LogOptions, TelemetryError, TelemetryGuard};
