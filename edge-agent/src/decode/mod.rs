//! Decoders: turn one MQTT payload into readings of one device, or a reason to reject it.
//!
//! The route (chosen by topic) says which format the payload is in and where the
//! device name and the timestamp come from. Whole-message problems (unparseable,
//! too large, no readings) are an `Err(Reason)`; problems of single fields
//! (a string where a number belongs, NaN) are counted in [`Decoded::problems`]
//! while the message's valid fields still flow. Decoders never panic on input
//! and never allocate more than the payload cap allows.

mod fields;
mod influx;
mod json_object;
pub mod sparkplug;
pub mod text;
mod time;

use wire::{Counters, Reason};

pub use time::TimeUnit;

/// A metric's name: inline up to 24 bytes (every name of the SKAB and Sparkplug
/// streams here), so a reading costs no allocation of its own.
pub type MetricName = compact_str::CompactString;

/// One numeric observation of one metric at one event time.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    pub metric: MetricName,
    pub ts_ms: i64,
    pub value: f64,
}

/// A log line kept as an example of the window of a template series that holds `ts_ms`.
#[derive(Debug, Clone, PartialEq)]
pub struct Exemplar {
    pub metric: String,
    pub ts_ms: i64,
    pub line: String,
}

/// What a payload decoded to.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    pub device: String,
    /// The device's own message sequence number, when the payload carries one.
    pub seq: Option<u64>,
    pub readings: Vec<Reading>,
    /// Per-field problems of an otherwise accepted message.
    pub problems: Counters,
}

/// Payload formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// A JSON object: numeric fields are metrics.
    Json,
    /// A CBOR map, same rules as JSON.
    Cbor,
    /// InfluxDB line protocol, one or more lines.
    Influx,
    /// Plain-text log lines (counted per device as metric `log.line_bytes`).
    Text,
    /// Sparkplug B protobuf on `spBv1.0/...` topics. Stateful: the pipeline
    /// decodes with its [`sparkplug::Sparkplug`]; [`decode`] sees each payload
    /// alone (births decode, data messages are `sparkplug_before_birth`).
    Sparkplug,
}

/// How to read payloads of one route.
#[derive(Debug, Clone)]
pub struct DecodeRules {
    pub format: Format,
    /// Topic level (0-based) that names the device.
    pub device_segment: usize,
    /// JSON/CBOR field holding the event time; Influx uses the line timestamp.
    pub time_field: String,
    pub time_unit: TimeUnit,
    /// JSON/CBOR field holding the device's sequence number (dedup after redelivery).
    pub seq_field: Option<String>,
    /// Influx tag that names the device (overrides the topic level when present).
    pub device_tag: String,
}

/// Limits applied before and during decoding.
#[derive(Debug, Clone, Copy)]
pub struct DecodeLimits {
    pub max_payload_bytes: usize,
    pub max_name_bytes: usize,
    /// Timestamps further than this ahead of the gateway clock are rejected.
    pub max_future_ms: i64,
}

/// Decodes `payload` received on `topic` with `rules`. `now_ms` is the gateway
/// clock, used when the payload has no time and to sanity-check times it has.
pub fn decode(
    rules: &DecodeRules,
    limits: &DecodeLimits,
    topic: &str,
    payload: &[u8],
    now_ms: i64,
) -> Result<Decoded, Reason> {
    if payload.len() > limits.max_payload_bytes {
        return Err(Reason::TooLarge);
    }
    if rules.format == Format::Sparkplug {
        return sparkplug::Sparkplug::default().decode(limits, topic, payload, now_ms);
    }
    let device = topic
        .split('/')
        .nth(rules.device_segment)
        .filter(|d| !d.is_empty())
        .ok_or(Reason::UnknownTopic)?;
    if device.len() > limits.max_name_bytes {
        return Err(Reason::TooLarge);
    }
    let ctx = fields::Context {
        rules,
        limits,
        now_ms,
    };
    let decoded = match rules.format {
        Format::Json => fields::decode_json(&ctx, device, payload)?,
        Format::Cbor => fields::decode_cbor(&ctx, device, payload)?,
        Format::Influx => influx::decode(&ctx, device, payload)?,
        Format::Text => text::decode(device, payload, now_ms)?,
        // Returned above (its device comes from several topic levels).
        Format::Sparkplug => {
            sparkplug::Sparkplug::default().decode(limits, topic, payload, now_ms)?
        }
    };
    if decoded.readings.is_empty() && decoded.problems.is_empty() {
        return Err(Reason::Empty);
    }
    Ok(decoded)
}

#[cfg(test)]
pub(crate) mod test_support {
    /// The decoder tests' route and limits are the fuzz harnesses' own.
    pub use crate::fuzzing::{limits, rules};

    /// 2026-01-01T00:00:00Z
    pub const NOW: i64 = 1_767_225_600_000;
}

#[cfg(test)]
mod tests {
    use super::test_support::*;
    use super::*;

    #[test]
    fn oversized_payloads_and_bad_topics_are_rejected_before_parsing() {
        let big = vec![b'{'; 5000];
        let r = rules(Format::Json);
        assert_eq!(
            decode(&r, &limits(), "p/d/s", &big, NOW),
            Err(Reason::TooLarge)
        );
        assert_eq!(
            decode(&r, &limits(), "p", b"{}", NOW),
            Err(Reason::UnknownTopic)
        );
        assert_eq!(
            decode(&r, &limits(), "p/d/s", b"{}", NOW),
            Err(Reason::Empty)
        );
    }
}
