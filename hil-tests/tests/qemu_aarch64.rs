//! The aarch64 `edge-agent` (cross-built with Debian's `gcc-aarch64-linux-gnu`, see
//! `.cargo/config.toml`) run under `qemu-aarch64 -L /usr/aarch64-linux-gnu` against a private
//! Mosquitto and the host `cloud-sink`: the first SKAB valve1 file (1,000 rows, read in place),
//! a few Loghub lines and one bad message of each kind. It asserts that the emulated agent
//! ingested everything (every sensor window at the sink equals what the ledger implies: 0
//! missing, 0 duplicated), judged every row after calibration with the int8 sensor model (rows
//! judged and alarms per window equal to the host's own tract run of the same rows), classified
//! every log line with the int8 log model, counted the bad input, and synced it all. The ELF
//! header is checked (e_machine 183 = AArch64), so a host binary cannot pass.
//!
//! It does not test armv7, speed under emulation, or crash recovery on ARM (the host fault
//! tests cover the same code). It uses the aarch64 binary `scripts/test.sh` builds
//! (`target/aarch64-unknown-linux-gnu/<profile>/edge-agent`), or the one `EDGE_AARCH64_AGENT`
//! names (e.g. the size-optimized one of `edge-agent/packaging/build-gateway.sh`);
//! when neither exists it builds the first with cargo, and without qemu, the aarch64 sysroot, the
//! cross gcc or the rust target it prints `SKIP: …` (a failure under `EDGE_REQUIRE_SERVICES=1`).

mod common;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{
    agent_config, expected_counters, log_lines_classified, logs_published, tail, wait_for,
    wait_for_counters, Agent, CheckWait, Sink, GATEWAY, SERIAL,
};
use hil_tests::ledger::LedgerRecord;
use hil_tests::mosquitto::{require_or_skip, Mosquitto, Persistence};
use hil_tests::{data_dir, fetch_windows, workspace_root, SimOptions};
use rumqttc::{AsyncClient, Event, MqttOptions, Outgoing, Packet, QoS};

const TARGET: &str = "aarch64-unknown-linux-gnu";
const SYSROOT: &str = "/usr/aarch64-linux-gnu";
const LINKER: &str = "aarch64-linux-gnu-gcc";
/// ELF `e_machine` of AArch64.
const EM_AARCH64: u16 = 183;
const ROWS: usize = 1000;
const CALIB_ROWS: u64 = 400;
const LOG_LINES: usize = 60;
const WINDOW_MS: i64 = 60_000;
const ALPHA: f64 = 0.01;
/// Ample for emulation (the run takes well under a minute here); only reached on failure.
const LIMIT: Duration = Duration::from_secs(180);

/// `qemu-aarch64` on PATH.
fn find_qemu() -> Option<PathBuf> {
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths)
        .flat_map(|d| [d.join("qemu-aarch64"), d.join("qemu-aarch64-static")])
        .find(|p| p.is_file())
}

fn on_path(tool: &str) -> bool {
    Command::new(tool).arg("--version").output().is_ok()
}

/// True when rustup (or the toolchain) has the standard library for `TARGET`.
fn rust_target_installed() -> bool {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    Command::new(rustc)
        .args(["--print", "target-libdir", "--target", TARGET])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| std::fs::read_dir(String::from_utf8_lossy(&o.stdout).trim()).ok())
        .is_some_and(|mut dir| {
            dir.any(|e| e.is_ok_and(|e| e.file_name().to_string_lossy().starts_with("libstd-")))
        })
}

/// (target dir, profile name) of this test executable: `target/<profile>/deps/<test>`.
fn target_and_profile() -> (PathBuf, String) {
    let exe = std::env::current_exe().expect("test executable path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>");
    let profile = profile_dir.file_name().unwrap().to_string_lossy();
    let target_dir = profile_dir.parent().expect("target dir");
    (target_dir.to_owned(), profile.into_owned())
}

/// `cargo build` of the aarch64 agent into `target_dir` (the profile of this test).
fn build_aarch64_agent(target_dir: &Path, profile: &str) {
    let cargo = option_env!("CARGO").unwrap_or("cargo");
    let mut build = Command::new(cargo);
    build
        .args(["build", "-p", "edge-agent", "--bin", "edge-agent"])
        .args(["--target", TARGET])
        .env("CARGO_TARGET_DIR", target_dir)
        .current_dir(workspace_root());
    if profile == "release" {
        build.arg("--release");
    }
    let status = build.status().expect("running cargo build");
    assert!(status.success(), "cargo build --target {TARGET} failed");
}

/// The aarch64 agent named by `EDGE_AARCH64_AGENT` (e.g. the size-optimized build of
/// `edge-agent/packaging/build-gateway.sh`), else the one next to this test's host binaries,
/// built with cargo when missing; `None` after [`require_or_skip`] when it cannot be built here.
fn aarch64_agent_or_skip() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("EDGE_AARCH64_AGENT") {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "EDGE_AARCH64_AGENT={} is not a file",
            path.display()
        );
        return Some(path);
    }
    let (target_dir, profile) = target_and_profile();
    let path = target_dir.join(TARGET).join(&profile).join("edge-agent");
    if path.is_file() {
        return Some(path);
    }
    if !on_path(LINKER) {
        require_or_skip(&format!(
            "{} not built and no {LINKER} to build it (apt-get install gcc-aarch64-linux-gnu)",
            path.display()
        ));
        return None;
    }
    if !rust_target_installed() {
        require_or_skip(&format!(
            "{} not built and the rust target is missing (rustup target add {TARGET})",
            path.display()
        ));
        return None;
    }
    build_aarch64_agent(&target_dir, &profile);
    assert!(path.is_file(), "{} missing after the build", path.display());
    Some(path)
}

/// Panics unless `path` is a 64-bit little-endian ELF executable for AArch64.
fn assert_aarch64_elf(path: &Path) {
    let bytes = std::fs::read(path).unwrap();
    assert!(
        bytes.len() > 20 && &bytes[..4] == b"\x7fELF",
        "{} is not an ELF file",
        path.display()
    );
    assert_eq!((bytes[4], bytes[5]), (2, 1), "not ELF64 little-endian");
    let machine = u16::from_le_bytes([bytes[18], bytes[19]]);
    assert_eq!(
        machine,
        EM_AARCH64,
        "{} is not an aarch64 binary (e_machine {machine})",
        path.display()
    );
}

/// Creates the agent's persistent MQTT session (its client id, `clean_session = false`)
/// with its subscriptions, acknowledged by the broker, then disconnects. Everything
/// published afterwards is queued for the agent however long qemu takes to start it;
/// the agent then finds `session_present = true` and keeps the subscriptions.
async fn open_session(broker: &Mosquitto, client_id: &str, filters: &[String]) {
    let mut opts = MqttOptions::new(client_id, "127.0.0.1", broker.port());
    opts.set_clean_session(false);
    let (client, mut events) = AsyncClient::new(opts, 10);
    for f in filters {
        client.subscribe(f, QoS::AtLeastOnce).await.unwrap();
    }
    let mut acked = 0;
    tokio::time::timeout(Duration::from_secs(10), async {
        while acked < filters.len() {
            match events.poll().await {
                Ok(Event::Incoming(Packet::SubAck(_))) => acked += 1,
                Ok(_) => {}
                Err(e) => panic!("session set-up: {e}"),
            }
        }
        client.disconnect().await.unwrap();
        // Until the DISCONNECT is written (or the connection is already gone). Should the
        // agent connect before the broker has read it, the broker hands the session over.
        loop {
            match events.poll().await {
                Ok(Event::Outgoing(Outgoing::Disconnect)) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await
    .expect("broker acknowledged the agent's subscriptions");
}

/// (device, window start) → (rows judged, alarms): the ledger's readings judged on the host
/// by the same int8 model through the agent's own classify code (calibration included).
fn host_judgements(ledger: &[LedgerRecord], model: &Path) -> BTreeMap<(String, i64), (u64, u64)> {
    let mut classifier =
        hil_tests::skab_eval::load_classifier(model, &model.with_extension("json")).unwrap();
    let channels = classifier.recipe().channels().to_vec();
    let mut readings: Vec<_> = ledger
        .iter()
        .filter_map(|r| match r {
            LedgerRecord::Reading(r) => Some(r),
            _ => None,
        })
        .collect();
    readings.sort_by(|a, b| (&a.device, a.seq).cmp(&(&b.device, b.seq)));
    let mut out = BTreeMap::new();
    for chunk in readings.chunks(256) {
        let rows: Vec<(&str, Vec<f64>)> = chunk
            .iter()
            .map(|r| {
                let row = channels.iter().map(|c| r.values[c]).collect();
                (r.device.as_str(), row)
            })
            .collect();
        for (r, j) in chunk.iter().zip(classifier.judge(&rows).unwrap()) {
            if let Some(j) = j {
                let e = out
                    .entry((r.device.clone(), r.ts_ms - r.ts_ms.rem_euclid(WINDOW_MS)))
                    .or_insert((0, 0));
                e.0 += 1;
                e.1 += u64::from(j.alarm);
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aarch64_agent_under_qemu_ingests_judges_and_syncs() {
    let _serial = SERIAL.lock().await;
    if !common::skab_or_skip() {
        return;
    }
    let Some(qemu) = find_qemu() else {
        require_or_skip("qemu-aarch64 not found (apt-get install qemu-user)");
        return;
    };
    if !Path::new(SYSROOT)
        .join("lib/ld-linux-aarch64.so.1")
        .is_file()
    {
        require_or_skip(&format!(
            "no aarch64 libc at {SYSROOT} (apt-get install libc6-arm64-cross)"
        ));
        return;
    }
    let Some(agent_bin) = aarch64_agent_or_skip() else {
        return;
    };
    assert_aarch64_elf(&agent_bin);
    let size = std::fs::metadata(&agent_bin).unwrap().len();
    println!("aarch64 agent: {} ({size} bytes)", agent_bin.display());
    let Some(broker) = common::mosquitto_or_skip(Persistence::Off) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::start(&dir.path().join("sink"), "127.0.0.1:0");
    let config = agent_config(dir.path(), broker.port(), &sink.url);

    // The config judges sensors with the int8 model (and log lines with the int8 log model).
    let doc: toml::Table = std::fs::read_to_string(&config).unwrap().parse().unwrap();
    let model = PathBuf::from(doc["models"]["sensor"][0]["path"].as_str().unwrap());
    assert!(model.ends_with("sensor/student_int8.onnx"), "{model:?}");
    let log_model = doc["models"]["log"]["path"].as_str().unwrap();
    assert!(log_model.ends_with("log/student_int8.onnx"), "{log_model}");
    let client_id = doc["mqtt"]["client_id"].as_str().unwrap();
    let filters: Vec<String> = doc["mqtt"]["subscribe"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap().to_owned())
        .collect();
    open_session(&broker, client_id, &filters).await;

    let t0 = Instant::now();
    let qemu_args: Vec<OsString> = vec!["-L".into(), SYSROOT.into(), agent_bin.clone().into()];
    let agent = Agent::start_traced_under(&config, "info", &qemu, &qemu_args);
    let Some((_, running)) = agent
        .wait_line(0, LIMIT, |l| l.contains("edge-agent running"))
        .await
    else {
        panic!(
            "the aarch64 agent did not start under qemu; log:\n{}",
            tail(&agent.log(), 30)
        );
    };
    let started = t0.elapsed();
    println!("aarch64 agent running under qemu after {started:.1?}: {running}");
    let lines = agent.lines();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("sensor model loaded") && l.contains("student_int8.onnx")),
        "no int8 sensor model loaded:\n{}",
        lines.join("\n")
    );

    let ledger_path = dir.path().join("ledger.jsonl");
    let report = hil_tests::run(SimOptions {
        broker: broker.broker(),
        devices: 1,
        // valve1/0.csv first: a file with labelled anomalies, read in place.
        skab_dir: data_dir().join("SKAB/data/valve1"),
        max_rows_per_device: Some(ROWS),
        loghub: vec![data_dir().join("loghub/HDFS/HDFS_2k.log")],
        max_log_lines: Some(LOG_LINES),
        malformed: 1,
        ledger: Some(ledger_path.clone()),
        progress: false,
        ..SimOptions::default()
    })
    .await
    .unwrap();
    println!("{report}");
    let ledger = hil_tests::read_ledger(&ledger_path).unwrap();
    assert_eq!(report.readings, ROWS);

    // Ingest + sync: every sensor window exactly as the ledger implies.
    let check = CheckWait::new(&ledger, WINDOW_MS, ALPHA, LIMIT)
        .agent_log(&|| agent.log())
        .run(&sink)
        .await;
    println!("{check}");
    assert!(check.expected >= 100, "run too small: {check}");
    let synced = t0.elapsed();
    // The agent kept the session the test created (it did not need to re-subscribe).
    assert!(
        agent
            .lines()
            .iter()
            .any(|l| l.contains("mqtt connected") && l.contains("session_present=true")),
        "the agent did not resume its session:\n{}",
        tail(&agent.log(), 30)
    );

    // Classify: every row after calibration judged by the int8 model on aarch64, window
    // by window equal to the host's run of the same model on the same rows.
    let expected = host_judgements(&ledger, &model);
    let rows_judged: u64 = expected.values().map(|v| v.0).sum();
    assert_eq!(rows_judged, ROWS as u64 - CALIB_ROWS);
    let stored = wait_for("every judged window at the sink", LIMIT, || async {
        let all = fetch_windows(&sink.url, GATEWAY).await.ok()?;
        let judged: Vec<_> = all.into_iter().filter(|w| w.metric == "anomaly").collect();
        let have = judged.iter().map(|w| (w.device.clone(), w.start_ms));
        let have: std::collections::BTreeSet<_> = have.collect();
        expected.keys().all(|k| have.contains(k)).then_some(judged)
    })
    .await;
    let mut got = BTreeMap::new();
    for w in &stored {
        let v = w
            .verdict
            .unwrap_or_else(|| panic!("anomaly window without verdict: {w:?}"));
        assert_eq!(v.judged, w.count, "{w:?}");
        assert_eq!(v.anomalous, v.alarms > 0, "{w:?}");
        assert!((0.0..=1.0).contains(&v.confidence), "{w:?}");
        let prev = got.insert((w.device.clone(), w.start_ms), (v.judged, v.alarms));
        assert!(prev.is_none(), "judged window stored twice: {w:?}");
    }
    let alarms: u64 = got.values().map(|v| v.1).sum();
    println!(
        "{} judged windows, {rows_judged} rows judged on aarch64, {alarms} alarms \
         (host: {})",
        got.len(),
        expected.values().map(|v| v.1).sum::<u64>()
    );
    assert_eq!(got, expected, "aarch64 verdicts differ from the host's");

    // Bad input counted by reason; every log line stored and classified by the log model.
    let want = expected_counters(&ledger);
    let logs = logs_published(&ledger);
    assert_eq!(logs, LOG_LINES as u64);
    let (counters, stored_lines) = wait_for_counters(&sink.url, &want, logs, LIMIT).await;
    for (reason, n) in &want {
        assert_eq!(counters.get(reason), Some(n), "{reason}: {counters:?}");
    }
    assert_eq!(stored_lines, logs);
    let (classified, log_alerts) = log_lines_classified(&sink.url).await;
    assert_eq!(classified, logs, "log lines the log model judged");
    println!(
        "log lines: {logs} published, {classified} classified ({log_alerts} alerts); \
         counters {counters:?}"
    );
    println!(
        "timing under qemu: start-up {started:.1?}, ingest to all windows stored {:.1?}, \
         whole run {:.1?}",
        synced - started,
        t0.elapsed()
    );
}
