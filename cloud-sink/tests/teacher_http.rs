//! The teacher at ingest, over HTTP: a batch of escalations (golden feature
//! rows with crafted local verdicts) posted twice is stored and judged once;
//! `/v1/escalations` serves both verdicts, `/v1/health` counts the teacher's
//! outcomes, `/v1/escalations/agreement` tallies them; then `cloud-sink
//! calibrate` on the stopped sink's store suggests the threshold the crafted
//! set implies.

use std::path::{Path, PathBuf};
use std::process::Command;

use cloud_sink::auth::token_sha256_hex;
use cloud_sink::{GatewayConfig, Limits, Server, SinkConfig, TeacherConfig};
use reqwest::StatusCode;
use serde_json::Value;
use wire::{BatchKey, Body, Counters, Envelope, Escalation, WindowSummary};

const BIN: &str = env!("CARGO_BIN_EXE_cloud-sink");
/// Golden rows whose local verdict is crafted to disagree with the teacher's.
const DISAGREE: usize = 3;

fn models() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/sensor")
}

/// (features, onnxruntime teacher score) of the golden rows, and the rule's threshold.
fn golden() -> (Vec<(Vec<f32>, f64)>, f64) {
    let doc: Value =
        serde_json::from_str(&std::fs::read_to_string(models().join("golden.json")).unwrap())
            .unwrap();
    let rows = doc["vectors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            let f: Vec<f32> = serde_json::from_value(v["features"].clone()).unwrap();
            (f, v["teacher_score"].as_f64().unwrap())
        })
        .collect();
    (rows, doc["teacher_rule"]["absolute"].as_f64().unwrap())
}

fn window(device: &str, metric: &str, escalations: Vec<Escalation>) -> WindowSummary {
    WindowSummary {
        device: device.into(),
        metric: metric.into(),
        start_ms: 0,
        end_ms: 60_000,
        count: 1,
        sum: 1.0,
        min: 1.0,
        max: 1.0,
        mean: 1.0,
        stddev: 0.0,
        p50: 1.0,
        p95: 1.0,
        p99: 1.0,
        sketch_alpha: 0.01,
        first: 1.0,
        first_ms: 0,
        last: 1.0,
        last_ms: 0,
        verdict: None,
        rolled_up: 0,
        template: None,
        escalations,
    }
}

/// Row `i`: confidence `(i + 0.5) / 100` (never on a bucket edge below), local
/// verdict equal to the teacher's except for the `DISAGREE` least confident rows.
fn escalation(i: usize, features: Vec<f32>, teacher_alarm: bool) -> Escalation {
    Escalation {
        ts_ms: 1000 * i as i64,
        alarm: teacher_alarm != (i < DISAGREE),
        score: 1.0,
        confidence: (i as f64 + 0.5) / 100.0,
        features,
        indices: Vec::new(),
        exemplar: None,
    }
}

async fn get(client: &reqwest::Client, url: String) -> Value {
    let resp = client.get(url).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    resp.json().await.unwrap()
}

async fn start(
    dir: &Path,
) -> (
    String,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let config = SinkConfig {
        telemetry: Default::default(),
        listen: "127.0.0.1:0".into(),
        data_dir: dir.to_owned(),
        store: Default::default(),
        limits: Limits::default(),
        tls: None,
        gateways: vec![GatewayConfig {
            id: "gw-a".into(),
            token_sha256: token_sha256_hex("token-a").into(),
            cert_sha256: Default::default(),
        }],
        teachers: vec![TeacherConfig {
            series: "anomaly".into(),
            path: models().join("teacher.onnx"),
            recipe: None,
        }],
    };
    let server = Server::bind(&config).await.expect("server binds");
    let base = format!("http://{}", server.local_addr());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        server
            .run(async {
                let _ = stopped.await;
            })
            .await
            .expect("server stops cleanly");
    });
    (base, stop, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn escalations_are_judged_once_listed_tallied_and_calibrated() {
    let dir = tempfile::tempdir().unwrap();
    let (base, stop, task) = start(dir.path()).await;
    let client = reqwest::Client::new();
    let (rows, threshold) = golden();
    let n = rows.len();
    assert!(n >= 12, "enough golden rows for the buckets below");

    let judged: Vec<Escalation> = rows
        .iter()
        .enumerate()
        .map(|(i, (f, score))| escalation(i, f.clone(), *score > threshold))
        .collect();
    let short = Escalation {
        features: rows[0].0[..20].to_vec(),
        ..escalation(n, Vec::new(), false)
    };
    let unknown = escalation(0, rows[0].0.clone(), false);
    let body = Body {
        windows: vec![
            window("pump-1", "anomaly", judged),
            window("pump-2", "anomaly", vec![short]),
            window("pump-3", "vibration", vec![unknown]),
        ],
        counters: Counters::default(),
        ..Body::default()
    };
    let key = BatchKey {
        gateway: "gw-a".into(),
        epoch: 1,
        seq: 1,
    };
    let env = Envelope::seal(&key, 1_700_000_000_000, &body);
    for expect in ["stored", "duplicate"] {
        let resp = client
            .post(format!("{base}/v1/batches"))
            .bearer_auth("token-a")
            .body(env.to_bytes())
            .send()
            .await
            .unwrap();
        let answer: Value = resp.json().await.unwrap();
        assert_eq!(answer["status"], expect, "{answer}");
    }

    // Both verdicts, once each.
    let list = get(&client, format!("{base}/v1/escalations?device=pump-1")).await;
    let list = list["escalations"].as_array().unwrap();
    assert_eq!(list.len(), n, "posted twice, stored once");
    for (i, e) in list.iter().enumerate() {
        let want = rows[i].1;
        let score = e["teacher"]["score"].as_f64().unwrap();
        assert!((score - want).abs() <= 1e-4, "row {i}: {score} vs {want}");
        assert_eq!(e["teacher"]["alarm"], want > threshold, "row {i}");
        assert_eq!(
            e["escalation"]["alarm"],
            (want > threshold) != (i < DISAGREE)
        );
        assert!(e.get("teacher_skipped").is_none(), "{e}");
    }
    let all = get(&client, format!("{base}/v1/escalations")).await;
    let skipped: Vec<(&str, &str)> = all["escalations"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["teacher"].is_null())
        .map(|e| {
            (
                e["device"].as_str().unwrap(),
                e["teacher_skipped"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(skipped, [("pump-2", "width"), ("pump-3", "no_teacher")]);

    // Counted once, at the first (stored) post.
    let health = get(&client, format!("{base}/v1/health")).await;
    let t = &health["teacher"];
    assert_eq!(t["judged"], n as u64, "{health}");
    assert_eq!(t["agree"], (n - DISAGREE) as u64);
    assert_eq!(t["disagree"], DISAGREE as u64);
    assert_eq!(t["skipped_width"], 1);
    assert_eq!(t["skipped_no_teacher"], 1);
    assert_eq!(health["counters"]["duplicate"], 1);
    println!("teacher time: {t}");

    // Agreement: 4 buckets of 0.06 over [0, 0.24]: rows 6k..6k+5 in bucket k.
    let stats = get(
        &client,
        format!("{base}/v1/escalations/agreement?buckets=4&to=0.24"),
    )
    .await;
    let all = &stats["overall"];
    assert_eq!(all["escalations"], n as u64 + 2);
    assert_eq!(all["judged"], n as u64);
    assert_eq!(all["not_judged"]["width"], 1);
    assert_eq!(all["not_judged"]["no_teacher"], 1);
    assert_eq!(all["agree"], (n - DISAGREE) as u64);
    let teacher_alarms = rows.iter().filter(|r| r.1 > threshold).count();
    let (mut aa, mut an, mut na, mut nn) = (0, 0, 0, 0);
    for (i, r) in rows.iter().enumerate() {
        let t = r.1 > threshold;
        let local = t != (i < DISAGREE);
        match (local, t) {
            (true, true) => aa += 1,
            (true, false) => an += 1,
            (false, true) => na += 1,
            (false, false) => nn += 1,
        }
    }
    assert_eq!(aa + na, teacher_alarms);
    let table = &all["table"];
    assert_eq!(table["local_alarm_teacher_alarm"], aa);
    assert_eq!(table["local_alarm_teacher_normal"], an);
    assert_eq!(table["local_normal_teacher_alarm"], na);
    assert_eq!(table["local_normal_teacher_normal"], nn);
    let buckets = all["buckets"].as_array().unwrap();
    assert_eq!(buckets.len(), 4);
    for (k, b) in buckets.iter().enumerate() {
        let members = (6 * k..(6 * k + 6).min(n)).count();
        let bad = (6 * k..6 * k + 6).filter(|i| *i < DISAGREE).count();
        assert_eq!(b["judged"], members as u64, "bucket {k}: {b}");
        assert_eq!(b["disagree"], bad as u64, "bucket {k}: {b}");
    }
    assert_eq!(buckets[0]["agreement_rate"], 0.5);
    assert_eq!(stats["by_series"]["anomaly"]["judged"], n as u64);
    assert_eq!(stats["by_series"]["vibration"]["judged"], 0);
    let one = get(
        &client,
        format!("{base}/v1/escalations/agreement?gateway=gw-a&device=pump-2"),
    )
    .await;
    assert_eq!(one["overall"]["escalations"], 1);
    let resp = client
        .get(format!("{base}/v1/escalations/agreement?buckets=0"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);

    drop(client);
    let _ = stop.send(());
    task.await.unwrap();

    // Offline calibration on the stopped sink's store: rows below DISAGREE
    // disagree, so the lowest threshold whose upper rows all agree is row DISAGREE's.
    let out = Command::new(BIN)
        .args([
            "calibrate",
            "--min-agreement",
            "1",
            "--min-rows",
            "3",
            "--json",
            "--data",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let result: Value = serde_json::from_slice(&out.stdout).unwrap();
    let anomaly = &result[0];
    assert_eq!(anomaly["series"], "anomaly");
    assert_eq!(anomaly["escalations"], n as u64 + 1);
    assert_eq!(anomaly["judged"]["rows"], n as u64);
    assert_eq!(anomaly["outcome"]["outcome"], "suggest");
    let t = anomaly["outcome"]["escalate_below"].as_f64().unwrap();
    assert!(
        (t - (DISAGREE as f64 + 0.5) / 100.0).abs() < 1e-12,
        "{anomaly}"
    );
    assert_eq!(
        anomaly["outcome"]["at_or_above"]["rows"],
        (n - DISAGREE) as u64
    );
    assert_eq!(anomaly["outcome"]["below"]["agree"], 0);
    assert_eq!(result[1]["series"], "vibration");
    assert_eq!(result[1]["outcome"]["outcome"], "too_few");

    // The text form teaches what it cannot know.
    let out = Command::new(BIN)
        .args(["calibrate", "--data"])
        .arg(dir.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(text.contains("series \"anomaly\""), "{text}");
    assert!(text.contains("never escalated"), "{text}");
}
