//! Tumbling event-time windows per series (device + metric), and when they close.
//!
//! A reading lands in the window `[floor(ts / width) * width, + width)` of its
//! series. A window closes when the series' watermark (largest event time seen
//! minus `allowed_lateness`) passes its end, or when it has had no reading for
//! `idle_close` of wall time (the tail of a stream that stopped). Closing a
//! window also closes every earlier open window of the series, so "open" and
//! "closed" never interleave: everything before `closed_before` has shipped, a
//! reading there is *late* and counted, never silently merged.
//!
//! Series are capped at `max_series`: a reading of a series beyond the cap is
//! renamed to the metric [`OVERFLOW_METRIC`] (so the journal and replay agree)
//! and lands in the one overflow series `(OVERFLOW_DEVICE, OVERFLOW_METRIC)`,
//! counted as `too_many_series`: memory stays bounded under a flood of
//! distinct topics, and the readings are still counted and summarized.
//!
//! The windower also tells the journal's low-water mark: the oldest message
//! an open window holds; the journal keeps that message and every later one
//! (or, once its open windows are checkpointed, those from the checkpoint on).
//! It does no I/O; the pipeline persists what it returns.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use wire::WindowSummary;

use crate::classify::router::Escalated;
use crate::decode::{Exemplar, Reading};
use crate::window::Window;

/// Device of the overflow series (readings of series beyond `max_series`).
pub const OVERFLOW_DEVICE: &str = "_overflow";
/// Metric of the overflow series; a reading renamed to it goes there on replay too.
pub const OVERFLOW_METRIC: &str = "_overflow";

/// Window policy.
#[derive(Debug, Clone, Copy)]
pub struct WindowPolicy {
    pub width_ms: i64,
    pub allowed_lateness_ms: i64,
    pub idle_close: Duration,
    pub sketch_alpha: f64,
    pub max_series: usize,
}

/// What happened to the readings of one message.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct IngestOutcome {
    pub accepted: u64,
    pub late: u64,
    pub too_many_series: u64,
}

/// A window that closed, with what must be persisted alongside it.
#[derive(Debug, Clone)]
pub struct Closed {
    pub summary: WindowSummary,
    /// The series' new `closed_before` (persist it with the batch).
    pub closed_before: i64,
}

/// The result of one closing pass.
#[derive(Debug, Default)]
pub struct ClosePass {
    pub closed: Vec<Closed>,
}

#[derive(Debug)]
struct Series {
    closed_before: i64,
    max_ts: i64,
    /// Boxed: a B-tree leaf has room for 11 values, so unboxed windows (~250 B)
    /// cost ~2.9 KB per series even with one open (heaptrack: 3.3 MB of 1,125).
    open: BTreeMap<i64, Box<Window>>,
}

impl Series {
    fn new(closed_before: i64) -> Series {
        Series {
            closed_before,
            max_ts: i64::MIN,
            open: BTreeMap::new(),
        }
    }
}

enum Added {
    Yes,
    Late,
    /// No room for the series: renamed, and added to the overflow series.
    Overflow,
}

/// All series of one agent.
#[derive(Debug)]
pub struct Windower {
    policy: WindowPolicy,
    series: HashMap<String, HashMap<String, Series>>,
    series_count: usize,
    /// Metrics that carry a model's normalized scores; their windows get a verdict.
    judgement_series: HashSet<String>,
}

impl Windower {
    pub fn new(policy: WindowPolicy) -> Windower {
        Windower {
            policy,
            series: HashMap::new(),
            series_count: 0,
            judgement_series: HashSet::new(),
        }
    }

    /// Marks `metrics` as judgement series (windows summarized with a verdict).
    pub fn with_judgement_series(mut self, metrics: impl IntoIterator<Item = String>) -> Windower {
        self.judgement_series.extend(metrics);
        self
    }

    /// Restores a series' shipped horizon (from the store, before replay).
    pub fn restore_closed(&mut self, device: &str, metric: &str, closed_before: i64) {
        if let Some(series) = self.series_mut(device, metric, true) {
            series.closed_before = closed_before;
        }
    }

    /// Folds a message's readings in, keeping in `readings` only those that
    /// landed in a window (what the journal must keep). With `replay`, readings
    /// of already-closed windows are dropped without counting them (they were
    /// counted the first time).
    pub fn ingest(
        &mut self,
        device: &str,
        readings: &mut Vec<Reading>,
        message: u64,
        now: Instant,
        replay: bool,
    ) -> IngestOutcome {
        let mut outcome = IngestOutcome::default();
        readings.retain_mut(
            |reading| match self.add(device, reading, message, now, replay) {
                Added::Yes => {
                    outcome.accepted += 1;
                    true
                }
                Added::Late => {
                    outcome.late += u64::from(!replay);
                    false
                }
                Added::Overflow => {
                    outcome.too_many_series += 1;
                    true
                }
            },
        );
        outcome
    }

    fn add(
        &mut self,
        device: &str,
        reading: &mut Reading,
        message: u64,
        now: Instant,
        replay: bool,
    ) -> Added {
        let width = self.policy.width_ms;
        let alpha = self.policy.sketch_alpha;
        let found = if reading.metric == OVERFLOW_METRIC {
            self.series_mut(OVERFLOW_DEVICE, OVERFLOW_METRIC, true)
        } else {
            self.series_mut(device, &reading.metric, replay)
        };
        let Some(series) = found else {
            reading.metric = OVERFLOW_METRIC.into();
            return match self.add(device, reading, message, now, replay) {
                Added::Yes => Added::Overflow,
                late => late,
            };
        };
        let start = reading.ts_ms.div_euclid(width) * width;
        if start < series.closed_before {
            return Added::Late;
        }
        series.max_ts = series.max_ts.max(reading.ts_ms);
        let window = series
            .open
            .entry(start)
            .or_insert_with(|| Box::new(Window::new(start, start + width, alpha, now)));
        window.add(reading.value, reading.ts_ms, message, now);
        Added::Yes
    }

    /// Whether the open window of `device`/`metric` holding `ts_ms` has room for
    /// another exemplar (so the caller redacts only lines that will be kept).
    pub fn wants_exemplar(&self, device: &str, metric: &str, ts_ms: i64, max: usize) -> bool {
        let start = ts_ms.div_euclid(self.policy.width_ms) * self.policy.width_ms;
        self.series
            .get(device)
            .and_then(|m| m.get(metric))
            .and_then(|s| s.open.get(&start))
            .is_some_and(|w| w.exemplar_count() < max)
    }

    /// Keeps `e.line` in the open window of `device`/`e.metric` holding `e.ts_ms`
    /// if it has room; true if kept. Ingest and replay offer the same lines in the
    /// same order, so a replayed window keeps the same exemplars.
    pub fn offer_exemplar(&mut self, device: &str, e: &Exemplar, max: usize) -> bool {
        let start = e.ts_ms.div_euclid(self.policy.width_ms) * self.policy.width_ms;
        self.series
            .get_mut(device)
            .and_then(|m| m.get_mut(&e.metric))
            .and_then(|s| s.open.get_mut(&start))
            .is_some_and(|w| w.offer_exemplar(&e.line, max))
    }

    /// Whether the open window of `device`/`series` holding `ts_ms` has room
    /// for another escalation.
    pub fn has_escalation_room(&self, device: &str, series: &str, ts_ms: i64) -> bool {
        let start = ts_ms.div_euclid(self.policy.width_ms) * self.policy.width_ms;
        self.series
            .get(device)
            .and_then(|m| m.get(series))
            .and_then(|s| s.open.get(&start))
            .is_some_and(|w| w.has_escalation_room())
    }

    /// Keeps an escalated row in the open window of `device`/`x.series` holding
    /// its time, if the window has room; true if kept. Ingest and replay offer
    /// the same rows in the same order, so a replayed window keeps the same ones.
    pub fn offer_escalation(&mut self, device: &str, x: &Escalated) -> bool {
        let ts = x.escalation.ts_ms;
        let start = ts.div_euclid(self.policy.width_ms) * self.policy.width_ms;
        self.series
            .get_mut(device)
            .and_then(|m| m.get_mut(&x.series))
            .and_then(|s| s.open.get_mut(&start))
            .is_some_and(|w| w.offer_escalation(&x.escalation))
    }

    /// The oldest journaled message an open window holds, if any window is
    /// open: every message below it is needed by none (the journal may drop
    /// it). One pass over the open windows; called once per cut.
    pub fn low_water(&self) -> Option<u64> {
        self.series
            .values()
            .flat_map(|m| m.values())
            .flat_map(|s| s.open.values())
            .map(|w| w.first_message)
            .min()
    }

    /// Closes every window that is due at `now`.
    pub fn close_due(&mut self, now: Instant) -> ClosePass {
        let mut pass = ClosePass::default();
        let policy = self.policy;
        for (device, metrics) in &mut self.series {
            for (metric, series) in metrics.iter_mut() {
                let watermark = series.max_ts.saturating_sub(policy.allowed_lateness_ms);
                // The last due window; closing it closes everything before it too.
                let due = series
                    .open
                    .values()
                    .rev()
                    .find(|w| {
                        watermark >= w.end_ms
                            || now.saturating_duration_since(w.last_update) >= policy.idle_close
                    })
                    .map(|w| w.start_ms);
                let Some(due) = due else { continue };
                let rest = series.open.split_off(&(due + 1));
                let closing = std::mem::replace(&mut series.open, rest);
                for window in closing.into_values() {
                    series.closed_before = series.closed_before.max(window.end_ms);
                    pass.closed.push(Closed {
                        summary: window.summarize(
                            device,
                            metric,
                            self.judgement_series.contains(metric),
                        ),
                        closed_before: series.closed_before,
                    });
                }
            }
        }
        pass
    }

    /// Moves every open window's last update `by` later: time during which
    /// ingest was held back does not count as idle (the held messages may
    /// belong to these windows; closing them would turn those readings late).
    pub fn postpone_idle(&mut self, by: Duration) {
        for series in self.series.values_mut().flat_map(|m| m.values_mut()) {
            for w in series.open.values_mut() {
                w.last_update += by;
            }
        }
    }

    /// Number of windows currently open.
    pub fn open_windows(&self) -> usize {
        self.series
            .values()
            .flat_map(|m| m.values())
            .map(|s| s.open.len())
            .sum()
    }

    fn series_mut(&mut self, device: &str, metric: &str, force: bool) -> Option<&mut Series> {
        let known = self
            .series
            .get(device)
            .is_some_and(|m| m.contains_key(metric));
        if !known {
            if !force && self.series_count >= self.policy.max_series {
                return None;
            }
            self.series_count += 1;
            self.series
                .entry(device.to_owned())
                .or_default()
                .insert(metric.to_owned(), Series::new(i64::MIN));
        }
        self.series.get_mut(device)?.get_mut(metric)
    }
}

pub mod checkpoint;

#[cfg(test)]
mod tests;
