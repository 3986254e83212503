//! Runs a sensor model through the agent's own Rust classify path over SKAB files, leaderboard style.
//!
//! Each labelled file is one fresh device (one model, a device per file): its first `calib_rows` rows calibrate
//! it (the leaderboard's 400 training rows), every later row is judged exactly as
//! `edge-agent` judges it (same [`SensorClassifier`], same batched tract
//! inference). Writes point-wise predictions in the format of
//! `../shared/eval/skab_score.py` and computes F1/FAR/MAR itself too. It does
//! not train or tune anything.

use std::path::{Path, PathBuf};

use edge_agent::classify::pool::InferencePool;
use edge_agent::classify::sensor::{RowJudgement, SensorClassifier};
use edge_agent::classify::sensor_recipe::SensorRecipe;
use edge_agent::model::ScoreModel;
use thiserror::Error;

use crate::skab::{list_files, parse_datetime_ms};

/// Rows handed to the classifier per call (the agent's default group commit).
const ROWS_PER_CALL: usize = 1024;

/// Why an evaluation failed.
#[derive(Debug, Error)]
pub enum EvalError {
    #[error("{path}: {message}")]
    Data { path: PathBuf, message: String },
    #[error("model: {0}")]
    Model(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// One labelled file, judged row by row.
#[derive(Debug, Clone)]
pub struct FileJudgement {
    /// Path relative to the SKAB data folder (e.g. `valve1/3.csv`).
    pub rel: PathBuf,
    pub datetimes: Vec<String>,
    pub ts_ms: Vec<i64>,
    pub labels: Vec<u8>,
    /// `None` for calibration rows.
    pub judgements: Vec<Option<RowJudgement>>,
}

/// Point-wise confusion over the scored rows (after the first `skip` of each file).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Confusion {
    pub tp: u64,
    pub fp: u64,
    pub fn_: u64,
    pub tn: u64,
}

impl Confusion {
    pub fn f1(&self) -> f64 {
        let tp = self.tp as f64;
        tp / (tp + (self.fn_ + self.fp) as f64 / 2.0)
    }
    pub fn far(&self) -> f64 {
        100.0 * self.fp as f64 / (self.fp + self.tn).max(1) as f64
    }
    pub fn mar(&self) -> f64 {
        100.0 * self.fn_ as f64 / (self.fn_ + self.tp).max(1) as f64
    }
}

/// Loads a model and its sidecar into a classifier.
pub fn load_classifier(model: &Path, recipe: &Path) -> Result<SensorClassifier, EvalError> {
    let text = std::fs::read_to_string(recipe).map_err(|source| EvalError::Io {
        path: recipe.to_owned(),
        source,
    })?;
    let recipe = SensorRecipe::from_json(&text).map_err(|e| EvalError::Model(e.to_string()))?;
    let model =
        ScoreModel::load(model, recipe.width()).map_err(|e| EvalError::Model(e.to_string()))?;
    let pool = InferencePool::new(model, 1, "eval").map_err(|e| EvalError::Model(e.to_string()))?;
    Ok(SensorClassifier::new(recipe, pool))
}

/// Judges every labelled SKAB file below `skab_dir` with a fresh device each.
pub fn evaluate(
    skab_dir: &Path,
    model: &Path,
    recipe: &Path,
) -> Result<Vec<FileJudgement>, EvalError> {
    let data_err = |path: &Path, message: String| EvalError::Data {
        path: path.to_owned(),
        message,
    };
    let root = if skab_dir.join("data").is_dir() {
        skab_dir.join("data")
    } else {
        skab_dir.to_owned()
    };
    let files = list_files(skab_dir).map_err(|e| data_err(skab_dir, e.to_string()))?;
    // One model, one device per file (named by its path): each file calibrates afresh.
    let mut classifier = load_classifier(model, recipe)?;
    let channels = classifier.recipe().channels().to_vec();
    let mut out = Vec::new();
    for path in files {
        let Some(mut file) = read_labelled(&path)? else {
            continue; // anomaly-free.csv: no labels, not scored
        };
        file.rel = path.strip_prefix(&root).unwrap_or(&path).to_owned();
        let device = file.rel.display().to_string();
        let rows = read_rows(&path, &channels)?;
        for chunk in rows.chunks(ROWS_PER_CALL) {
            let batch: Vec<(&str, Vec<f64>)> =
                chunk.iter().map(|r| (device.as_str(), r.clone())).collect();
            let judged = classifier
                .judge(&batch)
                .map_err(|e| EvalError::Model(e.to_string()))?;
            file.judgements.extend(judged);
        }
        out.push(file);
    }
    Ok(out)
}

fn reader(path: &Path) -> Result<csv::Reader<std::fs::File>, EvalError> {
    csv::ReaderBuilder::new()
        .delimiter(b';')
        .from_path(path)
        .map_err(|e| EvalError::Data {
            path: path.to_owned(),
            message: e.to_string(),
        })
}

fn column(headers: &csv::StringRecord, name: &str, path: &Path) -> Result<usize, EvalError> {
    headers
        .iter()
        .position(|h| h == name)
        .ok_or_else(|| EvalError::Data {
            path: path.to_owned(),
            message: format!("no column {name:?}"),
        })
}

/// Datetimes, timestamps and labels; `None` for an unlabelled file.
fn read_labelled(path: &Path) -> Result<Option<FileJudgement>, EvalError> {
    let mut r = reader(path)?;
    let headers = r.headers().map_err(|e| bad(path, e))?.clone();
    let Some(label_col) = headers.iter().position(|h| h == "anomaly") else {
        return Ok(None);
    };
    let dt_col = column(&headers, "datetime", path)?;
    let mut f = FileJudgement {
        rel: PathBuf::new(),
        datetimes: vec![],
        ts_ms: vec![],
        labels: vec![],
        judgements: vec![],
    };
    for rec in r.records() {
        let rec = rec.map_err(|e| bad(path, e))?;
        let dt = rec.get(dt_col).unwrap_or_default().to_owned();
        f.ts_ms
            .push(parse_datetime_ms(&dt).ok_or_else(|| bad(path, format!("bad datetime {dt:?}")))?);
        f.datetimes.push(dt);
        let label: f64 = rec
            .get(label_col)
            .unwrap_or_default()
            .trim()
            .parse()
            .map_err(|e| bad(path, e))?;
        f.labels.push(u8::from(label != 0.0));
    }
    Ok(Some(f))
}

fn read_rows(path: &Path, channels: &[String]) -> Result<Vec<Vec<f64>>, EvalError> {
    let mut r = reader(path)?;
    let headers = r.headers().map_err(|e| bad(path, e))?.clone();
    let cols = channels
        .iter()
        .map(|c| column(&headers, c, path))
        .collect::<Result<Vec<_>, _>>()?;
    let mut rows = Vec::new();
    for rec in r.records() {
        let rec = rec.map_err(|e| bad(path, e))?;
        let row = cols
            .iter()
            .map(|c| {
                rec.get(*c)
                    .unwrap_or_default()
                    .trim()
                    .parse::<f64>()
                    .map_err(|e| bad(path, e))
            })
            .collect::<Result<Vec<_>, _>>()?;
        rows.push(row);
    }
    Ok(rows)
}

fn bad(path: &Path, e: impl std::fmt::Display) -> EvalError {
    EvalError::Data {
        path: path.to_owned(),
        message: e.to_string(),
    }
}

/// Confusion over rows after the first `skip` of every file.
pub fn confusion(files: &[FileJudgement], skip: usize) -> Confusion {
    let mut c = Confusion::default();
    for f in files {
        for (label, j) in f.labels.iter().zip(&f.judgements).skip(skip) {
            let alarm = j.is_some_and(|j| j.alarm);
            match (*label == 1, alarm) {
                (true, true) => c.tp += 1,
                (false, true) => c.fp += 1,
                (true, false) => c.fn_ += 1,
                (false, false) => c.tn += 1,
            }
        }
    }
    c
}

/// Writes `<out>/<rel>` with `datetime,anomaly` per row (calibration rows 0).
pub fn write_predictions(out: &Path, files: &[FileJudgement]) -> Result<(), EvalError> {
    for f in files {
        let path = out.join(&f.rel);
        let io = |source| EvalError::Io {
            path: path.clone(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let mut text = String::from("datetime,anomaly\n");
        for (dt, j) in f.datetimes.iter().zip(&f.judgements) {
            let alarm = u8::from(j.is_some_and(|j| j.alarm));
            text.push_str(&format!("{dt},{alarm}\n"));
        }
        std::fs::write(&path, text).map_err(io)?;
    }
    Ok(())
}
