//! Every example config in `configs/` parses and validates, and `check-config`
//! reports every problem of a broken one with its key.

use std::path::PathBuf;
use std::process::Command;

use edge_agent::classify::ClassifyStage;
use edge_agent::config::AgentConfig;

fn configs_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../configs")
}

#[test]
fn every_agent_example_config_validates() {
    let mut checked = 0;
    for entry in std::fs::read_dir(configs_dir()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if path.extension().is_some_and(|e| e == "toml") && !name.starts_with("cloud-sink") {
            let text = std::fs::read_to_string(&path).unwrap();
            let config = AgentConfig::parse(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
            let mut settings = config
                .validate()
                .unwrap_or_else(|problems| panic!("{name}: {problems:?}"));
            // The models it names exist, load in tract and match their sidecars.
            settings.models.resolve_paths(&configs_dir());
            ClassifyStage::load(&settings.models).unwrap_or_else(|e| panic!("{name}: {e}"));
            checked += 1;
        }
    }
    assert!(
        checked >= 2,
        "expected demo.toml and gateway.example.toml, checked {checked}"
    );
}

/// The commented `metrics_listen` and `[telemetry]` examples, uncommented,
/// validate with the rest of their file.
#[test]
fn commented_observability_examples_are_valid_when_uncommented() {
    for file in ["gateway.example.toml", "demo.toml"] {
        let text = std::fs::read_to_string(configs_dir().join(file)).unwrap();
        let listen = text
            .lines()
            .find_map(|l| l.strip_prefix("# metrics_listen = "))
            .unwrap_or_else(|| panic!("{file}: no commented metrics_listen"));
        let block: Vec<&str> = text
            .lines()
            .skip_while(|l| *l != "# [telemetry]")
            .take_while(|l| l.starts_with("# "))
            .map(|l| &l[2..])
            .collect();
        assert!(block.len() >= 2, "{file}: no commented [telemetry] example");
        let config = format!("metrics_listen = {listen}\n{text}\n{}\n", block.join("\n"));
        let settings = AgentConfig::parse(&config)
            .unwrap_or_else(|e| panic!("{file}: {e}"))
            .validate()
            .unwrap_or_else(|problems| panic!("{file}: {problems:?}"));
        assert_eq!(
            settings.metrics_listen,
            Some("127.0.0.1:9464".parse().unwrap()),
            "{file}"
        );
        assert!(settings.telemetry.otlp_endpoint.is_some(), "{file}");
    }
}

#[test]
fn check_config_lists_every_problem_with_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let bad = std::fs::read_to_string(configs_dir().join("demo.toml"))
        .unwrap()
        .replace("gateway_id = \"gw-demo\"", "gateway_id = \"\"")
        .replace("subscribe = [\"plant/#\"]", "subscribe = [\"plant/#/x\"]")
        .replace("token_env = \"EDGE_TOKEN\"", "");
    let file = dir.path().join("bad.toml");
    std::fs::write(&file, bad).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_edge-agent"))
        .arg("check-config")
        .arg(&file)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    for key in ["gateway_id:", "mqtt.subscribe[0]:", "uplink.token_env:"] {
        assert!(stdout.contains(key), "missing {key} in:\n{stdout}");
    }
    assert!(stdout.contains("3 problem(s)"), "{stdout}");

    let ok = Command::new(env!("CARGO_BIN_EXE_edge-agent"))
        .arg("check-config")
        .arg(configs_dir().join("demo.toml"))
        .output()
        .unwrap();
    assert!(ok.status.success());
}
