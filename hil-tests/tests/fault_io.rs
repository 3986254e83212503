//! Disk I/O errors under the real `edge-agent` (private Mosquitto, fleet-sim as a
//! library, the real `cloud-sink`), ending with the proof of no loss: every reading
//! the broker acknowledged stored once, every sensor window exact (0 missing, 0
//! duplicated, 0 unexpected, aggregates conserved), no `corrupt_record` counted.
//!
//! `io_errors_stop_acks_then_resume`: mid-run, every write and sync of the agent's
//! data directory starts failing with EIO (`write`, `pwrite`/`pwrite64`, `writev`,
//! `pwritev`, `fsync`, `fdatasync`, `sync_file_range`; the data never reaches the
//! file, as on a failing disk). The shim `fault_io/eio_shim.c` is compiled with `cc`
//! into the test's temp dir and preloaded (`LD_PRELOAD`) into the agent only; it
//! fails a call while a trigger file exists and the call's file descriptor points
//! under the data directory, so the agent's logs and sockets keep working. The
//! agent must not acknowledge what it could not commit (an acked reading whose
//! commit failed is gone from the broker and from the file: the checker would find
//! it missing), must say so clearly (the I/O error in its log, a non-zero exit),
//! and must not lose anything acknowledged before. It exits; the test restarts it
//! as `Restart=always` would, once while the disk still fails (it must exit again:
//! it cannot even open its store) and once after the fault is cleared (it must
//! recover and deliver everything, the broker redelivering what was never acked).
//! Had the agent kept running and retrying instead of exiting, the test would
//! accept that too (error logged, no exit), and clear the fault without a restart.
//! A life that exits must say why on its last line (`edge-agent: … Input/output
//! error …`), not panic.
//!
//! `sync_errors_stop_acks_then_resume`: the same with only `fsync` and `fdatasync`
//! failing (the writes land; the agent's own syncs of sled's log fail, sled's
//! `sync_file_range` still succeeds).
//!
//! Unprivileged: no mount, no device mapper. Skips (fails under
//! `EDGE_REQUIRE_SERVICES=1`) without SKAB data, Mosquitto or a C compiler. It does
//! not test reads failing, a failed fsync that drops dirty pages (the shim fails
//! the write itself), or the models (removed from the config).
//!
//! ```text
//! cargo build -p edge-agent -p cloud-sink && \
//!   cargo test -p hil-tests --test fault_io -- --nocapture
//! ```

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{agent_config, notable, tail, wait_for, wait_recovered, Agent, Sink, GATEWAY, SERIAL};
use hil_tests::mosquitto::require_or_skip;
use hil_tests::{data_dir, fetch_windows, SimOptions};

const DEVICES: usize = 3;
const WINDOW_MS: i64 = 60_000;
const ALPHA: f64 = 0.01;
/// SKAB sensor columns: one series each per device.
const SERIES_PER_DEVICE: usize = 8;
/// 3 devices × 2000 one-second rows at 200× (about 10 s of publishing).
const ROWS: usize = 2000;
const SPEEDUP: f64 = 200.0;
const START_LIMIT: Duration = Duration::from_secs(30);
/// How long the agent may take to notice the failing disk and stop.
const FAULT_LIMIT: Duration = Duration::from_secs(20);
const CHECK_LIMIT: Duration = Duration::from_secs(60);
/// How long the disk fails (fleet-sim goes on publishing; the broker keeps what the
/// agent does not ack).
const FAULT_FOR: Duration = Duration::from_secs(3);
/// The supervisor's pause before a restart (systemd's default `RestartSec`).
const RESTART_SEC: Duration = Duration::from_millis(100);
/// What the OS says for EIO; the agent's log must carry it.
const EIO_TEXT: &str = "Input/output error";

/// Compiles the shim into `dir`; `None` after a skip when there is no C compiler.
fn build_shim(dir: &Path) -> Option<PathBuf> {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fault_io/eio_shim.c");
    let out = dir.join("eio_shim.so");
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".to_owned());
    let built = Command::new(&cc)
        .args(["-shared", "-fPIC", "-O2", "-Wall", "-o"])
        .arg(&out)
        .arg(&source)
        .arg("-ldl")
        .output();
    match built {
        Err(e) => {
            require_or_skip(&format!(
                "no C compiler to build the EIO shim ({cc}: {e}); install gcc"
            ));
            None
        }
        Ok(o) if !o.status.success() => panic!(
            "{cc} failed on {}: {}",
            source.display(),
            String::from_utf8_lossy(&o.stderr)
        ),
        Ok(_) => Some(out),
    }
}

/// Windows the sink holds for our gateway.
async fn wait_for_windows(url: &str, n: usize) {
    wait_for(
        &format!("{n} windows at the sink"),
        Duration::from_secs(60),
        || async {
            let stored = fetch_windows(url, GATEWAY).await.map_or(0, |w| w.len());
            (stored >= n).then_some(())
        },
    )
    .await;
}

/// How one life of the agent met the failing disk.
enum Reaction {
    /// Exited with this status (text) and log.
    Exited(String, String),
    /// Still running after logging the error (retrying); its log.
    Retrying(String),
}

/// Waits until this life exits or at least logs the I/O error; `from` is the
/// log's length when the life started.
async fn reaction(agent: &mut Agent, from: usize) -> Reaction {
    if let Some(status) = agent.wait_exit(FAULT_LIMIT).await {
        let log = agent.log()[from..].to_owned();
        assert!(
            !status.success(),
            "the agent exited with {status} on a failing disk; it must exit non-zero so a \
             supervisor restarts it:\n{}",
            notable(&log).join("\n")
        );
        let exit_line = log
            .lines()
            .rev()
            .find(|l| l.starts_with("edge-agent:"))
            .unwrap_or("(no `edge-agent:` exit line)");
        assert!(
            exit_line.contains(EIO_TEXT) && !log.contains("panicked"),
            "the agent exited ({status}) without saying clearly that its store hit an I/O \
             error (exit line: {exit_line:?}):\n{}",
            notable(&log).join("\n")
        );
        return Reaction::Exited(status.to_string(), log);
    }
    let log = agent.log()[from..].to_owned();
    assert!(
        log.contains(EIO_TEXT),
        "{FAULT_LIMIT:?} into the fault the agent neither exited nor logged an I/O error:\n{}",
        tail(&log, 30)
    );
    Reaction::Retrying(log)
}

/// `eio_shim: EIO …` lines (what the shim injected) in `log`.
fn injected(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| l.starts_with("eio_shim: EIO"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn io_errors_stop_acks_then_resume() {
    // FAULT_IO_CALLS=fsync,…: only those calls fail.
    run(std::env::var("FAULT_IO_CALLS").ok()).await;
}

/// Writes land in the page cache, only the syncs fail (the error a failing disk
/// reports at writeback): the agent must report it as clearly as a failed write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_errors_stop_acks_then_resume() {
    run(Some("fsync,fdatasync".to_owned())).await;
}

async fn run(calls: Option<String>) {
    let _serial = SERIAL.lock().await;
    let Some((dir, broker)) = common::setup_or_skip() else {
        return;
    };
    let Some(shim) = build_shim(dir.path()) else {
        return;
    };
    let started = Instant::now();
    let sink = Sink::start(&dir.path().join("sink"), "127.0.0.1:0");
    let config = agent_config(dir.path(), broker.port(), &sink.url);
    let mut doc: toml::Table = std::fs::read_to_string(&config).unwrap().parse().unwrap();
    doc.remove("models");
    std::fs::write(&config, toml::to_string(&doc).unwrap()).unwrap();
    let data = PathBuf::from(doc["data_dir"].as_str().unwrap());
    std::fs::create_dir_all(&data).unwrap();
    // The shim compares what /proc/self/fd/N resolves to: the canonical path.
    let data = data.canonicalize().unwrap();
    let trigger = dir.path().join("eio-on");
    let mut env = vec![
        ("LD_PRELOAD", shim.display().to_string()),
        ("EIO_SHIM_PREFIX", data.display().to_string()),
        ("EIO_SHIM_TRIGGER", trigger.display().to_string()),
    ];
    if let Some(calls) = calls {
        println!("failing only: {calls}");
        env.push(("EIO_SHIM_CALLS", calls));
    }
    let mut agent = Agent::start_traced_with_env(&config, "info", &env);
    println!("start: {}", wait_recovered(&agent, START_LIMIT).await);
    let ledger = dir.path().join("ledger.jsonl");
    let sim = tokio::spawn(hil_tests::run(SimOptions {
        broker: broker.broker(),
        devices: DEVICES,
        skab_dir: data_dir().join("SKAB"),
        max_rows_per_device: Some(ROWS),
        speedup: SPEEDUP,
        ledger: Some(ledger.clone()),
        progress: false,
        ..SimOptions::default()
    }));
    let windows = DEVICES * SERIES_PER_DEVICE * ROWS / 60;
    wait_for_windows(&sink.url, windows / 5).await;

    // The disk starts failing.
    let mut offset = agent.log().len();
    std::fs::write(&trigger, b"").unwrap();
    let fault_on = Instant::now();
    println!(
        "{:.1}s: EIO on for every write and sync under {}",
        started.elapsed().as_secs_f64(),
        data.display()
    );
    let first = reaction(&mut agent, offset).await;
    assert!(
        !sim.is_finished(),
        "fleet-sim finished before the fault hit: make the run longer"
    );
    let mut restarts = 0;
    match &first {
        Reaction::Exited(status, log) => {
            println!(
                "the agent exited ({status}) {:.1}s into the fault:\n  {}\n  {}",
                fault_on.elapsed().as_secs_f64(),
                injected(log).join("\n  "),
                notable(log).join("\n  ")
            );
            assert!(
                log.contains(EIO_TEXT),
                "exited without reporting the I/O error:\n{}",
                tail(log, 30)
            );
            assert!(!injected(log).is_empty(), "the shim injected nothing");
            // Restart=always, for as long as the disk fails: each life must exit
            // non-zero again with the I/O error.
            while restarts == 0 || fault_on.elapsed() < FAULT_FOR {
                assert!(!sim.is_finished(), "fleet-sim finished during the fault");
                tokio::time::sleep(RESTART_SEC).await;
                offset = agent.log().len();
                agent.restart();
                restarts += 1;
                match reaction(&mut agent, offset).await {
                    Reaction::Exited(status, log) => {
                        if restarts == 1 {
                            println!(
                                "restarted on the failing disk, exited again ({status}):\n  {}",
                                notable(&log).join("\n  ")
                            );
                        }
                        assert!(
                            log.contains(EIO_TEXT),
                            "restart {restarts} exited ({status}) without reporting the I/O \
                             error:\n{}",
                            tail(&log, 30)
                        );
                    }
                    Reaction::Retrying(log) => {
                        println!(
                            "restarted on the failing disk, running and retrying:\n  {}",
                            notable(&log).join("\n  ")
                        );
                        break;
                    }
                }
            }
        }
        Reaction::Retrying(log) => {
            println!(
                "the agent keeps running and retrying {:.1}s into the fault:\n  {}",
                fault_on.elapsed().as_secs_f64(),
                notable(log).join("\n  ")
            );
            tokio::time::sleep(FAULT_FOR.saturating_sub(fault_on.elapsed())).await;
        }
    }

    // The disk recovers.
    std::fs::remove_file(&trigger).unwrap();
    let lasted = fault_on.elapsed();
    println!(
        "{:.1}s: fault cleared after {:.1}s; {restarts} restart(s) on the failing disk, each \
         exited non-zero with the I/O error",
        started.elapsed().as_secs_f64(),
        lasted.as_secs_f64(),
    );
    if agent.exit_status().is_some() {
        agent.restart();
        println!("restarted: {}", wait_recovered(&agent, START_LIMIT).await);
    }
    println!("{}", sim.await.unwrap().unwrap());
    let checked = common::assert_acked_stored_once(
        &sink,
        &|| agent.log(),
        &ledger,
        (WINDOW_MS, ALPHA),
        CHECK_LIMIT,
        windows / 2,
    )
    .await;
    let counters = common::sink_counters(&sink.url).await;
    println!(
        "EIO for {:.1}s ({restarts} restarts); {} readings acked by the broker, {} stored, \
         {} windows; 0 lost, 0 duplicated; redeliveries recognised (duplicate): {}; run took \
         {:.1}s",
        lasted.as_secs_f64(),
        checked.acked,
        checked.stored,
        checked.windows,
        counters.get("duplicate").copied().unwrap_or(0),
        started.elapsed().as_secs_f64()
    );
    assert!(
        agent.exit_status().is_none(),
        "the agent is not running after the fault cleared:\n{}",
        notable(&agent.log()).join("\n")
    );
}
