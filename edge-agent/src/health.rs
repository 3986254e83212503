//! The agent's health counts: events of the gateway itself (restarts, broker
//! and uplink errors, ingest holds, compactions), counted by whichever stage
//! sees them and moved into the pipeline's pending counters, so they are
//! persisted with the next group commit and shipped in the next batch.
//!
//! Shipping them inside batches (keys `agent.<name>` of `wire::Counters`)
//! rather than only to a metrics endpoint is what makes them survive an
//! outage: while the uplink is down they wait in the outbox with the windows,
//! are carried through roll-ups and drops like the input counters, and reach
//! the sink once, in order. Counts not yet moved are lost with the process
//! (at most the last group's worth); `starts` says how often that happened.
//! A `Health` made [`Health::mirrored`] also adds every count to cumulative
//! metrics counters (`edge_agent_health_total`), which are never drained.
//! This module does no I/O.

use std::sync::atomic::{AtomicU64, Ordering};

use wire::Counters;

/// One kind of event the agent counts about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthCount {
    /// The process started (a restart after a crash counts too).
    Starts,
    /// The MQTT connection was (re-)established (CONNACK received).
    MqttConnects,
    /// The MQTT connection failed or broke (each attempt counts).
    MqttErrors,
    /// The MQTT TLS handshake was refused (a subset of `mqtt_errors`).
    MqttTlsFailures,
    /// The broker refused a subscription.
    MqttSubscribeRefused,
    /// An uplink POST failed: no connection, timeout, or a 5xx answer.
    UplinkFailures,
    /// The sink answered 401: the gateway's token or certificate is not accepted.
    UplinkUnauthorized,
    /// The sink answered 429: over the gateway's rate limit.
    UplinkRateLimited,
    /// The sink answered 409: a batch was quarantined.
    UplinkConflicts,
    /// Ingest was held because the store's disk use reached 85% of its cap.
    IngestHolds,
    /// Milliseconds ingest was held for disk space.
    IngestHeldMs,
    /// The store was compacted into a fresh generation.
    Compactions,
    /// Sparkplug B rebirth requests (NCMD) handed to the MQTT client.
    SparkplugRebirthRequests,
    /// Rebirth requests dropped because the client's queue was full (asked again later).
    SparkplugRebirthDropped,
}

impl HealthCount {
    /// Every count, in a fixed order.
    pub const ALL: [HealthCount; 14] = [
        HealthCount::Starts,
        HealthCount::MqttConnects,
        HealthCount::MqttErrors,
        HealthCount::MqttTlsFailures,
        HealthCount::MqttSubscribeRefused,
        HealthCount::UplinkFailures,
        HealthCount::UplinkUnauthorized,
        HealthCount::UplinkRateLimited,
        HealthCount::UplinkConflicts,
        HealthCount::IngestHolds,
        HealthCount::IngestHeldMs,
        HealthCount::Compactions,
        HealthCount::SparkplugRebirthRequests,
        HealthCount::SparkplugRebirthDropped,
    ];

    /// The name on the wire (after `agent.`) and on the dashboard.
    pub fn as_str(self) -> &'static str {
        match self {
            HealthCount::Starts => "starts",
            HealthCount::MqttConnects => "mqtt_connects",
            HealthCount::MqttErrors => "mqtt_errors",
            HealthCount::MqttTlsFailures => "mqtt_tls_failures",
            HealthCount::MqttSubscribeRefused => "mqtt_subscribe_refused",
            HealthCount::UplinkFailures => "uplink_failures",
            HealthCount::UplinkUnauthorized => "uplink_unauthorized",
            HealthCount::UplinkRateLimited => "uplink_rate_limited",
            HealthCount::UplinkConflicts => "uplink_conflicts",
            HealthCount::IngestHolds => "ingest_holds",
            HealthCount::IngestHeldMs => "ingest_held_ms",
            HealthCount::Compactions => "compactions",
            HealthCount::SparkplugRebirthRequests => "sparkplug_rebirth_requests",
            HealthCount::SparkplugRebirthDropped => "sparkplug_rebirth_dropped",
        }
    }
}

/// Health counts not yet moved into the pipeline's counters; shared by the
/// source, the syncer and the pipeline (`Arc<Health>`).
#[derive(Debug, Default)]
pub struct Health {
    counts: [AtomicU64; HealthCount::ALL.len()],
    /// Cumulative copies, one per kind in `HealthCount::ALL` order (or none).
    mirror: Vec<telemetry::Counter>,
}

impl Health {
    /// Health counts that are also added to `mirror` (one counter per kind,
    /// in `HealthCount::ALL` order; see `AgentMetrics::health_counters`).
    pub fn mirrored(mirror: Vec<telemetry::Counter>) -> Health {
        debug_assert_eq!(mirror.len(), HealthCount::ALL.len());
        Health {
            mirror,
            ..Health::default()
        }
    }

    /// Counts `n` events of `kind`.
    pub fn add(&self, kind: HealthCount, n: u64) {
        self.counts[kind as usize].fetch_add(n, Ordering::Relaxed);
        if let Some(c) = self.mirror.get(kind as usize) {
            c.inc_by(n);
        }
    }

    /// Moves every count into `counters` (as `agent.<name>`) and zeroes it
    /// here. Returns true if anything was moved.
    pub fn drain_into(&self, counters: &mut Counters) -> bool {
        let mut moved = false;
        for kind in HealthCount::ALL {
            let n = self.counts[kind as usize].swap(0, Ordering::Relaxed);
            counters.add_health(kind.as_str(), n);
            moved |= n > 0;
        }
        moved
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_move_once_under_their_names() {
        let health = Health::default();
        health.add(HealthCount::UplinkFailures, 2);
        health.add(HealthCount::Starts, 1);
        health.add(HealthCount::UplinkFailures, 1);
        let mut counters = Counters::default();
        assert!(health.drain_into(&mut counters));
        assert_eq!(counters.health("uplink_failures"), 3);
        assert_eq!(counters.0["agent.starts"], 1);
        assert_eq!(counters.total(), 0, "health is not rejected input");
        assert!(!health.drain_into(&mut counters), "moved once");
        assert_eq!(counters.health("uplink_failures"), 3);
    }

    #[test]
    fn a_mirror_keeps_counting_after_a_drain() {
        let metrics = crate::metrics::AgentMetrics::new();
        let health = Health::mirrored(metrics.health_counters());
        health.add(HealthCount::MqttErrors, 2);
        health.drain_into(&mut Counters::default());
        health.add(HealthCount::MqttErrors, 1);
        assert_eq!(metrics.health(HealthCount::MqttErrors).get(), 3);
        let mut counters = Counters::default();
        health.drain_into(&mut counters);
        assert_eq!(counters.health("mqtt_errors"), 1, "drained as before");
    }

    #[test]
    fn every_kind_has_its_own_slot_and_name() {
        for (i, kind) in HealthCount::ALL.into_iter().enumerate() {
            assert_eq!(kind as usize, i);
        }
        let names: std::collections::BTreeSet<_> =
            HealthCount::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(names.len(), HealthCount::ALL.len());
    }
}
