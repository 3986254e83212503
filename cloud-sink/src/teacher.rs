//! The teacher models: the float models that re-judge escalated rows at ingest.
//!
//! One teacher per judgement series, loaded at start-up through the agent's
//! own model and sidecar code (`edge_agent::model::ScoreModel`, the only user
//! of tract; `SensorRecipe`, `LogRecipe`), so the sink judges a row exactly as
//! the Python pipeline and the agent would. The sidecar's `kind` says which:
//! a sensor teacher must judge a row alone: its rule must be a plain per-row
//! threshold (`smooth = 1`, `multiplier = 0`), since the sink has no device
//! history; a log teacher (series `log.alert`) judges a line's features with
//! its sidecar's alert threshold (alarm = alert probability ≥ threshold), a
//! sparse row spread out to the recipe's width first. This module does no
//! store or HTTP work.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use edge_agent::classify::log_recipe::{LogRecipe, LogRecipeError};
use edge_agent::classify::sensor_recipe::{
    threshold_from_calibration, SensorRecipe, SensorRecipeError,
};
use edge_agent::model::{ModelError, ScoreModel};

use crate::config::TeacherConfig;
use crate::store::{TeacherJudgement, TeacherSkip, TeacherVerdict};

/// Why a teacher could not be loaded (a start-up error naming the file).
#[derive(Debug, thiserror::Error)]
pub enum TeacherError {
    #[error("teachers[{index}] (series {series:?}): cannot read sidecar {path}")]
    ReadRecipe {
        index: usize,
        series: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("teachers[{index}] (series {series:?}): sidecar {path}")]
    Recipe {
        index: usize,
        series: String,
        path: PathBuf,
        #[source]
        source: SensorRecipeError,
    },
    #[error("teachers[{index}] (series {series:?}): log sidecar {path}")]
    LogRecipe {
        index: usize,
        series: String,
        path: PathBuf,
        #[source]
        source: LogRecipeError,
    },
    #[error("teachers[{index}] (series {series:?}): {message}")]
    Rule {
        index: usize,
        series: String,
        message: String,
    },
    #[error("teachers[{index}] (series {series:?})")]
    Model {
        index: usize,
        series: String,
        #[source]
        source: ModelError,
    },
}

/// How a teacher's outputs become a verdict.
#[derive(Debug)]
enum Rule {
    /// Sensor: output 0 is the score, alarm above the per-row threshold.
    Sensor { threshold: f64 },
    /// Log: the recipe's verdict on the outputs (alert column, threshold).
    Log(Box<LogRecipe>),
}

/// One loaded teacher.
#[derive(Debug)]
struct Teacher {
    model: ScoreModel,
    rule: Rule,
}

/// Every configured teacher, by judgement series. Cheap to share behind an `Arc`.
#[derive(Debug, Default)]
pub struct Teachers {
    by_series: BTreeMap<String, Teacher>,
}

impl Teachers {
    /// Loads every teacher: reads its sidecar, checks the rule judges rows
    /// alone, loads the model with the sidecar's width (tract's dry runs fail
    /// on a model of another width).
    pub fn load(configs: &[TeacherConfig]) -> Result<Teachers, TeacherError> {
        let mut by_series = BTreeMap::new();
        for (index, c) in configs.iter().enumerate() {
            let series = c.series.clone();
            let path = c.recipe_path();
            let text =
                std::fs::read_to_string(&path).map_err(|source| TeacherError::ReadRecipe {
                    index,
                    series: series.clone(),
                    path: path.clone(),
                    source,
                })?;
            if sidecar_kind(&text).as_deref() == Some("log") {
                let recipe =
                    LogRecipe::from_json(&text).map_err(|source| TeacherError::LogRecipe {
                        index,
                        series: series.clone(),
                        path: path.clone(),
                        source,
                    })?;
                let model = load_model(index, &series, c, recipe.width())?;
                if model.outputs() != recipe.outputs() {
                    return Err(TeacherError::Rule {
                        index,
                        series,
                        message: format!(
                            "the log sidecar says {} outputs, the model gives {}",
                            recipe.outputs(),
                            model.outputs()
                        ),
                    });
                }
                let rule = Rule::Log(Box::new(recipe));
                by_series.insert(series, Teacher { model, rule });
                continue;
            }
            let recipe = SensorRecipe::from_json(&text).map_err(|source| TeacherError::Recipe {
                index,
                series: series.clone(),
                path,
                source,
            })?;
            let rule = recipe.rule();
            if rule.smooth != 1 || rule.multiplier != 0.0 {
                return Err(TeacherError::Rule {
                    index,
                    series,
                    message: format!(
                        "the alarm rule needs device history (smooth = {}, multiplier = {}); \
                         the sink judges rows alone, so it must be smooth = 1, multiplier = 0",
                        rule.smooth, rule.multiplier
                    ),
                });
            }
            let threshold = threshold_from_calibration(&recipe, &[]);
            let model = load_model(index, &series, c, recipe.width())?;
            let rule = Rule::Sensor { threshold };
            by_series.insert(series, Teacher { model, rule });
        }
        Ok(Teachers { by_series })
    }

    /// True when no teacher is configured.
    pub fn is_empty(&self) -> bool {
        self.by_series.is_empty()
    }

    /// The series that have a teacher, with each model's input width.
    pub fn series(&self) -> impl Iterator<Item = (&str, usize)> {
        self.by_series
            .iter()
            .map(|(s, t)| (s.as_str(), t.model.width()))
    }

    /// The teacher's verdict on one escalation of `series`, dense or sparse.
    pub fn judge_escalation(&self, series: &str, e: &wire::Escalation) -> TeacherJudgement {
        let Some(t) = self.by_series.get(series) else {
            return TeacherJudgement::Skipped(TeacherSkip::NoTeacher);
        };
        match e.dense_row(t.model.width()) {
            Some(row) => self.judge(series, &row),
            None => TeacherJudgement::Skipped(TeacherSkip::Width),
        }
    }

    /// The teacher's verdict on one dense row of `series`: its raw score
    /// (sensor) or alert probability (log), its threshold and whether it is
    /// an alarm; or why there is none.
    pub fn judge(&self, series: &str, features: &[f32]) -> TeacherJudgement {
        let Some(t) = self.by_series.get(series) else {
            return TeacherJudgement::Skipped(TeacherSkip::NoTeacher);
        };
        if features.len() != t.model.width() {
            return TeacherJudgement::Skipped(TeacherSkip::Width);
        }
        if features.iter().any(|f| !f.is_finite()) {
            return TeacherJudgement::Skipped(TeacherSkip::NotFinite);
        }
        match t.model.score(features) {
            Ok(scores) => match (&t.rule, scores.first()) {
                (Rule::Sensor { threshold }, Some(&s)) if s.is_finite() => {
                    let score = f64::from(s);
                    TeacherJudgement::Judged(TeacherVerdict {
                        score,
                        threshold: *threshold,
                        alarm: score > *threshold,
                    })
                }
                (Rule::Log(recipe), Some(_)) if scores.iter().all(|s| s.is_finite()) => {
                    let j = recipe.judge(&scores);
                    TeacherJudgement::Judged(TeacherVerdict {
                        score: f64::from(j.alert_probability),
                        threshold: f64::from(recipe.alert_threshold()),
                        alarm: j.alert,
                    })
                }
                _ => TeacherJudgement::Skipped(TeacherSkip::ModelError),
            },
            Err(e) => {
                tracing::warn!(%series, error = %e, "teacher model failed on an escalated row");
                TeacherJudgement::Skipped(TeacherSkip::ModelError)
            }
        }
    }

    /// Judges every escalation of `body`: one list per window (empty for a
    /// window without escalations), in body order, as `put_batch` stores them,
    /// and the wall time spent in the judged rows.
    pub fn judge_body(&self, body: &wire::Body) -> BodyJudgements {
        let mut elapsed = Duration::ZERO;
        let per_window = body
            .windows
            .iter()
            .map(|w| {
                w.escalations
                    .iter()
                    .map(|e| {
                        // Only the judging is timed, not the walk over windows.
                        let started = Instant::now();
                        let judgement = self.judge_escalation(&w.metric, e);
                        elapsed += started.elapsed();
                        judgement
                    })
                    .collect()
            })
            .collect();
        BodyJudgements {
            per_window,
            elapsed,
        }
    }
}

/// The sidecar's `kind` (`sensor`, `log`), if it is a JSON object with one.
fn sidecar_kind(text: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(text).ok()?;
    Some(v.get("kind")?.as_str()?.to_owned())
}

/// Loads a teacher model of input width `width` (tract's dry runs fail on another).
fn load_model(
    index: usize,
    series: &str,
    c: &TeacherConfig,
    width: usize,
) -> Result<ScoreModel, TeacherError> {
    ScoreModel::load(&c.path, width).map_err(|source| TeacherError::Model {
        index,
        series: series.to_owned(),
        source,
    })
}

/// The teacher's judgements of one batch body.
#[derive(Debug, Clone, Default)]
pub struct BodyJudgements {
    /// Per window, per escalation, in body order.
    pub per_window: Vec<Vec<TeacherJudgement>>,
    /// Time spent in [`Teachers::judge`], summed over the escalations.
    pub elapsed: Duration,
}

impl BodyJudgements {
    /// The judgements in body order, flattened.
    pub fn iter(&self) -> impl Iterator<Item = &TeacherJudgement> {
        self.per_window.iter().flatten()
    }
}
