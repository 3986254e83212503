//! `AgentMetrics`: every instrument of the agent, registered once in one
//! `telemetry::Metrics` registry (prefix `edge_agent`) that `GET /metrics`
//! encodes and `[telemetry]` exports over OTLP. Counters are cumulative since
//! the process started.
//!
//! Only definitions and cheap recording helpers (atomics; every label looked
//! up once, here, at start-up): the pipeline, the classify stage, the outbox
//! cap and the syncer decide when to record. It does not replace the counts
//! shipped in batches: [`crate::health::Health`] is still drained into each
//! group commit, and keeps a monotonic copy here ([`AgentMetrics::health`]).
//! It serves nothing; `metrics_http.rs` does.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use telemetry::{Counter, Gauge, HistogramVec, Metrics, LATENCY_BUCKETS};
use wire::{Counters, Reason};

use crate::health::HealthCount;
use crate::store::Store;

/// No unsent batch is known (`oldest_unsent_ms`).
const NONE_KNOWN: i64 = i64::MIN;

/// How the sink answered one POST of a batch (label `outcome` of
/// `edge_agent_batches_sent_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendOutcome {
    /// 2xx: stored (or already stored); the batch left the outbox.
    Stored,
    /// 409: the sink holds different bytes under this key; quarantined.
    Conflict,
    /// 401: the token or certificate was refused; retried.
    Unauthorized,
    /// 429: over the gateway's rate limit; retried.
    RateLimited,
    /// No answer, a timeout or another error status; retried.
    Failed,
}

impl SendOutcome {
    /// Every outcome, so each is exported from start-up on.
    pub const ALL: [SendOutcome; 5] = [
        SendOutcome::Stored,
        SendOutcome::Conflict,
        SendOutcome::Unauthorized,
        SendOutcome::RateLimited,
        SendOutcome::Failed,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            SendOutcome::Stored => "stored",
            SendOutcome::Conflict => "conflict",
            SendOutcome::Unauthorized => "unauthorized",
            SendOutcome::RateLimited => "rate_limited",
            SendOutcome::Failed => "failed",
        }
    }
}

/// Every instrument of the agent. Cheap to clone (all clones share the values).
#[derive(Debug, Clone)]
pub struct AgentMetrics {
    /// The registry `GET /metrics` encodes and `telemetry::init` exports.
    pub registry: Metrics,
    /// `messages_total{outcome="accepted"}`: messages that decoded (their
    /// readings may still be late or over the series limit).
    pub messages_accepted: Counter,
    /// `messages_total{outcome="rejected"}`: unknown topic, undecodable or a
    /// redelivered duplicate.
    pub messages_rejected: Counter,
    /// `decode_errors_total{reason}`, one per `wire::Reason` but the two of
    /// the outbox cap, in `Reason::ALL` order.
    decode_errors: Vec<(Reason, Counter)>,
    /// `readings_total`: readings that landed in a window.
    pub readings: Counter,
    /// `window_lag_seconds`: gateway clock minus the end of the newest window
    /// closed by the last cut that closed any.
    pub window_lag: Gauge,
    /// `inference_seconds{model}`: wall time of one model call (a group's batch).
    pub inference: HistogramVec,
    /// `outbox_bytes`: sealed bytes waiting in the outbox.
    pub outbox_bytes: Gauge,
    /// `outbox_batches`: batches waiting in the outbox.
    pub outbox_batches: Gauge,
    /// `sync_lag_seconds`: age of the oldest unsent batch (0 when none).
    pub sync_lag: Gauge,
    /// `created_ms` of the batch the syncer is sending (the oldest), if known.
    oldest_unsent_ms: Arc<AtomicI64>,
    /// `batches_sent_total{outcome}`, in `SendOutcome::ALL` order.
    batches_sent: Vec<Counter>,
    /// `dropped_windows_total`: windows dropped by the outbox cap (`outbox_full`).
    pub dropped_windows: Counter,
    /// `rolled_up_windows_total`: windows merged into coarser ones (`rolled_up`).
    pub rolled_up_windows: Counter,
    /// `health_total{kind}`: the health counts, cumulative, in `HealthCount::ALL` order.
    health: Vec<Counter>,
}

impl Default for AgentMetrics {
    fn default() -> Self {
        AgentMetrics::new()
    }
}

impl AgentMetrics {
    /// A fresh registry with every instrument registered (every label value
    /// of a fixed set at 0).
    pub fn new() -> AgentMetrics {
        let registry = Metrics::new("edge_agent");
        let messages = registry.counter_vec(
            "messages",
            "MQTT messages by outcome: accepted (decoded) or rejected (unknown topic, undecodable, duplicate).",
            &["outcome"],
        );
        let decode_errors = registry.counter_vec(
            "decode_errors",
            "Rejected input by reason (wire::Reason): whole messages and single readings.",
            &["reason"],
        );
        let batches_sent = registry.counter_vec(
            "batches_sent",
            "POSTs of outbox batches to the sink, by the sink's answer.",
            &["outcome"],
        );
        let health = registry.counter_vec(
            "health",
            "The agent's health counts (shipped in batches as agent.<kind>), cumulative since start.",
            &["kind"],
        );
        AgentMetrics {
            messages_accepted: messages.with(&["accepted"]),
            messages_rejected: messages.with(&["rejected"]),
            decode_errors: Reason::ALL
                .into_iter()
                .filter(|r| !matches!(r, Reason::RolledUp | Reason::OutboxFull))
                .map(|r| (r, decode_errors.with(&[r.as_str()])))
                .collect(),
            readings: registry.counter("readings", "Readings that landed in a window."),
            window_lag: registry.gauge(
                "window_lag_seconds",
                "Gateway clock minus the end of the newest window the last closing cut closed.",
            ),
            inference: registry.histogram_vec(
                "inference_seconds",
                "Wall time of one model call (one group's rows) in the classify stage.",
                &["model"],
                LATENCY_BUCKETS,
            ),
            outbox_bytes: registry.gauge("outbox_bytes", "Sealed bytes waiting in the outbox."),
            outbox_batches: registry.gauge("outbox_batches", "Batches waiting in the outbox."),
            sync_lag: registry.gauge(
                "sync_lag_seconds",
                "Age of the oldest unsent batch (gateway clock minus its creation); 0 when none.",
            ),
            oldest_unsent_ms: Arc::new(AtomicI64::new(NONE_KNOWN)),
            batches_sent: SendOutcome::ALL
                .iter()
                .map(|o| batches_sent.with(&[o.as_str()]))
                .collect(),
            dropped_windows: registry.counter(
                "dropped_windows",
                "Windows the full outbox dropped (outbox_full), in original windows.",
            ),
            rolled_up_windows: registry.counter(
                "rolled_up_windows",
                "Windows the outbox cap merged into coarser ones (rolled_up).",
            ),
            health: HealthCount::ALL
                .iter()
                .map(|k| health.with(&[k.as_str()]))
                .collect(),
            registry,
        }
    }

    /// Counts `n` of `reason`: `rolled_up` and `outbox_full` go to their own
    /// counters, every other reason to `decode_errors_total`.
    pub fn count(&self, reason: Reason, n: u64) {
        if n == 0 {
            return;
        }
        match reason {
            Reason::RolledUp => self.rolled_up_windows.inc_by(n),
            Reason::OutboxFull => self.dropped_windows.inc_by(n),
            _ => {
                if let Some((_, c)) = self.decode_errors.iter().find(|(r, _)| *r == reason) {
                    c.inc_by(n);
                }
            }
        }
    }

    /// Counts what `after` holds beyond `before` (input reasons only; the
    /// `agent.*` health keys are counted by [`AgentMetrics::health`]).
    pub fn count_growth(&self, before: &Counters, after: &Counters) {
        for reason in Reason::ALL {
            self.count(reason, after.get(reason).saturating_sub(before.get(reason)));
        }
    }

    /// The counter of one health kind.
    pub fn health(&self, kind: HealthCount) -> &Counter {
        &self.health[kind as usize]
    }

    /// Every health counter, in `HealthCount::ALL` order (for `Health`'s copy).
    pub fn health_counters(&self) -> Vec<Counter> {
        self.health.clone()
    }

    /// Counts one POST's answer.
    pub fn sent(&self, outcome: SendOutcome) {
        self.batches_sent[outcome as usize].inc();
    }

    /// The count of one POST outcome.
    pub fn sent_count(&self, outcome: SendOutcome) -> u64 {
        self.batches_sent[outcome as usize].get()
    }

    /// The syncer is sending the oldest unsent batch, created at `created_ms`
    /// (`None`: the outbox is empty, or the batch just left it).
    pub fn set_oldest_unsent(&self, created_ms: Option<i64>) {
        self.oldest_unsent_ms
            .store(created_ms.unwrap_or(NONE_KNOWN), Ordering::Relaxed);
    }

    /// Sets the outbox gauges and the sync lag from the store (two atomic
    /// loads) and the gateway clock. With batches waiting but none claimed by
    /// the syncer yet, the sync lag keeps its last value.
    pub fn observe_store(&self, store: &Store) {
        let batches = store.outbox_len();
        self.outbox_bytes.set(store.outbox_bytes() as f64);
        self.outbox_batches.set(batches as f64);
        let oldest = self.oldest_unsent_ms.load(Ordering::Relaxed);
        if batches == 0 {
            self.sync_lag.set(0.0);
        } else if oldest != NONE_KNOWN {
            let lag_ms = crate::pipeline::now_ms().saturating_sub(oldest).max(0);
            self.sync_lag.set(lag_ms as f64 / 1000.0);
        }
    }

    /// Sets the window lag from the end of the newest window just closed.
    pub fn observe_closed(&self, newest_end_ms: i64) {
        let lag_ms = crate::pipeline::now_ms()
            .saturating_sub(newest_end_ms)
            .max(0);
        self.window_lag.set(lag_ms as f64 / 1000.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_go_to_their_counters_and_growth_is_counted_once() {
        let m = AgentMetrics::new();
        let mut before = Counters::default();
        before.add(Reason::Malformed, 2);
        let mut after = before.clone();
        after.add(Reason::Malformed, 3);
        after.add(Reason::OutboxFull, 4);
        after.add(Reason::RolledUp, 5);
        after.add_health("starts", 9);
        m.count_growth(&before, &after);
        let text = m.registry.encode_prometheus();
        for line in [
            r#"edge_agent_decode_errors_total{reason="malformed"} 3"#,
            r#"edge_agent_decode_errors_total{reason="late"} 0"#,
            "edge_agent_dropped_windows_total 4",
            "edge_agent_rolled_up_windows_total 5",
            r#"edge_agent_health_total{kind="starts"} 0"#,
            r#"edge_agent_batches_sent_total{outcome="rate_limited"} 0"#,
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line} in\n{text}");
        }
        assert!(!text.contains(r#"reason="outbox_full""#), "{text}");
    }

    #[test]
    fn outcomes_and_health_kinds_index_their_own_counter() {
        let m = AgentMetrics::new();
        for (i, o) in SendOutcome::ALL.into_iter().enumerate() {
            assert_eq!(o as usize, i);
            m.sent(o);
            assert_eq!(m.sent_count(o), 1);
        }
        m.health(HealthCount::UplinkFailures).inc_by(2);
        let text = m.registry.encode_prometheus();
        assert!(
            text.contains("edge_agent_health_total{kind=\"uplink_failures\"} 2"),
            "{text}"
        );
    }
}
