//! End to end through a real Mosquitto: fleet-sim replays every SKAB file as 10
//! devices (plus Loghub lines and malformed input) into the real `edge-agent`
//! binary, which ships windows to the real `cloud-sink` binary. The checker then
//! recomputes every window from the ledger and compares it with what the sink stored:
//! nothing missing, nothing twice, count/min/max/mean exact, quantiles within α.
//!
//! Three runs: undisturbed; the agent killed with SIGKILL three times mid-run;
//! the sink killed for part of the run. Each must give the same result.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use common::{agent_config, wait_for, Agent, Sink, GATEWAY, SERIAL};
use hil_tests::ledger::LedgerRecord;
use hil_tests::mosquitto::{require_or_skip, Mosquitto};
use hil_tests::{check, data_dir, fetch_windows, CheckReport, SimOptions, SimReport, StoredWindow};

const DEVICES: usize = 10;
const WINDOW_MS: i64 = 60_000;
const ALPHA: f64 = 0.01;
const MALFORMED_EACH: usize = 3;
const LOG_LINES: usize = 300;

fn sim_options(broker: String, ledger: &Path) -> SimOptions {
    SimOptions {
        broker,
        devices: DEVICES,
        skab_dir: data_dir().join("SKAB"),
        loghub: vec![data_dir().join("loghub/HDFS/HDFS_2k.log")],
        max_log_lines: Some(LOG_LINES),
        malformed: MALFORMED_EACH,
        ledger: Some(ledger.to_owned()),
        progress: false,
        ..SimOptions::default()
    }
}

/// Sensor windows only (log-line windows use gateway time, checked separately).
fn sensor_windows(all: &[StoredWindow]) -> Vec<StoredWindow> {
    all.iter().filter(|w| w.is_raw_sensor()).cloned().collect()
}

/// Waits until the sink holds exactly the expected windows, then returns the report.
async fn wait_until_checked(sink: &Sink, agent: &Agent, ledger: &[LedgerRecord]) -> CheckReport {
    let sink_url = sink.url.as_str();
    let mut last = String::new();
    let found = tokio::time::timeout(Duration::from_secs(180), async {
        loop {
            if let Ok(all) = fetch_windows(sink_url, GATEWAY).await {
                let report = check(ledger, WINDOW_MS, &sensor_windows(&all), ALPHA);
                if report.is_ok() {
                    return report;
                }
                last = report.to_string();
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    })
    .await;
    found.unwrap_or_else(|_| {
        panic!(
            "sink never matched the ledger; last check:\n{last}\n--- agent log (tail):\n{}\n--- sink log (tail):\n{}",
            tail(&agent.log(), 40),
            tail(&sink.log(), 20)
        )
    })
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Counters the sink summed for our gateway.
async fn sink_counters(sink_url: &str) -> BTreeMap<String, u64> {
    let gateways: serde_json::Value = reqwest::get(format!("{sink_url}/v1/gateways"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let gw = gateways
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["id"] == GATEWAY)
        .expect("gateway listed");
    serde_json::from_value(gw["counters"].clone()).unwrap()
}

fn expected_counters(ledger: &[LedgerRecord]) -> BTreeMap<String, u64> {
    let mut m = BTreeMap::new();
    for r in ledger {
        if let LedgerRecord::Malformed(bad) = r {
            *m.entry(bad.reason.clone()).or_insert(0) += 1;
        }
    }
    m
}

fn logs_published(ledger: &[LedgerRecord]) -> u64 {
    ledger
        .iter()
        .filter(|r| matches!(r, LedgerRecord::Log(_)))
        .count() as u64
}

async fn log_lines_stored(sink_url: &str) -> u64 {
    let all = fetch_windows(sink_url, GATEWAY).await.unwrap();
    all.iter()
        .filter(|w| w.metric == "log.line_bytes")
        .map(|w| w.count)
        .sum()
}

/// Lines the log model classified (one severity class each) and lines it called alerts.
async fn log_lines_classified(sink_url: &str) -> (u64, u64) {
    let all = fetch_windows(sink_url, GATEWAY).await.unwrap();
    let sum = |f: &dyn Fn(&str) -> bool| -> f64 {
        all.iter().filter(|w| f(&w.metric)).map(|w| w.sum).sum()
    };
    let judged: u64 = all
        .iter()
        .filter(|w| w.metric == "log.confidence")
        .map(|w| w.count)
        .sum();
    // Each line is 1 in exactly one severity class.
    assert_eq!(sum(&|m| m.starts_with("log.severity.")), judged as f64);
    (judged, sum(&|m| m == "log.alert") as u64)
}

/// Every judged (`anomaly`) window is stored once and carries a verdict that
/// counts no more alarms than rows.
async fn assert_judgements_once(sink: &Sink) {
    let all = fetch_windows(&sink.url, GATEWAY).await.unwrap();
    let mut seen = std::collections::BTreeSet::new();
    let mut judged = 0;
    for w in all.iter().filter(|w| w.metric == "anomaly") {
        assert!(
            seen.insert((w.device.clone(), w.start_ms)),
            "stored twice: {w:?}"
        );
        let v = w.verdict.unwrap_or_else(|| panic!("no verdict: {w:?}"));
        assert!(v.alarms <= v.judged && v.judged == w.count);
        judged += v.judged;
    }
    assert!(judged > 1000, "only {judged} rows judged");
}

/// Waits until the sink holds at least `n` windows of our gateway.
async fn wait_for_windows(sink: &Sink, n: usize) {
    wait_for(
        &format!("{n} windows at the sink"),
        Duration::from_secs(120),
        || async {
            let stored = fetch_windows(&sink.url, GATEWAY)
                .await
                .map(|w| w.len())
                .unwrap_or(0);
            (stored >= n).then_some(())
        },
    )
    .await;
}

/// Setup shared by the three runs; `None` when the data or Mosquitto is missing (skip).
fn setup() -> Option<(tempfile::TempDir, Mosquitto)> {
    if !data_dir().join("SKAB").is_dir() {
        require_or_skip(&format!("SKAB data not found at {}", data_dir().display()));
        return None;
    }
    match Mosquitto::start() {
        Ok(m) => Some((tempfile::tempdir().unwrap(), m)),
        Err(e) if e.is_missing_service() => {
            require_or_skip(&format!("mosquitto: {e}"));
            None
        }
        Err(e) => panic!("mosquitto failed to start: {e}"),
    }
}

async fn assert_all_delivered(
    sink: &Sink,
    agent: &Agent,
    ledger_path: &Path,
    exact_counters: bool,
) {
    let ledger = hil_tests::read_ledger(ledger_path).unwrap();
    let report = wait_until_checked(sink, agent, &ledger).await;
    assert!(
        report.expected > 1500,
        "replay too small to mean anything: {report}"
    );
    println!("{report}");
    let expected = expected_counters(&ledger);
    let logs = logs_published(&ledger);
    // Counters and log windows arrive with the same batches, but may trail by a cut.
    let (counters, lines) = wait_for(
        "counters and log lines at the sink",
        Duration::from_secs(30),
        || async {
            let counters = sink_counters(&sink.url).await;
            let lines = log_lines_stored(&sink.url).await;
            let complete = expected
                .iter()
                .all(|(k, v)| counters.get(k).copied().unwrap_or(0) >= *v)
                && lines >= logs;
            complete.then_some((counters, lines))
        },
    )
    .await;
    if exact_counters {
        let rejected: BTreeMap<String, u64> = counters
            .iter()
            .filter(|(_, v)| **v > 0)
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        assert_eq!(rejected, expected, "agent log:\n{}", agent.log());
        assert_eq!(lines, logs, "every log line counted once");
        let (classified, alerts) = log_lines_classified(&sink.url).await;
        assert_eq!(classified, logs, "every log line classified once");
        assert!(alerts <= logs);
        println!("log model: {classified} lines classified, {alerts} alerts");
    }
}

/// The ledger is what fleet-sim says it published; check it against the CSV
/// rows themselves (file i goes to device i mod 10, rows in file order, values
/// bit-exact), so the expected windows derive from the data, not from the simulator.
fn assert_ledger_is_the_csv_rows(ledger: &[LedgerRecord]) {
    let files = hil_tests::skab::list_files(&data_dir().join("SKAB")).unwrap();
    assert_eq!(files.len(), 23, "all SKAB files replayed");
    for device in 0..DEVICES {
        let csv: Vec<BTreeMap<String, f64>> = files
            .iter()
            .enumerate()
            .filter(|(i, _)| i % DEVICES == device)
            .flat_map(|(_, f)| hil_tests::skab::read_file(f).unwrap().rows)
            .map(|row| row.values.into_iter().collect())
            .collect();
        let name = hil_tests::plan::device_name(device);
        let published: Vec<&BTreeMap<String, f64>> = ledger
            .iter()
            .filter_map(|r| match r {
                LedgerRecord::Reading(r) if r.device == name => Some(&r.values),
                _ => None,
            })
            .collect();
        assert_eq!(published.len(), csv.len(), "{name}: rows published");
        assert!(
            published.iter().zip(&csv).all(|(p, c)| *p == c),
            "{name}: values differ from the CSV"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_arrives_exactly_once_with_bad_input_counted() {
    let _serial = SERIAL.lock().await;
    let Some((dir, broker)) = setup() else { return };
    let sink = Sink::start(&dir.path().join("sink"), "127.0.0.1:0");
    let agent = Agent::start(&agent_config(dir.path(), broker.port(), &sink.url));
    let ledger = dir.path().join("ledger.jsonl");
    let report: SimReport = hil_tests::run(sim_options(broker.broker(), &ledger))
        .await
        .unwrap();
    println!("{report}");
    assert_ledger_is_the_csv_rows(&hil_tests::read_ledger(&ledger).unwrap());
    assert_all_delivered(&sink, &agent, &ledger, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_killed_with_sigkill_mid_run_loses_and_duplicates_nothing() {
    let _serial = SERIAL.lock().await;
    let Some((dir, broker)) = setup() else { return };
    let sink = Sink::start(&dir.path().join("sink"), "127.0.0.1:0");
    let mut agent = Agent::start(&agent_config(dir.path(), broker.port(), &sink.url));
    let ledger = dir.path().join("ledger.jsonl");
    let sim = tokio::spawn(hil_tests::run(sim_options(broker.broker(), &ledger)));
    // Kill when the sink shows progress, three times, at growing depths into the run.
    for (restarts, threshold) in [50usize, 600, 1500].into_iter().enumerate() {
        wait_for_windows(&sink, threshold).await;
        agent.kill9();
        agent.restart();
        // Let the new agent come up before the next kill, so each kill hits a running agent.
        wait_for(
            "the restarted agent to recover its store",
            Duration::from_secs(30),
            || async {
                (agent.log().matches("store recovered").count() > restarts + 1).then_some(())
            },
        )
        .await;
    }
    sim.await.unwrap().unwrap();
    // Messages without a device seq (the malformed ones, log lines) are
    // at-least-once across a kill; readings are exactly-once.
    assert_all_delivered(&sink, &agent, &ledger, false).await;
    assert_judgements_once(&sink).await;
    // Every start recovered the store, and at least one kill hit while windows
    // were open (their readings came back from the journal, not the broker).
    let log = agent.log();
    let replayed: Vec<u64> = log
        .lines()
        .filter(|l| l.contains("store recovered"))
        .filter_map(|l| {
            l.split("replayed=")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .collect();
    assert_eq!(replayed.len(), 4, "one start and three restarts:\n{log}");
    assert!(
        replayed.iter().any(|n| *n > 0),
        "no kill hit open windows: {replayed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sink_outage_is_buffered_then_drained() {
    let _serial = SERIAL.lock().await;
    let Some((dir, broker)) = setup() else { return };
    let sink_dir = dir.path().join("sink");
    let mut sink = Sink::start(&sink_dir, "127.0.0.1:0");
    let agent = Agent::start(&agent_config(dir.path(), broker.port(), &sink.url));
    let ledger = dir.path().join("ledger.jsonl");
    let sim = tokio::spawn(hil_tests::run(sim_options(broker.broker(), &ledger)));
    wait_for_windows(&sink, 100).await;
    let listen = sink.listen();
    sink.kill();
    // The whole rest of the replay happens while the sink is down.
    sim.await.unwrap().unwrap();
    wait_for(
        "the agent to notice the outage",
        Duration::from_secs(60),
        || async { agent.log().contains("batch not delivered").then_some(()) },
    )
    .await;
    let sink = Sink::start(&sink_dir, &listen);
    assert_all_delivered(&sink, &agent, &ledger, true).await;
}
