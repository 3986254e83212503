//! The bridge from our registry to an OpenTelemetry meter: counters and
//! gauges become observable instruments whose callbacks read the
//! prometheus-client atomics at each export; histograms get an OpenTelemetry
//! twin that every observation also records into.
//!
//! It keeps no values of its own and sends nothing: the meter provider made in
//! `setup.rs` collects and exports.

use std::any::Any;
use std::sync::PoisonError;

use opentelemetry::metrics::Meter;
use opentelemetry::KeyValue;

use crate::metrics::{CounterFamily, GaugeFamily, Known, Labels, Mirror};

/// A registered instrument, as the OTLP side needs it.
pub(crate) enum Instrument {
    Counter {
        name: String,
        help: String,
        family: CounterFamily,
        known: Known,
    },
    Gauge {
        name: String,
        help: String,
        family: GaugeFamily,
        known: Known,
    },
    Histogram {
        name: String,
        help: String,
        buckets: Vec<f64>,
        mirror: Mirror,
    },
}

/// Every instrument of a registry and the meter they are bridged to, if any.
/// Instruments registered after [`Bridge::attach`] are bridged at once.
#[derive(Default)]
pub(crate) struct Bridge {
    instruments: Vec<Instrument>,
    meter: Option<Meter>,
    /// The observable instruments, kept alive with the bridge.
    handles: Vec<Box<dyn Any + Send + Sync>>,
}

impl Bridge {
    pub(crate) fn add(&mut self, instrument: Instrument) {
        if let Some(meter) = &self.meter {
            let handle = install(meter, &instrument);
            self.handles.extend(handle);
        }
        self.instruments.push(instrument);
    }

    /// Bridges every instrument to `meter` (replacing an earlier meter).
    pub(crate) fn attach(&mut self, meter: Meter) {
        self.handles.clear();
        for instrument in &self.instruments {
            let handle = install(&meter, instrument);
            self.handles.extend(handle);
        }
        self.meter = Some(meter);
    }

    /// Stops recording into the meter's histograms (its provider is gone).
    pub(crate) fn detach(&mut self) {
        self.meter = None;
        self.handles.clear();
        for instrument in &self.instruments {
            if let Instrument::Histogram { mirror, .. } = instrument {
                *mirror.write().unwrap_or_else(PoisonError::into_inner) = None;
            }
        }
    }
}

/// Creates `instrument`'s OpenTelemetry side on `meter`; returns the handle
/// to keep for observable ones.
fn install(meter: &Meter, instrument: &Instrument) -> Option<Box<dyn Any + Send + Sync>> {
    match instrument {
        Instrument::Counter {
            name,
            help,
            family,
            known,
        } => {
            let (family, known) = (family.clone(), known.clone());
            let counter = meter
                .u64_observable_counter(name.clone())
                .with_description(help.clone())
                .with_callback(move |observer| {
                    for labels in known.read().unwrap_or_else(PoisonError::into_inner).iter() {
                        if let Some(c) = family.get(labels) {
                            observer.observe(c.get(), &attributes(labels));
                        }
                    }
                })
                .build();
            Some(Box::new(counter))
        }
        Instrument::Gauge {
            name,
            help,
            family,
            known,
        } => {
            let (family, known) = (family.clone(), known.clone());
            let gauge = meter
                .f64_observable_gauge(name.clone())
                .with_description(help.clone())
                .with_callback(move |observer| {
                    for labels in known.read().unwrap_or_else(PoisonError::into_inner).iter() {
                        if let Some(g) = family.get(labels) {
                            observer.observe(g.get(), &attributes(labels));
                        }
                    }
                })
                .build();
            Some(Box::new(gauge))
        }
        Instrument::Histogram {
            name,
            help,
            buckets,
            mirror,
        } => {
            let histogram = meter
                .f64_histogram(name.clone())
                .with_description(help.clone())
                .with_boundaries(buckets.clone())
                .build();
            *mirror.write().unwrap_or_else(PoisonError::into_inner) = Some(histogram);
            None
        }
    }
}

/// A label set as OpenTelemetry attributes.
pub(crate) fn attributes(labels: &Labels) -> Vec<KeyValue> {
    labels
        .iter()
        .map(|(k, v)| KeyValue::new(*k, v.clone()))
        .collect()
}
