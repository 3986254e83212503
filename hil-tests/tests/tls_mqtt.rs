//! The agent against a real Mosquitto over TLS and mTLS, with certificates made
//! at test time (`hil_tests::certs`): with the right CA readings flow end to end
//! (checked window by window against the ledger); a wrong CA, an expired server
//! certificate, and (mTLS) no client certificate or one from another CA are each
//! refused, and the agent logs a clear, counted error and keeps retrying.
//!
//! fleet-sim publishes on the broker's plain listener; only the agent uses TLS.
//! Mosquitto missing: `SKIP:` (a failure under `EDGE_REQUIRE_SERVICES=1`).

mod common;

use std::path::Path;
use std::time::Duration;

use common::{agent_config, skab_or_skip, Agent, CheckWait, Sink, GATEWAY, SERIAL};
use hil_tests::certs::{self, Pki};
use hil_tests::mosquitto::{require_or_skip, Mosquitto, TlsListener};
use hil_tests::{data_dir, SimOptions};

const LIMIT: Duration = Duration::from_secs(30);

/// A broker with a TLS listener using `cert`; `None` after a skip.
fn broker(pki: &Pki, cert: &certs::CertFiles, require_certificate: bool) -> Option<Mosquitto> {
    let tls = TlsListener {
        cafile: pki.ca.clone(),
        certfile: cert.cert.clone(),
        keyfile: cert.key.clone(),
        require_certificate,
    };
    match Mosquitto::start_tls(&tls) {
        Ok(m) => Some(m),
        Err(e) if e.is_missing_service() => {
            require_or_skip(&format!("mosquitto: {e}"));
            None
        }
        Err(e) => panic!("mosquitto failed to start: {e}"),
    }
}

/// The agent's config: the broker's TLS port, `[mqtt.tls]` as given.
fn tls_agent_config(
    dir: &Path,
    broker: &Mosquitto,
    sink_url: &str,
    ca: &Path,
    client: Option<&certs::CertFiles>,
) -> std::path::PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let config = agent_config(dir, broker.tls_port().unwrap(), sink_url);
    let mut doc: toml::Table = std::fs::read_to_string(&config).unwrap().parse().unwrap();
    let mut tls = toml::Table::new();
    tls.insert("ca_file".into(), ca.display().to_string().into());
    if let Some(c) = client {
        tls.insert(
            "client_cert_file".into(),
            c.cert.display().to_string().into(),
        );
        tls.insert("client_key_file".into(), c.key.display().to_string().into());
    }
    let mqtt = doc["mqtt"].as_table_mut().unwrap();
    mqtt.insert("tls".into(), tls.into());
    mqtt.insert("reconnect_max".into(), "1s".into());
    std::fs::write(&config, toml::to_string(&doc).unwrap()).unwrap();
    config
}

/// Starts an agent that must be refused, and returns the error line it logs.
async fn refused(
    dir: &Path,
    broker: &Mosquitto,
    ca: &Path,
    client: Option<&certs::CertFiles>,
) -> String {
    let config = tls_agent_config(dir, broker, "http://127.0.0.1:9", ca, client);
    let agent = Agent::start_traced(&config, "info");
    let first = agent
        .wait_line(0, LIMIT, |l| l.contains("mqtt TLS handshake failed"))
        .await;
    let (i, line) = first.unwrap_or_else(|| panic!("no TLS error logged; log:\n{}", agent.log()));
    // Counted, and retried with backoff: a second failure carries the next count.
    let again = agent
        .wait_line(i + 1, LIMIT, |l| l.contains("tls_failures=2"))
        .await;
    assert!(again.is_some(), "no retry; log:\n{}", agent.log());
    assert!(
        !agent.lines().iter().any(|l| l.contains("mqtt connected")),
        "connected although it must be refused; log:\n{}",
        agent.log()
    );
    line
}

#[tokio::test]
async fn tls_right_ca_flows_wrong_ca_and_expired_cert_are_refused() {
    let _serial = SERIAL.lock().await;
    if !skab_or_skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pki = certs::generate(&dir.path().join("pki"), GATEWAY).unwrap();

    // Wrong CA: the broker's certificate is not signed by the agent's ca_file.
    let Some(good) = broker(&pki, &pki.server, false) else {
        return;
    };
    let line = refused(&dir.path().join("wrong-ca"), &good, &pki.other_ca, None).await;
    assert!(line.contains("wrong CA"), "{line}");

    // Expired server certificate, right CA.
    let Some(expired) = broker(&pki, &pki.expired, false) else {
        return;
    };
    let line = refused(&dir.path().join("expired"), &expired, &pki.ca, None).await;
    assert!(line.contains("has expired"), "{line}");
    drop(expired);

    // Right CA: readings flow end to end, every window exact.
    let run = dir.path().join("ok");
    let sink = Sink::start(&run.join("sink"), "127.0.0.1:0");
    let config = tls_agent_config(&run, &good, &sink.url, &pki.ca, None);
    let agent = Agent::start_traced(&config, "info");
    let connected = agent
        .wait_line(0, LIMIT, |l| l.contains("mqtt connected"))
        .await;
    assert!(
        connected.is_some(),
        "no TLS connection; log:\n{}",
        agent.log()
    );
    let ledger = run.join("ledger.jsonl");
    hil_tests::run(SimOptions {
        broker: good.broker(),
        devices: 2,
        max_rows_per_device: Some(600),
        skab_dir: data_dir().join("SKAB"),
        ledger: Some(ledger.clone()),
        progress: false,
        ..SimOptions::default()
    })
    .await
    .unwrap();
    let ledger = hil_tests::read_ledger(&ledger).unwrap();
    let report = CheckWait::new(&ledger, 60_000, 0.01, Duration::from_secs(90))
        .agent_log(&|| agent.log())
        .run(&sink)
        .await;
    assert!(
        report.expected >= 16,
        "too few windows to mean anything: {report}"
    );
    println!("over TLS: {report}");
}

#[tokio::test]
async fn mtls_needs_a_client_certificate_from_the_brokers_ca() {
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let pki = certs::generate(&dir.path().join("pki"), GATEWAY).unwrap();
    let Some(broker) = broker(&pki, &pki.server, true) else {
        return;
    };
    let none = refused(&dir.path().join("none"), &broker, &pki.ca, None).await;
    println!("without a client certificate: {none}");
    let other = refused(
        &dir.path().join("other"),
        &broker,
        &pki.ca,
        Some(&pki.other_client),
    )
    .await;
    println!("with another CA's client certificate: {other}");
    assert!(
        other.contains("UnknownCA") || other.contains("not trust"),
        "{other}"
    );

    let config = tls_agent_config(
        &dir.path().join("ok"),
        &broker,
        "http://127.0.0.1:9",
        &pki.ca,
        Some(&pki.client),
    );
    let agent = Agent::start_traced(&config, "info");
    let connected = agent
        .wait_line(0, LIMIT, |l| l.contains("mqtt connected"))
        .await;
    assert!(connected.is_some(), "mTLS refused; log:\n{}", agent.log());
}

#[tokio::test]
async fn an_unreadable_or_invalid_pem_stops_the_agent_at_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("ca.pem");
    std::fs::write(&garbage, "not a certificate\n").unwrap();
    // Nothing is contacted: the config is refused before any connection.
    let config = agent_config(dir.path(), 9, "http://127.0.0.1:9");
    let mut doc: toml::Table = std::fs::read_to_string(&config).unwrap().parse().unwrap();
    let mut tls = toml::Table::new();
    tls.insert("ca_file".into(), garbage.display().to_string().into());
    doc["mqtt"]
        .as_table_mut()
        .unwrap()
        .insert("tls".into(), tls.into());
    std::fs::write(&config, toml::to_string(&doc).unwrap()).unwrap();
    let mut agent = Agent::start_traced(&config, "info");
    let status = agent
        .wait_exit(LIMIT)
        .await
        .expect("the agent kept running");
    assert!(!status.success());
    let log = agent.log();
    assert!(
        log.contains("mqtt.tls") && log.contains("holds no PEM certificate"),
        "{log}"
    );
}
