//! Escalations of the log model at the sink: the log teacher (`models/log/teacher.onnx`, its
//! sidecar's `"kind": "log"`) judges a sparse feature row as onnxruntime judged the same dense
//! row (`models/log/golden.json`); a batch of log escalations posted to an embedded and a
//! PostgreSQL sink is stored once on each with both verdicts and the redacted exemplar, and
//! `/v1/escalations` and the agreement statistics (per series) answer the same on both.
//!
//! Without PostgreSQL the PostgreSQL half prints `SKIP: …` (see `pg_common`); the embedded half
//! and the teacher checks always run.

mod pg_common;

use std::path::PathBuf;

use cloud_sink::{SinkConfig, TeacherConfig, TeacherJudgement, TeacherSkip, Teachers};
use pg_common::*;
use reqwest::StatusCode;
use serde_json::Value;
use wire::Escalation;

const LOG_SERIES: &str = "log.alert";

fn models() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models")
}

fn teachers() -> Vec<TeacherConfig> {
    vec![
        TeacherConfig {
            series: "anomaly".into(),
            path: models().join("sensor/teacher.onnx"),
            recipe: None,
        },
        TeacherConfig {
            series: LOG_SERIES.into(),
            path: models().join("log/teacher.onnx"),
            recipe: None,
        },
    ]
}

/// (teacher's dense feature row, onnxruntime's alert probability) per golden line.
fn golden() -> Vec<(Vec<f32>, f64)> {
    let text = std::fs::read_to_string(models().join("log/golden.json")).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    v["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let f = c["teacher_features"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap() as f32)
                .collect();
            (f, c["teacher_scores"][0].as_f64().unwrap())
        })
        .collect()
}

/// The escalation a gateway would send for `row`: its non-zero entries.
fn sparse(ts_ms: i64, row: &[f32], local_alarm: bool) -> Escalation {
    let (indices, features) = row
        .iter()
        .enumerate()
        .filter(|(_, v)| **v != 0.0)
        .map(|(i, v)| (i as u32, *v))
        .unzip();
    Escalation {
        ts_ms,
        alarm: local_alarm,
        score: 0.9,
        confidence: 0.25,
        features,
        indices,
        exemplar: Some(format!("line {ts_ms} from <ip> user <user>")),
    }
}

#[test]
fn the_log_teacher_judges_sparse_rows_as_onnxruntime_did() {
    let teachers = Teachers::load(&teachers()).unwrap();
    let rows = golden();
    assert!(rows.len() >= 20);
    let (mut alerts, mut normal) = (0, 0);
    for (i, (row, want)) in rows.iter().enumerate() {
        let e = sparse(i as i64, row, false);
        assert!(e.indices.len() < row.len() / 4, "row {i} is sparse");
        let TeacherJudgement::Judged(v) = teachers.judge_escalation(LOG_SERIES, &e) else {
            panic!("row {i} not judged");
        };
        assert!(
            (v.score - want).abs() < 1e-4,
            "row {i}: {} vs {want}",
            v.score
        );
        assert_eq!(v.threshold, 0.5);
        assert_eq!(v.alarm, *want >= 0.5, "row {i}");
        if v.alarm {
            alerts += 1;
        } else {
            normal += 1;
        }
    }
    assert!(alerts > 0 && normal > 0, "{alerts} alerts, {normal} normal");
    // A sparse row that does not fit the teacher's width is not judged.
    let mut outside = sparse(0, &rows[0].0, false);
    *outside.indices.last_mut().unwrap() = 2054;
    assert_eq!(
        teachers.judge_escalation(LOG_SERIES, &outside),
        TeacherJudgement::Skipped(TeacherSkip::Width)
    );
    let mut unordered = sparse(0, &rows[0].0, false);
    unordered.indices.swap(0, 1);
    assert_eq!(
        teachers.judge_escalation(LOG_SERIES, &unordered),
        TeacherJudgement::Skipped(TeacherSkip::Width)
    );
}

/// Two batches: a `log.alert` window of two devices each with two sparse
/// log escalations (local verdicts: one agrees with the teacher, one not).
fn log_batches() -> (Vec<wire::Envelope>, Vec<f64>) {
    let rows = golden();
    let mut envs = Vec::new();
    let mut want = Vec::new();
    for (seq, device) in [(1, "web-1"), (2, "web-2")] {
        let mut w = window(device, LOG_SERIES, 60_000 * seq as i64, 0.0, 0);
        w.escalations = (0..2)
            .map(|k| {
                let (row, p) = &rows[(2 * seq + k) as usize];
                want.push(*p);
                let teacher_alarm = *p >= 0.5;
                sparse(
                    60_000 * seq as i64 + k as i64,
                    row,
                    teacher_alarm == (k == 0),
                )
            })
            .collect();
        envs.push(batch("gw-a", 1, seq, vec![w]));
    }
    (envs, want)
}

fn with_teachers(mut c: SinkConfig) -> SinkConfig {
    c.teachers = teachers();
    c
}

/// Posts every batch twice (the retry must be a duplicate) and returns
/// `/v1/escalations` and the agreement of `log.alert`.
async fn post_and_read(base: &str, envs: &[wire::Envelope]) -> (Value, Value) {
    let client = reqwest::Client::new();
    for env in envs {
        for want in ["stored", "duplicate"] {
            let (status, body) = post(&client, base, env).await;
            assert_eq!(
                (status, body["status"].as_str()),
                (StatusCode::OK, Some(want))
            );
        }
    }
    let list = get(
        &client,
        base,
        "/v1/escalations?gateway=gw-a&series=log.alert",
    )
    .await;
    let sensor = get(&client, base, "/v1/escalations?series=anomaly").await;
    assert_eq!(
        sensor["escalations"].as_array().unwrap().len(),
        0,
        "{sensor}"
    );
    let agreement = get(
        &client,
        base,
        "/v1/escalations/agreement?gateway=gw-a&series=log.alert&buckets=2&to=0.5",
    )
    .await;
    (list, agreement)
}

fn check(list: &Value, agreement: &Value, want: &[f64]) {
    let rows = list["escalations"].as_array().unwrap();
    assert_eq!(rows.len(), 4, "{list}");
    for (row, p) in rows.iter().zip(want) {
        assert_eq!(row["series"], LOG_SERIES);
        let e = &row["escalation"];
        assert!(e["exemplar"].as_str().unwrap().contains("<ip>"), "{row}");
        assert!(!e["indices"].as_array().unwrap().is_empty());
        let t = &row["teacher"];
        assert!((t["score"].as_f64().unwrap() - p).abs() < 1e-4, "{row}");
        assert_eq!(t["alarm"], *p >= 0.5);
    }
    let overall = &agreement["overall"];
    assert_eq!(overall["escalations"], 4, "{agreement}");
    assert_eq!(overall["judged"], 4);
    assert_eq!(
        (&overall["agree"], &overall["disagree"]),
        (&2.into(), &2.into())
    );
    assert_eq!(agreement["by_series"][LOG_SERIES]["judged"], 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_escalations_are_stored_once_with_both_verdicts_on_both_stores() {
    let (envs, want) = log_batches();
    let dir = tempfile::tempdir().unwrap();
    let embedded = Running::start(&with_teachers(embedded_config(dir.path()))).await;
    let (e_list, e_agreement) = post_and_read(&embedded.base, &envs).await;
    check(&e_list, &e_agreement, &want);
    embedded.stop().await;

    let Some(schema) = TestSchema::create_or_skip("logesc").await else {
        return;
    };
    let pg = Running::start(&with_teachers(pg_config(&schema.name, None))).await;
    let (p_list, p_agreement) = post_and_read(&pg.base, &envs).await;
    assert_eq!(e_list, p_list);
    assert_eq!(e_agreement, p_agreement);
    assert_eq!(schema.count("escalations", "").await, 4);
    assert_eq!(
        schema
            .count(
                "escalations",
                "WHERE exemplar IS NOT NULL AND feature_indices IS NOT NULL"
            )
            .await,
        4
    );
    pg.stop().await;
}
