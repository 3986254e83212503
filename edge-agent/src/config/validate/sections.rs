//! Checks of the `[mqtt]` (with its TLS) and `[uplink]` sections and of the
//! `[[routes]]`, for [`AgentConfig::validate`]. They only collect problems;
//! the typed settings are assembled in `validate.rs`.

use std::time::Duration;

use crate::config::{TlsConfig, UplinkConfig};
use crate::decode::sparkplug::NAMESPACE as SPARKPLUG_NAMESPACE;
use crate::decode::{DecodeRules, Format, TimeUnit};
use crate::topic::TopicFilter;

use super::{AgentConfig, Checker, Route};

impl AgentConfig {
    pub(super) fn check_mqtt(&self, c: &mut Checker) {
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

    pub(super) fn check_routes(&self, c: &mut Checker) -> Vec<Route> {
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
                    r.request_rebirth.is_none(),
                    key("request_rebirth"),
                    "applies only to format = \"sparkplug\"",
                );
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
                request_rebirth: r.request_rebirth.unwrap_or(r.format == Format::Sparkplug),
            });
        }
        routes
    }
}

/// A `[*.tls]` section: both halves of a client identity or neither, and every
/// file readable, valid PEM, and usable by rustls (the same build as at run time).
pub(super) fn check_tls(prefix: &str, tls: &TlsConfig, c: &mut Checker) {
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

pub(super) fn check_uplink(u: &UplinkConfig, c: &mut Checker) {
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
        (1..=wire::MAX_WINDOWS_PER_BODY as usize).contains(&u.max_windows_per_batch),
        "uplink.max_windows_per_batch",
        format!("must be between 1 and {}", wire::MAX_WINDOWS_PER_BODY),
    );
    if let Err(why) = u.body_encoding().validate() {
        c.require(
            false,
            "uplink.relative_error",
            format!("{why}: use 0 to send window values exact, or e.g. 0.0001 (0.01%)"),
        );
    }
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
