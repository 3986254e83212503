//! Parses and validates the shipped example configs (embedded and
//! PostgreSQL), checks the demo token they document really matches its hash,
//! and loads their teacher models. Nothing is started, nothing connected.

use std::path::PathBuf;

use cloud_sink::auth::TokenTable;
use cloud_sink::{SinkConfig, Teachers};

fn example_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../configs/cloud-sink.example.toml")
}

#[test]
fn example_config_loads_and_validates() {
    let config = SinkConfig::load(example_path()).expect("example config is valid");
    assert_eq!(config.listen, "127.0.0.1:8080");
    assert_eq!(config.data_dir, PathBuf::from("var/cloud-sink"));
    assert_eq!(config.limits.max_body_bytes, wire::MAX_ENVELOPE_BYTES);
    assert_eq!(config.gateways.len(), 1);
    assert_eq!(config.gateways[0].id, "gw-demo");
}

#[test]
fn example_demo_token_authenticates_as_gw_demo() {
    let config = SinkConfig::load(example_path()).unwrap();
    let tokens = TokenTable::new(&config.gateways);
    assert_eq!(
        tokens.authenticate(Some("Bearer demo-token")),
        Ok("gw-demo")
    );
    assert!(tokens.authenticate(Some("Bearer demo-token2")).is_err());
}

#[test]
fn example_teachers_load_from_the_config_folder() {
    let config = SinkConfig::load(example_path()).unwrap();
    assert_eq!(config.teachers.len(), 2);
    assert_eq!(config.teachers[0].series, "anomaly");
    let teachers = Teachers::load(&config.teachers).expect("example teachers load");
    let series: Vec<_> = teachers.series().collect();
    assert_eq!(series, [("anomaly", 24), ("log.alert", 2054)]);
}

#[test]
fn postgres_example_config_loads_and_validates() {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../configs/cloud-sink.postgres.toml");
    let config = SinkConfig::load(&path).expect("postgres example config is valid");
    assert_eq!(config.store.backend, cloud_sink::Backend::Postgres);
    assert_eq!(config.store.url_env.as_deref(), Some("SINK_PG_URL"));
    assert_eq!(config.store.url, None);
    assert_eq!(config.store.schema.as_deref(), Some("cloud_sink"));
    assert_eq!(config.data_dir, PathBuf::new());
    assert_eq!(config.gateways[0].id, "gw-demo");
    let teachers = Teachers::load(&config.teachers).expect("example teachers load");
    assert_eq!(teachers.series().count(), 2);
}

/// The commented `[telemetry]` example, uncommented, is a valid section.
#[test]
fn commented_telemetry_examples_are_valid_when_uncommented() {
    for file in ["cloud-sink.example.toml", "cloud-sink.postgres.toml"] {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../configs")
            .join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        let block: Vec<&str> = text
            .lines()
            .skip_while(|l| *l != "# [telemetry]")
            .take_while(|l| l.starts_with("# "))
            .map(|l| &l[2..])
            .collect();
        assert!(block.len() >= 3, "{file}: no commented [telemetry] example");
        let config = format!("{text}\n{}\n", block.join("\n"));
        let config = SinkConfig::parse(&path, &config).expect("example parses");
        assert!(config.telemetry.otlp_endpoint.is_some(), "{file}");
        config
            .telemetry
            .validate("telemetry")
            .expect("example is valid");
    }
}

/// The commented `[store.tls]` example, uncommented, parses; only its
/// (made-up) files are missing.
#[test]
fn commented_store_tls_example_is_valid_but_for_its_files() {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../configs/cloud-sink.postgres.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let block: Vec<&str> = text
        .lines()
        .skip_while(|l| *l != "# [store.tls]")
        .take_while(|l| l.starts_with("# "))
        .map(|l| &l[2..])
        .collect();
    assert!(block.len() >= 4, "no commented [store.tls] example");
    let config = SinkConfig::parse(&path, &format!("{text}\n{}\n", block.join("\n")))
        .expect("example parses");
    let tls = config.store.tls.as_ref().expect("[store.tls]");
    assert_eq!(tls.mode, cloud_sink::PgTlsMode::VerifyFull);
    assert!(tls.client_cert_file.is_some() && tls.client_key_file.is_some());
    let problems = config.validate().unwrap_err();
    let keys: Vec<_> = problems.iter().map(|p| p.path.as_str()).collect();
    assert_eq!(
        keys,
        [
            "store.tls.ca_file",
            "store.tls.client_cert_file",
            "store.tls.client_key_file"
        ],
        "{problems:?}"
    );
    assert!(problems
        .iter()
        .all(|p| p.message.contains("not a readable file")));
}
