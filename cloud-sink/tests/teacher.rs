//! The sink's teacher: on the golden feature rows of `models/sensor/golden.json`
//! its score equals onnxruntime's `teacher_score` and its alarm follows the
//! sidecar's rule; rows it cannot judge say why; a missing or wrong model is a
//! clear start-up error (from `Teachers::load` and from `Server::bind`).

use std::path::{Path, PathBuf};

use cloud_sink::auth::token_sha256_hex;
use cloud_sink::{
    GatewayConfig, Limits, Server, ServerError, SinkConfig, TeacherConfig, TeacherError,
    TeacherJudgement, TeacherSkip, Teachers,
};

fn models() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models")
}

fn teacher(series: &str, path: PathBuf, recipe: Option<PathBuf>) -> TeacherConfig {
    TeacherConfig {
        series: series.into(),
        path,
        recipe,
    }
}

fn sensor_teacher() -> TeacherConfig {
    teacher("anomaly", models().join("sensor/teacher.onnx"), None)
}

/// (features, onnxruntime teacher score) of every golden vector, and the
/// sidecar rule's absolute threshold read independently of the sink's code.
fn golden() -> (Vec<(Vec<f32>, f64)>, f64) {
    let read = |p: &Path| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
    };
    let doc = read(&models().join("sensor/golden.json"));
    let rows = doc["vectors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            let f: Vec<f32> = serde_json::from_value(v["features"].clone()).unwrap();
            (f, v["teacher_score"].as_f64().unwrap())
        })
        .collect();
    let rule = &read(&models().join("sensor/teacher.json"))["rule"];
    assert_eq!(rule["smooth"], 1);
    assert_eq!(rule["multiplier"], 0.0);
    (rows, rule["absolute"].as_f64().unwrap())
}

#[test]
fn teacher_verdicts_on_golden_rows_match_onnxruntime_and_the_rule() {
    let teachers = Teachers::load(&[sensor_teacher()]).unwrap();
    let (rows, threshold) = golden();
    assert!(rows.len() >= 8);
    let (mut alarms, mut normals) = (0, 0);
    for (i, (features, want)) in rows.iter().enumerate() {
        let TeacherJudgement::Judged(v) = teachers.judge("anomaly", features) else {
            panic!("row {i} not judged");
        };
        assert!(
            (v.score - want).abs() <= 1e-4,
            "row {i}: tract {} vs onnxruntime {want}",
            v.score
        );
        assert_eq!(v.threshold, threshold);
        assert_eq!(v.alarm, v.score > threshold, "row {i}");
        // The golden score is far enough from the threshold to decide the same way.
        assert_eq!(v.alarm, *want > threshold, "row {i}");
        if v.alarm {
            alarms += 1;
        } else {
            normals += 1;
        }
    }
    assert!(alarms > 0 && normals > 0, "golden rows cover both verdicts");
}

#[test]
fn rows_the_teacher_cannot_judge_say_why() {
    let teachers = Teachers::load(&[sensor_teacher()]).unwrap();
    let (rows, _) = golden();
    let row = &rows[0].0;
    assert_eq!(
        teachers.judge("vibration", row),
        TeacherJudgement::Skipped(TeacherSkip::NoTeacher)
    );
    assert_eq!(
        teachers.judge("anomaly", &row[..23]),
        TeacherJudgement::Skipped(TeacherSkip::Width)
    );
    assert_eq!(
        teachers.judge("anomaly", &[]),
        TeacherJudgement::Skipped(TeacherSkip::Width)
    );
    let mut nan = row.clone();
    nan[5] = f32::NAN;
    assert_eq!(
        teachers.judge("anomaly", &nan),
        TeacherJudgement::Skipped(TeacherSkip::NotFinite)
    );
    assert!(Teachers::load(&[]).unwrap().is_empty());
}

#[test]
fn missing_or_wrong_models_are_clear_load_errors() {
    let dir = tempfile::tempdir().unwrap();
    let sidecar = models().join("sensor/teacher.json");

    // No model file.
    let missing = teacher(
        "anomaly",
        dir.path().join("nope.onnx"),
        Some(sidecar.clone()),
    );
    let e = Teachers::load(&[missing]).unwrap_err();
    assert!(matches!(e, TeacherError::Model { index: 0, .. }), "{e:?}");
    let text = format!("{:#}", anyhow_chain(&e));
    assert!(text.contains("nope.onnx"), "{text}");

    // No sidecar next to the model.
    let copy = dir.path().join("t.onnx");
    std::fs::copy(models().join("sensor/teacher.onnx"), &copy).unwrap();
    let e = Teachers::load(&[sensor_teacher(), teacher("b", copy.clone(), None)]).unwrap_err();
    assert!(
        matches!(e, TeacherError::ReadRecipe { index: 1, .. }),
        "{e:?}"
    );
    assert!(anyhow_chain(&e).contains("t.json"), "{e}");

    // A model of another width than the sidecar says (the log model: 2054 features).
    let wrong = teacher(
        "anomaly",
        models().join("log/student_int8.onnx"),
        Some(sidecar.clone()),
    );
    let e = Teachers::load(&[wrong]).unwrap_err();
    assert!(matches!(e, TeacherError::Model { .. }), "{e:?}");

    // A rule that needs device history.
    let mut doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&sidecar).unwrap()).unwrap();
    doc["rule"]["smooth"] = 3.into();
    doc["history_rows"] = (doc["history_rows"].as_u64().unwrap() + 2).into();
    let stateful = dir.path().join("stateful.json");
    std::fs::write(&stateful, doc.to_string()).unwrap();
    let e = Teachers::load(&[teacher(
        "anomaly",
        models().join("sensor/teacher.onnx"),
        Some(stateful),
    )])
    .unwrap_err();
    assert!(matches!(e, TeacherError::Rule { .. }), "{e:?}");
    assert!(e.to_string().contains("smooth = 3"), "{e}");

    // A log sidecar makes a log teacher; the sensor model does not fit its width.
    let log_sidecar = models().join("log/student_int8.json");
    let e = Teachers::load(&[teacher(
        "anomaly",
        models().join("sensor/teacher.onnx"),
        Some(log_sidecar),
    )])
    .unwrap_err();
    assert!(matches!(e, TeacherError::Model { .. }), "{e:?}");

    // A sidecar of a kind no teacher implements.
    doc["kind"] = "vibration".into();
    let unknown = dir.path().join("unknown.json");
    std::fs::write(&unknown, doc.to_string()).unwrap();
    let e = Teachers::load(&[teacher(
        "anomaly",
        models().join("sensor/teacher.onnx"),
        Some(unknown),
    )])
    .unwrap_err();
    assert!(matches!(e, TeacherError::Recipe { .. }), "{e:?}");
    assert!(anyhow_chain(&e).contains("vibration"), "{e}");
}

#[tokio::test]
async fn the_server_does_not_start_with_a_missing_teacher() {
    let dir = tempfile::tempdir().unwrap();
    let config = SinkConfig {
        telemetry: Default::default(),
        listen: "127.0.0.1:0".into(),
        data_dir: dir.path().join("store"),
        store: Default::default(),
        limits: Limits::default(),
        tls: None,
        gateways: vec![GatewayConfig {
            id: "gw".into(),
            token_sha256: token_sha256_hex("t").into(),
            cert_sha256: Default::default(),
        }],
        teachers: vec![teacher("anomaly", dir.path().join("gone.onnx"), None)],
    };
    match Server::bind(&config).await {
        Err(ServerError::Teacher(e)) => assert!(anyhow_chain(&e).contains("gone"), "{e}"),
        other => panic!("expected a teacher error, got {other:?}"),
    }
}

/// The error and all its sources on one line.
fn anyhow_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
