//! The `[models]` section: which ONNX models classify what, and their checks.
//!
//! Describes and checks the file only (paths, names, thread count); loading
//! the models and their sidecars, and matching them against each other, is
//! [`crate::classify::ClassifyStage::load`]'s job, so a broken model file is a
//! start-up error that names the file.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::validate::Checker;

/// `[models]`: empty by default (no classification).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelsConfig {
    /// Inference worker threads per model (tract runs there, not on the
    /// pipeline thread). Default 1.
    #[serde(default)]
    pub threads: Option<usize>,
    /// Sensor models, each judging the devices whose messages carry all its channels.
    #[serde(default)]
    pub sensor: Vec<SensorModelConfig>,
    /// The log-line model, judging every line of `format = "text"` routes.
    #[serde(default)]
    pub log: Option<LogModelConfig>,
}

/// `[models.log]`: each line gets an alert verdict and a severity class; per
/// line the series `log.alert` (1/0), `log.confidence` and
/// `log.severity.<class>` (1 for its class, else 0) get a reading, so window
/// sums are counts of alert lines and of lines per class.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogModelConfig {
    /// The `.onnx` file; a relative path is relative to the config file's folder.
    pub path: PathBuf,
    /// Its sidecar; default: `path` with the extension `.json`.
    #[serde(default)]
    pub recipe: Option<PathBuf>,
}

impl LogModelConfig {
    /// The sidecar path.
    pub fn recipe_path(&self) -> PathBuf {
        sidecar(&self.path, self.recipe.as_deref())
    }
}

/// `[[models.sensor]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SensorModelConfig {
    /// The `.onnx` file; a relative path is relative to the config file's folder.
    pub path: PathBuf,
    /// Its recipe sidecar; default: `path` with the extension `.json`.
    #[serde(default)]
    pub recipe: Option<PathBuf>,
    /// Metric names feeding the model's channels, in the sidecar's channel
    /// order; default: the sidecar's own channel names.
    #[serde(default)]
    pub channels: Option<Vec<String>>,
    /// Name of the derived series holding the judgements (normalized scores,
    /// 1 = threshold); its windows carry the verdict. Default `anomaly`.
    #[serde(default = "default_series")]
    pub series: String,
}

/// A model's sidecar: `recipe` if given, else the model path with `.json`.
fn sidecar(model: &Path, recipe: Option<&Path>) -> PathBuf {
    recipe.map_or_else(|| model.with_extension("json"), Path::to_owned)
}

/// Makes a model path and its optional sidecar path relative to `base`.
fn resolve(base: &Path, model: &mut PathBuf, recipe: &mut Option<PathBuf>) {
    if model.is_relative() {
        *model = base.join(&*model);
    }
    if let Some(r) = recipe.as_mut().filter(|r| r.is_relative()) {
        *r = base.join(&*r);
    }
}

fn default_series() -> String {
    "anomaly".to_owned()
}

impl SensorModelConfig {
    /// The sidecar path.
    pub fn recipe_path(&self) -> PathBuf {
        sidecar(&self.path, self.recipe.as_deref())
    }
}

impl ModelsConfig {
    /// Makes relative model and recipe paths relative to `base` (the config
    /// file's folder), so the agent finds them from any working directory.
    pub fn resolve_paths(&mut self, base: &Path) {
        for m in &mut self.sensor {
            resolve(base, &mut m.path, &mut m.recipe);
        }
        if let Some(m) = &mut self.log {
            resolve(base, &mut m.path, &mut m.recipe);
        }
    }

    /// Worker threads per model.
    pub fn threads(&self) -> usize {
        self.threads.unwrap_or(1)
    }

    pub(super) fn check(&self, c: &mut Checker) {
        if let Some(t) = self.threads {
            c.require(
                (1..=64).contains(&t),
                "models.threads",
                "must be between 1 and 64",
            );
        }
        if let Some(m) = &self.log {
            c.require(
                !m.path.as_os_str().is_empty(),
                "models.log.path",
                "must name an .onnx file",
            );
        }
        let mut series = HashSet::new();
        for (i, m) in self.sensor.iter().enumerate() {
            let key = |k: &str| format!("models.sensor[{i}].{k}");
            c.require(
                !m.path.as_os_str().is_empty() && m.path != Path::new(""),
                key("path"),
                "must name an .onnx file",
            );
            c.require(
                super::validate::is_identifier(&m.series) && !m.series.starts_with("log."),
                key("series"),
                "must be 1-64 characters of A-Z a-z 0-9 . _ - and not start with `log.`",
            );
            c.require(
                series.insert(m.series.clone()),
                key("series"),
                format!("{:?} is already used by another model", m.series),
            );
            if let Some(ch) = &m.channels {
                c.require(!ch.is_empty(), key("channels"), "must not be empty");
                let unique: HashSet<_> = ch.iter().collect();
                c.require(
                    unique.len() == ch.len(),
                    key("channels"),
                    "must not repeat a metric",
                );
                c.require(
                    !ch.contains(&m.series),
                    key("series"),
                    "must differ from every channel name",
                );
            }
        }
    }
}
