//! The classify stage as the pipeline sees it: load models, judge messages, keep device state.
//!
//! Between decode and windower: for every accepted message, each sensor model
//! whose channels the message carries all of gets the row; after judging, the
//! message gains one derived reading per model on its `series` (the
//! normalized score, 1 = device threshold), which the windower folds like any
//! metric and summarizes with a [`wire::Verdict`]. Device state changes are
//! returned for the store, committed with the same group commit as the
//! journal, so judgements and calibration survive a kill exactly. Model
//! failures are counted and logged; the message still flows, unjudged.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use tracing::warn;

use crate::config::ModelsConfig;
use crate::decode::Reading;
use crate::model::{ModelError, ScoreModel};

use super::pool::{InferencePool, LatencySnapshot};
use super::sensor::SensorClassifier;
use super::sensor_recipe::{SensorRecipe, SensorRecipeError};

/// Why the classify stage could not start.
#[derive(Debug, thiserror::Error)]
pub enum ClassifyError {
    #[error("cannot read model recipe {path}: {source}")]
    ReadRecipe {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("model recipe {path}: {source}")]
    Recipe {
        path: PathBuf,
        source: SensorRecipeError,
    },
    #[error(
        "models.sensor[{index}].channels: {given} channel(s) given, but {path} expects {expected}"
    )]
    Channels {
        index: usize,
        path: PathBuf,
        given: usize,
        expected: usize,
    },
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("cannot start inference threads: {0}")]
    Threads(std::io::Error),
}

/// One configured sensor model.
#[derive(Debug)]
struct SensorStage {
    series: String,
    /// Metric names, in the model's channel order.
    channels: Vec<String>,
    classifier: SensorClassifier,
}

/// A device-state change for the store: (model series, device, state bytes).
pub type StateUpdate = (String, String, Vec<u8>);

/// All configured models.
#[derive(Debug, Default)]
pub struct ClassifyStage {
    sensors: Vec<SensorStage>,
    /// Inference calls that failed (their messages flowed unjudged).
    pub model_errors: u64,
    /// Rows judged since start.
    pub judged: u64,
}

impl ClassifyStage {
    /// Loads every configured model and sidecar, checking shapes against each other.
    pub fn load(config: &ModelsConfig) -> Result<ClassifyStage, ClassifyError> {
        let mut stage = ClassifyStage::default();
        for (index, m) in config.sensor.iter().enumerate() {
            let recipe_path = m.recipe_path();
            let recipe = read_recipe(&recipe_path)?;
            let channels = m
                .channels
                .clone()
                .unwrap_or_else(|| recipe.channels().to_vec());
            if channels.len() != recipe.channels().len() {
                return Err(ClassifyError::Channels {
                    index,
                    path: recipe_path,
                    given: channels.len(),
                    expected: recipe.channels().len(),
                });
            }
            let model = ScoreModel::load(&m.path, recipe.width())?;
            let pool = InferencePool::new(model, config.threads(), &m.series)
                .map_err(ClassifyError::Threads)?;
            stage.sensors.push(SensorStage {
                series: m.series.clone(),
                channels,
                classifier: SensorClassifier::new(recipe, pool),
            });
        }
        Ok(stage)
    }

    /// Derived series whose windows carry verdicts.
    pub fn judgement_series(&self) -> Vec<String> {
        self.sensors.iter().map(|s| s.series.clone()).collect()
    }

    /// Restores one device's state (from the store at start-up).
    pub fn restore(&mut self, series: &str, device: &str, bytes: &[u8]) {
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
    /// row's derived reading, and returns the device states to commit.
    pub fn apply(&mut self, messages: &mut [(String, Vec<Reading>)]) -> Vec<StateUpdate> {
        let mut updates = Vec::new();
        for s in &mut self.sensors {
            let mut rows = Vec::new();
            let mut at = Vec::new();
            for (i, (device, readings)) in messages.iter().enumerate() {
                if let Some((ts, row)) = extract_row(&s.channels, readings) {
                    rows.push((device.as_str(), row));
                    at.push((i, ts));
                }
            }
            if rows.is_empty() {
                continue;
            }
            let judged = match s.classifier.judge(&rows) {
                Ok(j) => j,
                Err(e) => {
                    self.model_errors += 1;
                    warn!(series = %s.series, error = %e, rows = rows.len(), "inference failed; rows left unjudged");
                    continue;
                }
            };
            let devices: BTreeSet<String> = rows.iter().map(|(d, _)| (*d).to_owned()).collect();
            for ((i, ts), j) in at.into_iter().zip(judged) {
                if let Some(j) = j {
                    self.judged += 1;
                    messages[i].1.push(Reading {
                        metric: s.series.clone(),
                        ts_ms: ts,
                        value: j.score,
                    });
                }
            }
            for d in devices {
                if let Some(bytes) = s.classifier.encode_state(&d) {
                    updates.push((s.series.clone(), d, bytes));
                }
            }
        }
        updates
    }

    /// Inference latency per model series.
    pub fn latency(&self) -> Vec<(String, LatencySnapshot)> {
        self.sensors
            .iter()
            .map(|s| (s.series.clone(), s.classifier.pool().latency()))
            .collect()
    }

    /// Whether any model is configured.
    pub fn is_empty(&self) -> bool {
        self.sensors.is_empty()
    }
}

fn read_recipe(path: &Path) -> Result<SensorRecipe, ClassifyError> {
    let text = std::fs::read_to_string(path).map_err(|source| ClassifyError::ReadRecipe {
        path: path.to_owned(),
        source,
    })?;
    SensorRecipe::from_json(&text).map_err(|source| ClassifyError::Recipe {
        path: path.to_owned(),
        source,
    })
}

/// The row of `channels` in `readings` (first reading of each), timed by the
/// first channel; `None` if any channel is missing.
fn extract_row(channels: &[String], readings: &[Reading]) -> Option<(i64, Vec<f64>)> {
    let mut row = Vec::with_capacity(channels.len());
    let mut ts = None;
    for ch in channels {
        let r = readings.iter().find(|r| &r.metric == ch)?;
        ts.get_or_insert(r.ts_ms);
        row.push(r.value);
    }
    Some((ts?, row))
}
