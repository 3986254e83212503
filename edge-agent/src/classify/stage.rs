//! The classify stage as the pipeline sees it: judge messages, keep device state
//! (loading the models is in `stage/load.rs`).
//!
//! Between decode and windower: for every accepted message, each sensor model
//! whose channels the message carries all of gets the row; after judging, the
//! message gains one derived reading per model on its `series` (the
//! normalized score, 1 = device threshold), which the windower folds like any
//! metric and summarizes with a [`wire::Verdict`]. Template and budget state
//! changes are returned for the store with each group commit; sensor device
//! state (~23 KB a device) is taken as a snapshot now and then
//! ([`ClassifyStage::take_sensor_states`]) and brought up to date at start-up
//! by re-judging the journal after it ([`ClassifyStage::replay_sensors`]), so
//! judgements and calibration survive a kill exactly. Unsure
//! sensor rows and log lines become the message's escalations (the pipeline
//! admits them). Model failures are counted and logged; the message still
//! flows, unjudged.

use std::collections::BTreeSet;

use tracing::warn;

use crate::decode::{text, Exemplar, Reading};
use crate::window::MAX_ESCALATION_FEATURES;
use wire::Escalation;

use super::log::{LogClassifier, ALERT_METRIC, CONFIDENCE_METRIC};
use super::log_escalation::LogEscalator;
use super::pool::LatencySnapshot;
use super::router::{self, Escalated, Router};
use super::sensor::SensorClassifier;
use super::templates::{TemplateStage, STATE_SERIES};

mod load;
pub use load::ClassifyError;

/// One configured sensor model.
#[derive(Debug)]
struct SensorStage {
    series: String,
    /// Metric names, in the model's channel order.
    channels: Vec<String>,
    classifier: SensorClassifier,
    /// Rows judged with less confidence are escalated (within the budget).
    escalate_below: Option<f64>,
}

/// A device-state change for the store: (model series, device, state bytes).
pub type StateUpdate = (String, String, Vec<u8>);

/// A message accepted by the decoder, on its way to the windower.
#[derive(Debug, Clone)]
pub struct Accepted {
    pub device: String,
    /// The message's sequence number, journaled with it.
    pub seq: Option<u64>,
    pub readings: Vec<Reading>,
    /// The payload of a text (log) route, for the log model and the template miner.
    pub text: Option<String>,
    /// Lines the template stage offers as exemplars (unredacted; see `templates.rs`).
    pub exemplars: Vec<Exemplar>,
    /// Judged rows of this message unsure enough to escalate; the pipeline
    /// asks the router's budget and the window's room, in message order.
    pub escalations: Vec<Escalated>,
}

/// All configured models.
#[derive(Debug, Default)]
pub struct ClassifyStage {
    sensors: Vec<SensorStage>,
    log: Option<LogClassifier>,
    /// Set when the log model escalates (`models.log.escalate_below`).
    log_escalator: Option<LogEscalator>,
    templates: Option<TemplateStage>,
    /// Inference calls that failed (their messages flowed unjudged).
    pub model_errors: u64,
    /// Rows judged since start.
    pub judged: u64,
    /// The escalation budget.
    pub router: Router,
    /// Sensor devices judged since the last [`Self::take_sensor_states`]:
    /// (index into `sensors`, device).
    dirty: BTreeSet<(usize, String)>,
}

impl ClassifyStage {
    /// Derived series whose windows carry verdicts.
    pub fn judgement_series(&self) -> Vec<String> {
        self.sensors.iter().map(|s| s.series.clone()).collect()
    }

    /// Redacts escalated log lines with `redactor` (the `[templates]` rules).
    pub fn with_redactor(mut self, redactor: super::redact::Redactor) -> ClassifyStage {
        self.log_escalator = self.log_escalator.map(|x| x.with_redactor(redactor));
        self
    }

    /// Adds template mining of log lines.
    pub fn with_templates(mut self, templates: TemplateStage) -> ClassifyStage {
        self.templates = Some(templates);
        self
    }

    /// The template stage, if log lines are mined.
    pub fn templates(&self) -> Option<&TemplateStage> {
        self.templates.as_ref()
    }

    /// Restores one device's state (from the store at start-up).
    pub fn restore(&mut self, series: &str, device: &str, bytes: &[u8]) {
        if series == router::STATE_SERIES {
            if !self.router.restore(device, bytes) {
                warn!(
                    device,
                    "unreadable escalation budget; the device's hour starts unspent"
                );
            }
            return;
        }
        if series == STATE_SERIES {
            if let Some(t) = &mut self.templates {
                if let Err(e) = t.restore(bytes) {
                    warn!(error = %e, "cannot restore the template miner; template ids start over");
                }
            }
            return;
        }
        let Some(s) = self.sensors.iter_mut().find(|s| s.series == series) else {
            return; // a model no longer configured
        };
        match s.classifier.restore_state(device, bytes) {
            Ok(true) => {}
            Ok(false) => warn!(series, device, "unreadable classifier state; recalibrating"),
            Err(e) => {
                warn!(series, device, error = %e, "cannot restore classifier state; recalibrating")
            }
        }
    }

    /// Judges `messages` (device, readings) in order, appending each judged
    /// row's derived reading, and returns the template state to commit (sensor
    /// states wait for [`Self::take_sensor_states`]).
    pub fn apply(&mut self, messages: &mut [Accepted]) -> Vec<StateUpdate> {
        self.apply_log(messages);
        let mut updates = Vec::new();
        if let Some(t) = &mut self.templates {
            updates.extend(t.apply(messages));
        }
        for (index, s) in self.sensors.iter_mut().enumerate() {
            let mut rows = Vec::new();
            let mut at = Vec::new();
            for (i, m) in messages.iter().enumerate() {
                if let Some((ts, row)) = extract_row(&s.channels, &m.readings) {
                    rows.push((m.device.as_str(), row));
                    at.push((i, ts));
                }
            }
            if rows.is_empty() {
                continue;
            }
            let keep_below = s.escalate_below.unwrap_or(0.0);
            let (judged, kept) = match s.classifier.judge_keeping(&rows, keep_below) {
                Ok(j) => j,
                Err(e) => {
                    self.model_errors += 1;
                    warn!(series = %s.series, error = %e, rows = rows.len(), "inference failed; rows left unjudged");
                    continue;
                }
            };
            mark_dirty(&mut self.dirty, index, &rows);
            for (((i, ts), j), features) in at.into_iter().zip(judged).zip(kept) {
                let Some(j) = j else { continue };
                self.judged += 1;
                let m = &mut messages[i];
                m.readings.push(Reading {
                    metric: s.series.as_str().into(),
                    ts_ms: ts,
                    value: j.score,
                });
                let Some(features) = features else { continue };
                if features.len() <= MAX_ESCALATION_FEATURES {
                    m.escalations.push(Escalated {
                        redacted: Vec::new(),
                        series: s.series.clone(),
                        escalation: Escalation {
                            ts_ms: ts,
                            alarm: j.alarm,
                            score: j.score,
                            confidence: j.confidence,
                            features,
                            indices: Vec::new(),
                            exemplar: None,
                        },
                    });
                }
            }
        }
        updates
    }

    /// The state of every sensor device judged since the last call, for the
    /// store's snapshot. Until the next call, a restart rebuilds what changed
    /// from the journal ([`Self::replay_sensors`]).
    pub fn take_sensor_states(&mut self) -> Vec<StateUpdate> {
        std::mem::take(&mut self.dirty)
            .into_iter()
            .filter_map(|(index, device)| {
                let s = &self.sensors[index];
                let bytes = s.classifier.encode_state(&device)?;
                Some((s.series.clone(), device, bytes))
            })
            .collect()
    }

    /// Start-up: re-judges journaled messages (device, readings) that came
    /// after the sensor snapshot, in order, for their effect on device state
    /// only: their judgements are already in their journaled readings. Rows
    /// are judged exactly as live (judging does not depend on grouping).
    pub fn replay_sensors(&mut self, messages: &[(&str, &[Reading])]) {
        for (index, s) in self.sensors.iter_mut().enumerate() {
            let rows: Vec<(&str, Vec<f64>)> = messages
                .iter()
                .filter_map(|(device, readings)| {
                    extract_row(&s.channels, readings).map(|(_, row)| (*device, row))
                })
                .collect();
            if rows.is_empty() {
                continue;
            }
            if let Err(e) = s.classifier.judge(&rows) {
                self.model_errors += 1;
                warn!(series = %s.series, error = %e, rows = rows.len(), "inference failed while replaying the journal; device state may lag");
            }
            mark_dirty(&mut self.dirty, index, &rows);
        }
    }

    /// Judges every line of text messages; appends, at each line's time,
    /// `log.alert` (1 alert, 0 not), `log.confidence` and `log.severity.<class>`
    /// (1 for the line's class, 0 for the others): window sums are counts.
    /// A line judged below `models.log.escalate_below` becomes an escalation
    /// of its message (series `log.alert`), or is counted if too large for one.
    fn apply_log(&mut self, messages: &mut [Accepted]) {
        let Some(log) = &self.log else { return };
        let mut lines = Vec::new();
        let mut at = Vec::new();
        for (i, m) in messages.iter().enumerate() {
            let Some(payload) = &m.text else { continue };
            let ts = m.readings.first().map_or(0, |r| r.ts_ms);
            for line in text::lines(payload) {
                lines.push(line);
                at.push((i, ts));
            }
        }
        if lines.is_empty() {
            return;
        }
        let keep_below = self.log_escalator.as_ref().map_or(0.0, LogEscalator::below);
        let judged = match log.judge_keeping(&lines, keep_below) {
            Ok(j) => j,
            Err(e) => {
                self.model_errors += 1;
                warn!(error = %e, lines = lines.len(), "log inference failed; lines left unjudged");
                return;
            }
        };
        // Every line gives a reading on every class series (1 for its class,
        // 0 otherwise), so the series are as dense as the lines themselves and
        // no window of a rare class idles shut before its next line arrives.
        let classes = log.severity_count();
        let mut derived: Vec<(usize, Reading)> = Vec::with_capacity((classes + 2) * judged.len());
        let mut escalated = Vec::new();
        for (((i, ts), (j, row)), line) in at.into_iter().zip(judged).zip(&lines) {
            self.judged += 1;
            if let (Some(row), Some(x)) = (row, &self.log_escalator) {
                match x.escalation(line, ts, &j, log.alert_threshold(), row) {
                    Some(e) => escalated.push((i, e)),
                    None => self.router.refuse(),
                }
            }
            let reading = |metric: &str, value: f64| Reading {
                metric: metric.into(),
                ts_ms: ts,
                value,
            };
            derived.push((i, reading(ALERT_METRIC, f64::from(u8::from(j.alert)))));
            derived.push((i, reading(CONFIDENCE_METRIC, f64::from(j.confidence))));
            for c in 0..classes {
                let hit = f64::from(u8::from(c == j.severity));
                derived.push((i, reading(log.severity_metric(c), hit)));
            }
        }
        for (i, r) in derived {
            messages[i].readings.push(r);
        }
        for (i, e) in escalated {
            messages[i].escalations.push(e);
        }
    }

    /// The escalation budgets changed since the last call, for the store.
    pub fn router_updates(&mut self) -> Vec<StateUpdate> {
        self.router
            .take_updates()
            .into_iter()
            .map(|(device, bytes)| (router::STATE_SERIES.to_owned(), device, bytes))
            .collect()
    }

    /// Records every model call's wall time into `metrics.inference`, labelled
    /// with the model's series (`log` for the log model).
    pub fn attach_metrics(&self, metrics: &crate::metrics::AgentMetrics) {
        for s in &self.sensors {
            s.classifier
                .pool()
                .observe_into(metrics.inference.clone(), &s.series);
        }
        if let Some(log) = &self.log {
            log.pool().observe_into(metrics.inference.clone(), "log");
        }
    }

    /// Inference latency per model series.
    pub fn latency(&self) -> Vec<(String, LatencySnapshot)> {
        let mut out: Vec<_> = self
            .sensors
            .iter()
            .map(|s| (s.series.clone(), s.classifier.pool().latency()))
            .collect();
        if let Some(log) = &self.log {
            out.push(("log".to_owned(), log.pool().latency()));
        }
        out
    }

    /// Whether a log model or the template miner wants the text of log messages.
    pub fn judges_text(&self) -> bool {
        self.log.is_some() || self.templates.is_some()
    }

    /// Whether nothing is configured.
    pub fn is_empty(&self) -> bool {
        self.sensors.is_empty() && self.log.is_none() && self.templates.is_none()
    }
}

/// The row of `channels` in `readings` (first reading of each), timed by the
/// first channel; `None` if any channel is missing.
fn extract_row(channels: &[String], readings: &[Reading]) -> Option<(i64, Vec<f64>)> {
    let mut row = Vec::with_capacity(channels.len());
    let mut ts = None;
    for ch in channels {
        let r = readings.iter().find(|r| r.metric == ch)?;
        ts.get_or_insert(r.ts_ms);
        row.push(r.value);
    }
    Some((ts?, row))
}

/// Records that the devices of `rows` (of sensor model `index`) changed state
/// since the last snapshot. Names are deduplicated borrowed first, so a
/// group copies each device's name once, not once per row.
fn mark_dirty(dirty: &mut BTreeSet<(usize, String)>, index: usize, rows: &[(&str, Vec<f64>)]) {
    let devices: BTreeSet<&str> = rows.iter().map(|(device, _)| *device).collect();
    dirty.extend(devices.into_iter().map(|d| (index, d.to_owned())));
}
