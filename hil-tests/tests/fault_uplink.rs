//! Uplink faults between the real `edge-agent` and the real `cloud-sink`: the agent's
//! uplink URL points at a `FaultProxy` in front of the sink, and each test turns one
//! fault on for part of a time-compressed replay (private Mosquitto, fleet-sim), turns
//! it off, and waits until the checker finds every sensor window of the ledger stored
//! exactly once. Each test also asserts the fault was exercised (proxy counters, the
//! agent's retries, the sink's deduplication).
//!
//! It does not test agent crashes (see `end_to_end.rs`) or the models' verdicts.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{
    agent_config, expected_counters, sink_counters, sink_health, tail, wait_for, Agent, CheckWait,
    Sink, GATEWAY, SERIAL,
};
use hil_tests::fault_proxy::{FaultProxy, Mode, ModeKind, ModeStats};
use hil_tests::ledger::LedgerRecord;
use hil_tests::mosquitto::{Mosquitto, Persistence};
use hil_tests::{data_dir, fetch_windows, CheckReport, SimError, SimOptions, SimReport};
use tokio::task::JoinHandle;

/// Small fleet: 3 devices × 1500 one-second rows, 8 sensor series each.
const DEVICES: usize = 3;
const ROWS_PER_DEVICE: usize = 1500;
/// 1500 s of event time in about 6 s: a 60 s window closes every ~0.24 s per device.
const SPEEDUP: f64 = 250.0;
const MALFORMED_EACH: usize = 1;
const WINDOW_MS: i64 = 60_000;
const ALPHA: f64 = 0.01;
/// Short, so a blackholed or half-open request is given up quickly.
const REQUEST_TIMEOUT: &str = "1s";
/// As `agent_config` sets it.
const BATCH_INTERVAL: Duration = Duration::from_millis(200);
/// Windows at the sink before a fault is turned on (two per series).
const WINDOWS_BEFORE_FAULT: usize = 2 * 8 * DEVICES;
const FAULT_LIMIT: Duration = Duration::from_secs(60);
const CHECK_LIMIT: Duration = Duration::from_secs(120);

/// One run: broker, sink, proxy in front of the sink, agent, and the simulator publishing.
struct Run {
    dir: tempfile::TempDir,
    _broker: Mosquitto,
    sink: Sink,
    proxy: FaultProxy,
    agent: Agent,
    ledger: PathBuf,
    sim: Option<JoinHandle<Result<SimReport, SimError>>>,
    started: Instant,
}

/// `None` when the data or Mosquitto is missing (the test skips, or fails under
/// `EDGE_REQUIRE_SERVICES=1`).
async fn start() -> Option<Run> {
    if !common::skab_or_skip() {
        return None;
    }
    let broker = common::mosquitto_or_skip(Persistence::Off)?;
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::start(&dir.path().join("sink"), "127.0.0.1:0");
    let proxy = FaultProxy::start(sink.listen().parse().unwrap())
        .await
        .unwrap();
    let agent = Agent::start(&uplink_config(dir.path(), broker.port(), &proxy.url()));
    common::wait_subscribed(&agent).await;
    let ledger = dir.path().join("ledger.jsonl");
    let sim = tokio::spawn(hil_tests::run(SimOptions {
        broker: broker.broker(),
        devices: DEVICES,
        skab_dir: data_dir().join("SKAB"),
        max_rows_per_device: Some(ROWS_PER_DEVICE),
        speedup: SPEEDUP,
        malformed: MALFORMED_EACH,
        ledger: Some(ledger.clone()),
        ..SimOptions::default()
    }));
    Some(Run {
        dir,
        _broker: broker,
        sink,
        proxy,
        agent,
        ledger,
        sim: Some(sim),
        started,
    })
}

/// The harness's agent config with a short request timeout, and without the models
/// (their verdicts are not checked here; debug-mode inference would only slow the run).
fn uplink_config(dir: &Path, broker_port: u16, uplink_url: &str) -> PathBuf {
    let path = agent_config(dir, broker_port, uplink_url);
    let mut doc: toml::Table = std::fs::read_to_string(&path).unwrap().parse().unwrap();
    doc["uplink"].as_table_mut().unwrap()["request_timeout"] = REQUEST_TIMEOUT.into();
    doc.remove("models");
    std::fs::write(&path, toml::to_string(&doc).unwrap()).unwrap();
    path
}

impl Run {
    /// Failed deliveries the agent logged so far.
    fn not_delivered(&self) -> usize {
        self.agent.log().matches("batch not delivered").count()
    }

    async fn wait_for_windows(&self, n: usize) {
        let url = self.sink.url.clone();
        wait_for(&format!("{n} windows at the sink"), FAULT_LIMIT, || async {
            let stored = fetch_windows(&url, GATEWAY).await.map_or(0, |w| w.len());
            (stored >= n).then_some(())
        })
        .await;
    }

    /// Waits until the proxy's counters of `kind` satisfy `done`.
    async fn wait_proxy(&self, kind: ModeKind, done: impl Fn(&ModeStats) -> bool) -> ModeStats {
        tokio::time::timeout(FAULT_LIMIT, self.proxy.wait_stats(kind, done))
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "{kind:?} not exercised: {:?}\n--- agent log (tail):\n{}",
                    self.proxy.stats(kind),
                    tail(&self.agent.log(), 30)
                )
            })
    }

    /// Waits until the agent logged `n` more failed deliveries than `before`.
    async fn wait_failures(&self, before: usize, n: usize) {
        wait_for(
            &format!("{n} failed deliveries in the agent log"),
            FAULT_LIMIT,
            || async { (self.not_delivered() >= before + n).then_some(()) },
        )
        .await;
    }

    /// Turns `mode` on after the first windows arrived, waits until the proxy's counters
    /// satisfy `exercised` and the agent logged `failures` failed deliveries, turns it off.
    async fn fault(
        &self,
        mode: Mode,
        failures: usize,
        exercised: impl Fn(&ModeStats) -> bool,
    ) -> ModeStats {
        self.wait_for_windows(WINDOWS_BEFORE_FAULT).await;
        let before = self.not_delivered();
        let on = Instant::now();
        self.proxy.set_mode(mode);
        self.wait_proxy(mode.kind(), exercised).await;
        self.wait_failures(before, failures).await;
        self.proxy.set_mode(Mode::Pass);
        let stats = self.proxy.stats(mode.kind());
        println!(
            "{mode:?} on for {:.1}s ({} failed deliveries): {stats:?}",
            on.elapsed().as_secs_f64(),
            self.not_delivered() - before
        );
        stats
    }

    /// Awaits the simulator, then the checker (0 missing, 0 duplicated, 0 unexpected,
    /// fields exact), then the exact bad-input counters.
    async fn assert_all_delivered(&mut self) -> CheckReport {
        if let Some(sim) = self.sim.take() {
            println!("{}", sim.await.unwrap().unwrap());
        }
        let ledger = hil_tests::read_ledger(&self.ledger).unwrap();
        let report = self.wait_until_checked(&ledger).await;
        assert!(
            report.expected > 300,
            "run too small to mean anything: {report}"
        );
        println!("{report}");
        let expected = expected_counters(&ledger);
        let url = self.sink.url.clone();
        let counters = wait_for("counters at the sink", CHECK_LIMIT, || async {
            let c = sink_counters(&url).await;
            expected
                .iter()
                .all(|(k, v)| c.get(k).copied().unwrap_or(0) >= *v)
                .then_some(c)
        })
        .await;
        let counted: BTreeMap<String, u64> = counters.into_iter().filter(|(_, v)| *v > 0).collect();
        assert_eq!(counted, expected, "bad input counted exactly once");
        println!("run took {:.1}s", self.started.elapsed().as_secs_f64());
        report
    }

    async fn wait_until_checked(&self, ledger: &[LedgerRecord]) -> CheckReport {
        CheckWait::new(ledger, WINDOW_MS, ALPHA, CHECK_LIMIT)
            .agent_log(&|| self.agent.log())
            .context(&|| {
                format!(
                    "proxy: {:?}",
                    ModeKind::ALL.map(|k| (k, self.proxy.stats(k)))
                )
            })
            .run(&self.sink)
            .await
    }
}

async fn get_json(url: String) -> serde_json::Value {
    reqwest::get(url).await.unwrap().json().await.unwrap()
}

/// Our gateway's entry in `/v1/gateways` (durable totals: batches, windows, counters).
async fn gateway_info(sink_url: &str) -> serde_json::Value {
    common::sink_gateway(sink_url).await.unwrap_or_default()
}

/// Batches the sink stored for our gateway (re-sends not counted).
async fn sink_batches(sink_url: &str) -> u64 {
    gateway_info(sink_url).await["batches"]
        .as_u64()
        .unwrap_or(0)
}

/// An outcome counter of the sink process (`stored`, `duplicate`, ...; since it started).
async fn sink_outcome(sink_url: &str, outcome: &str) -> u64 {
    get_json(format!("{sink_url}/v1/health")).await["counters"][outcome]
        .as_u64()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uplink_blackhole() {
    let _serial = SERIAL.lock().await;
    let Some(mut run) = start().await else { return };
    let stats = run
        .fault(Mode::Blackhole, 2, |s| {
            s.connections >= 2 && s.client_bytes > 0
        })
        .await;
    assert_eq!(stats.upstream_bytes + stats.answer_bytes, 0, "{stats:?}");
    run.assert_all_delivered().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uplink_reset() {
    let _serial = SERIAL.lock().await;
    let Some(mut run) = start().await else { return };
    let stats = run.fault(Mode::Reset, 3, |s| s.resets >= 3).await;
    assert_eq!(stats.upstream_bytes + stats.answer_bytes, 0, "{stats:?}");
    run.assert_all_delivered().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uplink_half_open() {
    let _serial = SERIAL.lock().await;
    let Some(mut run) = start().await else { return };
    // The sink stored each forwarded batch; the agent timed out and sends it again.
    let stats = run
        .fault(Mode::HalfOpen, 2, |s| s.dropped_answers >= 2)
        .await;
    assert_eq!(stats.answer_bytes, 0, "{stats:?}");
    run.assert_all_delivered().await;
    let duplicates = sink_outcome(&run.sink.url, "duplicate").await;
    assert!(
        duplicates >= stats.dropped_answers,
        "{duplicates} duplicates at the sink < {} withheld answers",
        stats.dropped_answers
    );
    println!("sink acknowledged {duplicates} re-sent batches as duplicates");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uplink_slow() {
    let _serial = SERIAL.lock().await;
    let Some(mut run) = start().await else { return };
    run.wait_for_windows(WINDOWS_BEFORE_FAULT).await;
    let slow = Mode::Slow {
        bytes_per_sec: SLOW_BYTES_PER_SEC,
    };
    let before = sink_batches(&run.sink.url).await;
    let failures_before = run.not_delivered();
    let on = Instant::now();
    run.proxy.set_mode(slow);
    // Batches keep arriving through the throttled link.
    run.wait_proxy(ModeKind::Slow, |s| s.answer_bytes > 0).await;
    let url = run.sink.url.clone();
    wait_for("3 batches through the slow link", FAULT_LIMIT, || async {
        (sink_batches(&url).await >= before + 3).then_some(())
    })
    .await;
    run.proxy.set_mode(Mode::Pass);
    let stats = run.proxy.stats(ModeKind::Slow);
    let took = on.elapsed();
    println!(
        "{slow:?} on for {:.1}s ({} failed deliveries): {stats:?}",
        took.as_secs_f64(),
        run.not_delivered() - failures_before
    );
    // Everything sent through it went at most at the set rate (each direction).
    let max_bytes = SLOW_BYTES_PER_SEC as f64 * took.as_secs_f64();
    assert!(
        stats.upstream_bytes as f64 <= max_bytes * 1.1 + 1024.0,
        "throttle not applied: {stats:?} in {took:?}"
    );
    assert!(stats.upstream_bytes > 0 && stats.connections >= 1);
    run.assert_all_delivered().await;
}

/// A batch of this run is ~7 kB: ~0.4 s through the throttle, under the 1 s request timeout.
const SLOW_BYTES_PER_SEC: u64 = 16 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ack_lost_after_sink_commit() {
    let _serial = SERIAL.lock().await;
    let Some(mut run) = start().await else { return };
    run.fault(Mode::AckLost, 3, |s| s.dropped_answers >= 3)
        .await;
    // The proxy counts a dropped answer, then resets its client: await the reset
    // of the last one (a snapshot between the two was a flaky failure under load).
    let stats = run
        .wait_proxy(ModeKind::AckLost, |s| s.resets >= s.dropped_answers)
        .await;
    assert_eq!(stats.answer_bytes, 0, "{stats:?}");
    assert!(stats.dropped_answers >= 3, "{stats:?}");
    run.assert_all_delivered().await;
    // Every lost answer was for a batch the sink had stored: the re-send was recognised.
    let duplicates = sink_outcome(&run.sink.url, "duplicate").await;
    assert!(
        duplicates >= stats.dropped_answers,
        "{duplicates} duplicates at the sink < {} lost answers",
        stats.dropped_answers
    );
    println!("sink acknowledged {duplicates} re-sent batches as duplicates");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sink_down_long_outage() {
    let _serial = SERIAL.lock().await;
    let Some(mut run) = start().await else { return };
    run.wait_for_windows(WINDOWS_BEFORE_FAULT).await;
    let listen = run.sink.listen();
    run.sink.kill();
    let down = Instant::now();
    // The rest of the replay is published while the sink is down, and the agent
    // keeps retrying (at least 10 refusals: ≥ 4.2 s of backoff at retry_max 1s).
    let report = run.sim.take().unwrap().await.unwrap().unwrap();
    run.wait_proxy(ModeKind::Pass, |s| s.upstream_failures >= 10)
        .await;
    let outage = down.elapsed();
    println!("{report}; sink down for {:.1}s", outage.as_secs_f64());
    assert!(
        outage >= 20 * BATCH_INTERVAL,
        "outage of {outage:?} is not many batch intervals"
    );
    run.sink = Sink::start(&run.dir.path().join("sink"), &listen);
    run.assert_all_delivered().await;
    // What waited in the outbox arrived after the restart, in many batches.
    let drained = sink_outcome(&run.sink.url, "stored").await;
    assert!(drained >= 10, "only {drained} batches after the restart");
    println!("restarted sink stored {drained} batches from the outbox");
    // The agent counted its failed sends during the outage, kept the count in
    // its outbox with the data, and the sink got it after the restart.
    let url = run.sink.url.clone();
    let failures = wait_for(
        "the agent's uplink failures at the sink",
        CHECK_LIMIT,
        || async {
            let n = sink_health(&url)
                .await
                .get("uplink_failures")
                .copied()
                .unwrap_or(0);
            (n > 0).then_some(n)
        },
    )
    .await;
    println!("agent.uplink_failures at the sink: {failures}");
}
