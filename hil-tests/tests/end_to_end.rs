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

use common::{
    agent_config, expected_counters, log_lines_classified, log_lines_stored, logs_published,
    setup_or_skip, sink_counters, wait_for, Agent, CheckWait, Sink, GATEWAY, SERIAL,
};
use hil_tests::ledger::LedgerRecord;
use hil_tests::{data_dir, fetch_windows, SimOptions, SimReport};

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

async fn assert_all_delivered(
    sink: &Sink,
    agent: &Agent,
    ledger_path: &Path,
    exact_counters: bool,
    relative_error: f64,
) {
    let ledger = hil_tests::read_ledger(ledger_path).unwrap();
    let report = CheckWait::new(&ledger, WINDOW_MS, ALPHA, Duration::from_secs(180))
        .relative_error(relative_error)
        .agent_log(&|| agent.log())
        .run(sink)
        .await;
    assert!(
        report.expected > 1500,
        "replay too small to mean anything: {report}"
    );
    println!("{report}");
    if relative_error > 0.0 {
        // The values did travel rounded: an exact check finds them off.
        let stored = fetch_windows(&sink.url, GATEWAY).await.unwrap();
        let exact = hil_tests::check(&ledger, WINDOW_MS, &common::sensor_windows(&stored), ALPHA);
        assert!(
            exact.field_mismatches + exact.mean_mismatches > 0,
            "rounding at {relative_error} changed no value: {exact}"
        );
    }
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
            if !complete {
                eprintln!(
                    "waiting: counters {counters:?} (expected at least {expected:?}), \
                     log lines {lines} of {logs}"
                );
            }
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
    let Some((dir, broker)) = setup_or_skip() else {
        return;
    };
    let sink = Sink::start(&dir.path().join("sink"), "127.0.0.1:0");
    // The agent's default uplink rounding (the other tests send values exact).
    let config = agent_config(dir.path(), broker.port(), &sink.url);
    let rounding = 1e-4;
    common::set_agent_option(&config, "uplink", "relative_error", rounding);
    let agent = Agent::start(&config);
    common::wait_subscribed(&agent).await;
    let ledger = dir.path().join("ledger.jsonl");
    let report: SimReport = hil_tests::run(sim_options(broker.broker(), &ledger))
        .await
        .unwrap();
    println!("{report}");
    assert_ledger_is_the_csv_rows(&hil_tests::read_ledger(&ledger).unwrap());
    assert_all_delivered(&sink, &agent, &ledger, true, rounding).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_killed_with_sigkill_mid_run_loses_and_duplicates_nothing() {
    let _serial = SERIAL.lock().await;
    let Some((dir, broker)) = setup_or_skip() else {
        return;
    };
    let sink = Sink::start(&dir.path().join("sink"), "127.0.0.1:0");
    let mut agent = Agent::start(&agent_config(dir.path(), broker.port(), &sink.url));
    common::wait_subscribed(&agent).await;
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
    assert_all_delivered(&sink, &agent, &ledger, false, 0.0).await;
    let judged = common::assert_judgements_once(&sink.url).await;
    assert!(judged > 1000, "only {judged} rows judged");
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
    let Some((dir, broker)) = setup_or_skip() else {
        return;
    };
    let sink_dir = dir.path().join("sink");
    let mut sink = Sink::start(&sink_dir, "127.0.0.1:0");
    let agent = Agent::start(&agent_config(dir.path(), broker.port(), &sink.url));
    common::wait_subscribed(&agent).await;
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
    assert_all_delivered(&sink, &agent, &ledger, true, 0.0).await;
}
