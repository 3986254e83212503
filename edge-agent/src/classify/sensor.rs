//! Judges each device's multivariate rows with a sensor model: calibrate, featurize, score, decide.
//!
//! Per device: the first `calib_rows` complete rows are its calibration (kept
//! until fitted, then reduced to [`Calibration`] + threshold); after that each
//! row is featurized in order, all rows of a call are scored in one batch on
//! the [`InferencePool`], and the device's [`Decider`] turns scores into a
//! [`RowJudgement`]. Device state is encoded for the store so a restart
//! continues exactly where the last commit left off. It does not know about
//! MQTT, windows or the store itself.

use std::collections::HashMap;

use crate::model::ModelError;

use super::pool::InferencePool;
use super::sensor_recipe::{
    threshold_from_calibration, Calibration, Decider, Featurizer, Rows, SensorRecipe,
};

/// One judged row. `score` is normalized so that the device threshold is 1:
/// the row is an alarm iff `score > 1`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RowJudgement {
    pub score: f64,
    pub alarm: bool,
    /// How far the verdict is from the threshold, 0 (on it) to 1.
    pub confidence: f64,
}

/// A model input row as the model saw it (features, already scaled).
pub type FeatureRow = Vec<f32>;

/// Per row: its judgement (`None` while calibrating) and, if kept, its features.
pub type Judged = (Vec<Option<RowJudgement>>, Vec<Option<FeatureRow>>);

/// Score normalized to the device threshold (1 = on the threshold).
pub fn normalize(smoothed: f64, threshold: f64) -> f64 {
    if threshold > 0.0 && threshold.is_finite() {
        smoothed / threshold
    } else {
        1.0 + (smoothed - threshold)
    }
}

#[derive(Debug, Clone)]
struct Ready {
    threshold: f64,
    featurizer: Featurizer,
    decider: Decider,
    cal: Calibration,
    /// The last `history_rows` raw rows (what [`warm_up`] replays), in one flat
    /// ring, so remembering a row allocates nothing.
    history: Rows,
}

#[derive(Debug, Clone)]
enum DeviceState {
    Calibrating(Vec<Vec<f64>>),
    Ready(Box<Ready>),
}

/// A sensor model and the state of every device it judges.
#[derive(Debug)]
pub struct SensorClassifier {
    recipe: SensorRecipe,
    pool: InferencePool,
    devices: HashMap<String, DeviceState>,
}

impl SensorClassifier {
    pub fn new(recipe: SensorRecipe, pool: InferencePool) -> SensorClassifier {
        SensorClassifier {
            recipe,
            pool,
            devices: HashMap::new(),
        }
    }

    pub fn recipe(&self) -> &SensorRecipe {
        &self.recipe
    }

    pub fn pool(&self) -> &InferencePool {
        &self.pool
    }

    /// Devices calibrated so far, and devices still calibrating.
    pub fn device_counts(&self) -> (usize, usize) {
        let ready = self
            .devices
            .values()
            .filter(|s| matches!(s, DeviceState::Ready(_)))
            .count();
        (ready, self.devices.len() - ready)
    }

    /// Judges `rows` (device, values in channel order) in order. Calibration
    /// rows get `None`. All post-calibration rows are scored in one batch.
    pub fn judge(
        &mut self,
        rows: &[(&str, Vec<f64>)],
    ) -> Result<Vec<Option<RowJudgement>>, ModelError> {
        Ok(self.judge_keeping(rows, 0.0)?.0)
    }

    /// [`Self::judge`], also returning the model's input row of every judged
    /// row whose confidence is below `keep_below` (the router escalates those).
    pub fn judge_keeping(
        &mut self,
        rows: &[(&str, Vec<f64>)],
        keep_below: f64,
    ) -> Result<Judged, ModelError> {
        let width = self.recipe.width();
        let mut features = Vec::with_capacity(rows.len() * width);
        let mut pending = Vec::new();
        for (i, (device, row)) in rows.iter().enumerate() {
            // A device seen before costs no key allocation (`entry` would take an owned one).
            if !self.devices.contains_key(*device) {
                let calibrating = DeviceState::Calibrating(Vec::new());
                self.devices.insert((*device).to_owned(), calibrating);
            }
            let Some(state) = self.devices.get_mut(*device) else {
                continue;
            };
            match state {
                DeviceState::Calibrating(seen) => {
                    seen.push(row.clone());
                    if seen.len() >= self.recipe.calib_rows() {
                        let ready = fit(&self.recipe, &self.pool, seen)?;
                        *state = DeviceState::Ready(Box::new(ready));
                    }
                }
                DeviceState::Ready(ready) => {
                    ready.featurizer.push(row, &mut features);
                    ready.history.push(row);
                    pending.push(i);
                }
            }
        }
        let kept_rows = if keep_below > 0.0 {
            features.clone()
        } else {
            Vec::new()
        };
        let scores = self.pool.score(features)?;
        let stride = self.pool.outputs();
        let mut out = vec![None; rows.len()];
        let mut kept = vec![None; rows.len()];
        for (k, i) in pending.into_iter().enumerate() {
            let Some(DeviceState::Ready(ready)) = self.devices.get_mut(rows[i].0) else {
                continue;
            };
            let decision = ready.decider.push(scores[k * stride]);
            let score = normalize(decision.smoothed, ready.threshold);
            let confidence = wire::Verdict::confidence_at(score);
            if confidence < keep_below {
                kept[i] = kept_rows
                    .get(k * width..(k + 1) * width)
                    .map(<[f32]>::to_vec);
            }
            out[i] = Some(RowJudgement {
                score,
                alarm: decision.alarm,
                confidence,
            });
        }
        Ok((out, kept))
    }

    /// The device's state for the store (`None` if never seen).
    pub fn encode_state(&self, device: &str) -> Option<Vec<u8>> {
        // Sized exactly: a snapshot holds every device's state at once, and a
        // doubling buffer kept ~40% more than the bytes (heaptrack, 10k msg/s).
        let rows_bytes = |n: usize| 4 + n * self.recipe.channels().len() * 8;
        let mut out;
        match self.devices.get(device)? {
            DeviceState::Calibrating(rows) => {
                out = Vec::with_capacity(1 + rows_bytes(rows.len()));
                out.push(0);
                put_rows(&mut out, rows.len(), rows.iter().map(Vec::as_slice));
            }
            DeviceState::Ready(r) => {
                let cal = r.cal.to_bytes();
                out = Vec::with_capacity(1 + 8 + 4 + cal.len() + rows_bytes(r.history.len()));
                out.push(1);
                out.extend_from_slice(&r.threshold.to_le_bytes());
                out.extend_from_slice(&(cal.len() as u32).to_le_bytes());
                out.extend_from_slice(&cal);
                put_rows(&mut out, r.history.len(), r.history.iter());
            }
        }
        Some(out)
    }

    /// Restores a device from [`SensorClassifier::encode_state`] bytes,
    /// replaying its history so features and smoothing continue exactly.
    /// Unreadable bytes restart the device's calibration (returns false).
    pub fn restore_state(&mut self, device: &str, bytes: &[u8]) -> Result<bool, ModelError> {
        let width = self.recipe.channels().len();
        let state = match bytes.split_first() {
            Some((0, rest)) => get_rows(rest, width).map(DeviceState::Calibrating),
            Some((1, rest)) => self
                .restore_ready(rest)?
                .map(|r| DeviceState::Ready(Box::new(r))),
            _ => None,
        };
        let ok = state.is_some();
        self.devices.insert(
            device.to_owned(),
            state.unwrap_or_else(|| DeviceState::Calibrating(Vec::new())),
        );
        Ok(ok)
    }

    fn restore_ready(&self, bytes: &[u8]) -> Result<Option<Ready>, ModelError> {
        let Some(threshold) = bytes
            .get(..8)
            .map(|b| f64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
        else {
            return Ok(None);
        };
        let Some(cal_len) = bytes
            .get(8..12)
            .map(|b| u32::from_le_bytes(b.try_into().unwrap_or([0; 4])) as usize)
        else {
            return Ok(None);
        };
        let Some(cal) = bytes
            .get(12..12 + cal_len)
            .and_then(Calibration::from_bytes)
        else {
            return Ok(None);
        };
        let Some(history) = get_rows(&bytes[12 + cal_len..], self.recipe.channels().len()) else {
            return Ok(None);
        };
        Ok(Some(warm_up(
            &self.recipe,
            &self.pool,
            cal,
            threshold,
            history,
        )?))
    }
}

/// Fits calibration and threshold from a device's calibration rows.
fn fit(
    recipe: &SensorRecipe,
    pool: &InferencePool,
    rows: &[Vec<f64>],
) -> Result<Ready, ModelError> {
    let cal = Calibration::fit(recipe, rows);
    let (featurizer, scores) = featurize_and_score(recipe, pool, &cal, rows)?;
    let threshold = threshold_from_calibration(recipe, &scores);
    Ok(ready(recipe, cal, threshold, featurizer, &scores, rows))
}

/// Rebuilds featurizer and decider state from the last `history_rows` rows.
fn warm_up(
    recipe: &SensorRecipe,
    pool: &InferencePool,
    cal: Calibration,
    threshold: f64,
    history: Vec<Vec<f64>>,
) -> Result<Ready, ModelError> {
    let (featurizer, scores) = featurize_and_score(recipe, pool, &cal, &history)?;
    Ok(ready(recipe, cal, threshold, featurizer, &scores, &history))
}

/// Runs `rows` through a fresh featurizer and the model: the featurizer's
/// state after them and the first score of each row.
fn featurize_and_score(
    recipe: &SensorRecipe,
    pool: &InferencePool,
    cal: &Calibration,
    rows: &[Vec<f64>],
) -> Result<(Featurizer, Vec<f32>), ModelError> {
    let mut featurizer = Featurizer::new(recipe, cal);
    let mut features = Vec::with_capacity(rows.len() * recipe.width());
    for row in rows {
        featurizer.push(row, &mut features);
    }
    let stride = pool.outputs();
    let scores = pool.score(features)?.into_iter().step_by(stride).collect();
    Ok((featurizer, scores))
}

/// A calibrated device whose decider has seen `scores` (in row order).
fn ready(
    recipe: &SensorRecipe,
    cal: Calibration,
    threshold: f64,
    featurizer: Featurizer,
    scores: &[f32],
    rows: &[Vec<f64>],
) -> Ready {
    let mut decider = Decider::new(recipe, threshold);
    for s in scores {
        decider.push(*s);
    }
    // The history is the last `history_rows` of the rows seen (older ones fall out).
    let mut history = Rows::new(recipe.channels().len(), recipe.history_rows());
    for row in rows {
        history.push(row);
    }
    Ready {
        threshold,
        featurizer,
        decider,
        cal,
        history,
    }
}

/// Row count, then every value of `rows` (`n` of them, in order) as little-endian f64.
fn put_rows<'a>(out: &mut Vec<u8>, n: usize, rows: impl Iterator<Item = &'a [f64]>) {
    out.extend_from_slice(&(n as u32).to_le_bytes());
    for row in rows {
        for v in row {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
}

fn get_rows(bytes: &[u8], width: usize) -> Option<Vec<Vec<f64>>> {
    let n = u32::from_le_bytes(bytes.get(..4)?.try_into().ok()?) as usize;
    let body = bytes.get(4..)?;
    if body.len() != n.checked_mul(width)?.checked_mul(8)? || width == 0 {
        return None;
    }
    Some(
        body.chunks_exact(width * 8)
            .map(|row| {
                row.chunks_exact(8)
                    .map(|b| f64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
                    .collect()
            })
            .collect(),
    )
}
