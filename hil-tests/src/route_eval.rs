//! Hybrid routing, evaluated offline: the gateway's student decides an event when its confidence
//! reaches a threshold, the cloud's teacher decides the rest. For each candidate threshold: the
//! share decided locally and the routed system's F1, next to student alone and teacher alone.
//!
//! Both models run through the agent's own Rust path (tract, the shipped sidecars): SKAB rows
//! through [`crate::skab_eval`] (a device per file, calibration rows not scored), BGL lines'
//! `Content` through the log recipe (alert = the model's alert column, truth = BGL's `Label`
//! other than `-`). It chooses a threshold (the best routed F1 among those deciding at least
//! [`MIN_LOCAL`] locally); it does not route anything at run time (that is the agent's router).

use std::path::Path;

use edge_agent::classify::log_recipe::LogRecipe;
use edge_agent::model::ScoreModel;

use crate::skab_eval::{self, Confusion, EvalError};

/// Least share of events the gateway must decide itself at the chosen threshold.
pub const MIN_LOCAL: f64 = 0.80;
/// Most the routed F1 may trail the teacher's, in F1 units (0.5 point).
pub const MAX_F1_GAP: f64 = 0.005;

/// One judged event: the student's verdict and confidence, the teacher's verdict, the truth.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Event {
    pub student: bool,
    pub confidence: f64,
    pub teacher: bool,
    pub truth: bool,
}

/// The routed system at one threshold.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RoutePoint {
    /// Escalate when the student's confidence is below this.
    pub threshold: f64,
    /// Share of events the student decided.
    pub local: f64,
    pub routed: Confusion,
}

/// A whole evaluation of one dataset.
#[derive(Debug, Clone)]
pub struct RouteTable {
    pub events: usize,
    pub student: Confusion,
    pub teacher: Confusion,
    pub points: Vec<RoutePoint>,
    /// Index into `points` of the chosen threshold, if any decides ≥ [`MIN_LOCAL`] locally.
    pub chosen: Option<usize>,
}

impl RouteTable {
    /// Whether the chosen point meets both targets.
    pub fn meets_targets(&self) -> bool {
        self.chosen.is_some_and(|i| {
            let p = &self.points[i];
            p.local >= MIN_LOCAL && p.routed.f1() >= self.teacher.f1() - MAX_F1_GAP
        })
    }
}

fn add(c: &mut Confusion, predicted: bool, truth: bool) {
    match (predicted, truth) {
        (true, true) => c.tp += 1,
        (true, false) => c.fp += 1,
        (false, true) => c.fn_ += 1,
        (false, false) => c.tn += 1,
    }
}

/// Evaluates routing at thresholds placed at the student's confidence quantiles
/// 0, 1, …, 50% (so local shares from 100% down to about 50%).
pub fn route(events: &[Event]) -> RouteTable {
    let (mut student, mut teacher) = (Confusion::default(), Confusion::default());
    for e in events {
        add(&mut student, e.student, e.truth);
        add(&mut teacher, e.teacher, e.truth);
    }
    let mut confidences: Vec<f64> = events.iter().map(|e| e.confidence).collect();
    confidences.sort_by(f64::total_cmp);
    let mut thresholds: Vec<f64> = (0..=50)
        .map(|pct| {
            let i = (confidences.len() * pct / 100).min(confidences.len().saturating_sub(1));
            if pct == 0 {
                f64::NEG_INFINITY
            } else {
                confidences.get(i).copied().unwrap_or(0.0)
            }
        })
        .collect();
    thresholds.dedup();
    let points: Vec<RoutePoint> = thresholds
        .into_iter()
        .map(|threshold| {
            let mut routed = Confusion::default();
            let mut local = 0usize;
            for e in events {
                let here = e.confidence >= threshold;
                local += usize::from(here);
                add(
                    &mut routed,
                    if here { e.student } else { e.teacher },
                    e.truth,
                );
            }
            RoutePoint {
                threshold,
                local: local as f64 / events.len().max(1) as f64,
                routed,
            }
        })
        .collect();
    let chosen = points
        .iter()
        .enumerate()
        .filter(|(_, p)| p.local >= MIN_LOCAL)
        .max_by(|(_, a), (_, b)| {
            a.routed
                .f1()
                .total_cmp(&b.routed.f1())
                .then(a.local.total_cmp(&b.local))
        })
        .map(|(i, _)| i);
    RouteTable {
        events: events.len(),
        student,
        teacher,
        points,
        chosen,
    }
}

/// SKAB: every scored row of every labelled file, student and teacher side by side.
pub fn skab_events(skab: &Path, models: &Path) -> Result<Vec<Event>, EvalError> {
    let dir = models.join("sensor");
    let student = skab_eval::evaluate(
        skab,
        &dir.join("student_int8.onnx"),
        &dir.join("student_int8.json"),
    )?;
    let teacher = skab_eval::evaluate(skab, &dir.join("teacher.onnx"), &dir.join("teacher.json"))?;
    let mut events = Vec::new();
    for (s, t) in student.iter().zip(&teacher) {
        debug_assert_eq!(s.rel, t.rel);
        for ((js, jt), label) in s.judgements.iter().zip(&t.judgements).zip(&s.labels) {
            if let (Some(js), Some(jt)) = (js, jt) {
                events.push(Event {
                    student: js.alarm,
                    confidence: js.confidence,
                    teacher: jt.alarm,
                    truth: *label == 1,
                });
            }
        }
    }
    Ok(events)
}

/// BGL: every line of the structured CSV, judged on its `Content` by both log models.
pub fn bgl_events(structured: &Path, models: &Path) -> Result<Vec<Event>, EvalError> {
    let data = |message: String| EvalError::Data {
        path: structured.to_owned(),
        message,
    };
    let mut reader = csv::Reader::from_path(structured).map_err(|e| data(e.to_string()))?;
    let headers = reader.headers().map_err(|e| data(e.to_string()))?.clone();
    let col = |name: &str| {
        headers
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| data(format!("no {name} column")))
    };
    let (label_col, content_col) = (col("Label")?, col("Content")?);
    let mut truth = Vec::new();
    let mut contents = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| data(e.to_string()))?;
        truth.push(record.get(label_col).unwrap_or("-") != "-");
        contents.push(record.get(content_col).unwrap_or("").to_owned());
    }
    let student = judge_lines(&models.join("log/student_int8.json"), &contents)?;
    let teacher = judge_lines(&models.join("log/teacher.json"), &contents)?;
    Ok(student
        .iter()
        .zip(&teacher)
        .zip(&truth)
        .map(|((s, t), truth)| Event {
            student: s.alert,
            confidence: f64::from(s.confidence),
            teacher: t.alert,
            truth: *truth,
        })
        .collect())
}

fn judge_lines(
    sidecar: &Path,
    contents: &[String],
) -> Result<Vec<edge_agent::classify::log_recipe::LogJudgement>, EvalError> {
    let model_err = |e: String| EvalError::Model(format!("{}: {e}", sidecar.display()));
    let text = std::fs::read_to_string(sidecar).map_err(|source| EvalError::Io {
        path: sidecar.to_owned(),
        source,
    })?;
    let recipe = LogRecipe::from_json(&text).map_err(|e| model_err(e.to_string()))?;
    let path = sidecar.with_file_name(recipe.model_file());
    let model = ScoreModel::load(&path, recipe.width()).map_err(|e| model_err(e.to_string()))?;
    let mut out = Vec::with_capacity(contents.len());
    for chunk in contents.chunks(256) {
        let mut features = Vec::with_capacity(chunk.len() * recipe.width());
        for content in chunk {
            recipe.featurize(content, &mut features);
        }
        let scores = model
            .score(&features)
            .map_err(|e| model_err(e.to_string()))?;
        out.extend(scores.chunks(recipe.outputs()).map(|row| recipe.judge(row)));
    }
    Ok(out)
}

/// The table as Markdown: a few rows around the chosen threshold, and the chosen one marked.
pub fn markdown(name: &str, t: &RouteTable) -> String {
    let mut s = format!(
        "{name}: {} events; student alone F1 {:.4}, teacher alone F1 {:.4}\n\n\
         | threshold (student confidence) | decided locally | routed F1 | routed − teacher (points) |\n\
         |---:|---:|---:|---:|\n",
        t.events,
        t.student.f1(),
        t.teacher.f1()
    );
    for (i, p) in t.points.iter().enumerate() {
        let every_fifth = i % 5 == 0 || i + 1 == t.points.len();
        if !(every_fifth || Some(i) == t.chosen) {
            continue;
        }
        let mark = if Some(i) == t.chosen {
            " **chosen**"
        } else {
            ""
        };
        s += &format!(
            "| {:.4}{mark} | {:.1}% | {:.4} | {:+.2} |\n",
            p.threshold,
            100.0 * p.local,
            p.routed.f1(),
            100.0 * (p.routed.f1() - t.teacher.f1())
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(student: bool, confidence: f64, teacher: bool, truth: bool) -> Event {
        Event {
            student,
            confidence,
            teacher,
            truth,
        }
    }

    #[test]
    fn low_confidence_events_take_the_teachers_verdict() {
        // The student is wrong exactly where it is unsure; the teacher is always right.
        let mut events = Vec::new();
        for i in 0..100 {
            let truth = i % 3 == 0;
            let unsure = i % 10 == 0;
            events.push(e(
                truth ^ unsure,
                if unsure { 0.1 } else { 0.9 },
                truth,
                truth,
            ));
        }
        let t = route(&events);
        assert!(t.student.f1() < 1.0);
        assert_eq!(t.teacher.f1(), 1.0);
        let chosen = t.points[t.chosen.unwrap()];
        assert_eq!(chosen.local, 0.9);
        assert_eq!(chosen.routed.f1(), 1.0);
        assert!(t.meets_targets());
        // At threshold -inf everything is local: the student's own F1.
        assert_eq!(t.points[0].local, 1.0);
        assert_eq!(t.points[0].routed, t.student);
    }
}
