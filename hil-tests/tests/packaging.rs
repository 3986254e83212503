//! The amd64 .deb, built by `edge-agent/packaging/build-deb.sh` from the debug binary the
//! test run already built: `dpkg-deb --info` shows the unit's scripts and the config as a
//! conffile; unpacked into a temporary root, the unit's own command starts with `--help`, its
//! pre-start check accepts the packaged config, the packaged models load with that config, and
//! `systemd-analyze verify` (where installed) finds no unknown or invalid directive.
//! The arm64 .deb (Pi 4/5, Jetson), built the same way from the aarch64 debug binary
//! `scripts/test.sh` cross-builds, carries the same unit and conffile for `Architecture: arm64`,
//! and its unpacked binary starts with `--help` under `qemu-aarch64`.
//! It does not install into the system or start the service (no systemd in a test).

use std::path::{Path, PathBuf};
use std::process::Command;

use edge_agent::classify::ClassifyStage;
use edge_agent::config::AgentConfig;
use hil_tests::mosquitto::require_or_skip;
use hil_tests::paths::workspace_root;

fn have(tool: &str) -> bool {
    Command::new(tool).arg("--version").output().is_ok()
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{cmd:?} failed:\n{text}");
    text
}

/// The unit's `key=` value (first occurrence).
fn unit_value<'a>(unit: &'a str, key: &str) -> &'a str {
    unit.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("{key}= missing from the unit"))
}

/// A unit command line with its absolute paths moved under `root`.
fn command_under(root: &Path, line: &str) -> Command {
    let mut words = line.split_whitespace().map(|w| match w.strip_prefix('/') {
        Some(rel) => root.join(rel).into_os_string(),
        None => w.into(),
    });
    let mut cmd = Command::new(words.next().expect("a command"));
    cmd.args(words);
    cmd
}

/// Whether dpkg-deb and cargo-deb are here; else skips (or fails under
/// `EDGE_REQUIRE_SERVICES=1`).
fn deb_tools_or_skip() -> bool {
    (have("dpkg-deb") && have("cargo-deb"))
        || require_or_skip("dpkg-deb and cargo-deb (cargo install cargo-deb --locked)")
}

/// Packages the debug binary already built (`extra` picks a `--target`) and
/// checks what `dpkg-deb --info` says of it; returns the .deb.
fn build_deb(extra: &[&str], arch: &str) -> PathBuf {
    let script = workspace_root().join("edge-agent/packaging/build-deb.sh");
    let out = Command::new(&script)
        .arg("--no-build")
        .args(extra)
        .env("PROFILE", "dev")
        .output()
        .expect("running build-deb.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "build-deb.sh failed:\n{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The script prints the package's path last on stdout (cargo-deb's chatter is on stderr).
    let deb = PathBuf::from(
        stdout
            .lines()
            .last()
            .expect("the script prints the .deb path"),
    );
    assert!(deb.is_file(), "{}", deb.display());

    let info = run(Command::new("dpkg-deb").arg("--info").arg(&deb));
    println!("{info}");
    for needed in [
        "Package: edge-agent",
        &format!("Architecture: {arch}"),
        "conffiles",
        "postinst",
    ] {
        assert!(info.contains(needed), "dpkg-deb --info lacks {needed:?}");
    }
    deb
}

#[test]
fn the_arm64_deb_carries_an_aarch64_agent_that_starts_under_qemu() {
    const TARGET: &str = "aarch64-unknown-linux-gnu";
    if !deb_tools_or_skip() {
        return;
    }
    let binary = workspace_root()
        .join("target")
        .join(TARGET)
        .join("debug/edge-agent");
    let target_dir = std::env::var_os("CARGO_TARGET_DIR");
    if target_dir.is_some() || !binary.is_file() {
        require_or_skip(&format!(
            "{} (scripts/test.sh cross-builds it; CARGO_TARGET_DIR not supported here)",
            binary.display()
        ));
        return;
    }
    if !have("qemu-aarch64") && !require_or_skip("qemu-aarch64 (Debian qemu-user)") {
        return;
    }
    let deb = build_deb(&["--target", TARGET], "arm64");
    let root = tempfile::tempdir().unwrap();
    run(Command::new("dpkg-deb")
        .arg("-x")
        .arg(&deb)
        .arg(root.path()));
    for path in [
        "usr/lib/systemd/system/edge-agent.service",
        "etc/edge-agent/agent.toml",
        "usr/share/edge-agent/models/sensor/student_int8.onnx",
    ] {
        assert!(root.path().join(path).is_file(), "package lacks {path}");
    }
    let help = run(Command::new("qemu-aarch64")
        .args(["-L", "/usr/aarch64-linux-gnu"])
        .arg(root.path().join("usr/bin/edge-agent"))
        .arg("--help"));
    assert!(help.contains("Usage: edge-agent"), "{help}");
}

#[test]
fn the_deb_carries_the_unit_and_config_and_its_command_starts() {
    if !deb_tools_or_skip() {
        return;
    }
    let deb = build_deb(&[], "amd64");
    let listing = run(Command::new("dpkg-deb").arg("--contents").arg(&deb));
    for path in [
        "./usr/bin/edge-agent",
        "./usr/lib/systemd/system/edge-agent.service",
        "./etc/edge-agent/agent.toml",
        "./usr/share/edge-agent/models/sensor/student_int8.onnx",
        "./usr/share/edge-agent/models/log/student_int8.onnx",
    ] {
        assert!(listing.contains(path), "package lacks {path}");
    }
    let control = tempfile::tempdir().unwrap();
    run(Command::new("dpkg-deb")
        .arg("-e")
        .arg(&deb)
        .arg(control.path()));
    let conffiles = std::fs::read_to_string(control.path().join("conffiles")).unwrap();
    assert!(
        conffiles.contains("/etc/edge-agent/agent.toml"),
        "{conffiles}"
    );
    let postinst = std::fs::read_to_string(control.path().join("postinst")).unwrap();
    assert!(postinst.contains("edge-agent.service"), "{postinst}");

    // Install into a temporary root.
    let root = tempfile::tempdir().unwrap();
    run(Command::new("dpkg-deb")
        .arg("-x")
        .arg(&deb)
        .arg(root.path()));
    let unit_path = root
        .path()
        .join("usr/lib/systemd/system/edge-agent.service");
    let unit = std::fs::read_to_string(&unit_path).unwrap();
    for hardening in [
        "DynamicUser=yes",
        "StateDirectory=edge-agent",
        "Restart=always",
        "MemoryMax=",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
    ] {
        assert!(unit.contains(hardening), "unit lacks {hardening}");
    }

    // The unit's command, with --help: it teaches and exits 0.
    let help = run(command_under(root.path(), unit_value(&unit, "ExecStart")).arg("--help"));
    assert!(help.contains("Usage: edge-agent"), "{help}");

    // The pre-start check, on the packaged config with /usr/share moved under the root.
    let config_text = std::fs::read_to_string(root.path().join("etc/edge-agent/agent.toml"))
        .unwrap()
        .replace(
            "/usr/share/edge-agent/",
            &format!("{}/usr/share/edge-agent/", root.path().display()),
        );
    let config = root.path().join("etc/edge-agent/agent.rooted.toml");
    std::fs::write(&config, &config_text).unwrap();
    let pre = unit_value(&unit, "ExecStartPre").replace(
        "/etc/edge-agent/agent.toml",
        "/etc/edge-agent/agent.rooted.toml",
    );
    let checked = run(&mut command_under(root.path(), &pre));
    assert!(checked.starts_with("ok:"), "{checked}");
    // ... and the packaged models load in tract and match their sidecars.
    let settings = AgentConfig::parse(&config_text)
        .unwrap()
        .validate()
        .unwrap();
    assert!(!settings.models.sensor.is_empty() && settings.models.log.is_some());
    ClassifyStage::load(&settings.models).expect("packaged models load");

    if have("systemd-analyze") {
        let out = Command::new("systemd-analyze")
            .arg("verify")
            .arg(&unit_path)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stderr);
        // The only complaint allowed: /usr/bin/edge-agent is not on this host.
        let problems: Vec<&str> = text
            .lines()
            .filter(|l| !l.contains("is not executable") && !l.trim().is_empty())
            .collect();
        assert!(problems.is_empty(), "systemd-analyze verify:\n{text}");
    } else {
        println!("systemd-analyze not installed: unit directives not verified");
    }
}
