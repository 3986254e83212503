//! Per-gateway ingest rate limit: a token bucket per authenticated gateway
//! (`limits.batches_per_second`, `limits.burst`).
//!
//! It only decides admit-or-wait and how long to wait; the HTTP layer answers
//! 429 with `Retry-After`, and counts it. Buckets live in memory: a restart
//! starts every gateway with a full burst.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The buckets of every gateway seen so far.
#[derive(Debug)]
pub struct RateLimiter {
    /// Tokens added per second; 0 turns the limit off.
    per_second: f64,
    /// Bucket size: the most batches admitted back to back.
    burst: f64,
    buckets: Mutex<HashMap<String, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl RateLimiter {
    /// `per_second` = 0 admits everything.
    pub fn new(per_second: f64, burst: u32) -> RateLimiter {
        RateLimiter {
            per_second,
            burst: f64::from(burst.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token of `gateway`'s bucket at `now`; `Err(wait)` when it is
    /// empty: the time until the next token (at least one second, as
    /// `Retry-After` counts whole seconds).
    pub fn admit_at(&self, gateway: &str, now: Instant) -> Result<(), Duration> {
        if self.per_second <= 0.0 {
            return Ok(());
        }
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let bucket = buckets.entry(gateway.to_owned()).or_insert(Bucket {
            tokens: self.burst,
            at: now,
        });
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.per_second).min(self.burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return Ok(());
        }
        let wait = (1.0 - bucket.tokens) / self.per_second;
        Err(Duration::from_secs_f64(wait.ceil().max(1.0)))
    }

    /// [`RateLimiter::admit_at`] now.
    pub fn admit(&self, gateway: &str) -> Result<(), Duration> {
        self.admit_at(gateway, Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_admits_everything() {
        let r = RateLimiter::new(0.0, 1);
        let now = Instant::now();
        assert!((0..1000).all(|_| r.admit_at("g", now).is_ok()));
    }

    #[test]
    fn burst_then_refill_per_gateway() {
        let r = RateLimiter::new(2.0, 3);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(r.admit_at("a", t0), Ok(()));
        }
        assert_eq!(r.admit_at("a", t0), Err(Duration::from_secs(1)));
        // Another gateway has its own bucket.
        assert_eq!(r.admit_at("b", t0), Ok(()));
        // Half a second adds one token at 2/s.
        let t1 = t0 + Duration::from_millis(500);
        assert_eq!(r.admit_at("a", t1), Ok(()));
        assert!(r.admit_at("a", t1).is_err());
        // Never more than the burst, however long it waited.
        let t2 = t1 + Duration::from_secs(3600);
        for _ in 0..3 {
            assert_eq!(r.admit_at("a", t2), Ok(()));
        }
        assert!(r.admit_at("a", t2).is_err());
    }

    #[test]
    fn slow_rates_ask_for_the_full_wait() {
        let r = RateLimiter::new(0.1, 1);
        let t0 = Instant::now();
        assert_eq!(r.admit_at("a", t0), Ok(()));
        assert_eq!(r.admit_at("a", t0), Err(Duration::from_secs(10)));
    }
}
