//! Turns a log line the log model was unsure of into an escalation: the model's sparse feature
//! row, the local verdict, and the line redacted and capped (never the raw line).
//!
//! The row is what the recipe fed the model (hashed tokens and bigrams of the line's content,
//! then the numeric features), so the sink's teacher with the same recipe judges exactly that
//! input. The exemplar goes through the same [`Redactor`] as template exemplars (the agent
//! hands it the `[templates]` rules; all built-ins otherwise), then is cut to
//! [`MAX_ESCALATION_EXEMPLAR_BYTES`]. An escalation that would not fit the room an escalation has
//! in a window ([`escalation_fits`]) is refused. It does not judge lines or decide admission
//! (the router's budget and the window's room do).

use wire::Escalation;

use crate::window::{escalation_fits, MAX_ESCALATION_EXEMPLAR_BYTES};

use super::log::{SparseRow, ALERT_METRIC};
use super::log_recipe::LogJudgement;
use super::redact::{builtin_names, cap, RedactError, Redactor};
use super::router::Escalated;

/// The log model's escalation settings.
#[derive(Debug, Clone)]
pub struct LogEscalator {
    below: f32,
    redactor: Redactor,
}

impl LogEscalator {
    /// Escalates lines judged with confidence below `below`; redacts with
    /// every built-in rule until [`LogEscalator::with_redactor`] says otherwise.
    pub fn new(below: f64) -> Result<LogEscalator, RedactError> {
        let all: Vec<String> = builtin_names().map(str::to_owned).collect();
        Ok(LogEscalator {
            below: below as f32,
            redactor: Redactor::new(&all, &[])?,
        })
    }

    /// Uses `redactor` (the `[templates]` rules) for exemplars.
    pub fn with_redactor(mut self, redactor: Redactor) -> LogEscalator {
        self.redactor = redactor;
        self
    }

    /// The confidence below which a line is escalated.
    pub fn below(&self) -> f32 {
        self.below
    }

    /// The escalation of `line` (judged `j` at `ts_ms`, features `row`), riding
    /// in the device's `log.alert` window; `None` if it does not fit.
    pub fn escalation(
        &self,
        line: &str,
        ts_ms: i64,
        j: &LogJudgement,
        alert_threshold: f32,
        row: SparseRow,
    ) -> Option<Escalated> {
        let redacted = self.redactor.apply(line);
        let exemplar = cap(redacted.text, MAX_ESCALATION_EXEMPLAR_BYTES);
        let escalation = Escalation {
            ts_ms,
            alarm: j.alert,
            score: f64::from(j.alert_probability) / f64::from(alert_threshold),
            confidence: f64::from(j.confidence),
            features: row.values,
            indices: row.indices,
            exemplar: Some(exemplar),
        };
        escalation_fits(&escalation).then(|| Escalated {
            series: ALERT_METRIC.to_owned(),
            escalation,
            redacted: redacted.counts,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn judgement() -> LogJudgement {
        LogJudgement {
            alert: true,
            alert_probability: 0.55,
            severity: 3,
            confidence: 0.1,
        }
    }

    #[test]
    fn the_exemplar_is_redacted_and_capped_and_the_row_kept() {
        let x = LogEscalator::new(0.5).unwrap();
        let line = format!(
            "sshd[1]: Failed password for admin from 10.1.2.3 port 22 mail bob@example.com mac 00:1a:2b:3c:4d:5e {}",
            "x".repeat(300)
        );
        let row = SparseRow {
            indices: vec![3, 2050],
            values: vec![0.5, 0.25],
        };
        let e = x
            .escalation(&line, 7, &judgement(), 0.5, row.clone())
            .unwrap();
        assert_eq!(e.series, ALERT_METRIC);
        let ex = e.escalation.exemplar.as_deref().unwrap();
        for secret in ["10.1.2.3", "bob@example.com", "00:1a:2b:3c:4d:5e", "admin"] {
            assert!(!ex.contains(secret), "{secret} in {ex}");
        }
        assert!(ex.contains("<ip>") && ex.contains("<email>") && ex.contains("<mac>"));
        for kind in ["ip", "email", "mac"] {
            assert!(e.redacted.contains(&(kind, 1)), "{kind}: {:?}", e.redacted);
        }
        assert!(ex.len() <= MAX_ESCALATION_EXEMPLAR_BYTES && ex.ends_with('…'));
        assert_eq!(e.escalation.indices, row.indices);
        assert_eq!(e.escalation.features, row.values);
        assert!(
            (e.escalation.score - 1.1).abs() < 1e-6,
            "{}",
            e.escalation.score
        );
        assert!(e.escalation.alarm);
        assert_eq!(e.escalation.dense_row(2054).unwrap()[2050], 0.25);
    }

    #[test]
    fn a_row_too_wide_for_a_window_is_refused() {
        let x = LogEscalator::new(0.5).unwrap();
        let n = 200;
        let row = SparseRow {
            indices: (0..n).collect(),
            values: vec![0.1; n as usize],
        };
        assert!(x.escalation("line", 7, &judgement(), 0.5, row).is_none());
    }
}
