//! In-memory counters of every ingest outcome and rejection reason, shown in
//! `GET /v1/health`.
//!
//! They restart at zero with the process; durable per-gateway totals live in
//! the store. This module does no I/O.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

/// One counter per outcome of `POST /v1/batches`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A new batch was stored (200).
    Stored,
    /// A re-send of a stored batch (200).
    Duplicate,
    /// Same key, different body (409).
    Conflict,
    /// Missing or unknown bearer token (401).
    Unauthorized,
    /// Token of one gateway, envelope of another (403).
    Forbidden,
    /// Body over `limits.max_body_bytes` (413).
    TooLarge,
    /// Body is not a valid envelope (400).
    Malformed,
    /// The store failed (503).
    StoreError,
}

impl Outcome {
    /// Every outcome, in the order shown.
    pub const ALL: [Outcome; 8] = [
        Outcome::Stored,
        Outcome::Duplicate,
        Outcome::Conflict,
        Outcome::Unauthorized,
        Outcome::Forbidden,
        Outcome::TooLarge,
        Outcome::Malformed,
        Outcome::StoreError,
    ];

    /// Stable name used as the JSON key.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Stored => "stored",
            Outcome::Duplicate => "duplicate",
            Outcome::Conflict => "conflict",
            Outcome::Unauthorized => "unauthorized",
            Outcome::Forbidden => "forbidden",
            Outcome::TooLarge => "too_large",
            Outcome::Malformed => "malformed",
            Outcome::StoreError => "store_error",
        }
    }
}

/// Lock-free counters, one per [`Outcome`].
#[derive(Debug, Default)]
pub struct IngestStats {
    counts: [AtomicU64; Outcome::ALL.len()],
}

impl IngestStats {
    /// Counts one occurrence of `outcome`.
    pub fn record(&self, outcome: Outcome) {
        self.counts[outcome as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// The current count of `outcome`.
    pub fn get(&self, outcome: Outcome) -> u64 {
        self.counts[outcome as usize].load(Ordering::Relaxed)
    }

    /// Every counter by name (zeros included, so dashboards see stable keys).
    pub fn snapshot(&self) -> BTreeMap<&'static str, u64> {
        Outcome::ALL
            .iter()
            .map(|o| (o.as_str(), self.get(*o)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_each_outcome_separately() {
        let s = IngestStats::default();
        s.record(Outcome::Stored);
        s.record(Outcome::Stored);
        s.record(Outcome::StoreError);
        let snap = s.snapshot();
        assert_eq!(snap.len(), Outcome::ALL.len());
        assert_eq!(snap["stored"], 2);
        assert_eq!(snap["store_error"], 1);
        assert_eq!(snap["duplicate"], 0);
    }
}
