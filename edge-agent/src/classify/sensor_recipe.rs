//! The sensor model's feature recipe: per-device calibration, streaming features, alarm rule.
//!
//! Mirrors `models/sensor/common.py` exactly (the sidecar `<model>.json` next to
//! each `.onnx` carries the constants), so the Rust path judges a row as the
//! Python pipeline does. It holds no model and does no I/O: the classify stage
//! feeds rows in, runs the model on the features, and hands scores to
//! [`Decider`]. Rows are one device's multivariate readings in channel order,
//! in time order; calibration rows are assumed normal.
//!
//! Recipe (all in f64, features handed to the model as f32; "trailing over W
//! rows" means rows `max(0, i-W+1)..=i`, fewer at the start; std is population):
//! - calibration on the first `calib_rows` rows: `mu = mean(x)`,
//!   `sd = max(std(x), sd_floor_rel·|mu| + sd_floor_abs)` per channel;
//! - `z = clip((x − mu)/sd, ±z_clip)`; `zl = z`, except for `slow_channels`:
//!   `z − trailing mean of z over slow_window rows` (slow thermal drift);
//! - for each `W` in `mean_windows`: `m = trailing mean of zl over W rows`,
//!   feature `clip(m / s_W, ±f_clip)`, `s_W = std(m over calibration rows) + s_eps`;
//! - `v = trailing std of z over std_window rows`, feature
//!   `clip(ln(v / r + log_eps), ±ls_clip)`, `r = mean(v over calibration rows) + r_eps`;
//! - features = `[mean W1 (c) | mean W2 (c) | … | std (c)]`;
//! - alarm iff `smoothed > max(rule.absolute, rule.multiplier · quantile(smoothed
//!   calibration scores, rule.quantile))`, smoothed = trailing mean of `rule.smooth` scores.

use std::collections::VecDeque;

use serde::de::IgnoredAny;
use serde::Deserialize;

/// Why a sensor sidecar could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SensorRecipeError {
    #[error("sensor recipe: {0}")]
    Parse(#[from] serde_json::Error),
    #[error("sensor recipe: kind is {0:?}, expected \"sensor\"")]
    Kind(String),
    #[error("sensor recipe: {0}")]
    Invalid(String),
}

/// The threshold rule: smooth scores over `smooth` rows; the device threshold
/// is `max(absolute, multiplier · quantile(smoothed calibration scores))`
/// (`multiplier = 0` makes it a plain absolute threshold).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub smooth: usize,
    pub quantile: f64,
    pub multiplier: f64,
    #[serde(default)]
    pub absolute: f64,
}

/// A parsed sidecar (`models/sensor/<model>.json`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SensorRecipe {
    kind: String,
    #[serde(default)]
    model: String,
    channels: Vec<String>,
    calib_rows: usize,
    width: usize,
    history_rows: usize,
    mean_windows: Vec<usize>,
    std_window: usize,
    slow_channels: Vec<usize>,
    slow_window: usize,
    z_clip: f64,
    f_clip: f64,
    ls_clip: f64,
    log_eps: f64,
    r_eps: f64,
    sd_floor_rel: f64,
    sd_floor_abs: f64,
    s_eps: f64,
    rule: Rule,
    /// Documentation only (the recipe in words, the teacher's training details).
    #[serde(default, rename = "recipe")]
    _recipe: Option<IgnoredAny>,
    #[serde(default, rename = "teacher_lambda")]
    _teacher_lambda: Option<IgnoredAny>,
    #[serde(default, rename = "teacher_weights")]
    _teacher_weights: Option<IgnoredAny>,
}

impl SensorRecipe {
    /// Parses and validates a sidecar.
    pub fn from_json(text: &str) -> Result<SensorRecipe, SensorRecipeError> {
        let r: SensorRecipe = serde_json::from_str(text)?;
        if r.kind != "sensor" {
            return Err(SensorRecipeError::Kind(r.kind));
        }
        let bad = |m: String| Err(SensorRecipeError::Invalid(m));
        let c = r.channels.len();
        if c == 0 {
            return bad("channels is empty".into());
        }
        if r.mean_windows.is_empty() || r.mean_windows.contains(&0) {
            return bad("mean_windows must be non-empty and all at least 1".into());
        }
        if r.std_window == 0 || r.slow_window == 0 || r.rule.smooth == 0 {
            return bad("std_window, slow_window and rule.smooth must be at least 1".into());
        }
        if r.slow_channels.iter().any(|&j| j >= c) {
            return bad(format!("slow_channels must be below the channel count {c}"));
        }
        if r.calib_rows < 2 {
            return bad("calib_rows must be at least 2".into());
        }
        let width = c * (r.mean_windows.len() + 1);
        if r.width != width {
            return bad(format!(
                "width is {}, the recipe makes {width} features",
                r.width
            ));
        }
        let history = r.feature_history() + r.rule.smooth - 1;
        if r.history_rows != history {
            return bad(format!(
                "history_rows is {}, the recipe needs {history}",
                r.history_rows
            ));
        }
        let rule = &r.rule;
        if !(0.0..=1.0).contains(&rule.quantile)
            || !rule.multiplier.is_finite()
            || rule.multiplier < 0.0
            || !rule.absolute.is_finite()
        {
            return bad("rule.quantile must be in [0, 1], rule.multiplier >= 0 and finite, rule.absolute finite".into());
        }
        let positive = [
            r.z_clip,
            r.f_clip,
            r.ls_clip,
            r.log_eps,
            r.r_eps,
            r.sd_floor_abs,
            r.s_eps,
        ];
        if positive.iter().any(|v| !v.is_finite() || *v <= 0.0) || r.sd_floor_rel < 0.0 {
            return bad("clips, floors and epsilons must be positive and finite".into());
        }
        Ok(r)
    }

    /// Channel (metric) names, in the order rows carry them.
    pub fn channels(&self) -> &[String] {
        &self.channels
    }

    /// The model file the sidecar describes (relative to the sidecar), if named.
    pub fn model(&self) -> &str {
        &self.model
    }

    /// Rows per device used for calibration before anything is judged.
    pub fn calib_rows(&self) -> usize {
        self.calib_rows
    }

    /// Features per row: the model's input width (not the channel count).
    pub fn width(&self) -> usize {
        self.width
    }

    /// Rows of history from which [`Featurizer`] and [`Decider`] state is
    /// rebuilt exactly: each of the last `smooth` scores needs a full feature
    /// history (the longest chain is a mean window over slow-detrended rows).
    pub fn history_rows(&self) -> usize {
        self.history_rows
    }

    /// The threshold rule.
    pub fn rule(&self) -> &Rule {
        &self.rule
    }

    /// Rows one feature vector depends on.
    fn feature_history(&self) -> usize {
        let longest_mean = self.mean_windows.iter().copied().max().unwrap_or(1);
        let slow = if self.slow_channels.is_empty() {
            1
        } else {
            self.slow_window
        };
        (slow + longest_mean - 1).max(self.std_window)
    }

    /// Ring capacity for z rows (slow detrending and trailing std).
    fn z_rows(&self) -> usize {
        self.slow_window.max(self.std_window)
    }
}

/// Bounded row history of one device and the unnormalised features it yields:
/// trailing means of (slow-detrended) z per mean window, trailing std of z.
#[derive(Debug, Clone)]
struct Raw {
    mu: Vec<f64>,
    sd: Vec<f64>,
    z_clip: f64,
    mean_windows: Vec<usize>,
    std_window: usize,
    slow: Vec<bool>,
    slow_window: usize,
    /// z rows (clipped), the last `z_rows()` of them.
    z: Rows,
    /// z rows with the slow channels detrended, the last `max(mean_windows)`.
    zl: Rows,
    /// This row's z and detrended z (reused: no allocation per row).
    row_z: Vec<f64>,
    row_zl: Vec<f64>,
    /// This row's trailing means and stds, what [`Raw::push`] returns (reused too).
    means: Vec<f64>,
    stds: Vec<f64>,
}

impl Raw {
    fn new(recipe: &SensorRecipe, mu: Vec<f64>, sd: Vec<f64>) -> Raw {
        let c = recipe.channels.len();
        let mut slow = vec![false; c];
        for &j in &recipe.slow_channels {
            slow[j] = true;
        }
        let z_cap = recipe.z_rows();
        let zl_cap = recipe.mean_windows.iter().copied().max().unwrap_or(1);
        Raw {
            mu,
            sd,
            z_clip: recipe.z_clip,
            mean_windows: recipe.mean_windows.clone(),
            std_window: recipe.std_window,
            slow,
            slow_window: recipe.slow_window,
            z: Rows::new(c, z_cap),
            zl: Rows::new(c, zl_cap),
            row_z: Vec::with_capacity(c),
            row_zl: Vec::with_capacity(c),
            means: Vec::with_capacity(c * recipe.mean_windows.len()),
            stds: Vec::with_capacity(c),
        }
    }

    /// Pushes one raw row; returns (trailing means, one block of `c` values
    /// per mean window, and the trailing std of z per channel).
    fn push(&mut self, row: &[f64]) -> (&[f64], &[f64]) {
        let c = self.mu.len();
        self.row_z.clear();
        self.row_z.extend((0..c).map(|j| {
            let x = row.get(j).copied().unwrap_or(f64::NAN);
            ((x - self.mu[j]) / self.sd[j]).clamp(-self.z_clip, self.z_clip)
        }));
        self.z.push(&self.row_z);
        self.row_zl.clear();
        self.row_zl.extend_from_slice(&self.row_z);
        for (j, v) in self.row_zl.iter_mut().enumerate() {
            if self.slow[j] {
                *v -= tail_mean(&self.z, self.slow_window, j);
            }
        }
        self.zl.push(&self.row_zl);
        self.means.clear();
        for &w in &self.mean_windows {
            self.means.extend((0..c).map(|j| tail_mean(&self.zl, w, j)));
        }
        self.stds.clear();
        self.stds.extend((0..c).map(|j| {
            let n = self.z.len().min(self.std_window);
            let m = tail_mean(&self.z, self.std_window, j);
            let ss: f64 = self.z.tail(n, j).map(|v| (v - m).powi(2)).sum();
            (ss / n as f64).sqrt()
        }));
        (&self.means, &self.stds)
    }
}

/// Streaming features for one calibrated device.
#[derive(Debug, Clone)]
pub struct Featurizer {
    raw: Raw,
    s: Vec<f64>,
    r: Vec<f64>,
    f_clip: f64,
    ls_clip: f64,
    log_eps: f64,
}

impl Featurizer {
    pub fn new(recipe: &SensorRecipe, cal: &Calibration) -> Featurizer {
        Featurizer {
            raw: Raw::new(recipe, cal.mu.clone(), cal.sd.clone()),
            s: cal.s.clone(),
            r: cal.r.clone(),
            f_clip: recipe.f_clip,
            ls_clip: recipe.ls_clip,
            log_eps: recipe.log_eps,
        }
    }

    /// Appends this row's `width()` features to `out`.
    pub fn push(&mut self, row: &[f64], out: &mut Vec<f32>) {
        let (means, stds) = self.raw.push(row);
        let (fc, lc, eps) = (self.f_clip, self.ls_clip, self.log_eps);
        out.extend(
            means
                .iter()
                .zip(&self.s)
                .map(|(m, s)| (m / s).clamp(-fc, fc) as f32),
        );
        out.extend(
            stds.iter()
                .zip(&self.r)
                .map(|(v, r)| (v / r + eps).ln().clamp(-lc, lc) as f32),
        );
    }
}

/// A judged row: the smoothed score and whether it is above the threshold.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Decision {
    pub smoothed: f64,
    pub alarm: bool,
}

/// Smooths scores and applies the device's threshold.
#[derive(Debug, Clone)]
pub struct Decider {
    threshold: f64,
    smooth: usize,
    recent: VecDeque<f64>,
}

impl Decider {
    pub fn new(recipe: &SensorRecipe, threshold: f64) -> Decider {
        Decider {
            threshold,
            smooth: recipe.rule.smooth,
            recent: VecDeque::with_capacity(recipe.rule.smooth),
        }
    }

    /// The device threshold this decider applies.
    pub fn threshold(&self) -> f64 {
        self.threshold
    }

    pub fn push(&mut self, score: f32) -> Decision {
        if self.recent.len() == self.smooth {
            self.recent.pop_front();
        }
        self.recent.push_back(f64::from(score));
        let smoothed = self.recent.iter().sum::<f64>() / self.recent.len() as f64;
        Decision {
            smoothed,
            alarm: smoothed > self.threshold,
        }
    }
}

/// The device threshold from its calibration rows' scores (in row order):
/// `max(absolute, multiplier · quantile(smoothed, q))`, numpy's linear
/// interpolation; with `multiplier = 0` it is `absolute`.
pub fn threshold_from_calibration(recipe: &SensorRecipe, calibration_scores: &[f32]) -> f64 {
    let rule = &recipe.rule;
    if rule.multiplier == 0.0 {
        return rule.absolute;
    }
    let mut decider = Decider::new(recipe, f64::INFINITY);
    let mut sm: Vec<f64> = calibration_scores
        .iter()
        .map(|s| decider.push(*s).smoothed)
        .collect();
    if sm.is_empty() {
        return f64::INFINITY;
    }
    sm.sort_by(f64::total_cmp);
    let pos = rule.quantile * (sm.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    let q = sm[lo] + (sm[hi] - sm[lo]) * (pos - lo as f64);
    (q * rule.multiplier).max(rule.absolute)
}

mod calibration;
mod rows;
pub use calibration::Calibration;
use rows::tail_mean;
pub(crate) use rows::Rows;
