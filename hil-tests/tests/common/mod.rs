//! Process harness for end-to-end tests: the real `edge-agent` and `cloud-sink`
//! binaries, started with generated configs, killed with SIGKILL when asked, plus
//! the sink queries and ledger-vs-sink checks the fault tests share.
//!
//! It finds the binaries next to the test executable (`target/<profile>/`), and
//! builds them with cargo if they are missing (it does not rebuild stale ones:
//! run `cargo build -p edge-agent -p cloud-sink` after changing them). It does
//! not compute expected windows; the checker in `hil_tests::checker` does.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hil_tests::ledger::LedgerRecord;
use hil_tests::mosquitto::{require_or_skip, Mosquitto, Persistence};
use hil_tests::{check, data_dir, fetch_windows, fetch_windows_with, CheckReport, StoredWindow};

use sha2::{Digest, Sha256};

pub const GATEWAY: &str = "gw-e2e";
pub const TOKEN: &str = "e2e-token";

/// End-to-end tests share 2 cores; run them one at a time.
pub static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// `true` when the SKAB data set is there; otherwise [`require_or_skip`]: prints
/// `SKIP: …` and returns `false` (the test returns early), or fails the test under
/// `EDGE_REQUIRE_SERVICES=1`.
pub fn skab_or_skip() -> bool {
    let found = data_dir().join("SKAB").is_dir();
    if !found {
        require_or_skip(&format!("SKAB data not found at {}", data_dir().display()));
    }
    found
}

/// A private Mosquitto with `persistence`; `None` after [`require_or_skip`] when it
/// is not installed. Any other start failure is a real failure: it panics.
pub fn mosquitto_or_skip(persistence: Persistence) -> Option<Mosquitto> {
    match Mosquitto::start_with(persistence) {
        Ok(m) => Some(m),
        Err(e) if e.is_missing_service() => {
            require_or_skip(&format!("mosquitto: {e}"));
            None
        }
        Err(e) => panic!("mosquitto failed to start: {e}"),
    }
}

/// What most end-to-end tests start from: the SKAB data, a private Mosquitto
/// (no persistence) and a temp dir; `None` after a skip (see [`skab_or_skip`]).
pub fn setup_or_skip() -> Option<(tempfile::TempDir, Mosquitto)> {
    setup_or_skip_with(Persistence::Off)
}

/// [`setup_or_skip`] with the broker's `persistence`.
pub fn setup_or_skip_with(persistence: Persistence) -> Option<(tempfile::TempDir, Mosquitto)> {
    if !skab_or_skip() {
        return None;
    }
    let broker = mosquitto_or_skip(persistence)?;
    Some((tempfile::tempdir().unwrap(), broker))
}

/// Path of a workspace binary, building it first if needed.
pub fn binary(package: &str, name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps/..");
    let path = profile_dir.join(name);
    if !path.exists() {
        let cargo = option_env!("CARGO").unwrap_or("cargo");
        let status = Command::new(cargo)
            .args(["build", "-p", package, "--bin", name])
            .current_dir(hil_tests::workspace_root())
            .status()
            .expect("running cargo build");
        assert!(status.success(), "cargo build -p {package} failed");
    }
    assert!(path.exists(), "{} not found", path.display());
    path
}

/// A running cloud-sink process.
pub struct Sink {
    child: Child,
    pub url: String,
    config: PathBuf,
    log: PathBuf,
    /// What the test queries it with (trusts the test CA for an HTTPS sink).
    pub client: reqwest::Client,
}

/// The `[[gateways]]` entry of the test gateway with `TOKEN`'s hash.
pub fn gateway_section() -> String {
    let hash = hex::encode(Sha256::digest(TOKEN.as_bytes()));
    format!("[[gateways]]\nid = \"{GATEWAY}\"\ntoken_sha256 = \"{hash}\"\n")
}

impl Sink {
    /// Starts a sink on `listen` (use "127.0.0.1:0" the first time) storing in `dir`.
    pub fn start(dir: &Path, listen: &str) -> Sink {
        let root = hil_tests::workspace_root();
        let teachers = format!(
            "[[teachers]]\nseries = \"anomaly\"\npath = \"{}\"\n\
             [[teachers]]\nseries = \"log.alert\"\npath = \"{}\"\n",
            root.join("models/sensor/teacher.onnx").display(),
            root.join("models/log/teacher.onnx").display()
        );
        let tail = format!("{}{teachers}", gateway_section());
        Sink::start_configured(dir, listen, &tail, reqwest::Client::new())
    }

    /// Starts a sink whose config is `listen`, `data_dir` and then `tail` (gateways,
    /// limits, tls, …), queried through `client`.
    pub fn start_configured(dir: &Path, listen: &str, tail: &str, client: reqwest::Client) -> Sink {
        std::fs::create_dir_all(dir).unwrap();
        let config = dir.join("sink.toml");
        std::fs::write(
            &config,
            format!(
                "listen = \"{listen}\"\ndata_dir = \"{}\"\n{tail}",
                dir.join("store").display(),
            ),
        )
        .unwrap();
        let log = dir.join("sink.log");
        let mut child = Command::new(binary("cloud-sink", "cloud-sink"))
            .arg("--config")
            .arg(&config)
            .stdout(Stdio::piped())
            .stderr(append_to(&log))
            .spawn()
            .expect("starting cloud-sink");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = line
            .trim()
            .strip_prefix("cloud-sink listening on ")
            .unwrap_or_else(|| panic!("unexpected sink output {line:?}; log:\n{}", read(&log)))
            .to_owned();
        Sink {
            child,
            url,
            config,
            log,
            client,
        }
    }

    /// SIGKILL, and wait until it is gone.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The address it listened on (to restart on the same port).
    pub fn listen(&self) -> String {
        let url = self.url.trim_start_matches("https://");
        url.trim_start_matches("http://").to_owned()
    }

    /// A sink that is down: starts one in `dir` to learn a free port, then kills
    /// it. Returns (listen address, URL): give the URL to the agent, and the
    /// address to [`Sink::start`] when the sink should come back.
    pub fn down(dir: &Path) -> (String, String) {
        let mut sink = Sink::start(dir, "127.0.0.1:0");
        let found = (sink.listen(), sink.url.clone());
        sink.kill();
        found
    }

    pub fn log(&self) -> String {
        read(&self.log)
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A running edge-agent process.
pub struct Agent {
    child: Child,
    config: PathBuf,
    log: PathBuf,
    /// Extra environment of every life (e.g. `LD_PRELOAD`).
    env: Vec<(String, String)>,
    /// Set by [`Agent::start_traced`]: the `RUST_LOG` used, and this life's output lines.
    traced: Option<(String, LineTap)>,
    /// What runs the agent: `None` = the host `edge-agent`; else (program, its arguments
    /// before the agent's own), e.g. `qemu-aarch64 -L SYSROOT target/aarch64…/edge-agent`.
    launcher: Option<(PathBuf, Vec<std::ffi::OsString>)>,
}

/// The lines one agent process printed on stdout, each with the instant the test
/// read it, copied to the log file by a thread; waiters are woken per line.
struct LineTap {
    lines: Arc<Mutex<Vec<(Instant, String)>>>,
    count: tokio::sync::watch::Receiver<usize>,
    copier: Option<std::thread::JoinHandle<()>>,
}

impl LineTap {
    fn start(stdout: std::process::ChildStdout, log: &Path) -> LineTap {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, count) = tokio::sync::watch::channel(0);
        let mut file = append_to(log);
        let shared = Arc::clone(&lines);
        let copier = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = writeln!(file, "{line}");
                let mut all = shared.lock().unwrap();
                all.push((Instant::now(), line));
                let n = all.len();
                drop(all);
                tx.send_replace(n);
            }
        });
        LineTap {
            lines,
            count,
            copier: Some(copier),
        }
    }

    /// Waits until the pipe is closed and every line is copied.
    fn finish(&mut self) {
        if let Some(copier) = self.copier.take() {
            let _ = copier.join();
        }
    }
}

/// Writes the agent config: the demo config with this test's broker, sink and dirs.
pub fn agent_config(dir: &Path, broker_port: u16, sink_url: &str) -> PathBuf {
    let demo =
        std::fs::read_to_string(hil_tests::workspace_root().join("configs/demo.toml")).unwrap();
    let mut doc: toml::Table = demo.parse().unwrap();
    // Template mining stays off here: the fault tests count windows and log lines as
    // they always have; `template_restart.rs` turns it on for itself.
    doc.remove("templates");
    doc["gateway_id"] = GATEWAY.into();
    doc["data_dir"] = dir.join("agent-data").display().to_string().into();
    let mqtt = doc["mqtt"].as_table_mut().unwrap();
    mqtt["port"] = i64::from(broker_port).into();
    mqtt["client_id"] = format!("edge-agent-e2e-{}", std::process::id()).into();
    let window = doc["window"].as_table_mut().unwrap();
    window["idle_close"] = "2s".into();
    let uplink = doc["uplink"].as_table_mut().unwrap();
    uplink["url"] = sink_url.into();
    uplink["batch_interval"] = "200ms".into();
    // Counts alone are sent with every cut, as the tests wait for them (the
    // default, 60 s, is tested in edge-agent's counters_ride.rs).
    uplink.insert("counters_interval".into(), "200ms".into());
    uplink["retry_max"] = "1s".into();
    // The checker compares window values with the ledger's exactly (roll-ups
    // included); `end_to_end.rs` checks the default rounding on its own.
    uplink.insert("relative_error".into(), 0.0.into());
    // Model paths in demo.toml are relative to configs/; this config lives elsewhere.
    let configs = hil_tests::workspace_root().join("configs");
    if let Some(models) = doc.get_mut("models").and_then(|m| m.as_table_mut()) {
        for m in models
            .get_mut("sensor")
            .and_then(|s| s.as_array_mut())
            .into_iter()
            .flatten()
        {
            let t = m.as_table_mut().unwrap();
            let p = configs.join(t["path"].as_str().unwrap());
            t["path"] = p.display().to_string().into();
            // Escalation stays off here too (its counter would join the exact
            // counter checks); `escalation_sink_down.rs` turns it on for itself.
            t.remove("escalate_below");
        }
        if let Some(t) = models.get_mut("log").and_then(|l| l.as_table_mut()) {
            let p = configs.join(t["path"].as_str().unwrap());
            t["path"] = p.display().to_string().into();
        }
    }
    let path = dir.join("agent.toml");
    std::fs::write(&path, toml::to_string(&doc).unwrap()).unwrap();
    path
}

/// Sets `[table] key = value` in the agent config file at `config`.
pub fn set_agent_option(config: &Path, table: &str, key: &str, value: impl Into<toml::Value>) {
    let mut doc: toml::Table = std::fs::read_to_string(config).unwrap().parse().unwrap();
    doc[table]
        .as_table_mut()
        .unwrap()
        .insert(key.to_owned(), value.into());
    std::fs::write(config, toml::to_string(&doc).unwrap()).unwrap();
}

impl Agent {
    /// Starts the agent with `RUST_LOG=info`, output appended to `agent.log` next to `config`.
    pub fn start(config: &Path) -> Agent {
        Agent::spawn(config, None, Vec::new())
    }

    /// [`Agent::start`] with extra environment variables (kept across restarts).
    pub fn start_with_env(config: &Path, env: &[(&str, String)]) -> Agent {
        Agent::spawn(config, None, owned_env(env))
    }

    /// Like [`Agent::start`] with `RUST_LOG=rust_log`, and this process's stdout
    /// lines also kept in memory so a test can await them ([`Agent::wait_line`]).
    /// [`Agent::restart`] keeps the mode; lines are per process (life).
    pub fn start_traced(config: &Path, rust_log: &str) -> Agent {
        Agent::spawn(config, Some(rust_log), Vec::new())
    }

    /// [`Agent::start_traced`] with extra environment variables (kept across restarts).
    pub fn start_traced_with_env(config: &Path, rust_log: &str, env: &[(&str, String)]) -> Agent {
        Agent::spawn(config, Some(rust_log), owned_env(env))
    }

    /// [`Agent::start_traced`], run as `program args… --config FILE` instead of the host
    /// binary (e.g. an aarch64 `edge-agent` under `qemu-aarch64`); restarts keep it.
    pub fn start_traced_under(
        config: &Path,
        rust_log: &str,
        program: &Path,
        args: &[std::ffi::OsString],
    ) -> Agent {
        Agent::launch(
            config,
            Some(rust_log),
            Vec::new(),
            Some((program.to_owned(), args.to_vec())),
        )
    }

    fn spawn(config: &Path, traced: Option<&str>, env: Vec<(String, String)>) -> Agent {
        Agent::launch(config, traced, env, None)
    }

    fn launch(
        config: &Path,
        traced: Option<&str>,
        env: Vec<(String, String)>,
        launcher: Option<(PathBuf, Vec<std::ffi::OsString>)>,
    ) -> Agent {
        let log = config.with_file_name("agent.log");
        let mut command = match &launcher {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args);
                c
            }
            None => Command::new(binary("edge-agent", "edge-agent")),
        };
        command
            .arg("--config")
            .arg(config)
            .env("EDGE_TOKEN", TOKEN)
            .env("RUST_LOG", traced.unwrap_or("info"))
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stderr(append_to(&log));
        match traced {
            Some(_) => command.stdout(Stdio::piped()),
            None => command.stdout(append_to(&log)),
        };
        let mut child = command.spawn().expect("starting edge-agent");
        let traced = traced.map(|rust_log| {
            let tap = LineTap::start(child.stdout.take().unwrap(), &log);
            (rust_log.to_owned(), tap)
        });
        Agent {
            child,
            config: config.to_owned(),
            log,
            env,
            traced,
            launcher,
        }
    }

    /// SIGKILL: no shutdown path runs. Returns once the process is gone (and, when
    /// traced, every line it printed has been read).
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some((_, tap)) = &mut self.traced {
            tap.finish();
        }
    }

    /// Starts the agent again with the same config and data (and the same tracing
    /// and environment), as a supervisor (`Restart=always`) would.
    pub fn restart(&mut self) {
        self.kill9();
        let rust_log = self.traced.as_ref().map(|(r, _)| r.clone());
        *self = Agent::launch(
            &self.config,
            rust_log.as_deref(),
            self.env.clone(),
            self.launcher.clone(),
        );
    }

    /// This life's exit status, once it has exited on its own (or been killed).
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Waits (≤ `limit`) until this life exits on its own and returns its status;
    /// `None` if it is still running then. A traced agent is awaited on its stdout
    /// closing (no polling until then).
    pub async fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        if self.traced.is_some() {
            let _ = self.wait_line(usize::MAX, limit, |_| false).await;
        }
        loop {
            if let Some(status) = self.exit_status() {
                if let Some((_, tap)) = &mut self.traced {
                    tap.finish();
                }
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            // The pipe closes just before the process is reaped; no event for that.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Process id of this life.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn tap(&self) -> &LineTap {
        &self
            .traced
            .as_ref()
            .expect("only for agents started with start_traced")
            .1
    }

    /// This life's stdout lines so far (traced agents only).
    pub fn lines(&self) -> Vec<String> {
        let all = self.tap().lines.lock().unwrap();
        all.iter().map(|(_, l)| l.clone()).collect()
    }

    /// This life's stdout lines so far with the instant each was read (traced agents only).
    pub fn timed_lines(&self) -> Vec<(Instant, String)> {
        self.tap().lines.lock().unwrap().clone()
    }

    /// Number of lines this life printed so far (traced agents only).
    pub fn line_count(&self) -> usize {
        self.tap().lines.lock().unwrap().len()
    }

    /// When the last line matching `pred` was read, if any (traced agents only).
    pub fn last_line_at(&self, pred: impl Fn(&str) -> bool) -> Option<Instant> {
        let all = self.tap().lines.lock().unwrap();
        all.iter().rev().find(|(_, l)| pred(l)).map(|(t, _)| *t)
    }

    /// Waits for the first line at index `from` or later that matches `pred` and
    /// returns it with its index; `None` after `limit` or when the process exited
    /// first (traced agents only). Woken per line, no polling.
    pub async fn wait_line(
        &self,
        from: usize,
        limit: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> Option<(usize, String)> {
        let tap = self.tap();
        let mut count = tap.count.clone();
        let mut seen = from;
        let found = tokio::time::timeout(limit, async {
            loop {
                {
                    let all = tap.lines.lock().unwrap();
                    if let Some(i) = (seen..all.len()).find(|&i| pred(&all[i].1)) {
                        return Some((i, all[i].1.clone()));
                    }
                    seen = seen.max(all.len());
                }
                // Err: the copier ended (the process closed its stdout).
                if count.changed().await.is_err() {
                    let all = tap.lines.lock().unwrap();
                    return (seen..all.len())
                        .find(|&i| pred(&all[i].1))
                        .map(|i| (i, all[i].1.clone()));
                }
            }
        })
        .await;
        found.ok().flatten()
    }

    pub fn log(&self) -> String {
        read(&self.log)
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn owned_env(env: &[(&str, String)]) -> Vec<(String, String)> {
    env.iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect()
}

/// Opens a process log for appending (restarts add to the same file).
fn append_to(path: &Path) -> std::fs::File {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Replays SKAB as `devices` devices through `broker` with a ledger in `dir`,
/// prints fleet-sim's report and returns the ledger (what the broker acked).
pub async fn replay_skab(broker: &Mosquitto, devices: usize, dir: &Path) -> Vec<LedgerRecord> {
    let ledger = dir.join("ledger.jsonl");
    let report = hil_tests::run(hil_tests::SimOptions {
        broker: broker.broker(),
        devices,
        skab_dir: data_dir().join("SKAB"),
        ledger: Some(ledger.clone()),
        progress: false,
        ..hil_tests::SimOptions::default()
    })
    .await
    .unwrap();
    println!("{report}");
    hil_tests::read_ledger(&ledger).unwrap()
}

/// Value of `key=` in a tracing line (`… replayed=12 …`), if present and numeric.
pub fn field(line: &str, key: &str) -> Option<u64> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
        .and_then(|v| v.trim_matches(|c: char| !c.is_ascii_digit()).parse().ok())
}

/// The last `lines` lines of `text`.
pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Sensor windows only (log-line windows use gateway time, judgements carry verdicts).
pub fn sensor_windows(all: &[StoredWindow]) -> Vec<StoredWindow> {
    all.iter().filter(|w| w.is_raw_sensor()).cloned().collect()
}

/// Our gateway's entry in the sink's `/v1/gateways` (batches, last batch, counters).
pub async fn sink_gateway(sink_url: &str) -> Option<serde_json::Value> {
    let gateways: serde_json::Value = reqwest::get(format!("{sink_url}/v1/gateways"))
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    gateways
        .as_array()?
        .iter()
        .find(|g| g["id"] == GATEWAY)
        .cloned()
}

/// Every counter the sink summed for our gateway (empty before its first batch).
async fn all_sink_counters(sink_url: &str) -> BTreeMap<String, u64> {
    match sink_gateway(sink_url).await {
        Some(gw) => serde_json::from_value(gw["counters"].clone()).unwrap(),
        None => BTreeMap::new(),
    }
}

/// Input counters (rejects, drops, redactions) the sink summed for our gateway;
/// the agent's own health counts (`agent.*`) are left out, see [`sink_health`].
pub async fn sink_counters(sink_url: &str) -> BTreeMap<String, u64> {
    let mut counters = all_sink_counters(sink_url).await;
    counters.retain(|k, _| !k.starts_with(wire::HEALTH_PREFIX));
    counters
}

/// The agent's health counts (`agent.mqtt_errors`, …) the sink summed for our
/// gateway, without the `agent.` prefix.
pub async fn sink_health(sink_url: &str) -> BTreeMap<String, u64> {
    all_sink_counters(sink_url)
        .await
        .into_iter()
        .filter_map(|(k, v)| Some((k.strip_prefix(wire::HEALTH_PREFIX)?.to_owned(), v)))
        .collect()
}

/// The sink's ingest outcome counters (`stored`, `duplicate`, …) from `/v1/health`.
pub async fn sink_outcomes(sink_url: &str) -> BTreeMap<String, u64> {
    let health: serde_json::Value = reqwest::get(format!("{sink_url}/v1/health"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    serde_json::from_value(health["counters"].clone()).unwrap_or_default()
}

/// Reject reasons the ledger's injected bad messages should be counted under.
pub fn expected_counters(ledger: &[LedgerRecord]) -> BTreeMap<String, u64> {
    let mut m = BTreeMap::new();
    for r in ledger {
        if let LedgerRecord::Malformed(bad) = r {
            *m.entry(bad.reason.clone()).or_insert(0) += 1;
        }
    }
    m
}

/// Log-line messages in the ledger.
pub fn logs_published(ledger: &[LedgerRecord]) -> u64 {
    ledger
        .iter()
        .filter(|r| matches!(r, LedgerRecord::Log(_)))
        .count() as u64
}

/// Log lines the sink holds (sum of `log.line_bytes` window counts).
pub async fn log_lines_stored(sink_url: &str) -> u64 {
    let all = fetch_windows(sink_url, GATEWAY).await.unwrap();
    all.iter()
        .filter(|w| w.metric == "log.line_bytes")
        .map(|w| w.count)
        .sum()
}

/// Lines the log model classified (one severity class each) and lines it called alerts.
pub async fn log_lines_classified(sink_url: &str) -> (u64, u64) {
    let all = fetch_windows(sink_url, GATEWAY).await.unwrap();
    let sum = |f: &dyn Fn(&str) -> bool| -> f64 {
        all.iter().filter(|w| f(&w.metric)).map(|w| w.sum).sum()
    };
    let judged: u64 = all
        .iter()
        .filter(|w| w.metric == "log.confidence")
        .map(|w| w.count)
        .sum();
    assert_eq!(sum(&|m| m.starts_with("log.severity.")), judged as f64);
    (judged, sum(&|m| m == "log.alert") as u64)
}

/// Every judged (`anomaly`) window is stored once and carries a verdict that counts
/// no more alarms than rows; returns the rows judged.
pub async fn assert_judgements_once(sink_url: &str) -> u64 {
    let all = fetch_windows(sink_url, GATEWAY).await.unwrap();
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
    judged
}

/// Waits (≤ `limit`) until the sink's sensor windows, minus those `skip` rejects, match
/// what `ledger` implies exactly; then returns the report. Panics with both logs otherwise.
pub async fn wait_until_checked(
    sink: &Sink,
    agent_log: &dyn Fn() -> String,
    ledger: &[LedgerRecord],
    window_ms: i64,
    alpha: f64,
    limit: Duration,
    skip: &dyn Fn(&StoredWindow) -> bool,
) -> CheckReport {
    CheckWait::new(ledger, window_ms, alpha, limit)
        .skip(skip)
        .agent_log(agent_log)
        .run(sink)
        .await
}

/// The "wait until the checker passes" loop of the end-to-end tests: re-reads the
/// sink's raw sensor windows (a few times a second: the sink has no change feed)
/// until the checker finds them equal to what the ledger implies (0 missing, 0
/// duplicated, 0 unexpected, fields exact) and [`CheckWait::accept`] agrees, then
/// returns the report. After the limit it panics with the last report, the
/// [`CheckWait::context`], and the tails of the agent's and the sink's logs.
pub struct CheckWait<'a> {
    ledger: &'a [LedgerRecord],
    window_ms: i64,
    alpha: f64,
    relative_error: f64,
    limit: Duration,
    skip: &'a dyn Fn(&StoredWindow) -> bool,
    accept: &'a dyn Fn(&CheckReport) -> bool,
    agent_log: &'a dyn Fn() -> String,
    context: &'a dyn Fn() -> String,
}

impl<'a> CheckWait<'a> {
    pub fn new(ledger: &'a [LedgerRecord], window_ms: i64, alpha: f64, limit: Duration) -> Self {
        CheckWait {
            ledger,
            window_ms,
            alpha,
            relative_error: 0.0,
            limit,
            skip: &|_| false,
            accept: &|_| true,
            agent_log: &String::new,
            context: &String::new,
        }
    }

    /// Window values were rounded to within `relative_error` on the uplink.
    pub fn relative_error(mut self, relative_error: f64) -> Self {
        self.relative_error = relative_error;
        self
    }

    /// Stored windows to leave out of the comparison.
    pub fn skip(mut self, skip: &'a dyn Fn(&StoredWindow) -> bool) -> Self {
        self.skip = skip;
        self
    }

    /// A further condition on a clean report (e.g. roll-ups were seen).
    pub fn accept(mut self, accept: &'a dyn Fn(&CheckReport) -> bool) -> Self {
        self.accept = accept;
        self
    }

    /// The agent's log, shown (tail) on failure.
    pub fn agent_log(mut self, agent_log: &'a dyn Fn() -> String) -> Self {
        self.agent_log = agent_log;
        self
    }

    /// Anything else worth showing on failure (e.g. proxy statistics).
    pub fn context(mut self, context: &'a dyn Fn() -> String) -> Self {
        self.context = context;
        self
    }

    pub async fn run(self, sink: &Sink) -> CheckReport {
        let mut last = String::from("(the sink never answered)");
        let found = tokio::time::timeout(self.limit, async {
            loop {
                let fetched = fetch_windows_with(&sink.client, &sink.url, GATEWAY).await;
                if let Err(e) = &fetched {
                    last = format!("(no answer to check: {e})");
                }
                if let Ok(all) = fetched {
                    let stored: Vec<StoredWindow> = sensor_windows(&all)
                        .into_iter()
                        .filter(|w| !(self.skip)(w))
                        .collect();
                    let report = hil_tests::check_rounded(
                        self.ledger,
                        self.window_ms,
                        &stored,
                        self.alpha,
                        self.relative_error,
                    );
                    if report.is_ok() && (self.accept)(&report) {
                        return report;
                    }
                    last = report.to_string();
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        })
        .await;
        found.unwrap_or_else(|_| {
            let context = (self.context)();
            panic!(
                "sink never matched the ledger within {:?}; last check:\n{last}\n{context}{}\
                 --- agent log (tail):\n{}\n--- sink log (tail):\n{}",
                self.limit,
                if context.is_empty() { "" } else { "\n" },
                tail(&(self.agent_log)(), 40),
                tail(&sink.log(), 20)
            )
        })
    }
}

/// What [`assert_acked_stored_once`] found.
pub struct AckedCheck {
    /// Readings the broker acknowledged to fleet-sim (the ledger).
    pub acked: u64,
    /// Readings in the sensor windows the sink stored.
    pub stored: u64,
    /// Sensor windows the sink stored.
    pub windows: usize,
    pub report: CheckReport,
}

/// Proof of no loss for the fault tests: every reading the broker acknowledged is
/// stored once (a tally of readings first, so a failure says how many are gone),
/// then the checker: every sensor window exact (0 missing, 0 duplicated, 0
/// unexpected), at least `at_least` of them, and no `corrupt_record` counted.
/// `window` is (width in ms, sketch α). Panics with the agent's notable log lines.
pub async fn assert_acked_stored_once(
    sink: &Sink,
    agent_log: &dyn Fn() -> String,
    ledger: &Path,
    window: (i64, f64),
    limit: Duration,
    at_least: usize,
) -> AckedCheck {
    let (window_ms, alpha) = window;
    let ledger = hil_tests::read_ledger(ledger).unwrap();
    let acked: u64 = ledger
        .iter()
        .map(|r| match r {
            LedgerRecord::Reading(r) => r.values.len() as u64,
            _ => 0,
        })
        .sum();
    let url = sink.url.clone();
    // Once no window is missing, the counts are final (the sink stores a window once).
    let (windows, stored, report) =
        wait_for("every expected window at the sink", limit, || async {
            let all = fetch_windows(&url, GATEWAY).await.ok()?;
            let sensor = sensor_windows(&all);
            let report = check(&ledger, window_ms, &sensor, alpha);
            let stored: u64 = sensor.iter().map(|w| w.count).sum();
            (report.missing == 0).then_some((sensor.len(), stored, report))
        })
        .await;
    println!(
        "readings: {acked} acknowledged by the broker, {stored} in the {windows} sensor \
         windows stored"
    );
    assert_eq!(
        stored,
        acked,
        "acknowledged readings lost or stored twice; {report}\n--- agent log:\n{}",
        tail(&notable(&agent_log()).join("\n"), 30)
    );
    let report = CheckWait::new(&ledger, window_ms, alpha, limit)
        .agent_log(agent_log)
        .run(sink)
        .await;
    println!("{report}");
    assert!(
        report.expected >= at_least,
        "run too small to mean anything: {report}"
    );
    assert_eq!(
        (report.missing, report.duplicate, report.unexpected),
        (0, 0, 0)
    );
    let counters = sink_counters(&sink.url).await;
    assert_eq!(
        counters.get("corrupt_record").copied().unwrap_or(0),
        0,
        "the agent counted a loss of its own store: {counters:?}"
    );
    AckedCheck {
        acked,
        stored,
        windows,
        report,
    }
}

/// Lines of an agent log worth showing: errors, warnings, panics, `main`'s exit
/// message, start-up (not the per-batch lines, not backtrace frames).
pub fn notable(log: &str) -> Vec<&str> {
    const WANTED: [&str; 5] = [
        "ERROR",
        "WARN",
        "panicked",
        "edge-agent:",
        "store recovered",
    ];
    let lines: Vec<&str> = log.lines().collect();
    (0..lines.len())
        .filter(|&i| {
            // A panic's message is on the line after `panicked at`.
            WANTED.iter().any(|k| lines[i].contains(k))
                || (i > 0 && lines[i - 1].contains("panicked at"))
        })
        .map(|i| lines[i])
        .collect()
}

/// Waits (≤ `limit`) for this life's `store recovered` line (traced agents only);
/// panics with the log if it never comes.
pub async fn wait_recovered(agent: &Agent, limit: Duration) -> String {
    match agent
        .wait_line(0, limit, |l| l.contains("store recovered"))
        .await
    {
        Some((_, line)) => line,
        None => panic!(
            "the agent did not recover its store; log (tail):\n{}",
            tail(&agent.log(), 30)
        ),
    }
}

/// Waits (≤ `limit`) until the sink's counters reach `expected` (each at least) and it
/// holds at least `logs` log lines; returns both. Panics with what it last saw.
pub async fn wait_for_counters(
    sink_url: &str,
    expected: &BTreeMap<String, u64>,
    logs: u64,
    limit: Duration,
) -> (BTreeMap<String, u64>, u64) {
    let deadline = Instant::now() + limit;
    loop {
        let counters = sink_counters(sink_url).await;
        let lines = log_lines_stored(sink_url).await;
        let complete = expected
            .iter()
            .all(|(k, v)| counters.get(k).copied().unwrap_or(0) >= *v)
            && lines >= logs;
        if complete {
            return (counters, lines);
        }
        assert!(
            Instant::now() < deadline,
            "after {limit:?}: counters {counters:?}, want at least {expected:?}; \
             log lines {lines}, want at least {logs}"
        );
        // The sink has no change feed; re-read it a few times a second.
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Waits until the agent's broker has acknowledged its subscriptions: the broker keeps
/// nothing for a subscription that does not exist yet, so a replay published before this
/// may be lost on the agent's first start.
pub async fn wait_subscribed(agent: &Agent) {
    wait_for(
        "the agent to subscribe at the broker",
        Duration::from_secs(60),
        || async { agent.log().contains("mqtt subscribed").then_some(()) },
    )
    .await;
}

/// Polls `probe` every 200 ms until it returns `Some`, or panics with `what` after `limit`.
pub async fn wait_for<T, F, Fut>(what: &str, limit: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
