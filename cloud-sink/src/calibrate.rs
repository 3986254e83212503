//! Threshold calibration for the gateway's router: from the escalations the
//! teacher judged, the lowest `escalate_below` at which the rows at or above
//! it agree with the teacher at least a target rate.
//!
//! Pure computation over agreement [`Row`]s; reading the store and printing
//! are `main.rs`'s (`cloud-sink calibrate`). What it cannot know: rows whose
//! confidence was at or above the gateway's current `escalate_below` were
//! never escalated, so the sink has no teacher verdict for them. It can only
//! suggest *lowering* the threshold (deciding more rows locally), never
//! raising it, and it assumes rows above the current threshold agree at
//! least as well as the most confident escalated ones. Escalations are also a
//! budgeted sample (the first few unsure rows per device and hour), not all
//! unsure rows.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::agreement::Row;

/// Agreement of a set of judged rows.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Tally {
    pub rows: u64,
    pub agree: u64,
}

impl Tally {
    /// `agree / rows`; `None` when empty.
    pub fn rate(&self) -> Option<f64> {
        (self.rows > 0).then(|| self.agree as f64 / self.rows as f64)
    }

    /// Wilson 95% lower bound of the agreement rate (0 when empty): how low
    /// the true rate could plausibly be given this many rows.
    pub fn lower_bound(&self) -> f64 {
        if self.rows == 0 {
            return 0.0;
        }
        let n = self.rows as f64;
        let p = self.agree as f64 / n;
        let z = 1.96_f64;
        let z2 = z * z;
        let centre = p + z2 / (2.0 * n);
        let margin = z * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
        ((centre - margin) / (1.0 + z2 / n)).max(0.0)
    }
}

/// What the data says for one series.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// Rows at or above `escalate_below` agree at least the target rate.
    Suggest {
        escalate_below: f64,
        /// Judged rows at or above it (would be decided locally).
        at_or_above: Tally,
        /// Judged rows below it (would still be escalated).
        below: Tally,
    },
    /// Fewer judged rows than the minimum: no suggestion.
    TooFew,
    /// No threshold reaches the target with enough rows: keep the current one.
    Unreachable,
}

/// The calibration of one judgement series.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SeriesCalibration {
    pub series: String,
    /// Escalations stored for it.
    pub escalations: u64,
    /// Of them, judged by the teacher (the only ones used).
    pub judged: Tally,
    /// Smallest and largest local confidence of the judged rows.
    pub confidence_range: Option<[f64; 2]>,
    pub outcome: Outcome,
}

/// One judged row: (local confidence, agreed with the teacher).
type Judged = (f64, bool);

/// Per series: the lowest observed confidence `t` such that the judged rows
/// with confidence `>= t` number at least `min_rows` and agree with the
/// teacher at a rate `>= min_agreement`.
pub fn calibrate(rows: &[Row], min_agreement: f64, min_rows: u64) -> Vec<SeriesCalibration> {
    let mut by_series: BTreeMap<&str, (u64, Vec<Judged>)> = BTreeMap::new();
    for r in rows {
        let entry = by_series.entry(&r.series).or_default();
        entry.0 += 1;
        if let Ok(teacher) = r.teacher_alarm {
            entry.1.push((r.confidence, teacher == r.local_alarm));
        }
    }
    by_series
        .into_iter()
        .map(|(series, (escalations, mut judged))| {
            judged.sort_by(|a, b| a.0.total_cmp(&b.0));
            let total = Tally {
                rows: judged.len() as u64,
                agree: judged.iter().filter(|j| j.1).count() as u64,
            };
            let confidence_range = judged
                .first()
                .zip(judged.last())
                .map(|(lo, hi)| [lo.0, hi.0]);
            let outcome = if total.rows < min_rows.max(1) {
                Outcome::TooFew
            } else {
                lowest_threshold(&judged, total, min_agreement, min_rows)
            };
            SeriesCalibration {
                series: series.to_owned(),
                escalations,
                judged: total,
                confidence_range,
                outcome,
            }
        })
        .collect()
}

/// Scans the distinct confidences upward, keeping the tally of the rows at
/// or above the current one; the first that qualifies is the lowest.
fn lowest_threshold(sorted: &[Judged], total: Tally, min_agreement: f64, min_rows: u64) -> Outcome {
    let mut below = Tally { rows: 0, agree: 0 };
    let mut i = 0;
    while i < sorted.len() {
        let t = sorted[i].0;
        let above = Tally {
            rows: total.rows - below.rows,
            agree: total.agree - below.agree,
        };
        if above.rows < min_rows.max(1) {
            break;
        }
        if above.rate().is_some_and(|r| r >= min_agreement) {
            return Outcome::Suggest {
                escalate_below: t,
                at_or_above: above,
                below,
            };
        }
        // Move every row of this confidence below the next candidate.
        while i < sorted.len() && sorted[i].0 == t {
            below.rows += 1;
            below.agree += u64::from(sorted[i].1);
            i += 1;
        }
    }
    Outcome::Unreachable
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(series: &str, confidence: f64, agree: bool) -> Row {
        Row {
            series: series.into(),
            confidence,
            local_alarm: true,
            teacher_alarm: Ok(agree),
        }
    }

    #[test]
    fn lowest_threshold_whose_upper_rows_agree_enough() {
        // Confidences 0.001..0.010; the three least confident disagree.
        let mut rows: Vec<Row> = (1..=10)
            .map(|i| row("anomaly", f64::from(i) / 1000.0, i > 3))
            .collect();
        rows.push(Row {
            teacher_alarm: Err("no_teacher"),
            ..row("anomaly", 0.0005, false)
        });
        let out = calibrate(&rows, 0.99, 3);
        assert_eq!(out.len(), 1);
        let c = &out[0];
        assert_eq!((c.escalations, c.judged.rows, c.judged.agree), (11, 10, 7));
        assert_eq!(c.confidence_range, Some([0.001, 0.010]));
        assert_eq!(
            c.outcome,
            Outcome::Suggest {
                escalate_below: 0.004,
                at_or_above: Tally { rows: 7, agree: 7 },
                below: Tally { rows: 3, agree: 0 },
            }
        );
        // At 70% every row qualifies: 0.001 and above agree 7/10.
        match &calibrate(&rows, 0.7, 3)[0].outcome {
            Outcome::Suggest { escalate_below, .. } => assert_eq!(*escalate_below, 0.001),
            other => panic!("{other:?}"),
        }
        // Needing 8 rows at or above: 0.003 and above agree 7/8 < 0.99.
        assert_eq!(calibrate(&rows, 0.99, 8)[0].outcome, Outcome::Unreachable);
        assert_eq!(calibrate(&rows, 0.99, 11)[0].outcome, Outcome::TooFew);
    }

    #[test]
    fn ties_move_together_and_series_are_separate() {
        let rows = vec![
            row("a", 0.01, false),
            row("a", 0.02, true),
            row("a", 0.02, false),
            row("a", 0.03, true),
            row("b", 0.5, true),
        ];
        let out = calibrate(&rows, 1.0, 1);
        assert_eq!(out[0].series, "a");
        // 0.02 and above is 2/3; only 0.03 alone agrees fully.
        assert_eq!(
            out[0].outcome,
            Outcome::Suggest {
                escalate_below: 0.03,
                at_or_above: Tally { rows: 1, agree: 1 },
                below: Tally { rows: 3, agree: 1 },
            }
        );
        assert_eq!(out[1].series, "b");
        assert!(matches!(out[1].outcome, Outcome::Suggest { .. }));
    }

    #[test]
    fn wilson_lower_bound_is_below_the_rate_and_grows_with_rows() {
        let small = Tally {
            rows: 10,
            agree: 10,
        };
        let large = Tally {
            rows: 1000,
            agree: 1000,
        };
        assert!(small.lower_bound() < 1.0 && small.lower_bound() > 0.6);
        assert!(large.lower_bound() > small.lower_bound());
        assert_eq!(Tally { rows: 0, agree: 0 }.lower_bound(), 0.0);
        assert_eq!(Tally { rows: 0, agree: 0 }.rate(), None);
    }
}
