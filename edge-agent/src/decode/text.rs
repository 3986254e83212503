//! Plain-text log lines: each line is counted per device (and judged by the log model, if any).
//!
//! A payload may hold several lines; each non-empty line becomes a reading of
//! metric `log.line_bytes` (value = its length) at gateway time, so windows
//! report line counts and sizes. The classify stage judges the same lines
//! ([`lines`]); template mining is a later stage. This decoder only checks UTF-8.

use wire::{Counters, Reason};

use super::{Decoded, Reading};

/// Metric name under which log lines are counted.
pub const LOG_METRIC: &str = "log.line_bytes";

/// The log lines of a text payload, as this decoder counts them (the
/// classify stage judges exactly these).
pub fn lines(text: &str) -> impl Iterator<Item = &str> {
    text.lines()
        .map(|l| l.trim_end_matches('\r'))
        .filter(|l| !l.trim().is_empty())
}

pub(super) fn decode(device: &str, payload: &[u8], now_ms: i64) -> Result<Decoded, Reason> {
    let text = std::str::from_utf8(payload).map_err(|_| Reason::Malformed)?;
    let readings = lines(text)
        .map(|l| Reading {
            metric: LOG_METRIC.into(),
            ts_ms: now_ms,
            value: l.len() as f64,
        })
        .collect();
    Ok(Decoded {
        device: device.to_owned(),
        seq: None,
        readings,
        problems: Counters::default(),
    })
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::super::{decode as decode_any, Format};
    use super::*;

    #[test]
    fn each_nonempty_line_is_one_reading() {
        let d = decode_any(
            &rules(Format::Text),
            &limits(),
            "p/d/logs",
            b"a b\r\n\r\nccc",
            NOW,
        )
        .unwrap();
        let v: Vec<f64> = d.readings.iter().map(|r| r.value).collect();
        assert_eq!(v, vec![3.0, 3.0]);
        assert_eq!(
            decode_any(
                &rules(Format::Text),
                &limits(),
                "p/d/logs",
                &[0xff, 0xfe],
                NOW
            ),
            Err(Reason::Malformed)
        );
    }
}
