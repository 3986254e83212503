//! [`init`]: installs the process's tracing subscriber (fmt + `EnvFilter`,
//! plus a `tracing-opentelemetry` layer when OTLP is on), builds the tracer
//! and meter providers with OTLP/HTTP (protobuf) exporters, bridges a
//! [`Metrics`] registry to the meter; [`TelemetryGuard`] flushes and shuts
//! them down on drop.
//!
//! The exporters use a blocking reqwest client (rustls only) on the SDK's own
//! threads, so no async runtime is needed and none is blocked. Nothing here
//! decides what is measured.

use std::time::Duration;

use opentelemetry::metrics::MeterProvider as _;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry::KeyValue;
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::trace::{BatchConfigBuilder, BatchSpanProcessor, SdkTracerProvider};
use opentelemetry_sdk::Resource;
use tracing_subscriber::fmt::writer::BoxMakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::{TelemetryConfig, TelemetryProblem};
use crate::metrics::Metrics;

/// How long one export request may take.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// How the terminal log lines look.
#[derive(Debug, Clone)]
pub struct LogOptions {
    /// The filter when `RUST_LOG` is unset (or not read), e.g. `info`.
    pub default_filter: String,
    /// Read `RUST_LOG` (else `default_filter` always applies, as tests want).
    pub from_env: bool,
    /// Write to stderr (else stdout).
    pub stderr: bool,
    /// Show each event's target (module path).
    pub with_target: bool,
}

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions {
            default_filter: "info".to_owned(),
            from_env: true,
            stderr: true,
            with_target: true,
        }
    }
}

/// Why telemetry could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The `[telemetry]` section is invalid (every problem is listed).
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<TelemetryProblem>),
    /// The HTTP client for the exporters could not be built.
    #[error("building the OTLP HTTP client")]
    Client(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// An OTLP exporter could not be built.
    #[error("building the OTLP {signal} exporter")]
    Exporter {
        /// `traces` or `metrics`.
        signal: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A global tracing subscriber was already installed.
    #[error("installing the tracing subscriber")]
    Subscriber(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Keeps the exporters running; dropping it flushes pending spans and metrics
/// (a final export) and shuts the providers down. Hold it in `main` until exit.
#[must_use = "dropping the guard stops the export"]
pub struct TelemetryGuard {
    providers: Option<(SdkTracerProvider, SdkMeterProvider)>,
    metrics: Metrics,
}

impl std::fmt::Debug for TelemetryGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TelemetryGuard")
            .field("otlp", &self.providers.is_some())
            .finish_non_exhaustive()
    }
}

impl TelemetryGuard {
    /// Whether spans and metrics are exported over OTLP.
    pub fn exporting(&self) -> bool {
        self.providers.is_some()
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        let Some((tracer, meter)) = self.providers.take() else {
            return;
        };
        self.metrics.bridge().detach();
        // Shutting down waits for the final exports; on a thread of its own
        // so that a guard dropped inside an async runtime blocks no reactor
        // and drops the blocking HTTP client outside of it.
        let done = std::thread::Builder::new()
            .name("otel-shutdown".into())
            .spawn(move || {
                if let Err(e) = tracer.shutdown() {
                    eprintln!("telemetry: flushing spans failed: {e}");
                }
                if let Err(e) = meter.shutdown() {
                    eprintln!("telemetry: flushing metrics failed: {e}");
                }
            });
        if let Ok(handle) = done {
            let _ = handle.join();
        }
    }
}

/// Installs the global tracing subscriber and, when `config.otlp_endpoint` is
/// set, OTLP/HTTP export of spans (every `tracing` span that passes the
/// filter) and of `metrics`. `service_name` is used unless the config names one.
pub fn init(
    service_name: &str,
    config: &TelemetryConfig,
    log: &LogOptions,
    metrics: &Metrics,
) -> Result<TelemetryGuard, TelemetryError> {
    config
        .validate("telemetry")
        .map_err(TelemetryError::Invalid)?;
    let providers = match (config.traces_url(), config.metrics_url()) {
        (Some(traces), Some(metrics_url)) => {
            Some(providers(service_name, config, &traces, &metrics_url)?)
        }
        _ => None,
    };
    let from_env = log
        .from_env
        .then(EnvFilter::try_from_default_env)
        .and_then(Result::ok);
    let filter = from_env.unwrap_or_else(|| EnvFilter::new(&log.default_filter));
    let writer = if log.stderr {
        BoxMakeWriter::new(std::io::stderr)
    } else {
        BoxMakeWriter::new(std::io::stdout)
    };
    let ansi = if log.stderr {
        std::io::IsTerminal::is_terminal(&std::io::stderr())
    } else {
        std::io::IsTerminal::is_terminal(&std::io::stdout())
    };
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .with_ansi(ansi)
        .with_target(log.with_target);
    let otel = providers.as_ref().map(|(tracer, _)| {
        tracing_opentelemetry::layer()
            .with_tracer(tracer.tracer("telemetry"))
            .with_filter(tracing_subscriber::filter::filter_fn(|meta| {
                !is_export_machinery(meta.target())
            }))
    });
    tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .with(otel)
        .try_init()
        .map_err(|e| TelemetryError::Subscriber(Box::new(e)))?;
    if let Some((_, meter)) = &providers {
        metrics.bridge().attach(meter.meter("telemetry"));
    }
    Ok(TelemetryGuard {
        providers,
        metrics: metrics.clone(),
    })
}

/// Spans of the HTTP stack the exporters themselves use are never exported
/// (exporting them would make more of them).
fn is_export_machinery(target: &str) -> bool {
    ["hyper", "reqwest", "h2", "tower", "opentelemetry"]
        .iter()
        .any(|p| target.starts_with(p))
}

fn providers(
    service_name: &str,
    config: &TelemetryConfig,
    traces_url: &str,
    metrics_url: &str,
) -> Result<(SdkTracerProvider, SdkMeterProvider), TelemetryError> {
    let name = config.service_name.as_deref().unwrap_or(service_name);
    let resource = Resource::builder()
        .with_service_name(name.to_owned())
        .with_attributes(
            config
                .resource
                .iter()
                .map(|(k, v)| KeyValue::new(k.clone(), v.clone())),
        )
        .build();
    let client = http_client()?;

    let spans = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(client.clone())
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(traces_url)
        .with_timeout(EXPORT_TIMEOUT)
        .build()
        .map_err(|e| TelemetryError::Exporter {
            signal: "traces",
            source: Box::new(e),
        })?;
    let batch = BatchConfigBuilder::default()
        .with_scheduled_delay(config.export_interval)
        .build();
    let tracer = SdkTracerProvider::builder()
        .with_span_processor(
            BatchSpanProcessor::builder(spans)
                .with_batch_config(batch)
                .build(),
        )
        .with_resource(resource.clone())
        .build();

    let exporter = opentelemetry_otlp::MetricExporter::builder()
        .with_http()
        .with_http_client(client)
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(metrics_url)
        .with_timeout(EXPORT_TIMEOUT)
        .build()
        .map_err(|e| TelemetryError::Exporter {
            signal: "metrics",
            source: Box::new(e),
        })?;
    let reader = PeriodicReader::builder(exporter)
        .with_interval(config.export_interval)
        .build();
    let meter = SdkMeterProvider::builder()
        .with_reader(reader)
        .with_resource(resource)
        .build();
    Ok((tracer, meter))
}

/// The exporters' HTTP client: blocking reqwest with rustls (the only TLS
/// stack compiled in). Built on a thread of its own: a blocking client may not
/// be made inside an async runtime.
fn http_client() -> Result<reqwest::blocking::Client, TelemetryError> {
    std::thread::spawn(|| {
        reqwest::blocking::Client::builder()
            .use_rustls_tls()
            .timeout(EXPORT_TIMEOUT)
            .build()
    })
    .join()
    .map_err(|_| TelemetryError::Client("the client-building thread panicked".into()))?
    .map_err(|e| TelemetryError::Client(Box::new(e)))
}
