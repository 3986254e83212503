//! Judges log lines with the log model: content → features → one batched inference → verdicts.
//!
//! Stateless per line (unlike sensors): the header is stripped by the recipe,
//! the content featurized, all lines of a group scored in one call on the
//! [`InferencePool`], and each row of outputs turned into a [`LogJudgement`].
//! It does not mine templates (issue 5) and keeps no raw text.

use crate::model::ModelError;

use super::log_recipe::{LogJudgement, LogRecipe};
use super::pool::InferencePool;

/// Per line: 1 if the model calls it an alert, else 0 (window sum = alert lines).
pub const ALERT_METRIC: &str = "log.alert";
/// Per line: the confidence of its verdict.
pub const CONFIDENCE_METRIC: &str = "log.confidence";
/// Per line and class: 1 for the line's severity class, else 0 (`log.severity.<class>`).
pub const SEVERITY_PREFIX: &str = "log.severity.";

/// The log model and its recipe.
#[derive(Debug)]
pub struct LogClassifier {
    recipe: LogRecipe,
    pool: InferencePool,
    severity_metrics: Vec<String>,
}

impl LogClassifier {
    pub fn new(recipe: LogRecipe, pool: InferencePool) -> LogClassifier {
        let severity_metrics = recipe
            .severity_names()
            .iter()
            .map(|n| format!("{SEVERITY_PREFIX}{n}"))
            .collect();
        LogClassifier {
            recipe,
            pool,
            severity_metrics,
        }
    }

    pub fn pool(&self) -> &InferencePool {
        &self.pool
    }

    /// Number of severity classes.
    pub fn severity_count(&self) -> usize {
        self.severity_metrics.len()
    }

    /// The metric counting lines of severity class `index`.
    pub fn severity_metric(&self, index: usize) -> &str {
        self.severity_metrics
            .get(index)
            .map_or("log.severity.unknown", String::as_str)
    }

    /// Judges whole lines (headers included), in order.
    pub fn judge(&self, lines: &[&str]) -> Result<Vec<LogJudgement>, ModelError> {
        let mut features = Vec::with_capacity(lines.len() * self.recipe.width());
        for line in lines {
            self.recipe
                .featurize(self.recipe.content(line), &mut features);
        }
        let scores = self.pool.score(features)?;
        let m = self.pool.outputs();
        Ok(scores.chunks(m).map(|row| self.recipe.judge(row)).collect())
    }
}
