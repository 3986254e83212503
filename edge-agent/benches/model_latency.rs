//! Single-thread latency of one scoring call (batch of 1) with tract, on the
//! committed sensor and log models and their golden inputs: p50 and p99 over
//! 20,000 calls after 1,000 warm-up calls. Prints one line per model; the
//! onnxruntime peer is `models/bench_ort.py` (run both via `bench/model_latency.sh`).

use std::path::PathBuf;
use std::time::Instant;

use edge_agent::model::ScoreModel;

/// (folder, model file, golden list key, feature key in each entry).
const MODELS: [(&str, &str, &str, &str); 4] = [
    ("sensor", "student_int8.onnx", "vectors", "features"),
    ("sensor", "teacher.onnx", "vectors", "features"),
    ("log", "student_int8.onnx", "cases", "student_features"),
    ("log", "teacher.onnx", "cases", "teacher_features"),
];

fn main() {
    let models = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models");
    for (folder, file, list, key) in MODELS {
        let dir = models.join(folder);
        let golden: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("golden.json")).unwrap())
                .unwrap();
        let rows: Vec<Vec<f32>> = golden[list]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| serde_json::from_value(v[key].clone()).unwrap())
            .collect();
        let model = ScoreModel::load(&dir.join(file), rows[0].len()).unwrap();
        for i in 0..1_000 {
            std::hint::black_box(model.score(&rows[i % rows.len()]).unwrap());
        }
        let mut micros: Vec<f64> = (0..20_000)
            .map(|i| {
                let t = Instant::now();
                std::hint::black_box(model.score(&rows[i % rows.len()]).unwrap());
                t.elapsed().as_secs_f64() * 1e6
            })
            .collect();
        micros.sort_by(f64::total_cmp);
        let pct = |q: f64| micros[((micros.len() - 1) as f64 * q) as usize];
        println!(
            "tract {folder}/{file}: p50 {:.2} us, p99 {:.2} us (batch 1, width {}, 20000 calls)",
            pct(0.5),
            pct(0.99),
            rows[0].len()
        );
    }
}
