//! Local-vs-teacher agreement statistics over stored escalations: totals,
//! the 2×2 table, and agreement per local-confidence bucket.
//!
//! Pure computation over [`Row`]s (built from `StoredEscalation`s); reading
//! the store and answering HTTP are the caller's. Rows without a teacher
//! verdict are counted by reason and left out of every rate.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::store::{StoredEscalation, TeacherSkip};

/// Default number of confidence buckets.
pub const DEFAULT_BUCKETS: usize = 10;
/// Largest number of confidence buckets.
pub const MAX_BUCKETS: usize = 100;

/// What the statistics need of one escalation.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// Judgement series (the teacher's key).
    pub series: String,
    /// The local verdict's confidence, 0 (on the threshold) to 1.
    pub confidence: f64,
    /// The local verdict.
    pub local_alarm: bool,
    /// The teacher's verdict; `Err(reason)` when there is none.
    pub teacher_alarm: Result<bool, &'static str>,
}

impl From<&StoredEscalation> for Row {
    fn from(e: &StoredEscalation) -> Row {
        let teacher_alarm = match (&e.teacher, e.teacher_skipped) {
            (Some(v), _) => Ok(v.alarm),
            (None, Some(why)) => Err(why.as_str()),
            // Stored before the sink judged escalations.
            (None, None) => Err("not_judged"),
        };
        Row {
            series: e.series.clone(),
            confidence: e.escalation.confidence,
            local_alarm: e.escalation.alarm,
            teacher_alarm,
        }
    }
}

/// The 2×2 table of local verdict against teacher verdict (judged rows only).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Table {
    pub local_alarm_teacher_alarm: u64,
    pub local_alarm_teacher_normal: u64,
    pub local_normal_teacher_alarm: u64,
    pub local_normal_teacher_normal: u64,
}

/// Agreement of the judged rows whose confidence is in `[from, to)` (the
/// last bucket also holds `to`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Bucket {
    pub from: f64,
    pub to: f64,
    pub judged: u64,
    pub agree: u64,
    pub disagree: u64,
    /// `agree / judged`; `None` for an empty bucket.
    pub agreement_rate: Option<f64>,
}

/// Agreement statistics of a set of escalations.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Agreement {
    /// Escalations seen.
    pub escalations: u64,
    /// Of them, judged by a teacher.
    pub judged: u64,
    /// The rest, by reason (`no_teacher`, `width`, `not_finite`,
    /// `model_error`, `not_judged` for rows stored before teachers existed).
    pub not_judged: BTreeMap<&'static str, u64>,
    pub agree: u64,
    pub disagree: u64,
    /// `agree / judged`; `None` when nothing was judged.
    pub agreement_rate: Option<f64>,
    pub table: Table,
    pub buckets: Vec<Bucket>,
}

impl Agreement {
    /// Empty statistics with `n` buckets over `[0, to]`.
    fn new(n: usize, to: f64) -> Agreement {
        let n = n.clamp(1, MAX_BUCKETS);
        let mut not_judged = BTreeMap::new();
        for why in TeacherSkip::ALL {
            not_judged.insert(why.as_str(), 0);
        }
        Agreement {
            escalations: 0,
            judged: 0,
            not_judged,
            agree: 0,
            disagree: 0,
            agreement_rate: None,
            table: Table::default(),
            buckets: (0..n)
                .map(|i| Bucket {
                    from: to * i as f64 / n as f64,
                    to: to * (i + 1) as f64 / n as f64,
                    judged: 0,
                    agree: 0,
                    disagree: 0,
                    agreement_rate: None,
                })
                .collect(),
        }
    }

    fn add(&mut self, row: &Row, to: f64) {
        self.escalations += 1;
        let teacher = match row.teacher_alarm {
            Ok(t) => t,
            Err(why) => {
                *self.not_judged.entry(why).or_default() += 1;
                return;
            }
        };
        self.judged += 1;
        let agree = teacher == row.local_alarm;
        let cell = match (row.local_alarm, teacher) {
            (true, true) => &mut self.table.local_alarm_teacher_alarm,
            (true, false) => &mut self.table.local_alarm_teacher_normal,
            (false, true) => &mut self.table.local_normal_teacher_alarm,
            (false, false) => &mut self.table.local_normal_teacher_normal,
        };
        *cell += 1;
        let n = self.buckets.len();
        // Confidence is in [0, 1]; anything outside `[0, to]` goes to an end bucket.
        let at = (row.confidence / to * n as f64).floor();
        let index = if at.is_nan() || at < 0.0 {
            0
        } else {
            (at as usize).min(n - 1)
        };
        let bucket = &mut self.buckets[index];
        bucket.judged += 1;
        if agree {
            self.agree += 1;
            bucket.agree += 1;
        } else {
            self.disagree += 1;
            bucket.disagree += 1;
        }
    }

    fn finish(&mut self) {
        self.agreement_rate = rate(self.agree, self.judged);
        for b in &mut self.buckets {
            b.agreement_rate = rate(b.agree, b.judged);
        }
    }
}

fn rate(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64)
}

/// Statistics over all rows and per series, on the same buckets.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// The bucketed confidence range `[0, to]`.
    pub range: [f64; 2],
    pub overall: Agreement,
    pub by_series: BTreeMap<String, Agreement>,
}

/// Computes the statistics with `buckets` buckets over `[0, to]`; `to`
/// defaults to the largest confidence seen, rounded up to two significant
/// digits (escalated rows all lie below the gateway's `escalate_below`, so
/// buckets over all of `[0, 1]` would put them in one).
pub fn report(rows: &[Row], buckets: usize, to: Option<f64>) -> Report {
    let to = to
        .filter(|t| t.is_finite() && *t > 0.0)
        .unwrap_or_else(|| nice_ceil(rows.iter().map(|r| r.confidence).fold(0.0, f64::max)));
    let mut overall = Agreement::new(buckets, to);
    let mut by_series: BTreeMap<String, Agreement> = BTreeMap::new();
    for row in rows {
        overall.add(row, to);
        by_series
            .entry(row.series.clone())
            .or_insert_with(|| Agreement::new(buckets, to))
            .add(row, to);
    }
    overall.finish();
    by_series.values_mut().for_each(Agreement::finish);
    Report {
        range: [0.0, to],
        overall,
        by_series,
    }
}

/// `x` rounded up to two significant digits; 1 for anything not in (0, 1].
pub fn nice_ceil(x: f64) -> f64 {
    if !(x > 0.0 && x <= 1.0) {
        return 1.0;
    }
    let step = 10f64.powf(x.log10().floor() - 1.0);
    // Round the quotient first: 0.035 / 0.001 is 35.000000000000004.
    let q = ((x / step) * 1e9).round() / 1e9;
    (q.ceil() * step).min(1.0)
}

#[cfg(test)]
mod tests;
