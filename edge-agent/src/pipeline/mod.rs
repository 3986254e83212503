//! The ingest pipeline: decode → dedup → window → group commit → ack, and batch cuts.
//!
//! It runs on one dedicated thread that owns the [`Windower`] and is the only
//! writer of journal and outbox. Each loop takes whatever messages are queued
//! (up to `commit_max_messages`), applies them in memory, makes their effect
//! durable in one group commit, and only then acks them: the journal's sync
//! is the durability point of guarantee 1 (sled is written too only when the
//! group changed more than the journal holds: counters, classifier state).
//! Every `batch_interval` it closes due windows and seals them, with the
//! counters, into outbox batches.
//! Start-up replays the journal so open windows come back exactly as they were.
//! It does no network I/O; the source and the syncer do. The cut is in
//! `cut.rs`, start-up in `open.rs`, the loop itself and its disk-pressure
//! handling in `run.rs`.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tracing::{field, info_span};
use wire::{Counters, Reason};

use crate::classify::router::Escalated;
use crate::classify::templates::REDACTED_PREFIX;
use crate::classify::{Accepted, ClassifyStage};
use crate::config::Route;
use crate::decode::sparkplug::{Command, Sparkplug};
use crate::decode::Reading;
use crate::decode::{self, DecodeLimits, Format};
use crate::disk_guard::DiskGuard;
use crate::health::Health;
use crate::journal_record::JournalRecord;
use crate::metrics::AgentMetrics;
use crate::outbox::OutboxCap;
use crate::source::Delivery;
use crate::store::{IngestCommit, Store, StoreError};
use crate::windower::Windower;

mod cut;
mod open;
mod run;

/// A sequence number this far below a device's highest is taken as a device
/// restart (counter reset), not a redelivery.
const SEQ_RESET_GAP: u64 = 1_000_000;

/// Sensor device states are written as a snapshot at every cut that
/// releases journal entries, and otherwise with a group commit at least this
/// often, which bounds how much journal a start-up re-judges.
pub const SENSOR_SNAPSHOT_EVERY: Duration = Duration::from_secs(10);

/// Rebirth requests held for `run` to publish; more in one group are not
/// queued (their nodes are asked again after the retry interval).
const MAX_PENDING_COMMANDS: usize = 1024;

/// What one cut produced (for logs and the demo).
#[derive(Debug, Clone, PartialEq)]
pub struct CutReport {
    pub first_seq: u64,
    pub batches: usize,
    pub windows: usize,
    pub devices: usize,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub counters: Counters,
}

/// The pipeline state (single owner, one thread).
#[derive(Debug)]
pub struct Pipeline {
    routes: Vec<Route>,
    limits: DecodeLimits,
    batch_interval: Duration,
    /// Counts alone (no window closed) are sealed into a batch of their own
    /// at most this often (`uplink.counters_interval`); otherwise they ride
    /// with windows. They are durable from the commit that counted them.
    counters_interval: Duration,
    /// Seals each cut's batches (gateway, epoch, batch size, body encoding).
    sealer: crate::outbox::BatchSealer,
    commit_max_messages: usize,
    commit_linger: Duration,
    store: Store,
    windower: Windower,
    device_seqs: HashMap<String, u64>,
    /// Devices whose sequence number changed since it was last written to
    /// sled: until then their journal records carry it.
    seqs_unsaved: BTreeSet<String>,
    /// Sparkplug B session state (births, aliases, seq) of `format = "sparkplug"` routes.
    sparkplug: Sparkplug,
    /// Rebirth requests to publish (taken by `run` after each group; at most
    /// [`MAX_PENDING_COMMANDS`], the rest are asked again after the retry interval).
    commands: Vec<Command>,
    counters: Counters,
    next_seq: u64,
    next_message: u64,
    /// The journal's low-water mark as last committed: every record below
    /// it is released (no open window holds it, or a checkpoint does).
    journal_below: u64,
    /// The mark of the last committed window checkpoint (0: none): open
    /// windows hold the effect of every message below it in the store.
    checkpoint_mark: u64,
    /// Journal growth (bytes) past `journal_floor` at which a cut
    /// checkpoints the open windows.
    checkpoint_bytes: u64,
    /// The journal's smallest size since the last checkpoint (or start).
    journal_floor: u64,
    last_cut: Instant,
    bytes_in: u64,
    /// Messages made durable since start (for progress logs and benchmarks).
    committed: u64,
    outbox_ready: Arc<Notify>,
    classify: ClassifyStage,
    cap: OutboxCap,
    guard: DiskGuard,
    health: Arc<Health>,
    /// When a batch last carried the counters (health counts included).
    counters_sealed: Instant,
    /// When sensor states were last written ([`SENSOR_SNAPSHOT_EVERY`]).
    sensor_snapshot: Instant,
    started: Instant,
    metrics: AgentMetrics,
}

/// An error and its sources, `: `-joined (thiserror's Display shows only the top).
fn causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Milliseconds since the Unix epoch by the gateway clock.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Pipeline {
    /// The agent's health counts, for the stages that see those events.
    pub fn health(&self) -> Arc<Health> {
        self.health.clone()
    }

    /// The store handle (shared with the syncer).
    /// The messages to publish that ingest made due (Sparkplug rebirth
    /// requests), oldest first; `run` publishes them after each group.
    pub fn take_commands(&mut self) -> Vec<Command> {
        std::mem::take(&mut self.commands)
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The sequence numbers not yet written to sled, for a commit that
    /// writes them, and the message id they are current up to.
    fn take_unsaved_seqs(&mut self) -> (Vec<(String, u64)>, Option<u64>) {
        let seqs = std::mem::take(&mut self.seqs_unsaved)
            .into_iter()
            .map(|d| {
                let seq = self.device_seqs[&d];
                (d, seq)
            })
            .collect();
        (seqs, Some(self.next_message))
    }

    /// The journal mark of the newest committed window checkpoint (0: none
    /// yet): start-up replays the journal from it on.
    pub fn checkpoint_mark(&self) -> u64 {
        self.checkpoint_mark
    }

    /// Applies `deliveries` and makes their effect durable. The caller acks afterwards.
    pub fn ingest(&mut self, deliveries: &[Delivery], now: Instant) -> Result<(), StoreError> {
        self.ingest_at(deliveries, now, now_ms())
    }

    /// [`Self::ingest`] with the gateway clock reading `clock` (ms since the epoch),
    /// the time of readings without a payload time: replays at a chosen line rate.
    pub fn ingest_at(
        &mut self,
        deliveries: &[Delivery],
        now: Instant,
        clock: i64,
    ) -> Result<(), StoreError> {
        let span = info_span!(
            "pipeline.commit",
            messages = deliveries.len(),
            accepted = field::Empty,
            readings = field::Empty,
        );
        let _entered = span.enter();
        let mut commit = IngestCommit::default();
        let before = self.counters.clone();
        // Persisted with this group (the counters changed), shipped with the next cut.
        self.health.drain_into(&mut self.counters);
        let mut accepted = Vec::with_capacity(deliveries.len());
        let mut landed = 0u64;
        for delivery in deliveries {
            self.bytes_in += delivery.payload.len() as u64;
            let Some(route) = self
                .routes
                .iter()
                .find(|r| r.filter.matches(&delivery.topic))
            else {
                self.counters.add(Reason::UnknownTopic, 1);
                continue;
            };
            let decoded = if route.rules.format == Format::Sparkplug {
                let decoded =
                    self.sparkplug
                        .decode(&self.limits, &delivery.topic, &delivery.payload, clock);
                if route.request_rebirth && self.commands.len() < MAX_PENDING_COMMANDS {
                    self.commands.extend(self.sparkplug.rebirth_request(clock));
                }
                decoded
            } else {
                decode::decode(
                    &route.rules,
                    &self.limits,
                    &delivery.topic,
                    &delivery.payload,
                    clock,
                )
            };
            let decoded = match decoded {
                Ok(d) => d,
                Err(reason) => {
                    self.counters.add(reason, 1);
                    continue;
                }
            };
            self.counters.merge(&decoded.problems);
            if let Some(seq) = decoded.seq {
                let highest = self.device_seqs.get(&decoded.device).copied();
                if highest.is_some_and(|h| seq <= h && h - seq < SEQ_RESET_GAP) {
                    self.counters.add(Reason::Duplicate, 1);
                    continue;
                }
                // A device seen before costs no key allocation.
                match self.device_seqs.get_mut(decoded.device.as_str()) {
                    Some(h) => *h = seq,
                    None => {
                        self.device_seqs.insert(decoded.device.clone(), seq);
                    }
                }
                if !self.seqs_unsaved.contains(&decoded.device) {
                    self.seqs_unsaved.insert(decoded.device.clone());
                }
            }
            let text = (route.rules.format == Format::Text && self.classify.judges_text())
                .then(|| String::from_utf8_lossy(&delivery.payload).into_owned());
            accepted.push(Accepted {
                device: decoded.device,
                seq: decoded.seq,
                readings: decoded.readings,
                text,
                exemplars: Vec::new(),
                escalations: Vec::new(),
            });
        }
        let accepted_messages = accepted.len();
        if !self.classify.is_empty() {
            commit.classifier = self.classify.apply(&mut accepted);
        }
        // A sequence number that no journal record of this group carries
        // goes to sled with the group (with every other one not saved yet).
        let mut seqs_uncovered = false;
        for Accepted {
            device,
            seq,
            mut readings,
            exemplars,
            escalations,
            ..
        } in accepted
        {
            let id = self.next_message;
            self.next_message += 1;
            let mut outcome = self.windower.ingest(&device, &mut readings, id, now, false);
            landed += outcome.accepted + outcome.too_many_series;
            let exemplars = match self.classify.templates() {
                Some(t) if !exemplars.is_empty() => {
                    // Kept exemplars, and their redaction counts as readings of this message.
                    let (kept, mut counts) =
                        t.keep_exemplars(&mut self.windower, &device, exemplars);
                    let more = self.windower.ingest(&device, &mut counts, id, now, false);
                    outcome.late += more.late;
                    outcome.too_many_series += more.too_many_series;
                    readings.extend(counts);
                    kept
                }
                _ => Vec::new(),
            };
            // An escalation travels in its judgement window, within the device's
            // hourly budget; one without room or budget stays local, counted.
            // Decided message by message, so grouping never changes the outcome.
            let escalations: Vec<Escalated> = escalations
                .into_iter()
                .filter(|x| {
                    let ts = x.escalation.ts_ms;
                    if !self.windower.has_escalation_room(&device, &x.series, ts) {
                        self.counters.add(Reason::EscalationOverBudget, 1);
                        return false;
                    }
                    self.classify.router.admit(&device, ts)
                        && self.windower.offer_escalation(&device, x)
                })
                .collect();
            // What an admitted exemplar had redacted counts like a template
            // exemplar's: `log.redacted.<kind>` readings of this message.
            let mut counts: Vec<Reading> = escalations
                .iter()
                .flat_map(|x| {
                    x.redacted.iter().map(|(kind, n)| Reading {
                        metric: format!("{REDACTED_PREFIX}{kind}").into(),
                        ts_ms: x.escalation.ts_ms,
                        value: *n as f64,
                    })
                })
                .collect();
            if !counts.is_empty() {
                let more = self.windower.ingest(&device, &mut counts, id, now, false);
                outcome.late += more.late;
                outcome.too_many_series += more.too_many_series;
                readings.extend(counts);
            }
            self.counters.add(Reason::Late, outcome.late);
            self.counters
                .add(Reason::TooManySeries, outcome.too_many_series);
            if readings.is_empty() {
                seqs_uncovered |= seq.is_some();
            } else {
                commit.journal.push((
                    id,
                    JournalRecord {
                        device,
                        seq,
                        readings,
                        exemplars,
                        escalations,
                    },
                ));
            }
        }
        if !self.classify.is_empty() {
            commit.classifier.extend(self.classify.router_updates());
            let refused = self.classify.router.take_over_budget();
            self.counters.add(Reason::EscalationOverBudget, refused);
        }
        if seqs_uncovered {
            (commit.device_seqs, commit.seqs_mark) = self.take_unsaved_seqs();
        }
        if self.counters != before {
            commit.counters = Some(self.counters.clone());
        }
        if now.saturating_duration_since(self.sensor_snapshot) >= SENSOR_SNAPSHOT_EVERY {
            let (states, mark) = self.snapshot_sensors(now);
            commit.classifier.extend(states);
            commit.sensor_mark = Some(mark);
        }
        self.store.commit_ingest(commit)?;
        // Counted once durable; a group whose commit failed stops the agent.
        let n = accepted_messages as u64;
        self.metrics.messages_accepted.inc_by(n);
        self.metrics
            .messages_rejected
            .inc_by(deliveries.len() as u64 - n);
        self.metrics.readings.inc_by(landed);
        self.metrics.count_growth(&before, &self.counters);
        self.metrics.observe_store(&self.store);
        span.record("accepted", n);
        span.record("readings", landed);
        Ok(())
    }
}
