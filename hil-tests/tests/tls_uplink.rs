//! The uplink's security end to end (real Mosquitto, agent and sink binaries):
//!
//! - HTTPS with mTLS to the sink (certificates made at test time), with a token
//!   the sink does not know: the agent logs a clear 401 error and keeps the
//!   batches; the sink's config is then rotated to list the old hash and the
//!   agent's, and every window arrives exactly once.
//! - A per-gateway rate limit far below the agent's send rate: the sink answers
//!   429 with `Retry-After`, the agent waits, and every window still arrives
//!   exactly once.
//!
//! Mosquitto or SKAB missing: `SKIP:` (a failure under `EDGE_REQUIRE_SERVICES=1`).

mod common;

use std::path::Path;
use std::time::Duration;

use common::{
    agent_config, gateway_section, mosquitto_or_skip, set_agent_option, skab_or_skip, Agent,
    CheckWait, Sink, GATEWAY, SERIAL,
};
use hil_tests::certs;
use hil_tests::ledger::LedgerRecord;
use hil_tests::mosquitto::{Mosquitto, Persistence};
use hil_tests::{data_dir, SimOptions};

const LIMIT: Duration = Duration::from_secs(30);

/// Replays 2 devices × 600 SKAB rows into `broker`; returns the ledger.
async fn publish(broker: &Mosquitto, dir: &Path) -> Vec<LedgerRecord> {
    let ledger = dir.join("ledger.jsonl");
    hil_tests::run(SimOptions {
        broker: broker.broker(),
        devices: 2,
        max_rows_per_device: Some(600),
        skab_dir: data_dir().join("SKAB"),
        ledger: Some(ledger.clone()),
        progress: false,
        ..SimOptions::default()
    })
    .await
    .unwrap();
    hil_tests::read_ledger(&ledger).unwrap()
}

async fn connected(agent: &Agent) {
    let line = agent
        .wait_line(0, LIMIT, |l| l.contains("mqtt connected"))
        .await;
    assert!(
        line.is_some(),
        "agent never connected; log:\n{}",
        agent.log()
    );
}

#[tokio::test]
async fn https_mtls_wrong_token_is_refused_then_rotation_delivers_everything_once() {
    let _serial = SERIAL.lock().await;
    if !skab_or_skip() {
        return;
    }
    let Some(broker) = mosquitto_or_skip(Persistence::Off) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let pki = certs::generate(&dir.path().join("pki"), GATEWAY).unwrap();
    let tls = format!(
        "[tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\nclient_ca_file = \"{}\"\n",
        pki.server.cert.display(),
        pki.server.key.display(),
        pki.ca.display()
    );
    // The test's own queries: trust the CA, present the client certificate.
    let identity = [
        std::fs::read(&pki.client.cert).unwrap(),
        std::fs::read(&pki.client.key).unwrap(),
    ]
    .concat();
    let client = reqwest::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(&std::fs::read(&pki.ca).unwrap()).unwrap(),
        )
        .identity(reqwest::Identity::from_pem(&identity).unwrap())
        .build()
        .unwrap();
    // The sink knows only the hash of a token the agent does not have.
    let stale = cloud_sink::auth::token_sha256_hex("an-old-token");
    let only_stale = format!("[[gateways]]\nid = \"{GATEWAY}\"\ntoken_sha256 = \"{stale}\"\n{tls}");
    let sink_dir = dir.path().join("sink");
    let mut sink = Sink::start_configured(&sink_dir, "127.0.0.1:0", &only_stale, client.clone());
    assert!(sink.url.starts_with("https://"), "{}", sink.url);

    let config = agent_config(dir.path(), broker.port(), &sink.url);
    let mut uplink_tls = toml::Table::new();
    uplink_tls.insert("ca_file".into(), pki.ca.display().to_string().into());
    let cert = pki.client.cert.display().to_string();
    uplink_tls.insert("client_cert_file".into(), cert.into());
    let key = pki.client.key.display().to_string();
    uplink_tls.insert("client_key_file".into(), key.into());
    let mut doc: toml::Table = std::fs::read_to_string(&config).unwrap().parse().unwrap();
    let uplink = doc["uplink"].as_table_mut().unwrap();
    uplink.insert("tls".into(), uplink_tls.into());
    std::fs::write(&config, toml::to_string(&doc).unwrap()).unwrap();
    let agent = Agent::start_traced(&config, "info");
    connected(&agent).await;
    let ledger = publish(&broker, dir.path()).await;

    let refused = agent
        .wait_line(0, Duration::from_secs(60), |l| {
            l.contains("sink refused this gateway's token")
        })
        .await;
    let (_, line) = refused.unwrap_or_else(|| panic!("no 401 error; log:\n{}", agent.log()));
    assert!(
        line.contains("401") && line.contains("stays in the outbox"),
        "{line}"
    );

    // Rotation: the new hash joins the old one; no agent restart.
    let listen = sink.listen();
    sink.kill();
    let both = cloud_sink::auth::token_sha256_hex(common::TOKEN);
    let rotated = format!(
        "[[gateways]]\nid = \"{GATEWAY}\"\ntoken_sha256 = [\"{stale}\", \"{both}\"]\n{tls}"
    );
    let sink = Sink::start_configured(&sink_dir, &listen, &rotated, client);
    let report = CheckWait::new(&ledger, 60_000, 0.01, Duration::from_secs(120))
        .agent_log(&|| agent.log())
        .run(&sink)
        .await;
    assert!(report.expected >= 16, "too few windows: {report}");
    println!("after rotation, over HTTPS + mTLS: {report}");
}

#[tokio::test]
async fn rate_limited_batches_wait_and_arrive_exactly_once() {
    let _serial = SERIAL.lock().await;
    if !skab_or_skip() {
        return;
    }
    let Some(broker) = mosquitto_or_skip(Persistence::Off) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let limits = "[limits]\nbatches_per_second = 2\nburst = 1\n";
    let tail = format!("{}{limits}", gateway_section());
    let sink = Sink::start_configured(
        &dir.path().join("sink"),
        "127.0.0.1:0",
        &tail,
        reqwest::Client::new(),
    );
    let config = agent_config(dir.path(), broker.port(), &sink.url);
    // Small batches, sent often: many more than the sink admits.
    set_agent_option(&config, "uplink", "max_windows_per_batch", 8);
    let agent = Agent::start_traced(&config, "info");
    connected(&agent).await;
    let ledger = publish(&broker, dir.path()).await;
    let report = CheckWait::new(&ledger, 60_000, 0.01, Duration::from_secs(180))
        .agent_log(&|| agent.log())
        .run(&sink)
        .await;
    let outcomes = common::sink_outcomes(&sink.url).await;
    println!("rate limited: {report}; sink outcomes {outcomes:?}");
    assert!(
        outcomes.get("rate_limited").copied().unwrap_or(0) > 0,
        "{outcomes:?}"
    );
    assert_eq!(
        outcomes.get("duplicate").copied().unwrap_or(0),
        0,
        "{outcomes:?}"
    );
    let waited = agent.lines().iter().any(|l| l.contains("429"));
    assert!(waited, "the agent never saw a 429; log:\n{}", agent.log());
}
