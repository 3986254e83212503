//! Starting the classify stage: every configured model and sidecar read,
//! loaded and checked against each other (channels, widths, outputs), with
//! [`ClassifyError`] naming the file and key at fault. It does not judge.

use std::path::{Path, PathBuf};

use crate::config::ModelsConfig;
use crate::model::{ModelError, ScoreModel};

use super::{ClassifyStage, SensorStage};
use crate::classify::log::LogClassifier;
use crate::classify::log_escalation::LogEscalator;
use crate::classify::log_recipe::{LogRecipe, LogRecipeError};
use crate::classify::pool::InferencePool;
use crate::classify::router::Router;
use crate::classify::sensor::SensorClassifier;
use crate::classify::sensor_recipe::{SensorRecipe, SensorRecipeError};

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
    #[error("log model recipe {path}: {source}")]
    LogRecipe {
        path: PathBuf,
        source: LogRecipeError,
    },
    #[error(
        "log model {path}: the sidecar says {expected} outputs per line, the model gives {got}"
    )]
    LogOutputs {
        path: PathBuf,
        expected: usize,
        got: usize,
    },
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("template miner: {0}")]
    Templates(#[from] crate::logmine::MinerError),
    #[error("template exemplars: {0}")]
    Redact(#[from] crate::classify::redact::RedactError),
    #[error("cannot start inference threads: {0}")]
    Threads(std::io::Error),
}

impl ClassifyStage {
    /// Loads every configured model and sidecar, checking shapes against each other.
    pub fn load(config: &ModelsConfig) -> Result<ClassifyStage, ClassifyError> {
        let mut stage = ClassifyStage {
            router: Router::new(config.escalations_per_device_hour()),
            ..ClassifyStage::default()
        };
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
                escalate_below: m.escalate_below,
            });
        }
        if let Some(m) = &config.log {
            let recipe_path = m.recipe_path();
            let recipe = LogRecipe::from_json(&read_text(&recipe_path)?).map_err(|source| {
                ClassifyError::LogRecipe {
                    path: recipe_path.clone(),
                    source,
                }
            })?;
            let model = ScoreModel::load(&m.path, recipe.width())?;
            if model.outputs() != recipe.outputs() {
                return Err(ClassifyError::LogOutputs {
                    path: m.path.clone(),
                    expected: recipe.outputs(),
                    got: model.outputs(),
                });
            }
            let pool = InferencePool::new(model, config.threads(), "log")
                .map_err(ClassifyError::Threads)?;
            stage.log = Some(LogClassifier::new(recipe, pool));
            if let Some(below) = m.escalate_below {
                stage.log_escalator = Some(LogEscalator::new(below)?);
            }
        }
        Ok(stage)
    }
}

fn read_text(path: &Path) -> Result<String, ClassifyError> {
    std::fs::read_to_string(path).map_err(|source| ClassifyError::ReadRecipe {
        path: path.to_owned(),
        source,
    })
}

fn read_recipe(path: &Path) -> Result<SensorRecipe, ClassifyError> {
    SensorRecipe::from_json(&read_text(path)?).map_err(|source| ClassifyError::Recipe {
        path: path.to_owned(),
        source,
    })
}
