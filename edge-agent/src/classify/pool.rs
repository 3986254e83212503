//! A dedicated inference thread pool: batches of feature rows in, scores out, latency recorded.
//!
//! tract runs here, never on the pipeline thread's stack directly: each model
//! gets its own worker threads, and a caller hands a whole batch over and waits
//! for the scores (large batches are split across the workers). Every call's
//! wall time is recorded per row in a [`LatencyHistogram`] and, once
//! [`InferencePool::observe_into`] is called, per call in a metrics histogram.
//! It knows nothing about features or verdicts.

use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::Instant;

use crate::model::{ModelError, ScoreModel};
use crate::sketch::Sketch;

type Reply = mpsc::Sender<(usize, Result<Vec<f32>, ModelError>)>;

struct Job {
    part: usize,
    rows: Vec<f32>,
    reply: Reply,
}

/// Inference latency, per row and per call, in microseconds.
#[derive(Debug, Clone)]
pub struct LatencyHistogram {
    per_row_us: Sketch,
    per_call_us: Sketch,
    rows: u64,
    calls: u64,
}

/// A snapshot of [`LatencyHistogram`] for logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LatencySnapshot {
    pub calls: u64,
    pub rows: u64,
    pub row_p50_us: f64,
    pub row_p99_us: f64,
    pub call_p50_us: f64,
    pub call_p99_us: f64,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        LatencyHistogram {
            per_row_us: Sketch::new(0.01),
            per_call_us: Sketch::new(0.01),
            rows: 0,
            calls: 0,
        }
    }
}

impl LatencyHistogram {
    fn record(&mut self, rows: usize, micros: f64) {
        self.calls += 1;
        self.rows += rows as u64;
        self.per_call_us.add(micros.max(0.01));
        self.per_row_us.add((micros / rows.max(1) as f64).max(0.01));
    }

    pub fn snapshot(&self) -> LatencySnapshot {
        let q = |s: &Sketch, q| s.quantile(q).unwrap_or(0.0);
        LatencySnapshot {
            calls: self.calls,
            rows: self.rows,
            row_p50_us: q(&self.per_row_us, 0.5),
            row_p99_us: q(&self.per_row_us, 0.99),
            call_p50_us: q(&self.per_call_us, 0.5),
            call_p99_us: q(&self.per_call_us, 0.99),
        }
    }
}

/// Worker threads owning one model.
pub struct InferencePool {
    jobs: Option<mpsc::Sender<Job>>,
    workers: Vec<thread::JoinHandle<()>>,
    width: usize,
    outputs: usize,
    latency: Mutex<LatencyHistogram>,
    /// `edge_agent_inference_seconds` and this pool's `model` label.
    observer: OnceLock<(telemetry::HistogramVec, String)>,
}

impl std::fmt::Debug for InferencePool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InferencePool")
            .field("workers", &self.workers.len())
            .field("width", &self.width)
            .finish_non_exhaustive()
    }
}

/// Rows below which a batch is not worth splitting across workers.
const MIN_ROWS_PER_PART: usize = 64;

impl InferencePool {
    /// Starts `threads` (at least 1) workers sharing `model`.
    pub fn new(model: ScoreModel, threads: usize, name: &str) -> std::io::Result<InferencePool> {
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        let model = Arc::new(model);
        let mut workers = Vec::new();
        for i in 0..threads.max(1) {
            let rx = Arc::clone(&rx);
            let model = Arc::clone(&model);
            workers.push(
                thread::Builder::new()
                    .name(format!("infer-{name}-{i}"))
                    .spawn(move || loop {
                        let job = match rx.lock() {
                            Ok(guard) => guard.recv(),
                            Err(_) => return,
                        };
                        let Ok(job) = job else { return };
                        let _ = job.reply.send((job.part, model.score(&job.rows)));
                    })?,
            );
        }
        Ok(InferencePool {
            jobs: Some(tx),
            width: model.width(),
            outputs: model.outputs(),
            workers,
            latency: Mutex::new(LatencyHistogram::default()),
            observer: OnceLock::new(),
        })
    }

    /// Records each call's wall time (seconds) into `histogram` with label
    /// `model`; a second call keeps the first histogram.
    pub fn observe_into(&self, histogram: telemetry::HistogramVec, model: &str) {
        let _ = self.observer.set((histogram, model.to_owned()));
    }

    /// Features per row.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Scores per row.
    pub fn outputs(&self) -> usize {
        self.outputs
    }

    /// Scores `rows` (row-major, `width()` per row); blocks until done.
    pub fn score(&self, rows: Vec<f32>) -> Result<Vec<f32>, ModelError> {
        let n = rows.len() / self.width.max(1);
        if n == 0 {
            return Ok(Vec::new());
        }
        let started = Instant::now();
        let parts = self.workers.len().min(n.div_ceil(MIN_ROWS_PER_PART)).max(1);
        let per_part = n.div_ceil(parts) * self.width;
        let (reply, answers) = mpsc::channel();
        let jobs = self.jobs.as_ref().expect("pool is running until dropped");
        let mut sent = 0;
        for (part, chunk) in rows.chunks(per_part).enumerate() {
            let job = Job {
                part,
                rows: chunk.to_vec(),
                reply: reply.clone(),
            };
            if jobs.send(job).is_err() {
                break;
            }
            sent += 1;
        }
        drop(reply);
        let mut results: Vec<Option<Vec<f32>>> = vec![None; sent];
        for (part, result) in answers.iter().take(sent) {
            results[part] = Some(result?);
        }
        let mut out = Vec::with_capacity(n * self.outputs);
        for r in results {
            match r {
                Some(scores) => out.extend(scores),
                None => {
                    return Err(ModelError::Run {
                        path: "inference pool".into(),
                        message: "a worker stopped".into(),
                    })
                }
            }
        }
        let seconds = started.elapsed().as_secs_f64();
        if let Ok(mut h) = self.latency.lock() {
            h.record(n, seconds * 1e6);
        }
        if let Some((histogram, model)) = self.observer.get() {
            histogram.observe(&[model], seconds);
        }
        Ok(out)
    }

    /// Latency recorded so far.
    pub fn latency(&self) -> LatencySnapshot {
        self.latency
            .lock()
            .map(|h| h.snapshot())
            .unwrap_or_else(|e| e.into_inner().snapshot())
    }
}

impl Drop for InferencePool {
    fn drop(&mut self) {
        self.jobs = None;
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}
