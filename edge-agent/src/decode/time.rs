//! Event time from payloads: unit conversion and plausibility checks.
//!
//! Time comes from the payload where present, but is never trusted blindly: a
//! timestamp before 2000-01-01 or further ahead of the gateway clock than the
//! configured skew is rejected. (A gateway whose own clock reads 1970 skips the
//! "ahead" check, since it cannot know better.)

use wire::Reason;

/// 2000-01-01T00:00:00Z in ms: anything earlier is a broken clock.
const EARLIEST_MS: i64 = 946_684_800_000;

/// Unit of numeric timestamps in payloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TimeUnit {
    #[serde(rename = "s")]
    Seconds,
    #[serde(rename = "ms")]
    Milliseconds,
    #[serde(rename = "us")]
    Microseconds,
    #[serde(rename = "ns")]
    Nanoseconds,
}

impl TimeUnit {
    /// Converts a raw timestamp to ms, rejecting non-finite and out-of-range values.
    pub fn to_ms(self, raw: f64) -> Result<i64, Reason> {
        if !raw.is_finite() {
            return Err(Reason::BadTimestamp);
        }
        let ms = match self {
            TimeUnit::Seconds => raw * 1e3,
            TimeUnit::Milliseconds => raw,
            TimeUnit::Microseconds => raw / 1e3,
            TimeUnit::Nanoseconds => raw / 1e6,
        };
        if ms.abs() > 1e17 {
            return Err(Reason::BadTimestamp);
        }
        Ok(ms.floor() as i64)
    }
}

/// Accepts `ts_ms` if plausible against the gateway clock `now_ms`.
pub fn check(ts_ms: i64, now_ms: i64, max_future_ms: i64) -> Result<i64, Reason> {
    if ts_ms < EARLIEST_MS {
        return Err(Reason::BadTimestamp);
    }
    let clock_is_sane = now_ms >= EARLIEST_MS;
    if clock_is_sane && ts_ms > now_ms.saturating_add(max_future_ms) {
        return Err(Reason::BadTimestamp);
    }
    Ok(ts_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_convert_and_implausible_times_are_rejected() {
        assert_eq!(TimeUnit::Seconds.to_ms(1.5), Ok(1500));
        assert_eq!(TimeUnit::Nanoseconds.to_ms(2e9), Ok(2000));
        assert_eq!(
            TimeUnit::Milliseconds.to_ms(f64::NAN),
            Err(Reason::BadTimestamp)
        );
        let now = 1_767_225_600_000;
        assert_eq!(check(0, now, 1000), Err(Reason::BadTimestamp));
        assert_eq!(check(now + 2000, now, 1000), Err(Reason::BadTimestamp));
        assert_eq!(check(now - 5, now, 1000), Ok(now - 5));
        // A gateway booted in 1970 still accepts a 2026 payload time.
        assert_eq!(check(now, 10, 1000), Ok(now));
    }
}
