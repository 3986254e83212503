//! Opening the pipeline: the store, classifier state from its snapshot, the
//! open windows from their checkpoint, and the journal after it replayed into
//! them (re-judging what came after the sensor snapshot). What a group commit
//! and a cut do is in the parent module; what the store recovers and how is in
//! `store/recover.rs`.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::Notify;
use tracing::{error, info, warn};
use wire::Reason;

use super::{now_ms, Pipeline};
use crate::classify::ClassifyStage;
use crate::config::Settings;
use crate::decode::sparkplug::Sparkplug;
use crate::decode::Reading;
use crate::disk_guard::DiskGuard;
use crate::health::{Health, HealthCount};
use crate::metrics::AgentMetrics;
use crate::outbox::{BatchSealer, OutboxCap};
use crate::store::{IngestCommit, Store, StoreError};
use crate::windower::{checkpoint, Windower};

impl Pipeline {
    /// Opens the store, restores classifier state and replays the journal
    /// (its metrics in a registry of its own; see [`Pipeline::open_with_metrics`]).
    pub fn open(
        settings: &Settings,
        classify: ClassifyStage,
        outbox_ready: Arc<Notify>,
    ) -> Result<Pipeline, StoreError> {
        Pipeline::open_with_metrics(settings, classify, outbox_ready, AgentMetrics::new())
    }

    /// [`Pipeline::open`], recording into `metrics` (and the classify stage's
    /// model calls, the outbox cap's losses and the health counts too).
    pub fn open_with_metrics(
        settings: &Settings,
        mut classify: ClassifyStage,
        outbox_ready: Arc<Notify>,
        metrics: AgentMetrics,
    ) -> Result<Pipeline, StoreError> {
        classify.attach_metrics(&metrics);
        let (store, mut recovered) =
            Store::open_or_set_aside(&settings.data_dir, now_ms(), settings.journal.cache_bytes)?;
        // The open windows as of the last checkpoint, if its bytes decode;
        // if not, the journal replays what it still holds (counted).
        let (checkpoint, checkpoint_mark) = match recovered.windows.take() {
            Some((mark, bytes)) => match checkpoint::decode(&bytes) {
                Some(c) => (c, mark),
                None => {
                    error!(
                        mark,
                        bytes = bytes.len(),
                        "window checkpoint does not decode; open windows lose what the journal released"
                    );
                    recovered.quarantined += 1;
                    (Vec::new(), 0)
                }
            },
            None => (Vec::new(), 0),
        };
        metrics.count(Reason::CorruptRecord, recovered.quarantined);
        if recovered.quarantined > 0 {
            recovered
                .counters
                .add(Reason::CorruptRecord, recovered.quarantined);
            store.commit_ingest(IngestCommit {
                counters: Some(recovered.counters.clone()),
                ..IngestCommit::default()
            })?;
        }
        for (series, device, state) in &recovered.classifier {
            classify.restore(series, device, state);
        }
        let mut windower =
            Windower::new(settings.window).with_judgement_series(classify.judgement_series());
        for (device, metric, closed_before) in &recovered.closed {
            windower.restore_closed(device, metric, *closed_before);
        }
        let now = Instant::now();
        windower.restore(checkpoint, now);
        let mut next_message = 1;
        let mut replayed = 0usize;
        let max_exemplars = classify.templates().map_or(0, |t| t.exemplars_per_window());
        for (id, record) in &recovered.journal {
            next_message = id + 1;
            if *id < checkpoint_mark {
                // In the checkpoint already (its segment was not deleted yet).
                continue;
            }
            replayed += 1;
            let mut readings = record.readings.clone();
            windower.ingest(&record.device, &mut readings, *id, now, true);
            for e in &record.exemplars {
                windower.offer_exemplar(&record.device, e, max_exemplars);
            }
            for x in &record.escalations {
                windower.offer_escalation(&record.device, x);
            }
        }
        // Sensor states come from the last snapshot; the messages journaled
        // after it are judged again (for their state only). A store from
        // before snapshots (no mark) committed states with every message.
        let mark = recovered.sensor_mark.unwrap_or(next_message);
        let after: Vec<(&str, &[Reading])> = recovered
            .journal
            .iter()
            .filter(|(id, _)| *id >= mark)
            .map(|(_, r)| (r.device.as_str(), r.readings.as_slice()))
            .collect();
        for chunk in after.chunks(settings.journal.commit_max_messages.max(1)) {
            classify.replay_sensors(chunk);
        }
        // Ids only grow, also past a journal emptied by cuts.
        let next_message = next_message
            .max(mark)
            .max(recovered.journal_end)
            .max(checkpoint_mark);
        // The snapshot as of now, so the next start re-judges nothing twice.
        // And every sequence number, before the release below drops records
        // that carried some.
        store.commit_ingest(IngestCommit {
            classifier: classify.take_sensor_states(),
            sensor_mark: Some(next_message),
            device_seqs: recovered.device_seqs.clone().into_iter().collect(),
            seqs_mark: Some(next_message),
            ..IngestCommit::default()
        })?;
        // Records below the replayed windows (a crash came between a cut and
        // its segments' deletion, or their windows shipped): their segments
        // may go, now that the snapshot no longer needs them re-judged.
        let journal_below = windower
            .low_water()
            .unwrap_or(next_message)
            .max(checkpoint_mark);
        store.release_journal_below(journal_below);
        info!(
            epoch = recovered.epoch,
            next_seq = recovered.next_seq,
            checkpoint_mark,
            replayed,
            rejudged = after.len(),
            open_windows = windower.open_windows(),
            outbox = recovered.outbox_len,
            "store recovered"
        );
        let outbox_live = store.outbox_bytes();
        let health = Arc::new(Health::mirrored(metrics.health_counters()));
        health.add(HealthCount::Starts, 1);
        metrics.observe_store(&store);
        let sealer = BatchSealer::new(
            &settings.gateway_id,
            recovered.epoch,
            settings.uplink.max_windows_per_batch,
            settings.uplink.body_encoding(),
        );
        let mut pipeline = Pipeline {
            routes: settings.routes.clone(),
            limits: settings.limits,
            batch_interval: settings.uplink.batch_interval,
            counters_interval: settings.uplink.counters_interval,
            sealer: sealer.clone(),
            commit_max_messages: settings.journal.commit_max_messages,
            commit_linger: settings.journal.commit_linger,
            store,
            windower,
            device_seqs: recovered.device_seqs,
            seqs_unsaved: Default::default(),
            sparkplug: Sparkplug::default(),
            commands: Vec::new(),
            counters: recovered.counters,
            next_seq: recovered.next_seq,
            next_message,
            journal_below,
            checkpoint_mark,
            checkpoint_bytes: settings.journal.checkpoint_bytes,
            journal_floor: u64::MAX,
            last_cut: now,
            bytes_in: 0,
            committed: 0,
            outbox_ready,
            classify,
            cap: OutboxCap::new(
                settings.outbox.max_bytes,
                settings.outbox.max_rollup_width,
                sealer,
                outbox_live,
            )
            .with_metrics(metrics.clone()),
            guard: DiskGuard::new(settings.outbox.max_bytes),
            health,
            counters_sealed: now,
            sensor_snapshot: now,
            started: now,
            metrics,
        };
        match pipeline.store.disk_usage() {
            Ok(disk) => pipeline.keep_ballast(disk),
            Err(e) => {
                warn!("store ballast not written (cannot measure the store's disk use): {e}");
                let present = pipeline.store.ballast().bytes().unwrap_or(0);
                pipeline.guard.set_ballast(present);
            }
        }
        Ok(pipeline)
    }
}
