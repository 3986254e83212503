//! The cloud-sink's stored-window JSON shape and a client that fetches it over HTTP.
//!
//! It only reads `GET /v1/series`; it does not authenticate, page or compare.

use cloud_sink::http::MAX_SERIES_LIMIT;
use serde::{Deserialize, Deserializer};
use thiserror::Error;

/// One stored window as served by `GET /v1/series` (unknown fields are ignored).
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
pub struct StoredWindow {
    /// Gateway that shipped it.
    #[serde(default)]
    pub gateway: String,
    /// Gateway epoch of the batch.
    #[serde(default)]
    pub epoch: u64,
    /// Batch sequence number.
    #[serde(default)]
    pub seq: u64,
    /// Device.
    pub device: String,
    /// Metric.
    pub metric: String,
    /// Inclusive start (ms).
    pub start_ms: i64,
    /// Exclusive end (ms).
    pub end_ms: i64,
    /// Readings in the window.
    pub count: u64,
    /// Sum of values.
    #[serde(default = "nan", deserialize_with = "nullable_f64")]
    pub sum: f64,
    /// Minimum.
    #[serde(default = "nan", deserialize_with = "nullable_f64")]
    pub min: f64,
    /// Maximum.
    #[serde(default = "nan", deserialize_with = "nullable_f64")]
    pub max: f64,
    /// Mean.
    #[serde(default = "nan", deserialize_with = "nullable_f64")]
    pub mean: f64,
    /// Population standard deviation.
    #[serde(default = "nan", deserialize_with = "nullable_f64")]
    pub stddev: f64,
    /// Estimated median.
    #[serde(default = "nan", deserialize_with = "nullable_f64")]
    pub p50: f64,
    /// Estimated 95th percentile.
    #[serde(default = "nan", deserialize_with = "nullable_f64")]
    pub p95: f64,
    /// Estimated 99th percentile.
    #[serde(default = "nan", deserialize_with = "nullable_f64")]
    pub p99: f64,
    /// Relative accuracy of the quantile sketch.
    #[serde(default = "nan", deserialize_with = "nullable_f64")]
    pub sketch_alpha: f64,
    /// First value.
    #[serde(default = "nan", deserialize_with = "nullable_f64")]
    pub first: f64,
    /// Timestamp of `first`, when served.
    #[serde(default)]
    pub first_ms: Option<i64>,
    /// Last value.
    #[serde(default = "nan", deserialize_with = "nullable_f64")]
    pub last: f64,
    /// Timestamp of `last`, when served.
    #[serde(default)]
    pub last_ms: Option<i64>,
    /// A model's verdict (judgement series only).
    #[serde(default)]
    pub verdict: Option<wire::Verdict>,
    /// Original windows merged into this one by the agent's outbox cap (0: an original window).
    #[serde(default)]
    pub rolled_up: u32,
    /// On a log template series: the template text and redacted exemplar lines.
    #[serde(default)]
    pub template: Option<wire::LogTemplate>,
    /// On a judgement series: rows the gateway's model escalated.
    #[serde(default)]
    pub escalations: Vec<wire::Escalation>,
}

impl StoredWindow {
    /// A window of a metric the devices sent (not a log count, not a model's judgement).
    pub fn is_raw_sensor(&self) -> bool {
        self.verdict.is_none() && !self.metric.starts_with("log.")
    }
}

fn nan() -> f64 {
    f64::NAN
}

/// `null` (how JSON carries NaN) becomes NaN.
fn nullable_f64<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// The `GET /v1/series` response body.
#[derive(Debug, Clone, Deserialize)]
pub struct SeriesResponse {
    /// Stored windows.
    pub windows: Vec<StoredWindow>,
    /// Whether the sink cut the answer at the query's limit.
    #[serde(default)]
    pub truncated: bool,
}

/// Fetching failed.
#[derive(Debug, Error)]
pub enum FetchError {
    /// Transport, status or body error.
    #[error("GET {url}: {source}")]
    Http {
        /// The URL requested.
        url: String,
        /// The underlying error.
        source: reqwest::Error,
    },
    /// The sink holds more windows than one answer may carry.
    #[error("GET {url}: the sink cut its answer at {limit} windows (truncated)")]
    Truncated {
        /// The URL requested.
        url: String,
        /// The limit asked for.
        limit: usize,
    },
}

/// All windows the sink stores for `gateway` (`GET {sink_url}/v1/series?gateway=…`).
pub async fn fetch_windows(sink_url: &str, gateway: &str) -> Result<Vec<StoredWindow>, FetchError> {
    fetch_windows_with(&reqwest::Client::new(), sink_url, gateway).await
}

/// [`fetch_windows`] through `client` (e.g. one that trusts a test CA for an HTTPS sink).
pub async fn fetch_windows_with(
    client: &reqwest::Client,
    sink_url: &str,
    gateway: &str,
) -> Result<Vec<StoredWindow>, FetchError> {
    let url = format!("{}/v1/series", sink_url.trim_end_matches('/'));
    let err = |source| FetchError::Http {
        url: url.clone(),
        source,
    };
    let response = client
        .get(&url)
        // The sink's largest limit: its default (100 000) is below what a long
        // replay stores, and a cut answer would read as missing windows.
        .query(&[
            ("gateway", gateway),
            ("limit", &MAX_SERIES_LIMIT.to_string()),
        ])
        .send()
        .await
        .map_err(err)?
        .error_for_status()
        .map_err(err)?;
    let body: SeriesResponse = response.json().await.map_err(err)?;
    if body.truncated {
        return Err(FetchError::Truncated {
            url,
            limit: MAX_SERIES_LIMIT,
        });
    }
    Ok(body.windows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_series_json_ignoring_unknown_fields() {
        let json = r#"{"windows":[{"gateway":"gw","epoch":1,"seq":2,"device":"dev-00",
            "metric":"Current","start_ms":0,"end_ms":60000,"count":2,"sum":3.0,"min":1.0,
            "max":2.0,"mean":1.5,"stddev":0.5,"p50":1.0,"p95":2.0,"p99":2.0,
            "sketch_alpha":0.01,"first":1.0,"first_ms":5,"last":2.0,"last_ms":6,
            "extra":"ignored"}]}"#;
        let parsed: SeriesResponse = serde_json::from_str(json).unwrap();
        assert_eq!(parsed.windows.len(), 1);
        assert_eq!(parsed.windows[0].first_ms, Some(5));
        assert_eq!(parsed.windows[0].p95, 2.0);
        assert!(!parsed.truncated);
        let cut: SeriesResponse =
            serde_json::from_str(r#"{"windows":[],"truncated":true}"#).unwrap();
        assert!(cut.truncated, "a cut answer must be seen as cut");
    }
}
