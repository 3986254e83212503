//! The committed sensor models load in tract and reproduce onnxruntime's outputs
//! on the golden vectors written by `models/sensor/pipeline.py`.

use std::path::PathBuf;

use edge_agent::model::{ModelError, ScoreModel};

fn models_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/sensor")
}

struct Golden {
    features: Vec<f32>,
    teacher: Vec<f32>,
    student: Vec<f32>,
    width: usize,
}

fn golden() -> Golden {
    let text = std::fs::read_to_string(models_dir().join("golden.json")).unwrap();
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    let vectors = doc["vectors"].as_array().unwrap();
    assert!(vectors.len() >= 8, "too few golden vectors");
    let mut g = Golden {
        features: vec![],
        teacher: vec![],
        student: vec![],
        width: 0,
    };
    for v in vectors {
        let f: Vec<f32> = serde_json::from_value(v["features"].clone()).unwrap();
        g.width = f.len();
        g.features.extend(f);
        g.teacher.push(v["teacher_score"].as_f64().unwrap() as f32);
        g.student.push(v["student_score"].as_f64().unwrap() as f32);
    }
    g
}

/// Largest absolute difference between tract and onnxruntime allowed. Both run
/// f32; the int8 weights are dequantized identically, so only summation order differs.
const TOLERANCE: f32 = 1e-4;

fn assert_close(name: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= TOLERANCE,
            "{name} row {i}: tract {g} vs onnxruntime {w}"
        );
    }
}

#[test]
fn student_int8_and_teacher_match_onnxruntime_batched_and_one_by_one() {
    let g = golden();
    for (file, want) in [
        ("student_int8.onnx", &g.student),
        ("teacher.onnx", &g.teacher),
    ] {
        let model = ScoreModel::load(&models_dir().join(file), g.width).unwrap();
        assert_close(file, &model.score(&g.features).unwrap(), want);
        let single: Vec<f32> = g
            .features
            .chunks(g.width)
            .map(|row| model.score(row).unwrap()[0])
            .collect();
        assert_close(file, &single, want);
    }
}

#[test]
fn wrong_files_and_wrong_widths_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.onnx");
    std::fs::write(&junk, b"not a model").unwrap();
    assert!(matches!(
        ScoreModel::load(&junk, 8),
        Err(ModelError::Load { .. })
    ));
    assert!(matches!(
        ScoreModel::load(&dir.path().join("missing.onnx"), 8),
        Err(ModelError::Load { .. })
    ));
    let wrong_width = ScoreModel::load(&models_dir().join("student_int8.onnx"), 5);
    assert!(
        matches!(wrong_width, Err(ModelError::Load { .. })),
        "{wrong_width:?}"
    );
    let width = golden().width;
    let model = ScoreModel::load(&models_dir().join("student_int8.onnx"), width).unwrap();
    assert!(matches!(
        model.score(&vec![1.0; width - 1]),
        Err(ModelError::Width { .. })
    ));
}
