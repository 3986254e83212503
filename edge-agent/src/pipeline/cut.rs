//! The cut: every `batch_interval`, close due windows, seal them with the
//! counters into outbox batches (rolled up first if they would not fit the
//! outbox's room), checkpoint the open windows when the journal has grown
//! by `checkpoint_bytes`, release the journal below the new low-water mark
//! (or the checkpoint) with a sensor snapshot, and report what was cut. It
//! does not ingest (`mod.rs`) or wait for disk room (`run.rs`).

use std::collections::{BTreeSet, HashMap};
use std::time::Instant;

use tracing::{debug, warn};
use wire::{Counters, Reason};

use super::{now_ms, CutReport, Pipeline};
use crate::outbox::BatchExtras;
use crate::rollup;
use crate::store::{BatchCommit, StoreError};
use crate::windower::checkpoint;

impl Pipeline {
    /// The agent's state as the sink sees it with each cut.
    fn gauges(&self, disk: Option<u64>, now: Instant) -> wire::Gauges {
        let mut g = wire::Gauges::new();
        let mut set = |name: &str, v: u64| {
            g.insert(name.to_owned(), v);
        };
        set("outbox_bytes", self.store.outbox_bytes());
        set("outbox_batches", self.store.outbox_len() as u64);
        set("outbox_budget_bytes", self.cap.budget());
        set("store_cap_bytes", self.cap.max_bytes());
        if let Some(disk) = disk {
            set("store_disk_bytes", disk);
        }
        set("open_windows", self.windower.open_windows() as u64);
        set(
            "uptime_s",
            now.saturating_duration_since(self.started).as_secs(),
        );
        g
    }

    /// The sensor states changed since the last snapshot and the sensor mark
    /// they are current up to (the next message id), for a commit.
    pub(super) fn snapshot_sensors(
        &mut self,
        now: Instant,
    ) -> (Vec<crate::classify::StateUpdate>, u64) {
        self.sensor_snapshot = now;
        (self.classify.take_sensor_states(), self.next_message)
    }

    /// Closes due windows and seals them into outbox batches, at most once per
    /// `batch_interval`. Returns what was cut, if anything.
    pub fn tick(&mut self, now: Instant) -> Result<Option<CutReport>, StoreError> {
        if now.saturating_duration_since(self.last_cut) < self.batch_interval {
            return Ok(None);
        }
        self.last_cut = now;
        let pass = self.windower.close_due(now);
        // Counts alone wait for windows to ride with, up to `counters_interval`:
        // at a 1 s cut, a batch of counts alone every second would be a third
        // of a 1 Hz fleet's uplink (BENCHMARKS.md).
        let counters_due =
            now.saturating_duration_since(self.counters_sealed) >= self.counters_interval;
        let journal_bytes = self.store.journal_bytes();
        self.journal_floor = self.journal_floor.min(journal_bytes);
        let checkpoint_due = self.next_message > self.checkpoint_mark
            && journal_bytes - self.journal_floor >= self.checkpoint_bytes;
        if pass.closed.is_empty() && !counters_due && !checkpoint_due {
            return Ok(None);
        }
        self.health.drain_into(&mut self.counters);
        if pass.closed.is_empty() && self.counters.is_empty() && !checkpoint_due {
            return Ok(None);
        }
        let mut commit = BatchCommit::default();
        let mut below = self
            .windower
            .low_water()
            .unwrap_or(self.next_message)
            .max(self.checkpoint_mark);
        if checkpoint_due {
            let bytes = self.windower.checkpoint();
            if bytes.len() <= checkpoint::MAX_CHECKPOINT_BYTES {
                commit.windows = Some((self.next_message, bytes));
                below = self.next_message;
            } else {
                warn!(
                    bytes = bytes.len(),
                    "open windows too large to checkpoint; the journal keeps their messages"
                );
            }
        }
        if below > self.journal_below {
            // A released message can no longer be re-judged at start-up.
            let (states, mark) = self.snapshot_sensors(now);
            commit.classifier = states;
            commit.sensor_mark = Some(mark);
            commit.journal_below = below;
        }
        if let Some(end) = pass.closed.iter().map(|c| c.summary.end_ms).max() {
            self.metrics.observe_closed(end);
        }
        let mut windows = Vec::with_capacity(pass.closed.len());
        let mut horizons: HashMap<(String, String), i64> = HashMap::new();
        for c in pass.closed {
            horizons.insert(
                (c.summary.device.clone(), c.summary.metric.clone()),
                c.closed_before,
            );
            windows.push(c.summary);
        }
        // A fixed order (the windower closes them in hash-map order): a cut
        // seals the same bytes for the same windows, and the columnar body's
        // references to the previous series follow device and metric (~2%
        // smaller on a 1 Hz fleet, BENCHMARKS.md).
        windows.sort_unstable_by(|a, b| {
            (&a.device, &a.metric, a.start_ms).cmp(&(&b.device, &b.metric, b.start_ms))
        });
        if let Some(t) = self.classify.templates() {
            t.name_templates(&mut windows);
        }
        commit.closed = horizons.into_iter().map(|((d, m), h)| (d, m, h)).collect();
        let devices: BTreeSet<&str> = windows.iter().map(|w| w.device.as_str()).collect();
        let mut report = CutReport {
            first_seq: self.next_seq,
            batches: 0,
            windows: windows.len(),
            devices: devices.len(),
            bytes_in: std::mem::take(&mut self.bytes_in),
            bytes_out: 0,
            counters: self.counters.clone(),
        };
        // The budget follows the store's disk use (see `OutboxCap`), after a
        // compaction if one fits and pays (see `relieve_disk`).
        let disk = match self.store.disk_usage() {
            Ok(disk) => {
                self.guard.observe(disk, Instant::now());
                let full = disk >= self.guard.full_mark();
                let disk = self.relieve_disk(disk, full)?;
                self.cap.observe_disk(disk, self.store.outbox_bytes());
                Some(disk)
            }
            Err(e) => {
                warn!("cannot measure the store's disk use (outbox budget unchanged): {e}");
                None
            }
        };
        let gauges = self.gauges(disk, now);
        let taken = std::mem::take(&mut self.counters);
        let sealer = &self.sealer;
        let seal = |windows: &[wire::WindowSummary], counters: Counters, first_seq: u64| {
            let extras = BatchExtras {
                counters,
                gauges: gauges.clone(),
            };
            sealer.seal(first_seq.., windows, extras, now_ms())
        };
        let first_seq = self.next_seq;
        // A cut for the checkpoint alone seals no batch.
        let mut batches = if windows.is_empty() && taken.is_empty() {
            Vec::new()
        } else {
            seal(&windows, taken.clone(), first_seq)
        };
        // Make room under the cap before the cut lands, by roll-ups only: a
        // burst cut can alone be over the budget (room 0), and dropping towards
        // that would empty the outbox of windows that still roll up. Drops are
        // decided after the commit, against the budget (`enforce_budget`).
        // Until the cut commits, the counters it takes are still pending on
        // disk, so each rewrite persists them plus any loss it counts.
        let incoming: u64 = batches.iter().map(|(_, b)| b.len() as u64).sum();
        let mut loss = Counters::default();
        let room = self.cap.budget().saturating_sub(incoming);
        if self.store.outbox_bytes() > room {
            self.cap
                .roll_up_to(&self.store, room, &taken, &mut loss, now_ms())?;
        }
        // What the old windows could not make room for, the cut gives up
        // itself: it is rolled up before it is written. Written fine and
        // rolled up after, a burst cut would cost its bytes on disk twice
        // (sled keeps the old copies until it cleans their segments), and
        // a cut of a burst of short windows can be a quarter of the cap.
        let room = self.cap.budget().saturating_sub(self.store.outbox_bytes());
        if incoming > room {
            let escalations = |ws: &[wire::WindowSummary]| -> u64 {
                ws.iter().map(|w| w.escalations.len() as u64).sum()
            };
            let before = escalations(&windows);
            let (rolled, merged) = rollup::roll_up_to_fit(
                std::mem::take(&mut windows),
                incoming,
                room,
                self.cap.max_width_ms(),
            );
            windows = rolled;
            loss.add(Reason::RolledUp, merged);
            // A merged window keeps at most its room of escalations.
            let refused = before - escalations(&windows);
            loss.add(Reason::EscalationOverBudget, refused);
            self.metrics.count(Reason::RolledUp, merged);
            self.metrics.count(Reason::EscalationOverBudget, refused);
            if merged > 0 {
                debug!(
                    merged,
                    incoming, room, "burst cut rolled up before it was written"
                );
            }
        }
        if !loss.is_empty() {
            let mut counters = taken;
            counters.merge(&loss);
            report.counters.merge(&loss);
            batches = seal(&windows, counters, first_seq);
        }
        self.next_seq += batches.len() as u64;
        report.bytes_out = batches.iter().map(|(_, b)| b.len() as u64).sum();
        commit.batches = batches;
        commit.next_seq = self.next_seq;
        // Before the journal below the mark goes, its sequence numbers land in sled.
        (commit.device_seqs, commit.seqs_mark) = self.take_unsaved_seqs();
        commit.journal_end = self.next_message;
        report.batches = commit.batches.len();
        let journal_below = commit.journal_below;
        let checkpoint = commit.windows.as_ref().map(|(mark, b)| (*mark, b.len()));
        self.store.commit_batches(commit)?;
        self.journal_below = self.journal_below.max(journal_below);
        if let Some((mark, bytes)) = checkpoint {
            self.checkpoint_mark = mark;
            self.journal_floor = self.store.journal_bytes();
            debug!(
                mark,
                bytes,
                open_windows = self.windower.open_windows(),
                journal_bytes = self.journal_floor,
                "open windows checkpointed; journal released below the mark"
            );
        }
        // The cut alone may not fit: roll up the new batches too.
        self.enforce_budget()?;
        self.metrics.observe_store(&self.store);
        if report.batches == 0 {
            return Ok(None);
        }
        self.counters_sealed = now;
        self.outbox_ready.notify_one();
        Ok(Some(report))
    }
}
