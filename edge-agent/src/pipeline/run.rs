//! The pipeline thread's loop: take a group of deliveries, make it durable,
//! ack it, tick; and the disk-pressure side of the outbox cap (compact the
//! store, lower the budget between cuts, hold ingest while the store is at
//! its full mark).
//! What a group commit and a cut do is in the parent module.

use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tracing::{debug, error, info, warn};
use wire::Counters;

use super::{causes, now_ms, CutReport, Pipeline};
use crate::disk_guard::Pressure;
use crate::health::HealthCount;
use crate::source::{Acker, Delivery};
use crate::store::{CompactError, StoreError};

/// How often inference latency and judgement counts are logged.
const STATS_EVERY: Duration = Duration::from_secs(30);
/// While ingest waits for room: how often it re-checks, and how often it says so.
const ROOM_POLL: Duration = Duration::from_millis(50);
const ROOM_TELL_EVERY: Duration = Duration::from_secs(10);
/// A lingering group commit stops waiting after this long without a message
/// (the broker's in-flight window may be full: nothing more comes before acks).
const LINGER_GAP: Duration = Duration::from_millis(2);

impl Pipeline {
    /// Runs until the delivery channel closes: ingest, commit, ack, tick.
    pub fn run(
        mut self,
        mut rx: mpsc::Receiver<Delivery>,
        mut acker: impl Acker,
        runtime: tokio::runtime::Handle,
    ) -> Result<(), StoreError> {
        let tick_every = self.batch_interval.min(Duration::from_millis(100));
        let mut last_stats = Instant::now();
        let mut queue = Vec::with_capacity(self.commit_max_messages);
        loop {
            let first =
                runtime.block_on(async { tokio::time::timeout(tick_every, rx.recv()).await });
            let closed = matches!(first, Ok(None));
            if let Ok(Some(d)) = first {
                queue.push(d);
                self.fill_group(&mut rx, &mut queue);
                self.make_room(&mut acker)?;
                if let Err(e) = self.ingest(&queue, Instant::now()) {
                    error!(
                        messages = queue.len(),
                        "store commit failed; not acknowledged, the broker will redeliver: {}",
                        causes(&e)
                    );
                    return Err(e);
                }
                self.committed += queue.len() as u64;
                debug!(group = queue.len(), total = self.committed, "committed");
                acker.ack(queue.drain(..).map(|d| d.ack).collect());
                self.publish_commands(&mut acker);
            } else {
                acker.flush();
            }
            self.tick_logged()?;
            if last_stats.elapsed() >= STATS_EVERY {
                last_stats = Instant::now();
                self.log_inference();
            }
            if closed {
                return Ok(());
            }
        }
    }

    /// Adds to a group what is queued and, for up to `commit_linger` after
    /// its first message, what keeps arriving, until [`LINGER_GAP`] passes
    /// without a message or the group is full. A commit costs a write and
    /// an fdatasync whatever its size (at 1k msg/s, one per message was most
    /// of the agent's CPU). It sleeps and then takes what came rather than
    /// waiting on the channel: a wake-up per [`LINGER_GAP`], not one per
    /// message (at 1k msg/s, each was a futex wake of this thread). A closed
    /// channel ends it; the next receive sees that.
    fn fill_group(&self, rx: &mut mpsc::Receiver<Delivery>, queue: &mut Vec<Delivery>) {
        let deadline = Instant::now() + self.commit_linger;
        let take_queued = |rx: &mut mpsc::Receiver<Delivery>, queue: &mut Vec<Delivery>| {
            while queue.len() < self.commit_max_messages {
                match rx.try_recv() {
                    Ok(d) => queue.push(d),
                    Err(_) => break,
                }
            }
        };
        take_queued(rx, queue);
        loop {
            let now = Instant::now();
            if queue.len() >= self.commit_max_messages || now >= deadline {
                return;
            }
            let before = queue.len();
            std::thread::sleep(LINGER_GAP.min(deadline - now));
            take_queued(rx, queue);
            if queue.len() == before {
                return;
            }
        }
    }

    /// Hands the rebirth requests the group made due to the MQTT client
    /// (QoS 0, never waiting: one the client cannot take now is dropped and
    /// counted; its node is asked again after the retry interval).
    fn publish_commands(&mut self, acker: &mut impl Acker) {
        for command in self.take_commands() {
            let kind = if acker.publish(&command) {
                info!(topic = %command.topic, "sparkplug rebirth requested");
                HealthCount::SparkplugRebirthRequests
            } else {
                warn!(topic = %command.topic, "sparkplug rebirth request dropped: mqtt client queue full");
                HealthCount::SparkplugRebirthDropped
            };
            self.health.add(kind, 1);
        }
    }

    fn tick_logged(&mut self) -> Result<(), StoreError> {
        let cut = self.tick(Instant::now()).inspect_err(|e| {
            error!(
                "cut into the outbox failed; its windows stay in the journal: {}",
                causes(e)
            );
        })?;
        if let Some(cut) = cut {
            log_cut(&cut);
        }
        Ok(())
    }

    /// Before a group commit: on high disk use lowers the outbox budget now;
    /// at the full mark holds the group (not committed, not acked) while
    /// windows keep closing and roll-ups free room, until disk use is below
    /// the mark again. Nothing acknowledged waits here: the held messages
    /// stay with the broker until they are committed.
    fn make_room(&mut self, acker: &mut impl Acker) -> Result<(), StoreError> {
        let disk = match self.guard.check(&self.store, Instant::now()) {
            Pressure::Calm => return Ok(()),
            Pressure::High { disk } => {
                let disk = self.relieve_disk(disk, false)?;
                return self.lower_budget(disk);
            }
            Pressure::Full { disk } => match self.relieve_disk(disk, true)? {
                now if now < self.guard.full_mark() => return self.lower_budget(now),
                now => now,
            },
        };
        self.guard.pauses += 1;
        self.health.add(HealthCount::IngestHolds, 1);
        let since = Instant::now();
        warn!(
            disk_bytes = disk,
            cap = self.cap.max_bytes(),
            full_mark = self.guard.full_mark(),
            pauses = self.guard.pauses,
            "store at its disk mark: ingest waits for room (messages stay with the broker)"
        );
        self.lower_budget(disk)?;
        let mut told = since;
        let (mut level, mut level_since) = (disk, Instant::now());
        let mut idle_counted_until = since;
        loop {
            acker.flush();
            std::thread::sleep(ROOM_POLL);
            // Windows keep closing on their watermark, but not for being idle:
            // their next readings may be among the messages held back.
            let now = Instant::now();
            self.windower
                .postpone_idle(now.saturating_duration_since(idle_counted_until));
            idle_counted_until = now;
            self.tick_logged()?;
            match self.guard.check(&self.store, Instant::now()) {
                Pressure::Calm => break,
                Pressure::High { disk } => {
                    self.lower_budget(disk)?;
                    break;
                }
                Pressure::Full { disk } => {
                    if self.relieve_disk(disk, true)? < self.guard.full_mark() {
                        break;
                    }
                    if disk != level {
                        (level, level_since) = (disk, Instant::now());
                    } else if self.guard.resume_on_stall(disk, level_since.elapsed()) {
                        info!(
                            disk_bytes = disk,
                            "store disk use unchanged while ingest waited: sled holds free space it reuses"
                        );
                        break;
                    }
                    if self.guard.may_lower(Instant::now()) {
                        self.lower_budget(disk)?;
                    }
                    if told.elapsed() >= ROOM_TELL_EVERY {
                        told = Instant::now();
                        warn!(
                            disk_bytes = disk,
                            waited_s = since.elapsed().as_secs(),
                            outbox_bytes = self.store.outbox_bytes(),
                            live_bytes = self.store.live_bytes().unwrap_or(0),
                            full_mark = self.guard.full_mark(),
                            budget = self.cap.budget(),
                            "ingest still waiting for room under the outbox cap"
                        );
                    }
                }
            }
        }
        let waited_ms = since.elapsed().as_millis() as u64;
        self.health.add(HealthCount::IngestHeldMs, waited_ms);
        info!(waited_ms, "room under the outbox cap again: ingest resumes");
        Ok(())
    }

    /// On high disk use, compacts the store if its snapshot fits under the
    /// cap beside the old files and it gives back enough (see
    /// [`crate::disk_guard::DiskGuard`]'s rules); returns the disk use after
    /// (unchanged if it did not compact). With `squeeze` (ingest is waiting
    /// at the full mark) a smaller gain is enough, and with a snapshot too
    /// large for the room left it first rolls the outbox up until one fits
    /// (roll-ups only, nothing dropped).
    pub(super) fn relieve_disk(&mut self, disk: u64, squeeze: bool) -> Result<u64, StoreError> {
        let now = Instant::now();
        if !self.guard.may_try_compaction(now) {
            return Ok(disk);
        }
        // The snapshot's allowance is the room left under the cap, so it is
        // measured now: `disk` may be up to one measurement interval old, and
        // a group commit or a cut may have written since.
        let disk = self.store.disk_usage().unwrap_or(disk);
        let mut live = self.store.live_bytes()?;
        self.guard.set_journal(self.store.journal_bytes());
        let allowance_of = |guard: &crate::disk_guard::DiskGuard, disk, live| {
            if squeeze {
                guard.compaction_allowance_waiting(disk, live)
            } else {
                guard.compaction_allowance(disk, live)
            }
        };
        let mut allowance = allowance_of(&self.guard, disk, live);
        let fits = self.guard.live_that_fits(disk);
        if allowance.is_none() && squeeze && live > fits {
            // Bookkeeping (shipped horizons, states) cannot shrink here; the outbox can.
            let kept = live.saturating_sub(self.store.outbox_bytes());
            let mut loss = Counters::default();
            let target = fits.saturating_sub(kept);
            self.cap
                .roll_up_to(&self.store, target, &self.counters, &mut loss, now_ms())?;
            self.counters.merge(&loss);
            live = self.store.live_bytes()?;
            let disk = self.store.disk_usage().unwrap_or(disk);
            allowance = allowance_of(&self.guard, disk, live);
            debug!(live, target, fits, "rolled up to fit a compaction snapshot");
        }
        let Some(allowance) = allowance else {
            return Ok(disk);
        };
        match self.store.compact(allowance) {
            Ok(done) => {
                self.guard.compacted(done.disk_after, Instant::now());
                self.keep_ballast(done.disk_after);
                self.health.add(HealthCount::Compactions, 1);
                self.cap.restart_budget();
                info!(
                    generation = done.generation,
                    records = done.records,
                    live_bytes = done.live_bytes,
                    disk_before = done.disk_before,
                    disk_after = done.disk_after,
                    took_ms = done.took.as_millis() as u64,
                    "store compacted: disk space given back"
                );
                Ok(done.disk_after)
            }
            Err(CompactError::OverAllowance { allowance }) => {
                warn!(
                    disk_bytes = disk,
                    live_bytes = live,
                    allowance,
                    "store compaction abandoned: its snapshot would not fit under the cap"
                );
                Ok(disk)
            }
            Err(CompactError::Store(e)) => Err(e),
        }
    }

    /// Tops the store's ballast up to its target if that fits under the full
    /// mark beside `disk` bytes in use (at start, and after a compaction,
    /// which writes back only what it deleted) and tells the guard what it
    /// holds. A failure is logged: the ballast is room for a compaction, not data.
    pub(super) fn keep_ballast(&mut self, disk: u64) {
        let ballast = self.store.ballast();
        let kept = (|| {
            let present = ballast.bytes()?;
            let add = self.guard.ballast_to_add(disk, present);
            if add > 0 {
                ballast.fill(present + add)?;
                debug!(bytes = present + add, "store ballast written");
            }
            ballast.bytes()
        })();
        match kept {
            Ok(bytes) => self.guard.set_ballast(bytes),
            Err(e) => {
                warn!("store ballast not written (a compaction near the cap may not fit): {e}");
                self.guard.set_ballast(ballast.bytes().unwrap_or(0));
            }
        }
    }

    /// Lowers the live budget from a disk measurement and rolls up to it now.
    fn lower_budget(&mut self, disk: u64) -> Result<(), StoreError> {
        self.cap.observe_disk(disk, self.store.outbox_bytes());
        self.enforce_budget()
    }

    /// Rolls up (then drops) until the outbox fits its budget. The losses
    /// are pending counters from here on and ship with the next cut.
    pub(super) fn enforce_budget(&mut self) -> Result<(), StoreError> {
        if self.store.outbox_bytes() > self.cap.budget() {
            let mut loss = Counters::default();
            self.cap.enforce(
                &self.store,
                self.cap.budget(),
                &self.counters,
                &mut loss,
                now_ms(),
            )?;
            self.counters.merge(&loss);
        }
        Ok(())
    }

    fn log_inference(&self) {
        for (series, l) in self.classify.latency() {
            info!(
                series,
                judged = self.classify.judged,
                model_errors = self.classify.model_errors,
                calls = l.calls,
                rows = l.rows,
                "inference per row p50 {:.1} µs p99 {:.1} µs; per call p50 {:.1} µs p99 {:.1} µs",
                l.row_p50_us,
                l.row_p99_us,
                l.call_p50_us,
                l.call_p99_us
            );
        }
    }
}

fn log_cut(cut: &CutReport) {
    let ratio = cut.bytes_in as f64 / cut.bytes_out.max(1) as f64;
    info!(
        "batch {}: {} device(s), {} window(s), {} bytes in, {} bytes to uplink ({ratio:.1}x smaller), rejected {}",
        cut.first_seq,
        cut.devices,
        cut.windows,
        cut.bytes_in,
        cut.bytes_out,
        cut.counters.total()
    );
}
