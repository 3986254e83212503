//! In-memory counters of every ingest outcome and rejection reason, and of
//! the teacher's outcomes on stored escalations, shown in `GET /v1/health`.
//!
//! They are instruments of the sink's `telemetry::Metrics` registry, so
//! `/v1/health`, `GET /metrics` and OTLP read the same atomics. They restart
//! at zero with the process; durable per-gateway totals live in the store.
//! This module does no I/O.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use telemetry::{Counter, Histogram, Metrics, LATENCY_BUCKETS};

use crate::store::{TeacherJudgement, TeacherSkip};

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
    /// Over the gateway's `limits.batches_per_second` (429).
    RateLimited,
    /// Body over `limits.max_body_bytes` (413).
    TooLarge,
    /// Body is not a valid envelope (400).
    Malformed,
    /// The store failed (503).
    StoreError,
}

impl Outcome {
    /// Every outcome, in the order shown.
    pub const ALL: [Outcome; 9] = [
        Outcome::Stored,
        Outcome::Duplicate,
        Outcome::Conflict,
        Outcome::Unauthorized,
        Outcome::Forbidden,
        Outcome::RateLimited,
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
            Outcome::RateLimited => "rate_limited",
            Outcome::TooLarge => "too_large",
            Outcome::Malformed => "malformed",
            Outcome::StoreError => "store_error",
        }
    }
}

/// Lock-free counters, one per [`Outcome`]: `batches_total{outcome}`.
#[derive(Debug)]
pub struct IngestStats {
    counts: [Counter; Outcome::ALL.len()],
}

impl Default for IngestStats {
    /// Counters in a registry of their own.
    fn default() -> Self {
        IngestStats::register(&Metrics::new("cloud_sink"))
    }
}

impl IngestStats {
    /// Registers `batches{outcome}` in `registry`, every outcome at 0.
    pub fn register(registry: &Metrics) -> IngestStats {
        let family = registry.counter_vec(
            "batches",
            "POST /v1/batches answers by outcome.",
            &["outcome"],
        );
        IngestStats {
            counts: Outcome::ALL.map(|o| family.with(&[o.as_str()])),
        }
    }

    /// Counts one occurrence of `outcome`.
    pub fn record(&self, outcome: Outcome) {
        self.counts[outcome as usize].inc();
    }

    /// The current count of `outcome`.
    pub fn get(&self, outcome: Outcome) -> u64 {
        self.counts[outcome as usize].get()
    }

    /// Every counter by name (zeros included, so dashboards see stable keys).
    pub fn snapshot(&self) -> BTreeMap<&'static str, u64> {
        Outcome::ALL
            .iter()
            .map(|o| (o.as_str(), self.get(*o)))
            .collect()
    }
}

/// Counters of the teacher's work on the escalations of stored batches
/// (duplicates are not judged again, so they count nothing here):
/// `teacher_judgements_total{result}` with result `agree`, `disagree` or
/// `skipped_<reason>`, and `teacher_latency_seconds` per judged batch.
#[derive(Debug)]
pub struct TeacherStats {
    agree: Counter,
    disagree: Counter,
    skipped: [Counter; TeacherSkip::ALL.len()],
    latency: Histogram,
    judge_ns: AtomicU64,
}

impl Default for TeacherStats {
    /// Counters in a registry of their own.
    fn default() -> Self {
        TeacherStats::register(&Metrics::new("cloud_sink"))
    }
}

impl TeacherStats {
    /// Registers the teacher's instruments in `registry`.
    pub fn register(registry: &Metrics) -> TeacherStats {
        let family = registry.counter_vec(
            "teacher_judgements",
            "Escalations of stored batches by the teacher's result: agree or disagree with the gateway, or skipped_<reason>.",
            &["result"],
        );
        TeacherStats {
            agree: family.with(&["agree"]),
            disagree: family.with(&["disagree"]),
            skipped: TeacherSkip::ALL
                .map(|why| family.with(&[&format!("skipped_{}", why.as_str())])),
            latency: registry.histogram(
                "teacher_latency_seconds",
                "Time the teacher models spent on one stored batch's escalations.",
                LATENCY_BUCKETS,
            ),
            judge_ns: AtomicU64::new(0),
        }
    }

    /// Counts one stored escalation's judgement against its local verdict.
    pub fn record(&self, judgement: &TeacherJudgement, local_alarm: bool) {
        match judgement {
            TeacherJudgement::Judged(v) => {
                let cell = if v.alarm == local_alarm {
                    &self.agree
                } else {
                    &self.disagree
                };
                cell.inc();
            }
            TeacherJudgement::Skipped(why) => {
                self.skipped[*why as usize].inc();
            }
        }
    }

    /// Adds time spent in teacher models on one batch.
    pub fn record_time(&self, spent: Duration) {
        let ns = u64::try_from(spent.as_nanos()).unwrap_or(u64::MAX);
        self.judge_ns.fetch_add(ns, Ordering::Relaxed);
        self.latency.observe(spent.as_secs_f64());
    }

    /// `judged`, `agree`, `disagree`, each skip reason as `skipped_<reason>`,
    /// `judge_us_total` and `judge_us_mean` (0 before the first judgement).
    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        let (agree, disagree) = (self.agree.get(), self.disagree.get());
        let judged = agree + disagree;
        let us = self.judge_ns.load(Ordering::Relaxed) / 1000;
        let mut out = BTreeMap::new();
        out.insert("judged".to_owned(), judged);
        out.insert("agree".to_owned(), agree);
        out.insert("disagree".to_owned(), disagree);
        for why in TeacherSkip::ALL {
            let n = self.skipped[why as usize].get();
            out.insert(format!("skipped_{}", why.as_str()), n);
        }
        out.insert("judge_us_total".to_owned(), us);
        out.insert(
            "judge_us_mean".to_owned(),
            us.checked_div(judged).unwrap_or(0),
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::TeacherVerdict;

    #[test]
    fn teacher_outcomes_are_counted_by_kind() {
        let s = TeacherStats::default();
        let verdict = |alarm| {
            TeacherJudgement::Judged(TeacherVerdict {
                score: 3.0,
                threshold: 2.4,
                alarm,
            })
        };
        s.record(&verdict(true), true);
        s.record(&verdict(true), false);
        s.record(&verdict(false), false);
        s.record(&TeacherJudgement::Skipped(TeacherSkip::Width), true);
        s.record_time(Duration::from_micros(30));
        let snap = s.snapshot();
        assert_eq!(snap["judged"], 3);
        assert_eq!((snap["agree"], snap["disagree"]), (2, 1));
        assert_eq!(snap["skipped_width"], 1);
        assert_eq!(snap["skipped_no_teacher"], 0);
        assert_eq!((snap["judge_us_total"], snap["judge_us_mean"]), (30, 10));
    }

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
