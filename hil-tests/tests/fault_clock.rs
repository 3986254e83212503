//! Fault: the gateway's wall clock is wrong. Two runs, the agent under
//! libfaketime (monotonic clocks left real, as a kernel keeps them):
//! - booted in 1970 (no RTC, no NTP yet): payload times are checked against
//!   2000-01-01, not against the unset clock, so everything arrives once, and
//!   the new store's epoch is random rather than "10 seconds after 1970";
//! - the clock jumps a day forward and two days back mid-run (NTP catching up,
//!   an RTC battery): windows close on monotonic time and payload time, so
//!   nothing is lost or duplicated.
//!
//! Sensor windows only; gateway-time series (log lines) legitimately count a
//! backward jump's readings as `late` and are not checked here.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{agent_config, Agent, CheckWait, Sink, SERIAL};
use hil_tests::mosquitto::{require_or_skip, Mosquitto, Persistence};
use hil_tests::{data_dir, SimOptions};

const WINDOW_MS: i64 = 60_000;
const ALPHA: f64 = 0.01;

fn libfaketime() -> Option<PathBuf> {
    std::fs::read_dir("/usr/lib").ok()?.flatten().find_map(|d| {
        let p = d.path().join("faketime/libfaketime.so.1");
        p.exists().then_some(p)
    })
}

/// Starts the agent with libfaketime preloaded and `vars` set.
fn start_faked(config: &Path, lib: &Path, vars: &[(&str, String)]) -> Agent {
    let mut all = vec![
        ("LD_PRELOAD", lib.display().to_string()),
        ("FAKETIME_DONT_FAKE_MONOTONIC", "1".to_owned()),
    ];
    all.extend(vars.iter().cloned());
    Agent::start_with_env(config, &all)
}

fn setup() -> Option<(Mosquitto, PathBuf)> {
    if !common::skab_or_skip() {
        return None;
    }
    let Some(lib) = libfaketime() else {
        require_or_skip("libfaketime not found (apt-get install faketime)");
        return None;
    };
    Some((common::mosquitto_or_skip(Persistence::Off)?, lib))
}

fn sim(broker: String, ledger: &Path) -> SimOptions {
    SimOptions {
        broker,
        devices: 2,
        skab_dir: data_dir().join("SKAB"),
        max_rows_per_device: Some(3000),
        // Paced (3000 s of event time in about 6 s) so both clock jumps land while
        // readings still arrive: unpaced, a loaded machine could finish publishing
        // before the second jump, leaving no batch cut under the last clock.
        speedup: 500.0,
        ledger: Some(ledger.to_owned()),
        progress: false,
        ..SimOptions::default()
    }
}

/// Waits until the sink holds exactly the ledger's sensor windows.
async fn assert_delivered_once(sink: &Sink, agent: &Agent, ledger: &Path) {
    let ledger = hil_tests::read_ledger(ledger).unwrap();
    let report = CheckWait::new(&ledger, WINDOW_MS, ALPHA, Duration::from_secs(120))
        .agent_log(&|| agent.log())
        .run(sink)
        .await;
    assert!(report.expected > 300, "run too small: {report}");
    println!("{report}");
}

fn config_without_models(dir: &Path, port: u16, sink_url: &str) -> PathBuf {
    let config = agent_config(dir, port, sink_url);
    let mut doc: toml::Table = std::fs::read_to_string(&config).unwrap().parse().unwrap();
    doc.remove("models");
    std::fs::write(&config, toml::to_string(&doc).unwrap()).unwrap();
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_booted_in_1970_delivers_everything_once() {
    let _serial = SERIAL.lock().await;
    let Some((broker, lib)) = setup() else { return };
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::start(&dir.path().join("sink"), "127.0.0.1:0");
    let config = config_without_models(dir.path(), broker.port(), &sink.url);
    let agent = start_faked(
        &config,
        &lib,
        &[("FAKETIME", "@1970-01-01 00:00:10".into())],
    );
    common::wait_subscribed(&agent).await;
    let ledger = dir.path().join("ledger.jsonl");
    hil_tests::run(sim(broker.broker(), &ledger)).await.unwrap();
    assert_delivered_once(&sink, &agent, &ledger).await;
    let log = agent.log();
    let epoch = log
        .lines()
        .find_map(|l| common::field(l, "epoch"))
        .expect("store recovered line with the epoch");
    println!("epoch chosen with the clock at 1970: {epoch}");
    assert!(
        epoch > 32_503_680_000_000,
        "epoch {epoch} came from the unset clock"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clock_jumping_forward_and_back_loses_and_duplicates_nothing() {
    let _serial = SERIAL.lock().await;
    let Some((broker, lib)) = setup() else { return };
    let dir = tempfile::tempdir().unwrap();
    let offset = dir.path().join("faketime-offset");
    std::fs::write(&offset, "+0\n").unwrap();
    let sink = Sink::start(&dir.path().join("sink"), "127.0.0.1:0");
    let config = config_without_models(dir.path(), broker.port(), &sink.url);
    let agent = start_faked(
        &config,
        &lib,
        &[
            ("FAKETIME_TIMESTAMP_FILE", offset.display().to_string()),
            ("FAKETIME_NO_CACHE", "1".into()),
        ],
    );
    common::wait_subscribed(&agent).await;
    let ledger = dir.path().join("ledger.jsonl");
    let run = tokio::spawn(hil_tests::run(sim(broker.broker(), &ledger)));
    // Jump while batches are being cut: forward a day, then back two.
    for jump in ["+1d", "-1d"] {
        let before = agent.log().matches("batch ").count();
        common::wait_for("a batch cut", Duration::from_secs(60), || async {
            (agent.log().matches("batch ").count() > before).then_some(())
        })
        .await;
        std::fs::write(&offset, format!("{jump}\n")).unwrap();
        println!("gateway clock jumped to {jump} of real time");
    }
    run.await.unwrap().unwrap();
    assert_delivered_once(&sink, &agent, &ledger).await;
    // The agent's own log timestamps show the three clocks it lived through.
    let days: std::collections::BTreeSet<String> = agent
        .log()
        .lines()
        .filter(|l| l.starts_with("20") && l.contains("batch "))
        .map(|l| l[..10].to_owned())
        .collect();
    println!("dates in the agent's batch log lines: {days:?}");
    assert_eq!(days.len(), 3, "the jumps did not take effect: {days:?}");
}
