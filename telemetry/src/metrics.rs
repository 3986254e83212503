//! `Metrics`, our registry: counters, gauges and histograms (each a family
//! with fixed label names) kept in `prometheus-client` atomics, which are the
//! single source of truth. Encodes the Prometheus text exposition (format
//! 0.0.4).
//!
//! It does not export anything by itself: `GET /metrics` handlers call
//! [`Metrics::encode_prometheus`], and `otlp.rs` reads the same atomics for
//! OpenTelemetry once [`crate::init`] attaches a meter.

use std::fmt;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use prometheus_client::metrics::counter::Counter as PromCounter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge as PromGauge;
use prometheus_client::metrics::histogram::Histogram as PromHistogram;
use prometheus_client::registry::Registry;

use crate::otlp::{Bridge, Instrument};

/// The content type of [`Metrics::encode_prometheus`]'s text.
pub const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// One label set: (name, value) pairs in the family's label-name order.
pub(crate) type Labels = Vec<(&'static str, String)>;

pub(crate) type CounterFamily = Family<Labels, PromCounter<u64, AtomicU64>>;
pub(crate) type GaugeFamily = Family<Labels, PromGauge<f64, AtomicU64>>;
pub(crate) type HistogramFamily = Family<Labels, PromHistogram, Buckets>;

/// The label sets a family has seen, so the OTLP side can walk them
/// (prometheus-client families do not expose iteration).
pub(crate) type Known = Arc<RwLock<Vec<Labels>>>;

/// A registry of instruments, cheap to clone (all clones share it).
///
/// Every name gets the registry's prefix: `Metrics::new("cloud_sink")` and
/// `counter("batches", ..)` give the OTLP metric `cloud_sink_batches` and the
/// Prometheus series `cloud_sink_batches_total`.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    prefix: String,
    registry: Mutex<Registry>,
    bridge: Mutex<Bridge>,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics")
            .field("prefix", &self.inner.prefix)
            .finish_non_exhaustive()
    }
}

impl Metrics {
    /// An empty registry whose names start with `prefix` (`[a-zA-Z_][a-zA-Z0-9_]*`).
    pub fn new(prefix: &str) -> Metrics {
        Metrics {
            inner: Arc::new(Inner {
                prefix: prefix.to_owned(),
                registry: Mutex::new(Registry::with_prefix(prefix)),
                bridge: Mutex::new(Bridge::default()),
            }),
        }
    }

    /// A monotonically increasing count without labels.
    pub fn counter(&self, name: &str, help: &str) -> Counter {
        self.counter_vec(name, help, &[]).with(&[])
    }

    /// A count per label set, e.g. `counter_vec("batches", "..", &["outcome"])`.
    pub fn counter_vec(
        &self,
        name: &str,
        help: &str,
        labels: &'static [&'static str],
    ) -> CounterVec {
        let family = CounterFamily::default();
        let known = Known::default();
        self.register(name, help, family.clone(), |full| Instrument::Counter {
            name: full,
            help: help.to_owned(),
            family: family.clone(),
            known: known.clone(),
        });
        CounterVec {
            family,
            names: labels,
            known,
        }
    }

    /// A value that goes up and down (f64) without labels.
    pub fn gauge(&self, name: &str, help: &str) -> Gauge {
        self.gauge_vec(name, help, &[]).with(&[])
    }

    /// A gauge per label set.
    pub fn gauge_vec(&self, name: &str, help: &str, labels: &'static [&'static str]) -> GaugeVec {
        let family = GaugeFamily::default();
        let known = Known::default();
        self.register(name, help, family.clone(), |full| Instrument::Gauge {
            name: full,
            help: help.to_owned(),
            family: family.clone(),
            known: known.clone(),
        });
        GaugeVec {
            family,
            names: labels,
            known,
        }
    }

    /// A distribution over `buckets` (upper bounds, ascending), per label set.
    /// Observations go to the Prometheus histogram and, once OTLP is on, to an
    /// OpenTelemetry histogram with the same bounds.
    pub fn histogram_vec(
        &self,
        name: &str,
        help: &str,
        labels: &'static [&'static str],
        buckets: &[f64],
    ) -> HistogramVec {
        let buckets = Buckets(buckets.into());
        let family = HistogramFamily::new_with_constructor(buckets.clone());
        let mirror = Mirror::default();
        self.register(name, help, family.clone(), |full| Instrument::Histogram {
            name: full,
            help: help.to_owned(),
            buckets: buckets.0.to_vec(),
            mirror: mirror.clone(),
        });
        HistogramVec {
            family,
            names: labels,
            mirror,
        }
    }

    /// A histogram without labels (exported with zero observations from now on).
    pub fn histogram(&self, name: &str, help: &str, buckets: &[f64]) -> Histogram {
        let vec = self.histogram_vec(name, help, &[], buckets);
        drop(vec.family.get_or_create(&Vec::new()));
        Histogram(vec)
    }

    fn register(
        &self,
        name: &str,
        help: &str,
        metric: impl prometheus_client::registry::Metric,
        instrument: impl FnOnce(String) -> Instrument,
    ) {
        // prometheus-client ends every help text with a full stop of its own.
        let help = help.trim_end().trim_end_matches('.');
        lock(&self.inner.registry).register(name, help, metric);
        let full = format!("{}_{name}", self.inner.prefix);
        lock(&self.inner.bridge).add(instrument(full));
    }

    pub(crate) fn bridge(&self) -> std::sync::MutexGuard<'_, Bridge> {
        lock(&self.inner.bridge)
    }

    /// The Prometheus text exposition (format 0.0.4, [`PROMETHEUS_CONTENT_TYPE`])
    /// of every instrument.
    pub fn encode_prometheus(&self) -> String {
        let mut open_metrics = String::new();
        let registry = lock(&self.inner.registry);
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode_registry(&mut open_metrics, &registry);
        drop(registry);
        crate::exposition::to_prometheus_text(&open_metrics)
    }
}

/// A lock that survives a panicked holder: every value behind ours is
/// consistent after any single operation.
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Makes the label set for `values` (one per name; missing values are empty,
/// extra ones ignored) and remembers it for the OTLP side.
fn labels_of(names: &'static [&'static str], values: &[&str], known: &Known) -> Labels {
    let labels = label_set(names, values);
    let seen = known
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .contains(&labels);
    if !seen {
        let mut all = known.write().unwrap_or_else(PoisonError::into_inner);
        if !all.contains(&labels) {
            all.push(labels.clone());
        }
    }
    labels
}

/// The label set of `values` for the label `names` (pairs in name order).
fn label_set(names: &'static [&'static str], values: &[&str]) -> Labels {
    names
        .iter()
        .enumerate()
        .map(|(i, n)| (*n, values.get(i).copied().unwrap_or("").to_owned()))
        .collect()
}

/// A counter of one label set (a clone shares the count).
#[derive(Debug, Clone, Default)]
pub struct Counter(PromCounter<u64, AtomicU64>);

impl Counter {
    /// Adds one.
    pub fn inc(&self) {
        self.0.inc();
    }
    /// Adds `n`.
    pub fn inc_by(&self, n: u64) {
        self.0.inc_by(n);
    }
    /// The current count.
    pub fn get(&self) -> u64 {
        self.0.get()
    }
}

/// Counters by label values.
#[derive(Debug, Clone)]
pub struct CounterVec {
    family: CounterFamily,
    names: &'static [&'static str],
    known: Known,
}

impl CounterVec {
    /// The counter of these label values (created at 0, so it is exported
    /// from then on even before its first increment).
    pub fn with(&self, values: &[&str]) -> Counter {
        let labels = labels_of(self.names, values, &self.known);
        Counter(self.family.get_or_create_owned(&labels))
    }
}

/// A gauge of one label set.
#[derive(Debug, Clone, Default)]
pub struct Gauge(PromGauge<f64, AtomicU64>);

impl Gauge {
    /// Sets the value.
    pub fn set(&self, v: f64) {
        self.0.set(v);
    }
    /// The current value.
    pub fn get(&self) -> f64 {
        self.0.get()
    }
}

/// Gauges by label values.
#[derive(Debug, Clone)]
pub struct GaugeVec {
    family: GaugeFamily,
    names: &'static [&'static str],
    known: Known,
}

impl GaugeVec {
    /// The gauge of these label values (created at 0).
    pub fn with(&self, values: &[&str]) -> Gauge {
        let labels = labels_of(self.names, values, &self.known);
        Gauge(self.family.get_or_create_owned(&labels))
    }
}

/// The OpenTelemetry histogram a [`HistogramVec`] also records into, once
/// OTLP is on (replaced if telemetry is set up again).
pub(crate) type Mirror = Arc<RwLock<Option<opentelemetry::metrics::Histogram<f64>>>>;

/// Histograms by label values; each observation goes to both sides.
#[derive(Clone)]
pub struct HistogramVec {
    family: HistogramFamily,
    names: &'static [&'static str],
    mirror: Mirror,
}

impl fmt::Debug for HistogramVec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HistogramVec")
            .field("names", &self.names)
            .finish_non_exhaustive()
    }
}

impl HistogramVec {
    /// Records `v` for these label values.
    pub fn observe(&self, values: &[&str], v: f64) {
        let labels = label_set(self.names, values);
        self.family.get_or_create(&labels).observe(v);
        let mirror = self.mirror.read().unwrap_or_else(PoisonError::into_inner);
        if let Some(otel) = mirror.as_ref() {
            otel.record(v, &crate::otlp::attributes(&labels));
        }
    }
}

/// A histogram without labels.
#[derive(Debug, Clone)]
pub struct Histogram(HistogramVec);

impl Histogram {
    /// Records `v`.
    pub fn observe(&self, v: f64) {
        self.0.observe(&[], v);
    }
}

/// Bucket bounds a histogram family makes its members with.
#[derive(Debug, Clone)]
pub(crate) struct Buckets(Arc<[f64]>);

impl MetricConstructor<PromHistogram> for Buckets {
    fn new_metric(&self) -> PromHistogram {
        PromHistogram::new(self.0.iter().copied())
    }
}

/// Bucket bounds in seconds for latencies from 100 µs to 10 s.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

#[cfg(test)]
mod tests;
