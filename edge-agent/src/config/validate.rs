//! The second config layer: checks the whole file and yields typed [`Settings`].
//!
//! Every problem is collected (not just the first) and names the key it is
//! about, so `edge-agent check-config` can list them all at once. It checks
//! what can be checked offline; whether the broker or the sink answers is the
//! runtime's business.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::decode::sparkplug::NAMESPACE as SPARKPLUG_NAMESPACE;
use crate::decode::{DecodeLimits, DecodeRules, Format, TimeUnit};
use crate::topic::TopicFilter;
use crate::windower::WindowPolicy;

use super::{
    AgentConfig, JournalConfig, ModelsConfig, MqttConfig, OutboxConfig, TemplatesConfig, TlsConfig,
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

    fn check_mqtt(&self, c: &mut Checker) {
        let m = &self.mqtt;
        c.require(!m.host.is_empty(), "mqtt.host", "must not be empty");
        c.require(m.port != 0, "mqtt.port", "must not be 0");
        c.require(
            !m.client_id.is_empty(),
            "mqtt.client_id",
            "must not be empty",
        );
        c.require(
            !m.subscribe.is_empty(),
            "mqtt.subscribe",
            "needs at least one topic filter",
        );
        for (i, s) in m.subscribe.iter().enumerate() {
            if let Err(e) = TopicFilter::parse(s) {
                c.require(false, format!("mqtt.subscribe[{i}]"), e);
            }
        }
        c.require(
            m.keep_alive >= Duration::from_secs(5),
            "mqtt.keep_alive",
            "must be at least 5s",
        );
        c.require(
            m.reconnect_min > Duration::ZERO && m.reconnect_min <= m.reconnect_max,
            "mqtt.reconnect_min",
            "must be above 0 and at most mqtt.reconnect_max",
        );
        c.require(
            m.password_env.is_none() || m.username.is_some(),
            "mqtt.password_env",
            "needs mqtt.username",
        );
        if let Some(tls) = &m.tls {
            check_tls("mqtt.tls", tls, c);
        }
    }

    fn check_routes(&self, c: &mut Checker) -> Vec<Route> {
        c.require(
            !self.routes.is_empty(),
            "routes",
            "needs at least one [[routes]] entry",
        );
        let mut routes = Vec::new();
        for (i, r) in self.routes.iter().enumerate() {
            let key = |k: &str| format!("routes[{i}].{k}");
            let filter = match TopicFilter::parse(&r.topic) {
                Ok(f) => f,
                Err(e) => {
                    c.require(false, key("topic"), e);
                    continue;
                }
            };
            let levels: Vec<&str> = r.topic.split('/').collect();
            if r.format == Format::Sparkplug {
                // The device comes from the Sparkplug topic itself (group/node[/device]).
                c.require(
                    levels.first() == Some(&SPARKPLUG_NAMESPACE),
                    key("topic"),
                    format!(
                        "format sparkplug needs a topic under '{SPARKPLUG_NAMESPACE}/' \
                         (like '{SPARKPLUG_NAMESPACE}/#'), got '{}'",
                        r.topic
                    ),
                );
            } else {
                c.require(
                    levels.last() == Some(&"#") || r.device_segment < levels.len(),
                    key("device_segment"),
                    format!("topic '{}' has only {} levels", r.topic, levels.len()),
                );
            }
            c.require(
                r.seq_field.as_deref() != Some(r.time_field.as_str()),
                key("seq_field"),
                "must differ from time_field",
            );
            let default_unit = if r.format == Format::Influx {
                TimeUnit::Nanoseconds
            } else {
                TimeUnit::Milliseconds
            };
            routes.push(Route {
                filter,
                rules: DecodeRules {
                    format: r.format,
                    device_segment: r.device_segment,
                    time_field: r.time_field.clone(),
                    time_unit: r.time_unit.unwrap_or(default_unit),
                    seq_field: r.seq_field.clone(),
                    device_tag: r.device_tag.clone(),
                },
            });
        }
        routes
    }
}

/// A `[*.tls]` section: both halves of a client identity or neither, and every
/// file readable, valid PEM, and usable by rustls (the same build as at run time).
fn check_tls(prefix: &str, tls: &TlsConfig, c: &mut Checker) {
    let paired = tls.client_cert_file.is_some() == tls.client_key_file.is_some();
    c.require(
        paired,
        format!("{prefix}.client_cert_file"),
        "client_cert_file and client_key_file go together (mTLS)",
    );
    if paired {
        if let Err(e) = crate::tls::client_config(prefix, tls) {
            c.require(false, prefix, e.to_string());
        }
    }
}

fn check_uplink(u: &UplinkConfig, c: &mut Checker) {
    c.require(
        u.url.starts_with("http://") || u.url.starts_with("https://"),
        "uplink.url",
        "must start with http:// or https://",
    );
    if let Some(tls) = &u.tls {
        c.require(
            u.url.starts_with("https://"),
            "uplink.tls",
            "needs an https:// uplink.url",
        );
        check_tls("uplink.tls", tls, c);
    }
    c.require(
        u.token_env.is_some() != u.token_file.is_some(),
        "uplink.token_env",
        "set exactly one of uplink.token_env or uplink.token_file",
    );
    c.require(
        u.batch_interval >= Duration::from_millis(10),
        "uplink.batch_interval",
        "must be at least 10ms",
    );
    c.require(
        (1..=100_000).contains(&u.max_windows_per_batch),
        "uplink.max_windows_per_batch",
        "must be between 1 and 100000",
    );
    c.require(
        u.retry_min > Duration::ZERO && u.retry_min <= u.retry_max,
        "uplink.retry_min",
        "must be above 0 and at most uplink.retry_max",
    );
    c.require(
        u.request_timeout >= Duration::from_millis(100),
        "uplink.request_timeout",
        "must be at least 100ms",
    );
    c.require(
        u.min_link_rate >= 128,
        "uplink.min_link_rate",
        "must be at least 128 bytes/s",
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
        gateway_id = "gw-1"
        data_dir = "/tmp/x"
        [mqtt]
        client_id = "a"
        subscribe = ["plant/#"]
        [[routes]]
        topic = "plant/+/sensors"
        format = "json"
        [uplink]
        url = "http://127.0.0.1:8080"
        token_env = "EDGE_TOKEN"
    "#;

    #[test]
    fn minimal_config_gets_sane_defaults() {
        let s = AgentConfig::parse(MINIMAL).unwrap().validate().unwrap();
        assert_eq!(s.window.width_ms, 60_000);
        assert_eq!(s.routes[0].rules.time_unit, TimeUnit::Milliseconds);
        assert_eq!(s.mqtt.port, 1883);
    }

    #[test]
    fn journal_commit_linger_defaults_and_is_bounded() {
        let s = AgentConfig::parse(MINIMAL).unwrap().validate().unwrap();
        assert_eq!(s.journal.commit_linger, Duration::from_millis(20));
        let with = |v: &str| format!("{MINIMAL}\n[journal]\ncommit_linger = \"{v}\"\n");
        let s = AgentConfig::parse(&with("0ms"))
            .unwrap()
            .validate()
            .unwrap();
        assert_eq!(s.journal.commit_linger, Duration::ZERO);
        let problems = AgentConfig::parse(&with("2s"))
            .unwrap()
            .validate()
            .unwrap_err();
        let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, ["journal.commit_linger"]);
        assert!(AgentConfig::parse(&with("soon")).is_err());
    }

    #[test]
    fn journal_cache_bytes_defaults_and_is_bounded() {
        let s = AgentConfig::parse(MINIMAL).unwrap().validate().unwrap();
        assert_eq!(s.journal.cache_bytes, crate::store::DEFAULT_CACHE_BYTES);
        let with = |v: &str| format!("{MINIMAL}\n[journal]\ncache_bytes = {v}\n");
        let s = AgentConfig::parse(&with("8388608"))
            .unwrap()
            .validate()
            .unwrap();
        assert_eq!(s.journal.cache_bytes, 8 << 20);
        for absurd in ["16", "1048575", "68719476737"] {
            let problems = AgentConfig::parse(&with(absurd))
                .unwrap()
                .validate()
                .unwrap_err();
            let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
            assert_eq!(keys, ["journal.cache_bytes"], "{absurd}");
            assert!(problems[0].message.contains("1 MiB"), "{problems:?}");
        }
        assert!(AgentConfig::parse(&with("-1")).is_err());
    }

    #[test]
    fn sparkplug_routes_need_the_sparkplug_namespace() {
        let route = |topic: &str| {
            MINIMAL
                .replace("plant/+/sensors", topic)
                .replace("\"json\"", "\"sparkplug\"")
        };
        let s = AgentConfig::parse(&route("spBv1.0/#"))
            .unwrap()
            .validate()
            .unwrap();
        assert_eq!(s.routes[0].rules.format, Format::Sparkplug);
        AgentConfig::parse(&route("spBv1.0/plant-a/+/+/+"))
            .unwrap()
            .validate()
            .unwrap();
        let problems = AgentConfig::parse(&route("plant/#"))
            .unwrap()
            .validate()
            .unwrap_err();
        let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, vec!["routes[0].topic"]);
    }

    #[test]
    fn every_problem_is_reported_with_its_key() {
        let bad = MINIMAL
            .replace("gw-1", "gw 1!")
            .replace("plant/+/sensors", "plant/#/x")
            .replace("http://", "ftp://")
            .replace("[uplink]", "[window]\nsketch_alpha = 2.0\n[uplink]");
        let problems = AgentConfig::parse(&bad).unwrap().validate().unwrap_err();
        let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            vec![
                "gateway_id",
                "routes[0].topic",
                "window.sketch_alpha",
                "uplink.url"
            ]
        );
    }

    #[test]
    fn a_bad_template_mask_is_reported_only_when_mining_is_on() {
        let with = |enabled: bool| {
            format!("{MINIMAL}\n[templates]\nenabled = {enabled}\nextra_masks = [\"(\"]\n")
        };
        let problems = AgentConfig::parse(&with(true))
            .unwrap()
            .validate()
            .unwrap_err();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].key, "templates");
        assert!(
            problems[0].message.contains("not a valid regex"),
            "{}",
            problems[0].message
        );
        assert!(AgentConfig::parse(&with(false)).unwrap().validate().is_ok());
    }

    #[test]
    fn exemplar_settings_are_checked_with_their_keys() {
        let cfg =
            format!("{MINIMAL}\n[templates]\nenabled = true\nexemplars = 11\nredact = [\"(\"]\n");
        let problems = AgentConfig::parse(&cfg).unwrap().validate().unwrap_err();
        let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, ["templates.exemplars", "templates.redact"]);
        let cfg = format!("{MINIMAL}\n[templates]\nenabled = true\nredact_builtin = [\"phone\"]\n");
        let problems = AgentConfig::parse(&cfg).unwrap().validate().unwrap_err();
        assert!(
            problems[0].message.contains("unknown built-in"),
            "{problems:?}"
        );
        let settings = AgentConfig::parse(&format!("{MINIMAL}\n[templates]\nenabled = true\n"))
            .unwrap()
            .validate()
            .unwrap();
        assert_eq!(settings.templates.exemplars, 3);
        assert_eq!(
            settings.templates.redact_builtin,
            ["url_credentials", "email", "mac", "ip", "serial", "user"]
        );
    }

    #[test]
    fn the_packet_size_message_says_what_happens_to_oversized_packets() {
        let bad = MINIMAL.replace(
            "subscribe = [\"plant/#\"]",
            "subscribe = [\"plant/#\"]\nmax_packet_size = 1024",
        );
        let problems = AgentConfig::parse(&bad).unwrap().validate().unwrap_err();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].key, "mqtt.max_packet_size");
        let message = &problems[0].message;
        assert!(
            message.contains("cut to its first max_packet_size bytes"),
            "{message}"
        );
        assert!(message.contains("too_large"), "{message}");
        assert!(!message.contains("breaks the connection"), "{message}");
    }

    const LOG_ROUTE: &str = "[[routes]]\ntopic = \"plant/+/logs\"\nformat = \"text\"\n[uplink]";

    fn with_window(extra_route: bool, window: &str) -> AgentConfig {
        let mut text = MINIMAL.to_owned();
        if extra_route {
            text = text.replace("[uplink]", LOG_ROUTE);
        }
        AgentConfig::parse(&text.replace("[uplink]", &format!("[window]\n{window}\n[uplink]")))
            .unwrap()
    }

    #[test]
    fn gateway_time_routes_need_idle_close_at_least_the_width() {
        let short = with_window(true, "width = \"60s\"\nidle_close = \"3s\"");
        let problems = short.gateway_time_problems();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].key, "window.idle_close");
        let message = problems[0].to_string();
        for part in [
            "window.idle_close: is 3s",
            "window.width (1m)",
            "routes[1]",
            "late",
        ] {
            assert!(message.contains(part), "{part} missing in {message}");
        }
        // Still accepted (a warning): demo.toml and the test harness rely on it.
        assert!(short.validate().is_ok());

        for fine in [
            with_window(true, "width = \"60s\"\nidle_close = \"60s\""),
            with_window(true, "width = \"10s\"\nidle_close = \"2m\""),
            // Defaults: 60 s windows, 120 s idle close.
            with_window(true, ""),
            // Payload-time routes only: a short idle close is fine.
            with_window(false, "width = \"60s\"\nidle_close = \"3s\""),
        ] {
            assert_eq!(fine.gateway_time_problems(), Vec::new());
        }
    }

    #[test]
    fn metrics_listen_and_telemetry_are_checked_with_the_rest() {
        let s = AgentConfig::parse(&format!("metrics_listen = \"127.0.0.1:9464\"\n{MINIMAL}"))
            .unwrap()
            .validate()
            .unwrap();
        assert_eq!(s.metrics_listen, Some("127.0.0.1:9464".parse().unwrap()));
        assert_eq!(s.telemetry, telemetry::TelemetryConfig::default());
        let bad = format!(
            "metrics_listen = \"localhost\"\n{}\n[telemetry]\notlp_endpoint = \"ftp://x\"\n",
            MINIMAL.replace("gw-1", "gw 1")
        );
        let problems = AgentConfig::parse(&bad).unwrap().validate().unwrap_err();
        let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            ["gateway_id", "metrics_listen", "telemetry.otlp_endpoint"]
        );
        assert!(
            problems[1].message.contains("127.0.0.1:9464"),
            "{problems:?}"
        );
        let none = AgentConfig::parse(MINIMAL).unwrap().validate().unwrap();
        assert_eq!(none.metrics_listen, None);
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let err = AgentConfig::parse(&format!("{MINIMAL}\nsurprise = 1")).unwrap_err();
        assert!(err.contains("surprise"), "{err}");
    }
}
