//! The kinds of bad input the simulator injects, their payloads, and the reject reason
//! a strict serde_json-based decoder (the edge agent) is expected to count for each.
//!
//! It builds payloads only; it does not publish them or decide where they go.

use serde::{Deserialize, Serialize};

/// Size of the oversized string in [`MalformedKind::TooLarge`] (200 KiB).
pub const TOO_LARGE_BYTES: usize = 200 * 1024;

/// One kind of injected bad message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MalformedKind {
    /// Truncated JSON `{"seq":` on the sensors topic.
    BadJson,
    /// `{"ts":T,"Current":"abc"}`: the only metric has a string value.
    WrongType,
    /// `{"ts":T,"Current":1e999}`: serde_json rejects the out-of-range number while parsing,
    /// so a strict decoder counts it as `malformed` (there is no JSON spelling of NaN/inf).
    OutOfRange,
    /// `{"ts":T,"Current":NaN}`: a bare NaN token is not JSON, so `malformed`.
    NanToken,
    /// `{"ts":5,"Current":1.0}`: a timestamp in 1970 (a device with an unset clock) is
    /// rejected whole as `bad_timestamp`, so its value never reaches a window.
    BadTimestamp,
    /// `{"ts":T,"note":"xxx…"}` with a 200 KiB string.
    TooLarge,
    /// `{"ts":T}` on `{prefix}/{device}/unknown`, a topic no route matches.
    UnknownTopic,
    /// `{"ts":T}` on the sensors topic: valid JSON without any metric.
    Empty,
}

impl MalformedKind {
    /// Every kind, in injection order.
    pub const ALL: [MalformedKind; 8] = [
        MalformedKind::BadJson,
        MalformedKind::WrongType,
        MalformedKind::OutOfRange,
        MalformedKind::NanToken,
        MalformedKind::BadTimestamp,
        MalformedKind::TooLarge,
        MalformedKind::UnknownTopic,
        MalformedKind::Empty,
    ];

    /// The reject reason (wire `Reason` name) the agent should count for this kind.
    pub fn expected_reason(self) -> &'static str {
        match self {
            MalformedKind::BadJson | MalformedKind::OutOfRange | MalformedKind::NanToken => {
                "malformed"
            }
            MalformedKind::BadTimestamp => "bad_timestamp",
            MalformedKind::WrongType => "wrong_type",
            MalformedKind::TooLarge => "too_large",
            MalformedKind::UnknownTopic => "unknown_topic",
            MalformedKind::Empty => "empty",
        }
    }

    /// The topic suffix (after `{prefix}/{device}/`) this kind is published to.
    pub fn topic_suffix(self) -> &'static str {
        match self {
            MalformedKind::UnknownTopic => "unknown",
            _ => "sensors",
        }
    }

    /// The payload, carrying `ts_ms` as a plausible timestamp where the kind has one.
    /// No payload has a `seq` field or a usable metric value.
    pub fn payload(self, ts_ms: i64) -> Vec<u8> {
        match self {
            MalformedKind::BadJson => b"{\"seq\":".to_vec(),
            MalformedKind::WrongType => format!("{{\"ts\":{ts_ms},\"Current\":\"abc\"}}").into(),
            MalformedKind::OutOfRange => format!("{{\"ts\":{ts_ms},\"Current\":1e999}}").into(),
            MalformedKind::NanToken => format!("{{\"ts\":{ts_ms},\"Current\":NaN}}").into(),
            MalformedKind::BadTimestamp => b"{\"ts\":5,\"Current\":1.0}".to_vec(),
            MalformedKind::TooLarge => {
                let mut s = format!("{{\"ts\":{ts_ms},\"note\":\"");
                s.extend(std::iter::repeat_n('x', TOO_LARGE_BYTES));
                s.push_str("\"}");
                s.into()
            }
            MalformedKind::UnknownTopic | MalformedKind::Empty => {
                format!("{{\"ts\":{ts_ms}}}").into()
            }
        }
    }
}

impl std::fmt::Display for MalformedKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match self {
            MalformedKind::BadJson => "bad_json",
            MalformedKind::WrongType => "wrong_type",
            MalformedKind::OutOfRange => "out_of_range",
            MalformedKind::NanToken => "nan_token",
            MalformedKind::BadTimestamp => "bad_timestamp",
            MalformedKind::TooLarge => "too_large",
            MalformedKind::UnknownTopic => "unknown_topic",
            MalformedKind::Empty => "empty",
        };
        f.write_str(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_json_agrees_with_expected_reasons() {
        let ts = 1_583_748_873_000;
        // Kinds expected as `malformed` must fail to parse as JSON at all.
        for kind in [MalformedKind::BadJson, MalformedKind::OutOfRange] {
            let parsed = serde_json::from_slice::<serde_json::Value>(&kind.payload(ts));
            assert!(parsed.is_err(), "{kind} should not parse");
        }
        // The others are valid JSON objects with a numeric ts and no numeric metric.
        for kind in [
            MalformedKind::WrongType,
            MalformedKind::TooLarge,
            MalformedKind::UnknownTopic,
            MalformedKind::Empty,
        ] {
            let v: serde_json::Value = serde_json::from_slice(&kind.payload(ts)).unwrap();
            let obj = v.as_object().unwrap();
            assert_eq!(obj["ts"].as_i64(), Some(ts));
            assert!(!obj.contains_key("seq"));
            assert!(obj
                .iter()
                .filter(|(k, _)| k.as_str() != "ts")
                .all(|(_, v)| !v.is_number()));
        }
        assert!(MalformedKind::TooLarge.payload(ts).len() > TOO_LARGE_BYTES);
    }
}
