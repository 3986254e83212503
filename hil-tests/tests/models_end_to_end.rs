//! End to end with the sensor model on: every SKAB file is one device (23 devices),
//! replayed through real Mosquitto into the real `edge-agent`, which judges each row
//! with the int8 model and ships `anomaly` windows with verdicts to the real
//! `cloud-sink`. The evaluation command (`model-eval`, the same Rust path run
//! offline per file) must have reached the same verdicts for the same windows:
//! rows judged and rows above threshold, window by window.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{agent_config, binary, wait_for, Agent, Sink, GATEWAY, SERIAL};
use hil_tests::mosquitto::Persistence;
use hil_tests::skab::{list_files, parse_datetime_ms};
use hil_tests::{data_dir, fetch_windows, workspace_root, SimOptions};

const WINDOW_MS: i64 = 60_000;
const CALIB_ROWS: usize = 400;

/// (device, window start) → (rows judged, rows alarmed), from model-eval's predictions.
fn expected_from_eval(preds: &Path) -> BTreeMap<(String, i64), (u64, u64)> {
    let skab = data_dir().join("SKAB");
    let root = skab.join("data");
    let mut out = BTreeMap::new();
    for (i, file) in list_files(&skab).unwrap().iter().enumerate() {
        let rel = file.strip_prefix(&root).unwrap();
        let Ok(text) = std::fs::read_to_string(preds.join(rel)) else {
            assert!(
                rel.starts_with("anomaly-free"),
                "no predictions for {rel:?}"
            );
            continue;
        };
        let device = hil_tests::plan::device_name(i);
        for (row, line) in text.lines().skip(1).enumerate() {
            if row < CALIB_ROWS {
                continue;
            }
            let (dt, alarm) = line.rsplit_once(',').unwrap();
            let ts = parse_datetime_ms(dt).unwrap();
            let e = out
                .entry((device.clone(), ts - ts.rem_euclid(WINDOW_MS)))
                .or_insert((0, 0));
            e.0 += 1;
            e.1 += u64::from(alarm == "1");
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_verdicts_agree_with_the_evaluation_command() {
    let _serial = SERIAL.lock().await;
    if !common::skab_or_skip() {
        return;
    }
    let Some(broker) = common::mosquitto_or_skip(Persistence::Off) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();

    // The evaluation command, run as users run it.
    let preds = dir.path().join("preds");
    let eval = Command::new(binary("hil-tests", "model-eval"))
        .current_dir(workspace_root())
        .arg("--out")
        .arg(&preds)
        .output()
        .unwrap();
    let eval_out = String::from_utf8_lossy(&eval.stdout).into_owned();
    assert!(
        eval.status.success(),
        "model-eval failed: {eval_out}{}",
        String::from_utf8_lossy(&eval.stderr)
    );
    println!("{eval_out}");
    let expected = expected_from_eval(&preds);
    let expected_alarms: u64 = expected.values().map(|v| v.1).sum();
    assert!(
        expected_alarms > 1000,
        "the model flags almost nothing: {eval_out}"
    );

    let sink = Sink::start(&dir.path().join("sink"), "127.0.0.1:0");
    let config = agent_config(dir.path(), broker.port(), &sink.url);
    let agent = Agent::start(&config);
    common::wait_subscribed(&agent).await;
    let files = list_files(&data_dir().join("SKAB")).unwrap().len();
    hil_tests::run(SimOptions {
        broker: broker.broker(),
        devices: files,
        skab_dir: data_dir().join("SKAB"),
        progress: false,
        ..SimOptions::default()
    })
    .await
    .unwrap();

    let stored = wait_for(
        "every judged window at the sink",
        Duration::from_secs(180),
        || async {
            let all = fetch_windows(&sink.url, GATEWAY).await.ok()?;
            let judged: Vec<_> = all.into_iter().filter(|w| w.metric == "anomaly").collect();
            let have: std::collections::BTreeSet<_> = judged
                .iter()
                .map(|w| (w.device.clone(), w.start_ms))
                .collect();
            expected.keys().all(|k| have.contains(k)).then_some(judged)
        },
    )
    .await;
    // The anomaly-free file's device is judged too, but has no labels to evaluate.
    let devices: std::collections::BTreeSet<&String> = expected.keys().map(|(d, _)| d).collect();
    let mut got = BTreeMap::new();
    for w in stored.iter().filter(|w| devices.contains(&w.device)) {
        let v = w
            .verdict
            .unwrap_or_else(|| panic!("anomaly window without verdict: {w:?}"));
        assert_eq!(v.anomalous, v.alarms > 0);
        assert!((0.0..=1.0).contains(&v.confidence));
        let prev = got.insert((w.device.clone(), w.start_ms), (v.judged, v.alarms));
        assert!(prev.is_none(), "window stored twice: {w:?}");
    }
    let mismatched: Vec<_> = expected
        .iter()
        .filter(|(k, v)| got.get(*k) != Some(*v))
        .map(|(k, v)| format!("{k:?}: eval {v:?}, stored {:?}", got.get(k)))
        .collect();
    println!(
        "{} windows, {} judged rows, {} alarms; {} mismatched",
        expected.len(),
        expected.values().map(|v| v.0).sum::<u64>(),
        expected_alarms,
        mismatched.len()
    );
    assert!(
        mismatched.is_empty(),
        "{} of {} windows differ from model-eval:\n{}\nagent log:\n{}",
        mismatched.len(),
        expected.len(),
        mismatched.join("\n"),
        agent.log()
    );
    assert_eq!(got.len(), expected.len(), "unexpected judged windows");
}
