//! Judges log lines with the log model: content → features → one batched inference → verdicts.
//!
//! Stateless per line (unlike sensors): the header is stripped by the recipe,
//! the content featurized, all lines of a group scored in one call on the
//! [`InferencePool`], and each row of outputs turned into a [`LogJudgement`].
//! An unsure line's feature row is kept, sparse ([`SparseRow`]), for the
//! router to escalate. It does not mine templates (issue 5), redact, or keep
//! raw text.

use crate::model::ModelError;

use super::log_recipe::{LogJudgement, LogRecipe};
use super::pool::InferencePool;

/// Per line: 1 if the model calls it an alert, else 0 (window sum = alert lines).
pub const ALERT_METRIC: &str = "log.alert";
/// Per line: the confidence of its verdict.
pub const CONFIDENCE_METRIC: &str = "log.confidence";
/// Per line and class: 1 for the line's severity class, else 0 (`log.severity.<class>`).
pub const SEVERITY_PREFIX: &str = "log.severity.";

/// A feature row's non-zero entries: (column, value), columns increasing.
/// The hashed block of a log line is mostly zeros (a few dozen tokens and
/// bigrams in 2048 columns), so this is what an escalation carries.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SparseRow {
    pub indices: Vec<u32>,
    pub values: Vec<f32>,
}

impl SparseRow {
    /// The non-zero entries of `row`.
    pub fn of(row: &[f32]) -> SparseRow {
        let mut s = SparseRow::default();
        for (i, &v) in row.iter().enumerate() {
            if v != 0.0 {
                s.indices
                    .push(u32::try_from(i).expect("recipe widths fit u32"));
                s.values.push(v);
            }
        }
        s
    }
}

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

    /// The alert decision threshold (an escalation's score is the alert
    /// probability over it, so 1 is the threshold as for sensor models).
    pub fn alert_threshold(&self) -> f32 {
        self.recipe.alert_threshold()
    }

    /// Judges whole lines (headers included), in order.
    pub fn judge(&self, lines: &[&str]) -> Result<Vec<LogJudgement>, ModelError> {
        Ok(self
            .judge_keeping(lines, 0.0)?
            .into_iter()
            .map(|(j, _)| j)
            .collect())
    }

    /// Judges like [`judge`](Self::judge) and keeps, for each line whose
    /// confidence is below `keep_below`, the feature row the model saw.
    pub fn judge_keeping(
        &self,
        lines: &[&str],
        keep_below: f32,
    ) -> Result<Vec<(LogJudgement, Option<SparseRow>)>, ModelError> {
        let width = self.recipe.width();
        let mut features = Vec::with_capacity(lines.len() * width);
        for line in lines {
            self.recipe
                .featurize(self.recipe.content(line), &mut features);
        }
        let kept = (keep_below > 0.0).then(|| features.clone());
        let scores = self.pool.score(features)?;
        let m = self.pool.outputs();
        Ok(scores
            .chunks(m)
            .enumerate()
            .map(|(i, row)| {
                let j = self.recipe.judge(row);
                let sparse = kept
                    .as_ref()
                    .filter(|_| j.confidence < keep_below)
                    .map(|f| SparseRow::of(&f[i * width..(i + 1) * width]));
                (j, sparse)
            })
            .collect())
    }
}
