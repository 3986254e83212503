//! The `[telemetry]` config section (serde, unknown keys rejected) and its
//! validation, which names the offending key of every problem.
//!
//! It only describes and checks; nothing is exported or installed here (see
//! `setup.rs`).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

/// `[telemetry]`: where OpenTelemetry data goes. Every key is optional; an
/// empty or absent section exports nothing over OTLP (logs still go to the
/// terminal, the Prometheus endpoint still answers).
///
/// ```toml
/// [telemetry]
/// otlp_endpoint = "http://otel-collector:4318"   # OTLP/HTTP (protobuf) base URL
/// service_name = "cloud-sink-eu1"                # default: the binary's name
/// export_interval = "10s"                        # metrics push and span batch delay
/// resource = { "deployment.environment" = "plant-7" }
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    /// Base URL of an OTLP/HTTP receiver (`http://host:4318`, or `https://`);
    /// `/v1/traces` and `/v1/metrics` are appended. Absent: no OTLP export.
    #[serde(default)]
    pub otlp_endpoint: Option<String>,
    /// `service.name` of the exported resource; default: the binary's name.
    #[serde(default)]
    pub service_name: Option<String>,
    /// How often metrics are pushed, and the longest a finished span waits
    /// before its batch is sent. Default 10 s; 100 ms to 1 h.
    #[serde(default = "default_export_interval", with = "humantime_serde")]
    pub export_interval: Duration,
    /// Extra resource attributes (e.g. `deployment.environment`), strings.
    #[serde(default)]
    pub resource: BTreeMap<String, String>,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig {
            otlp_endpoint: None,
            service_name: None,
            export_interval: default_export_interval(),
            resource: BTreeMap::new(),
        }
    }
}

fn default_export_interval() -> Duration {
    Duration::from_secs(10)
}

/// Shortest accepted `export_interval`.
pub const MIN_EXPORT_INTERVAL: Duration = Duration::from_millis(100);
/// Longest accepted `export_interval`.
pub const MAX_EXPORT_INTERVAL: Duration = Duration::from_secs(3600);

/// One thing wrong with a `[telemetry]` section, with its full key path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct TelemetryProblem {
    /// The key, e.g. `telemetry.otlp_endpoint`.
    pub key: String,
    /// What is wrong with it.
    pub message: String,
}

impl TelemetryConfig {
    /// Every problem of the section; `section` is its key path in the file
    /// (e.g. `telemetry`), so each problem names the full key.
    pub fn problems(&self, section: &str) -> Vec<TelemetryProblem> {
        let mut out = Vec::new();
        let mut problem = |key: &str, message: String| {
            out.push(TelemetryProblem {
                key: format!("{section}.{key}"),
                message,
            });
        };
        if let Some(endpoint) = &self.otlp_endpoint {
            if let Err(message) = check_endpoint(endpoint) {
                problem("otlp_endpoint", message);
            }
        }
        if let Some(name) = &self.service_name {
            if name.trim().is_empty() || name.len() > 255 {
                problem(
                    "service_name",
                    "must be 1 to 255 characters, not blank".to_owned(),
                );
            }
        }
        let interval = self.export_interval;
        if !(MIN_EXPORT_INTERVAL..=MAX_EXPORT_INTERVAL).contains(&interval) {
            problem(
                "export_interval",
                format!("must be between 100ms and 1h, got {interval:?}"),
            );
        }
        for key in self.resource.keys() {
            if key.trim().is_empty() {
                problem("resource", "attribute names must not be empty".to_owned());
            } else if key == "service.name" {
                problem(
                    &format!("resource.\"{key}\""),
                    "set service_name instead".to_owned(),
                );
            }
        }
        out
    }

    /// `Ok` or every problem (see [`TelemetryConfig::problems`]).
    pub fn validate(&self, section: &str) -> Result<(), Vec<TelemetryProblem>> {
        let problems = self.problems(section);
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }

    /// The URL spans are posted to, if OTLP export is on.
    pub fn traces_url(&self) -> Option<String> {
        self.signal_url("v1/traces")
    }

    /// The URL metrics are posted to, if OTLP export is on.
    pub fn metrics_url(&self) -> Option<String> {
        self.signal_url("v1/metrics")
    }

    fn signal_url(&self, path: &str) -> Option<String> {
        let base = self.otlp_endpoint.as_deref()?;
        Some(format!("{}/{path}", base.trim_end_matches('/')))
    }
}

/// An OTLP/HTTP base URL: http or https, a host, no path beyond `/`, no query.
fn check_endpoint(endpoint: &str) -> Result<(), String> {
    let url = reqwest::Url::parse(endpoint)
        .map_err(|e| format!("expected a URL like http://otel-collector:4318 ({e})"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "scheme must be http or https (OTLP/HTTP), got {:?}",
            url.scheme()
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("has no host".to_owned());
    }
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
        return Err(
            "must be the receiver's base URL (e.g. http://host:4318); /v1/traces and /v1/metrics are appended"
                .to_owned(),
        );
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not hold credentials".to_owned());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<TelemetryConfig, toml::de::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct File {
            telemetry: TelemetryConfig,
        }
        toml::from_str::<File>(text).map(|f| f.telemetry)
    }

    #[test]
    fn empty_section_is_off_with_defaults() {
        let c = parse("[telemetry]\n").expect("parses");
        assert_eq!(c, TelemetryConfig::default());
        assert_eq!(c.traces_url(), None);
        assert_eq!(c.validate("telemetry"), Ok(()));
    }

    #[test]
    fn full_section_parses_and_builds_signal_urls() {
        let c = parse(
            "[telemetry]\notlp_endpoint = \"http://collector:4318/\"\nservice_name = \"sink-1\"\n\
             export_interval = \"250ms\"\nresource = { \"deployment.environment\" = \"plant-7\" }\n",
        )
        .expect("parses");
        assert_eq!(c.export_interval, Duration::from_millis(250));
        assert_eq!(
            c.traces_url().as_deref(),
            Some("http://collector:4318/v1/traces")
        );
        assert_eq!(
            c.metrics_url().as_deref(),
            Some("http://collector:4318/v1/metrics")
        );
        assert_eq!(c.resource["deployment.environment"], "plant-7");
        assert_eq!(c.validate("telemetry"), Ok(()));
    }

    #[test]
    fn unknown_key_is_rejected() {
        let e = parse("[telemetry]\notlp_endpiont = \"http://x:4318\"\n").unwrap_err();
        assert!(e.to_string().contains("otlp_endpiont"), "{e}");
    }

    #[test]
    fn every_problem_names_its_key() {
        let mut c = TelemetryConfig {
            otlp_endpoint: Some("grpc://collector:4317/v1/traces".into()),
            service_name: Some("  ".into()),
            export_interval: Duration::from_millis(5),
            ..TelemetryConfig::default()
        };
        c.resource.insert("service.name".into(), "x".into());
        let keys: Vec<String> = c.problems("telemetry").into_iter().map(|p| p.key).collect();
        assert_eq!(
            keys,
            [
                "telemetry.otlp_endpoint",
                "telemetry.service_name",
                "telemetry.export_interval",
                "telemetry.resource.\"service.name\"",
            ]
        );
        for bad in [
            "http://h:4318/v1/traces",
            "http://h:4318?x=1",
            "not a url",
            "http://u:p@h:4318",
        ] {
            c.otlp_endpoint = Some(bad.into());
            assert!(check_endpoint(bad).is_err(), "{bad} accepted");
        }
        assert!(check_endpoint("https://collector.example:4318").is_ok());
    }
}
