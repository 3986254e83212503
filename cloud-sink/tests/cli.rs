//! Runs the compiled `cloud-sink` binary: `check-config` on good and bad files,
//! `--help`, and a real start/stop via SIGTERM. Uses std::process only.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_cloud-sink");

#[test]
fn check_config_lists_every_problem_with_its_key_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        r#"
listen = "not-an-address"
data_dir = ""
[limits]
max_body_bytes = 0
[[gateways]]
id = "gw-1"
token_sha256 = "abc"
[[gateways]]
id = "gw-1"
token_sha256 = "7c43ef5ae21d43ce2743f770c68e24def1a43ee2f416d2438410c8af7af2ff2c"
[[gateways]]
id = "bad/id"
token_sha256 = "7c43ef5ae21d43ce2743f770c68e24def1a43ee2f416d2438410c8af7af2ff2c"
"#,
    )
    .unwrap();
    let out = Command::new(BIN)
        .arg("check-config")
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for expected in [
        "7 problem(s)",
        "listen: expected a socket address",
        "data_dir: must not be empty",
        "limits.max_body_bytes: must be between 1 and 8388608",
        "gateways[0].token_sha256: expected 64 hex characters",
        "gateways[1].id: duplicate gateway id \"gw-1\"",
        "gateways[2].id: \"bad/id\" must be 1-64 characters",
        // gateways[1] and [2] share a token hash: one credential, one gateway.
        "gateways[2].token_sha256: the same hash is listed twice",
    ] {
        assert!(
            stderr.contains(expected),
            "missing {expected:?} in:\n{stderr}"
        );
    }
    assert!(out.stdout.is_empty());
}

#[test]
fn check_config_reports_parse_errors_with_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("typo.toml");
    std::fs::write(
        &path,
        "listen = \"127.0.0.1:0\"\ndata_dir = \"d\"\nlisten_port = 3\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .arg("check-config")
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("typo.toml:3:"), "{stderr}");
    assert!(stderr.contains("listen_port"), "{stderr}");
}

#[test]
fn check_config_accepts_the_example() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../configs/cloud-sink.example.toml"
    );
    let out = Command::new(BIN)
        .arg("check-config")
        .arg(path)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The teacher models are loaded too, and named.
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!(
            "teacher for series \"anomaly\": 24 features\n\
             teacher for series \"log.alert\": 2054 features\nok: {path}\n"
        )
    );
}

#[test]
fn help_teaches_endpoints_and_examples() {
    let out = Command::new(BIN).arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "POST /v1/batches",
        "GET  /v1/series",
        "check-config",
        "Examples:",
        "--config",
    ] {
        assert!(help.contains(needle), "missing {needle:?} in help:\n{help}");
    }
}

#[test]
fn no_arguments_is_a_usage_error() {
    let out = Command::new(BIN).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[cfg(unix)]
#[test]
fn binary_prints_listening_line_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sink.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\ndata_dir = {:?}\n[[gateways]]\nid = \"gw\"\ntoken_sha256 = \"{}\"\n",
            dir.path().join("data").display().to_string(),
            "7c43ef5ae21d43ce2743f770c68e24def1a43ee2f416d2438410c8af7af2ff2c"
        ),
    )
    .unwrap();
    let mut child = Command::new(BIN)
        .arg("--config")
        .arg(&config)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("cloud-sink listening on http://")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
    let addr: std::net::SocketAddr = addr.parse().unwrap();
    assert_ne!(addr.port(), 0);
    std::net::TcpStream::connect(addr).expect("server accepts connections");

    let status = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
    let status = child.wait().unwrap();
    assert!(status.success(), "exit status after SIGTERM: {status}");
}
