//! The second config layer: checks the whole file and yields typed [`Settings`].
//!
//! Every problem is collected (not just the first) and names the key it is
//! about, so `edge-agent check-config` can list them all at once. It checks
//! what can be checked offline; whether the broker or the sink answers is the
//! runtime's business.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::decode::{DecodeLimits, DecodeRules, Format};
use crate::topic::TopicFilter;
use crate::windower::WindowPolicy;

use super::{
    AgentConfig, JournalConfig, ModelsConfig, MqttConfig, OutboxConfig, TemplatesConfig,
    UplinkConfig,
};

/// One thing wrong with a config, at a key path like `routes[1].topic`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub key: String,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// A route after validation: which topics, decoded how.
#[derive(Debug, Clone)]
pub struct Route {
    pub filter: TopicFilter,
    pub rules: DecodeRules,
    /// Publish Sparkplug rebirth requests for this route's unreadable data.
    pub request_rebirth: bool,
}

/// Everything the agent runs with, checked.
#[derive(Debug, Clone)]
pub struct Settings {
    pub gateway_id: String,
    pub data_dir: PathBuf,
    pub mqtt: MqttConfig,
    pub routes: Vec<Route>,
    pub window: WindowPolicy,
    pub limits: DecodeLimits,
    pub uplink: UplinkConfig,
    pub journal: JournalConfig,
    pub outbox: OutboxConfig,
    pub models: ModelsConfig,
    pub templates: TemplatesConfig,
    /// Where `GET /metrics` is served, if anywhere.
    pub metrics_listen: Option<SocketAddr>,
    pub telemetry: telemetry::TelemetryConfig,
}

pub(super) struct Checker(Vec<Problem>);

impl Checker {
    pub(super) fn require(&mut self, ok: bool, key: impl Into<String>, message: impl Into<String>) {
        if !ok {
            self.0.push(Problem {
                key: key.into(),
                message: message.into(),
            });
        }
    }
}

pub(super) fn is_identifier(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// Longest `journal.commit_linger` accepted.
const MAX_COMMIT_LINGER: Duration = Duration::from_secs(1);

/// Largest `journal.cache_bytes` accepted: beyond this it is a typo (a
/// gateway with 64 GiB to give sled's cache has no use for the setting).
const MAX_CACHE_BYTES: u64 = 64 << 30;

fn whole_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl AgentConfig {
    /// Checks the whole config; returns every problem found.
    pub fn validate(&self) -> Result<Settings, Vec<Problem>> {
        let mut c = Checker(Vec::new());
        c.require(
            is_identifier(&self.gateway_id),
            "gateway_id",
            "must be 1-64 characters of A-Z a-z 0-9 . _ -",
        );
        c.require(
            !self.data_dir.as_os_str().is_empty(),
            "data_dir",
            "must not be empty",
        );
        self.check_mqtt(&mut c);
        let routes = self.check_routes(&mut c);
        let w = &self.window;
        c.require(
            w.width >= Duration::from_millis(1),
            "window.width",
            "must be at least 1ms",
        );
        c.require(
            w.idle_close >= Duration::from_millis(100),
            "window.idle_close",
            "must be at least 100ms",
        );
        c.require(
            w.sketch_alpha > 0.0 && w.sketch_alpha <= 0.5,
            "window.sketch_alpha",
            "must be in (0, 0.5]",
        );
        let l = &self.limits;
        c.require(
            (1..=16 * 1024 * 1024).contains(&l.max_payload_bytes),
            "limits.max_payload_bytes",
            "must be between 1 and 16777216",
        );
        c.require(
            l.max_name_bytes >= 1,
            "limits.max_name_bytes",
            "must be at least 1",
        );
        c.require(l.max_series >= 1, "limits.max_series", "must be at least 1");
        c.require(
            self.mqtt.max_packet_size > l.max_payload_bytes,
            "mqtt.max_packet_size",
            format!(
                "must exceed limits.max_payload_bytes ({}): a payload above mqtt.max_packet_size \
                 is cut to its first max_packet_size bytes, and only a cut payload still above \
                 limits.max_payload_bytes is counted as too_large instead of being decoded \
                 truncated",
                l.max_payload_bytes
            ),
        );
        check_uplink(&self.uplink, &mut c);
        c.require(
            self.journal.commit_max_messages >= 1,
            "journal.commit_max_messages",
            "must be at least 1",
        );
        c.require(
            self.journal.commit_linger <= MAX_COMMIT_LINGER,
            "journal.commit_linger",
            "must be at most 1s: every message of a group waits that long for its ack",
        );
        c.require(
            self.journal.queue_capacity >= 1,
            "journal.queue_capacity",
            "must be at least 1",
        );
        c.require(
            (crate::store::MIN_CACHE_BYTES..=MAX_CACHE_BYTES).contains(&self.journal.cache_bytes),
            "journal.cache_bytes",
            format!(
                "must be between {} (1 MiB) and {MAX_CACHE_BYTES} (64 GiB): it is sled's page \
                 cache in bytes (default {}, {} MiB), not a count of messages or MiB",
                crate::store::MIN_CACHE_BYTES,
                crate::store::DEFAULT_CACHE_BYTES,
                crate::store::DEFAULT_CACHE_BYTES >> 20
            ),
        );
        c.require(
            self.outbox.max_bytes >= 16 * 1024 * 1024,
            "outbox.max_bytes",
            "must be at least 16777216 (16 MiB): it caps the whole store on disk, and sled's own working set takes several MiB while ingest is fast",
        );
        c.require(
            self.outbox.max_rollup_width >= w.width,
            "outbox.max_rollup_width",
            "must be at least window.width",
        );
        self.models.check(&mut c);
        self.templates.check(&mut c);
        let log_escalates = self
            .models
            .log
            .as_ref()
            .is_some_and(|m| m.escalate_below.is_some());
        if log_escalates && !self.templates.enabled {
            // Escalated log lines are redacted by the [templates] rules even when mining is off.
            if let Err(e) = self.templates.redactor() {
                c.require(false, "templates.redact", e.to_string());
            }
        }
        let worst = crate::outbox::worst_window_bytes(
            l.max_name_bytes,
            self.templates.enabled.then_some(self.templates.exemplars),
            self.models.escalates(),
        );
        let fits = wire::MAX_ENVELOPE_BYTES / worst;
        c.require(
            self.uplink.max_windows_per_batch <= fits,
            "uplink.max_windows_per_batch",
            format!(
                "must be at most {fits}: a batch of windows as large as limits.max_name_bytes and [templates] allow ({worst} bytes each) must fit the {}-byte envelope the sink accepts",
                wire::MAX_ENVELOPE_BYTES
            ),
        );
        let metrics_listen = self.check_metrics_listen(&mut c);
        for p in self.telemetry.problems("telemetry") {
            c.require(false, p.key, p.message);
        }
        for p in self.gateway_time_problems() {
            // A warning, not (yet) a refusal: see `gateway_time_problems`.
            tracing::warn!("config {p}");
        }
        if !c.0.is_empty() {
            return Err(c.0);
        }
        Ok(Settings {
            gateway_id: self.gateway_id.clone(),
            data_dir: self.data_dir.clone(),
            mqtt: self.mqtt.clone(),
            routes,
            window: WindowPolicy {
                width_ms: whole_ms(w.width),
                allowed_lateness_ms: whole_ms(w.allowed_lateness),
                idle_close: w.idle_close,
                sketch_alpha: w.sketch_alpha,
                max_series: l.max_series,
            },
            limits: DecodeLimits {
                max_payload_bytes: l.max_payload_bytes,
                max_name_bytes: l.max_name_bytes,
                max_future_ms: whole_ms(l.max_future_skew),
            },
            uplink: self.uplink.clone(),
            journal: self.journal.clone(),
            outbox: self.outbox.clone(),
            models: self.models.clone(),
            templates: self.templates.clone(),
            metrics_listen,
            telemetry: self.telemetry.clone(),
        })
    }

    fn check_metrics_listen(&self, c: &mut Checker) -> Option<SocketAddr> {
        let text = self.metrics_listen.as_deref()?;
        let addr = text.parse::<SocketAddr>().ok();
        c.require(
            addr.is_some(),
            "metrics_listen",
            format!("must be an ip:port socket address like 127.0.0.1:9464, got {text:?}"),
        );
        addr
    }

    /// Problems of routes whose readings take their event time from the gateway
    /// clock (format `text`: log lines carry no time field). Such a reading always
    /// lands in the window of *now*; if `window.idle_close` is shorter than
    /// `window.width`, a quiet spell closes that window before it ends, and the
    /// next line of the same device, still inside it, is counted `late` and lost.
    /// Hence `window.idle_close >= window.width` whenever such a route exists.
    ///
    /// [`AgentConfig::validate`] logs these as warnings and does not refuse the
    /// config: `configs/demo.toml` and the hil-tests harness deliberately close
    /// idle windows after 2-3 s with 60 s windows (so a replay's last windows ship
    /// quickly). Refusing them is one line once those configs change.
    pub fn gateway_time_problems(&self) -> Vec<Problem> {
        let w = &self.window;
        if w.idle_close >= w.width {
            return Vec::new();
        }
        self.routes
            .iter()
            .enumerate()
            .filter(|(_, r)| r.format == Format::Text)
            .map(|(i, r)| Problem {
                key: "window.idle_close".into(),
                message: format!(
                    "is {}, below window.width ({}), but routes[{i}] (topic '{}', format text) \
                     times its readings by the gateway clock: a line that arrives after an idle \
                     close falls into the window just closed and is counted late; set \
                     window.idle_close to at least window.width",
                    humantime_serde::re::humantime::format_duration(w.idle_close),
                    humantime_serde::re::humantime::format_duration(w.width),
                    r.topic
                ),
            })
            .collect()
    }
}

mod sections;
use sections::check_uplink;
#[cfg(test)]
mod tests;
