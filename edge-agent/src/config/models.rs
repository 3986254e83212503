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
    /// Most judged rows per device per (event-time) hour sent to the cloud
    /// model for a second opinion; over that the local verdict stands and the
    /// row is counted as `escalation_over_budget`. Default 6.
    #[serde(default)]
    pub escalations_per_device_hour: Option<u32>,
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
    /// Escalate a line whose verdict's confidence (`log.confidence`) is below
    /// this, within the hourly budget the sensor models share: its hashed
    /// features and the line redacted ride in its `log.alert` window. Default:
    /// none (every verdict is final on the gateway).
    #[serde(default)]
    pub escalate_below: Option<f64>,
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
    /// Escalate a judged row whose confidence (0 on the device threshold, 1
    /// far from it) is below this, within the hourly budget. Default: none
    /// (every verdict is final on the gateway). `route-eval` picks one.
    #[serde(default)]
    pub escalate_below: Option<f64>,
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

    /// The escalation budget per device and hour.
    pub fn escalations_per_device_hour(&self) -> u32 {
        self.escalations_per_device_hour.unwrap_or(6)
    }

    /// Whether any model may escalate (windows may then carry escalations).
    pub fn escalates(&self) -> bool {
        self.sensor.iter().any(|m| m.escalate_below.is_some())
            || self
                .log
                .as_ref()
                .is_some_and(|m| m.escalate_below.is_some())
    }

    pub(super) fn check(&self, c: &mut Checker) {
        if let Some(t) = self.threads {
            c.require(
                (1..=64).contains(&t),
                "models.threads",
                "must be between 1 and 64",
            );
        }
        if let Some(k) = self.escalations_per_device_hour {
            c.require(
                k <= 3600,
                "models.escalations_per_device_hour",
                "must be at most 3600 (one a second)",
            );
        }
        if let Some(m) = &self.log {
            c.require(
                !m.path.as_os_str().is_empty(),
                "models.log.path",
                "must name an .onnx file",
            );
            if let Some(b) = m.escalate_below {
                c.require(
                    b > 0.0 && b <= 1.0,
                    "models.log.escalate_below",
                    "must be a confidence in (0, 1]",
                );
            }
        }
        let mut series = HashSet::new();
        for (i, m) in self.sensor.iter().enumerate() {
            let key = |k: &str| format!("models.sensor[{i}].{k}");
            c.require(
                !m.path.as_os_str().is_empty() && m.path != Path::new(""),
                key("path"),
                "must name an .onnx file",
            );
            if let Some(b) = m.escalate_below {
                c.require(
                    b > 0.0 && b <= 1.0,
                    key("escalate_below"),
                    "must be a confidence in (0, 1]",
                );
            }
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

#[cfg(test)]
mod tests {
    use crate::config::AgentConfig;

    fn with_log(extra: &str) -> String {
        format!(
            r#"
            gateway_id = "gw-1"
            data_dir = "/tmp/x"
            [mqtt]
            client_id = "a"
            subscribe = ["plant/#"]
            [[routes]]
            topic = "plant/+/logs"
            format = "text"
            [uplink]
            url = "http://127.0.0.1:8080"
            token_env = "EDGE_TOKEN"
            [models.log]
            path = "log.onnx"
            {extra}
            "#
        )
    }

    #[test]
    fn log_escalate_below_is_a_confidence_and_turns_escalation_on() {
        let ok = AgentConfig::parse(&with_log("escalate_below = 0.6"))
            .unwrap()
            .validate()
            .unwrap();
        assert!(ok.models.escalates());
        let off = AgentConfig::parse(&with_log(""))
            .unwrap()
            .validate()
            .unwrap();
        assert!(!off.models.escalates());
        for bad in ["0.0", "1.5", "-0.1"] {
            let problems = AgentConfig::parse(&with_log(&format!("escalate_below = {bad}")))
                .unwrap()
                .validate()
                .unwrap_err();
            let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
            assert_eq!(keys, ["models.log.escalate_below"], "{bad}");
        }
        // Its exemplars use the [templates] redaction, checked even with mining off.
        let problems = AgentConfig::parse(&with_log(
            "escalate_below = 0.6\n[templates]\nenabled = false\nredact = [\"(\"]",
        ))
        .unwrap()
        .validate()
        .unwrap_err();
        assert_eq!(problems[0].key, "templates.redact", "{problems:?}");
    }
}
