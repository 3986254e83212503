//! The `[[teachers]]` section: which float teacher model re-judges the
//! escalations of which judgement series.
//!
//! Describes and checks the file only (series names, paths); loading the
//! models and checking their width is [`crate::teacher::Teachers::load`]'s
//! job, done at start-up so a missing or wrong model stops the sink with a
//! clear error.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{is_valid_gateway_id, ConfigProblem};

/// `[[teachers]]`: the teacher of one judgement series.
///
/// ```toml
/// [[teachers]]
/// series = "anomaly"
/// path = "../models/sensor/teacher.onnx"
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TeacherConfig {
    /// The judgement series whose escalations this model re-judges: the
    /// `series` of the agent's `[[models.sensor]]` (default there: `anomaly`),
    /// or `log.alert` for the log model, i.e. the metric of the window that
    /// carried the escalation.
    pub series: String,
    /// The `.onnx` file; a relative path is relative to the config file's folder.
    pub path: PathBuf,
    /// Its sidecar (sensor: width, alarm rule; log: recipe, alert threshold;
    /// its `kind` says which); default: `path` with `.json`.
    #[serde(default)]
    pub recipe: Option<PathBuf>,
}

impl TeacherConfig {
    /// The sidecar path.
    pub fn recipe_path(&self) -> PathBuf {
        self.recipe
            .clone()
            .unwrap_or_else(|| self.path.with_extension("json"))
    }

    /// Makes relative paths relative to `base` (the config file's folder).
    pub fn resolve_paths(&mut self, base: &Path) {
        if self.path.is_relative() {
            self.path = base.join(&self.path);
        }
        if let Some(r) = self.recipe.as_mut().filter(|r| r.is_relative()) {
            *r = base.join(&*r);
        }
    }
}

/// Checks every `[[teachers]]` entry, appending problems.
pub(super) fn check(teachers: &[TeacherConfig], problems: &mut Vec<ConfigProblem>) {
    let mut seen = HashSet::new();
    for (i, t) in teachers.iter().enumerate() {
        let key = |k: &str| format!("teachers[{i}].{k}");
        if !is_valid_gateway_id(&t.series) {
            problems.push(ConfigProblem::new(
                key("series"),
                format!(
                    "{:?} must be 1-64 characters of A-Z a-z 0-9 . _ - (the agent's models.sensor series, or log.alert)",
                    t.series
                ),
            ));
        } else if !seen.insert(t.series.as_str()) {
            problems.push(ConfigProblem::new(
                key("series"),
                format!("{:?} already has a teacher", t.series),
            ));
        }
        if t.path.as_os_str().is_empty() {
            problems.push(ConfigProblem::new(key("path"), "must name an .onnx file"));
        }
        if t.recipe.as_ref().is_some_and(|r| r.as_os_str().is_empty()) {
            problems.push(ConfigProblem::new(
                key("recipe"),
                "must name a .json sidecar (or be left out)",
            ));
        }
    }
}
