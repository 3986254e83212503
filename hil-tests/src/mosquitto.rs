//! Test harness that runs a private Mosquitto broker on a free loopback port, and the
//! skip-or-fail policy for tests whose external services are missing.
//!
//! It starts, kills (SIGKILL), stops (SIGTERM) and restarts the broker on the same port,
//! optionally with on-disk persistence and a second, TLS listener ([`TlsListener`]);
//! it does not publish or subscribe, and makes no certificates (`crate::certs` does).

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use thiserror::Error;

pub use crate::paths::{data_dir, workspace_root};

/// Env var: when `1`, a missing service fails the test instead of skipping it.
pub const REQUIRE_SERVICES_ENV: &str = "EDGE_REQUIRE_SERVICES";

/// How long the broker may take to accept connections.
const START_DEADLINE: Duration = Duration::from_secs(10);

/// Why the broker could not be started.
#[derive(Debug, Error)]
pub enum HarnessError {
    /// No `mosquitto` binary on PATH or in /usr/sbin.
    #[error(
        "mosquitto binary not found (PATH, /usr/sbin/mosquitto); install the `mosquitto` package"
    )]
    BinaryNotFound,
    /// Writing the config or spawning failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The broker exited or never accepted connections.
    #[error("mosquitto did not start: {reason}; log:\n{log}")]
    NotReady {
        /// What happened.
        reason: String,
        /// The broker's log so far.
        log: String,
    },
}

impl HarnessError {
    /// True when the service is simply not installed (a test may skip).
    pub fn is_missing_service(&self) -> bool {
        matches!(self, HarnessError::BinaryNotFound)
    }
}

/// A running Mosquitto; killed on drop.
#[derive(Debug)]
pub struct Mosquitto {
    child: Option<Child>,
    binary: PathBuf,
    port: u16,
    dir: tempfile::TempDir,
    persistent: bool,
    tls_port: Option<u16>,
}

/// A TLS listener beside the plain one (PEM files; they must be readable by the
/// `mosquitto` user, which a broker started as root switches to).
#[derive(Debug, Clone)]
pub struct TlsListener {
    pub cafile: PathBuf,
    pub certfile: PathBuf,
    pub keyfile: PathBuf,
    /// mTLS: clients must present a certificate signed by `cafile`.
    pub require_certificate: bool,
}

impl TlsListener {
    fn config_text(&self, port: u16) -> String {
        format!(
            "listener {port} 127.0.0.1\n\
             cafile {}\n\
             certfile {}\n\
             keyfile {}\n\
             require_certificate {}\n",
            self.cafile.display(),
            self.certfile.display(),
            self.keyfile.display(),
            self.require_certificate
        )
    }
}

/// How the broker keeps sessions and queued messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Persistence {
    /// In memory only (`persistence false`): a restart forgets every session.
    #[default]
    Off,
    /// `persistence true` with the database in the broker's temp dir, saved after
    /// every change (`autosave_on_changes true`, `autosave_interval 1`) and on a
    /// clean stop. Mosquitto writes the database as a snapshot from its main loop,
    /// after it has already sent the PUBACKs of that loop iteration: a SIGKILL can
    /// still lose the newest messages it acknowledged. A SIGTERM loses nothing.
    Saved,
}

/// Finds the `mosquitto` executable.
pub fn find_binary() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("mosquitto"))
            .find(|p| p.is_file())
    });
    on_path.or_else(|| {
        ["/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"]
            .iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())
    })
}

/// A port that was free a moment ago on 127.0.0.1.
fn free_port() -> std::io::Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(listener.local_addr()?.port())
}

fn config_text(port: u16, log: &Path, persistence: Persistence) -> String {
    let persistence = match persistence {
        Persistence::Off => "persistence false\n".to_owned(),
        Persistence::Saved => {
            let dir = log.parent().unwrap_or(Path::new("."));
            format!(
                "persistence true\n\
                 persistence_location {}/\n\
                 persistence_file mosquitto.db\n\
                 # Save after every change, not every 30 minutes (see `man mosquitto.conf`).\n\
                 autosave_interval 1\n\
                 autosave_on_changes true\n",
                dir.display()
            )
        }
    };
    format!(
        "# Written by hil-tests' Mosquitto harness.\n\
         listener {port} 127.0.0.1\n\
         allow_anonymous true\n\
         {persistence}\
         # 0 = no limit (mosquitto 2.x): a slow test subscriber must not lose QoS 1 messages.\n\
         max_queued_messages 0\n\
         max_inflight_messages 1000\n\
         message_size_limit 0\n\
         log_dest file {}\n\
         log_type error\n\
         log_type warning\n\
         log_type notice\n",
        log.display()
    )
}

fn spawn(binary: &Path, config: &Path) -> Result<Child, HarnessError> {
    Command::new(binary)
        .arg("-c")
        .arg(config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|source| HarnessError::Io {
            what: format!("spawn {}", binary.display()),
            source,
        })
}

/// Polls until `port` accepts connections, the child exits, or the deadline passes.
fn wait_ready(child: &mut Child, port: u16) -> Result<(), String> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let deadline = Instant::now() + START_DEADLINE;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("exited with {status}"));
        }
        if TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "port {port} not accepting after {START_DEADLINE:?}"
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Mosquitto {
    /// Starts a broker on a free port and waits (≤ 10 s) until it accepts TCP connections.
    pub fn start() -> Result<Mosquitto, HarnessError> {
        Mosquitto::start_with(Persistence::Off)
    }

    /// [`Mosquitto::start`] with the given persistence.
    pub fn start_with(persistence: Persistence) -> Result<Mosquitto, HarnessError> {
        Mosquitto::start_inner(persistence, None)
    }

    /// [`Mosquitto::start`] with a TLS listener on a second free port ([`Mosquitto::tls_port`]).
    pub fn start_tls(tls: &TlsListener) -> Result<Mosquitto, HarnessError> {
        Mosquitto::start_inner(Persistence::Off, Some(tls))
    }

    fn start_inner(
        persistence: Persistence,
        tls: Option<&TlsListener>,
    ) -> Result<Mosquitto, HarnessError> {
        let binary = find_binary().ok_or(HarnessError::BinaryNotFound)?;
        let io = |what: &str| {
            let what = what.to_owned();
            move |source| HarnessError::Io { what, source }
        };
        let dir = tempfile::tempdir().map_err(io("create tempdir"))?;
        // Started as root, mosquitto drops to its own user before it opens the log and the
        // persistence database: that user must be able to write the (0700) temp dir.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777))
            .map_err(io("chmod tempdir"))?;
        let log = dir.path().join("mosquitto.log");
        let config = dir.path().join("mosquitto.conf");
        // The port could be taken between probing and binding; retry a few times.
        let mut attempt = 0;
        loop {
            attempt += 1;
            let port = free_port().map_err(io("find a free port"))?;
            let mut text = config_text(port, &log, persistence);
            let tls_port = match tls {
                Some(tls) => {
                    let tls_port = free_port().map_err(io("find a free port"))?;
                    text.push_str(&tls.config_text(tls_port));
                    Some(tls_port)
                }
                None => None,
            };
            std::fs::write(&config, text).map_err(io("write config"))?;
            let mut child = spawn(&binary, &config)?;
            match wait_ready(&mut child, port) {
                Ok(()) => {
                    return Ok(Mosquitto {
                        child: Some(child),
                        binary,
                        port,
                        dir,
                        persistent: persistence == Persistence::Saved,
                        tls_port,
                    })
                }
                Err(reason) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    if attempt >= 3 {
                        let log = std::fs::read_to_string(&log).unwrap_or_default();
                        return Err(HarnessError::NotReady { reason, log });
                    }
                }
            }
        }
    }

    /// Kills the broker (like a crash: no clean shutdown). [`Mosquitto::restart`] brings
    /// it back on the same port.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the broker with SIGTERM and waits for it to exit: a clean shutdown, which
    /// saves the persistence database when there is one.
    pub fn terminate(&mut self) -> Result<(), HarnessError> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let sent = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        match sent {
            Ok(status) if status.success() => {}
            Ok(status) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(HarnessError::Io {
                    what: "kill -TERM mosquitto".into(),
                    source: std::io::Error::other(format!("kill exited with {status}")),
                });
            }
            Err(source) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(HarnessError::Io {
                    what: "run kill -TERM".into(),
                    source,
                });
            }
        }
        child.wait().map_err(|source| HarnessError::Io {
            what: "wait for mosquitto".into(),
            source,
        })?;
        Ok(())
    }

    /// Kills the broker if running and starts it again on the same port and config.
    /// Without persistence, sessions and queued messages are lost; with
    /// [`Persistence::Saved`] it reloads the database saved last.
    pub fn restart(&mut self) -> Result<(), HarnessError> {
        self.kill();
        let config = self.dir.path().join("mosquitto.conf");
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            let mut child = spawn(&self.binary, &config)?;
            match wait_ready(&mut child, self.port) {
                Ok(()) => {
                    self.child = Some(child);
                    return Ok(());
                }
                // The old socket may linger briefly; retry until the deadline.
                Err(reason) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    if Instant::now() > deadline {
                        let log = self.log();
                        return Err(HarnessError::NotReady { reason, log });
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
    }

    /// The broker's TCP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The TLS listener's port, when started with [`Mosquitto::start_tls`].
    pub fn tls_port(&self) -> Option<u16> {
        self.tls_port
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// `127.0.0.1:PORT` as a string, as `--broker` takes it.
    pub fn broker(&self) -> String {
        self.addr().to_string()
    }

    /// The persistence database file (exists only with [`Persistence::Saved`], once saved).
    pub fn persistence_file(&self) -> Option<PathBuf> {
        self.persistent
            .then(|| self.dir.path().join("mosquitto.db"))
    }

    /// The broker's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("mosquitto.log")).unwrap_or_default()
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Decides what a test does when a service it needs is missing. With
/// `EDGE_REQUIRE_SERVICES=1` it panics (the test fails) with `what`; otherwise it prints
/// `SKIP: <what>` to stderr and returns `false` so the test can return early and pass.
///
/// Use: `let Ok(broker) = Mosquitto::start() else { … }` or
/// `if !require_or_skip("mosquitto not installed") { return; }`.
pub fn require_or_skip(what: &str) -> bool {
    if std::env::var(REQUIRE_SERVICES_ENV).is_ok_and(|v| v == "1") {
        panic!("required service missing ({REQUIRE_SERVICES_ENV}=1): {what}");
    }
    eprintln!("SKIP: {what}");
    false
}

/// Starts Mosquitto for a test: `Some(broker)`, or `None` after [`require_or_skip`] when it is
/// not installed. Other start failures panic (they are real failures).
pub fn start_or_skip() -> Option<Mosquitto> {
    match Mosquitto::start() {
        Ok(broker) => Some(broker),
        Err(e) if e.is_missing_service() => {
            require_or_skip(&e.to_string());
            None
        }
        Err(e) => panic!("{e}"),
    }
}
