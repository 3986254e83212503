//! Process harness for end-to-end tests: the real `edge-agent` and `cloud-sink`
//! binaries, started with generated configs, killed with SIGKILL when asked.
//!
//! It finds the binaries next to the test executable (`target/<profile>/`), and
//! builds them with cargo if they are missing. It does not judge results; the
//! checker in `hil_tests::checker` does.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

pub const GATEWAY: &str = "gw-e2e";
pub const TOKEN: &str = "e2e-token";

/// End-to-end tests share 2 cores; run them one at a time.
pub static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

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
}

impl Sink {
    /// Starts a sink on `listen` (use "127.0.0.1:0" the first time) storing in `dir`.
    pub fn start(dir: &Path, listen: &str) -> Sink {
        std::fs::create_dir_all(dir).unwrap();
        let config = dir.join("sink.toml");
        let hash = hex::encode(Sha256::digest(TOKEN.as_bytes()));
        std::fs::write(
            &config,
            format!(
                "listen = \"{listen}\"\ndata_dir = \"{}\"\n[[gateways]]\nid = \"{GATEWAY}\"\ntoken_sha256 = \"{hash}\"\n",
                dir.join("store").display()
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
        }
    }

    /// SIGKILL, and wait until it is gone.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The address it listened on (to restart on the same port).
    pub fn listen(&self) -> String {
        self.url.trim_start_matches("http://").to_owned()
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
}

/// Writes the agent config: the demo config with this test's broker, sink and dirs.
pub fn agent_config(dir: &Path, broker_port: u16, sink_url: &str) -> PathBuf {
    let demo =
        std::fs::read_to_string(hil_tests::workspace_root().join("configs/demo.toml")).unwrap();
    let mut doc: toml::Table = demo.parse().unwrap();
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
    uplink["retry_max"] = "1s".into();
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

impl Agent {
    pub fn start(config: &Path) -> Agent {
        let log = config.with_file_name("agent.log");
        let child = Command::new(binary("edge-agent", "edge-agent"))
            .arg("--config")
            .arg(config)
            .env("EDGE_TOKEN", TOKEN)
            .env("RUST_LOG", "info")
            .stdout(append_to(&log))
            .stderr(append_to(&log))
            .spawn()
            .expect("starting edge-agent");
        Agent {
            child,
            config: config.to_owned(),
            log,
        }
    }

    /// SIGKILL: no shutdown path runs.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the agent again with the same config and data.
    pub fn restart(&mut self) {
        self.kill9();
        *self = Agent::start(&self.config.clone());
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
