//! For `pg_tls.rs`: test certificates made with rcgen (`pki.rs`: a CA, server
//! certificates valid, expired or for another name, client certificates from
//! that CA and from another), and a throw-away PostgreSQL cluster started from
//! the machine's server binaries (initdb + pg_ctl) with TLS as a test asks,
//! stopped by a Drop guard (`pg_ctl stop -m immediate`) even when a test panics.
//!
//! It asserts nothing. No server binaries is a skip (`SKIP: …`) unless
//! `EDGE_REQUIRE_SERVICES=1`. As root, initdb and postgres run as the
//! `postgres` user (or `nobody`) through `runuser`, in a directory that user owns.
#![allow(dead_code)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

mod pki;

pub use pki::{CertFiles, Pki};

/// How the test server speaks TLS.
#[derive(Debug, Clone, Copy)]
pub enum ServerTls<'a> {
    /// `ssl = off`; `host … trust` for 127.0.0.1.
    Off,
    /// `ssl = on` with `cert`; `hostssl … trust` only (plain TCP has no hba line).
    On { cert: &'a CertFiles },
    /// As `On`, and `hostssl … cert`: a client certificate from `client_ca`
    /// whose CN is the user name.
    ClientCert {
        cert: &'a CertFiles,
        client_ca: &'a Path,
    },
}

/// The directory of initdb, pg_ctl and postgres: `pg_config --bindir`, else
/// the newest `/usr/lib/postgresql/*/bin`.
fn bindir() -> Option<PathBuf> {
    let has_server = |d: &Path| d.join("initdb").is_file() && d.join("pg_ctl").is_file();
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if out.status.success() && has_server(&dir) {
            return Some(dir);
        }
    }
    let mut dirs: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            Some((version, e.path().join("bin")))
        })
        .filter(|(_, d)| has_server(d))
        .collect();
    dirs.sort();
    dirs.pop().map(|(_, d)| d)
}

fn id(args: &[&str]) -> Option<u32> {
    let out = Command::new("id").args(args).output().ok()?;
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

/// A running throw-away cluster on 127.0.0.1:`port`; stopped on drop.
#[derive(Debug)]
pub struct PgServer {
    pub port: u16,
    /// The directory of its Unix socket (for the admin connection).
    pub socket_dir: PathBuf,
    bindir: PathBuf,
    data: PathBuf,
    log: PathBuf,
    /// The user initdb, pg_ctl and postgres run as, when the tests run as root.
    run_as: Option<String>,
    _dir: tempfile::TempDir,
}

impl PgServer {
    /// initdb, configure and start a cluster with `tls`; `None` after
    /// `require_or_skip` when this machine has no PostgreSQL server binaries.
    pub fn start_or_skip(tls: ServerTls<'_>) -> Option<PgServer> {
        let Some(bindir) = bindir() else {
            super::pg_common::require_or_skip(
                "no PostgreSQL server binaries (pg_config --bindir, /usr/lib/postgresql/*/bin)",
            );
            return None;
        };
        let run_as = if id(&["-u"]) == Some(0) {
            let user = ["postgres", "nobody"]
                .into_iter()
                .find(|u| id(&["-u", u]).is_some());
            let Some(user) = user.filter(|_| {
                Path::new("/usr/sbin/runuser").exists() || Path::new("/sbin/runuser").exists()
            }) else {
                super::pg_common::require_or_skip(
                    "running as root without runuser and a postgres or nobody user",
                );
                return None;
            };
            Some(user.to_owned())
        } else {
            None
        };
        let dir = tempfile::tempdir().unwrap();
        let server = PgServer {
            port: free_port(),
            socket_dir: dir.path().to_owned(),
            bindir,
            data: dir.path().join("data"),
            log: dir.path().join("server.log"),
            run_as,
            _dir: dir,
        };
        server.chown(&server.socket_dir);
        server.run(
            "initdb",
            &[
                "-D",
                path(&server.data),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        );
        server.configure(tls);
        server.run(
            "pg_ctl",
            &[
                "-D",
                path(&server.data),
                "-l",
                path(&server.log),
                "-W",
                "start",
            ],
        );
        server.wait_ready();
        Some(server)
    }

    /// `postgres://postgres@127.0.0.1:PORT/postgres` (no password: trust or cert auth).
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// A superuser connection over the Unix socket (no TLS, `local … trust`).
    pub async fn admin(&self) -> tokio_postgres::Client {
        let mut config = tokio_postgres::Config::new();
        config
            .host_path(&self.socket_dir)
            .port(self.port)
            .user("postgres")
            .dbname("postgres");
        let (client, connection) = config.connect(tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(connection);
        client
    }

    fn configure(&self, tls: ServerTls<'_>) {
        let mut conf = format!(
            "\nlisten_addresses = '127.0.0.1'\nport = {}\nunix_socket_directories = '{}'\n\
             fsync = off\nmax_connections = 30\n",
            self.port,
            self.socket_dir.display()
        );
        let mut hba = String::from("local all all trust\n");
        let (cert, client_ca) = match tls {
            ServerTls::Off => {
                conf.push_str("ssl = off\n");
                hba.push_str("host all all 127.0.0.1/32 trust\n");
                (None, None)
            }
            ServerTls::On { cert } => {
                hba.push_str("hostssl all all 127.0.0.1/32 trust\n");
                (Some(cert), None)
            }
            ServerTls::ClientCert { cert, client_ca } => {
                hba.push_str("hostssl all all 127.0.0.1/32 cert\n");
                (Some(cert), Some(client_ca))
            }
        };
        if let Some(cert) = cert {
            // In the data directory, owned by the server's user; the key 0600.
            self.install(&cert.cert, "server.crt", 0o644);
            self.install(&cert.key, "server.key", 0o600);
            conf.push_str("ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n");
        }
        if let Some(ca) = client_ca {
            self.install(ca, "root.crt", 0o644);
            conf.push_str("ssl_ca_file = 'root.crt'\n");
        }
        let conf_path = self.data.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf_path).unwrap();
        text.push_str(&conf);
        std::fs::write(&conf_path, text).unwrap();
        std::fs::write(self.data.join("pg_hba.conf"), hba).unwrap();
    }

    fn install(&self, from: &Path, name: &str, mode: u32) {
        let to = self.data.join(name);
        std::fs::copy(from, &to).unwrap();
        std::fs::set_permissions(&to, std::fs::Permissions::from_mode(mode)).unwrap();
        self.chown(&to);
    }

    fn chown(&self, path: &Path) {
        if let Some(user) = &self.run_as {
            let (uid, gid) = (id(&["-u", user]), id(&["-g", user]));
            std::os::unix::fs::chown(path, uid, gid).unwrap();
        }
    }

    /// Runs a server program from `bindir` (as `run_as`, if set).
    fn command(&self, program: &str, args: &[&str]) -> Command {
        let program = self.bindir.join(program);
        let mut cmd = match &self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(program);
                c
            }
            None => Command::new(program),
        };
        cmd.args(args);
        cmd
    }

    fn run(&self, program: &str, args: &[&str]) -> Output {
        let out = self.command(program, args).output().unwrap();
        assert!(
            out.status.success(),
            "{program} {args:?} failed: {}{}\nserver log:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
        out
    }

    /// Polls `pg_isready` until the server accepts connections (30 s at most).
    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let port = self.port.to_string();
        loop {
            let ready = self
                .command(
                    "pg_isready",
                    &[
                        "-q",
                        "-h",
                        "127.0.0.1",
                        "-p",
                        &port,
                        "-U",
                        "postgres",
                        "-d",
                        "postgres",
                    ],
                )
                .status()
                .is_ok_and(|s| s.success());
            if ready {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "PostgreSQL did not become ready in 30 s; log:\n{}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let data = self.data.display().to_string();
        let _ = self
            .command("pg_ctl", &["-D", &data, "stop", "-m", "immediate"])
            .output();
    }
}

fn path(p: &Path) -> &str {
    p.to_str().expect("UTF-8 temp path")
}

/// A port nothing listens on right now.
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}
