//! TLS from the sink to a real PostgreSQL that each test starts for itself
//! (`pg_tls_server`: initdb, certificates made with rcgen, `ssl = on`):
//! a batch stored over verify-full TLS and read back through the HTTP API;
//! verify-ca accepting a certificate for another name that verify-full
//! refuses; start-up refused with the cause named for a wrong CA, an expired
//! server certificate, a server without TLS, a missing or foreign client
//! certificate (mTLS), and no TLS towards a TLS-only server.
//!
//! Without PostgreSQL's server binaries they print `SKIP: …` (fail under
//! `EDGE_REQUIRE_SERVICES=1`). They do not use the machine's database.

mod pg_common;
mod pg_tls_server;

use std::path::Path;

use cloud_sink::{PgTlsConfig, PgTlsMode, SinkConfig};
use pg_common::*;
use pg_tls_server::{CertFiles, PgServer, Pki, ServerTls};
use reqwest::StatusCode;

/// A sink on `server`'s database (schema `sink`, one connection attempt).
fn sink_config(server: &PgServer, tls: Option<PgTlsConfig>) -> SinkConfig {
    let mut config = pg_config("sink", Some(server.url()));
    config.store.connect_attempts = 1;
    config.store.tls = tls;
    config.validate().expect("test config is valid");
    config
}

fn tls(mode: PgTlsMode, ca: &Path, client: Option<&CertFiles>) -> Option<PgTlsConfig> {
    Some(PgTlsConfig {
        mode,
        ca_file: Some(ca.to_owned()),
        client_cert_file: client.map(|c| c.cert.clone()),
        client_key_file: client.map(|c| c.key.clone()),
    })
}

/// The start-up error of a sink with `config`, with its causes, on one line.
async fn start_up_error(config: &SinkConfig) -> String {
    let err = cloud_sink::Server::bind(config)
        .await
        .expect_err("start-up must fail");
    let mut text = err.to_string();
    let mut source = std::error::Error::source(&err);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    eprintln!("start-up error: {text}");
    text
}

/// Starts a sink on `config`, posts one batch, reads its windows back
/// through `/v1/series`; returns the sink still running.
async fn store_and_read_back(config: &SinkConfig) -> Running {
    let sink = Running::start(config).await;
    let client = reqwest::Client::new();
    let t = 1_700_000_000_000;
    let env = batch(
        "gw-a",
        1,
        1,
        vec![
            window("pump-1", "temp", t, 20.0, 0),
            window("pump-1", "anomaly", t, 1.5, 1),
        ],
    );
    let (status, body) = post(&client, &sink.base, &env).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (StatusCode::OK, Some("stored")),
        "{body}"
    );
    let series = get(&client, &sink.base, "/v1/series?gateway=gw-a").await;
    let windows = series["windows"].as_array().expect("windows");
    assert_eq!(windows.len(), 2, "{series}");
    assert!(
        windows
            .iter()
            .any(|w| w["metric"] == "temp" && w["min"] == 20.0),
        "{series}"
    );
    let again = post(&client, &sink.base, &env).await;
    assert_eq!(again.1["status"], "duplicate");
    sink
}

/// TLS state of the sink's open connections, as the server sees them:
/// (connections with TLS, without, client certificate DNs).
async fn sink_sessions(server: &PgServer) -> (i64, i64, Vec<String>) {
    let admin = server.admin().await;
    let rows = admin
        .query(
            "SELECT s.ssl, coalesce(s.client_dn, '') FROM pg_stat_ssl s \
             JOIN pg_stat_activity a USING (pid) WHERE a.application_name = 'cloud-sink'",
            &[],
        )
        .await
        .unwrap();
    let tls = rows.iter().filter(|r| r.get::<_, bool>(0)).count() as i64;
    let dns = rows
        .iter()
        .map(|r| r.get::<_, String>(1))
        .filter(|d| !d.is_empty())
        .collect();
    (tls, rows.len() as i64 - tls, dns)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_full_stores_a_batch_over_tls_and_plain_tcp_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::generate(dir.path());
    let Some(server) = PgServer::start_or_skip(ServerTls::On { cert: &pki.server }) else {
        return;
    };
    let config = sink_config(&server, tls(PgTlsMode::VerifyFull, &pki.ca, None));
    let sink = store_and_read_back(&config).await;
    // The pool keeps its connections open: every one of them is TLS.
    let (with_tls, without, _) = sink_sessions(&server).await;
    sink.stop().await;
    assert!(
        with_tls >= 1 && without == 0,
        "tls {with_tls}, plain {without}"
    );

    // The same server without [store.tls]: its pg_hba.conf has no plain line.
    let text = start_up_error(&sink_config(&server, None)).await;
    assert!(text.contains("no TLS"), "{text}");
    assert!(
        text.contains("accepts this user only over TLS (hostssl): add [store.tls]"),
        "{text}"
    );
    assert!(text.contains("no encryption"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_ca_skips_the_host_name_check_that_verify_full_makes() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::generate(dir.path());
    let Some(server) = PgServer::start_or_skip(ServerTls::On {
        cert: &pki.other_name,
    }) else {
        return;
    };
    let full = sink_config(&server, tls(PgTlsMode::VerifyFull, &pki.ca, None));
    let text = start_up_error(&full).await;
    assert!(text.contains("TLS verify-full"), "{text}");
    assert!(text.contains("does not name the URL's host"), "{text}");
    assert!(text.contains("db.internal"), "{text}");

    let verify_ca = sink_config(&server, tls(PgTlsMode::VerifyCa, &pki.ca, None));
    store_and_read_back(&verify_ca).await.stop().await;
    // verify-ca still checks the chain.
    let wrong = sink_config(&server, tls(PgTlsMode::VerifyCa, &pki.other_ca, None));
    let text = start_up_error(&wrong).await;
    assert!(
        text.contains("not signed by the CA in store.tls.ca_file"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_certificate_from_another_ca_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::generate(dir.path());
    let Some(server) = PgServer::start_or_skip(ServerTls::On { cert: &pki.server }) else {
        return;
    };
    let text = start_up_error(&sink_config(
        &server,
        tls(PgTlsMode::VerifyFull, &pki.other_ca, None),
    ))
    .await;
    assert!(
        text.contains("cannot connect to PostgreSQL at postgres://postgres@127.0.0.1"),
        "{text}"
    );
    assert!(text.contains("after 1 attempt(s)"), "{text}");
    assert!(
        text.contains("not signed by the CA in store.tls.ca_file (wrong CA?)"),
        "{text}"
    );
    assert!(text.contains("UnknownIssuer"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_server_certificate_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::generate(dir.path());
    let Some(server) = PgServer::start_or_skip(ServerTls::On { cert: &pki.expired }) else {
        return;
    };
    let text = start_up_error(&sink_config(
        &server,
        tls(PgTlsMode::VerifyFull, &pki.ca, None),
    ))
    .await;
    assert!(
        text.contains("the server's certificate has expired"),
        "{text}"
    );
    assert!(text.contains("expired"), "{text}");
    // verify-ca checks dates too.
    let text = start_up_error(&sink_config(
        &server,
        tls(PgTlsMode::VerifyCa, &pki.ca, None),
    ))
    .await;
    assert!(
        text.contains("the server's certificate has expired"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificate_auth_connects_with_the_certificate_only() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::generate(dir.path());
    let server_tls = ServerTls::ClientCert {
        cert: &pki.server,
        client_ca: &pki.ca,
    };
    let Some(server) = PgServer::start_or_skip(server_tls) else {
        return;
    };
    let config = sink_config(
        &server,
        tls(PgTlsMode::VerifyFull, &pki.ca, Some(&pki.client)),
    );
    let sink = store_and_read_back(&config).await;
    let (with_tls, without, dns) = sink_sessions(&server).await;
    sink.stop().await;
    assert!(
        with_tls >= 1 && without == 0,
        "tls {with_tls}, plain {without}"
    );
    assert!(
        !dns.is_empty() && dns.iter().all(|d| d.contains("CN=postgres")),
        "{dns:?}"
    );

    let text = start_up_error(&sink_config(
        &server,
        tls(PgTlsMode::VerifyFull, &pki.ca, None),
    ))
    .await;
    assert!(
        text.contains("requires a valid client certificate"),
        "{text}"
    );
    assert!(
        text.contains("set store.tls.client_cert_file and store.tls.client_key_file"),
        "{text}"
    );

    let foreign = tls(PgTlsMode::VerifyFull, &pki.ca, Some(&pki.other_client));
    let text = start_up_error(&sink_config(&server, foreign)).await;
    assert!(
        text.contains("the server refused the client certificate"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_required_against_a_server_without_tls_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::generate(dir.path());
    let Some(server) = PgServer::start_or_skip(ServerTls::Off) else {
        return;
    };
    let text = start_up_error(&sink_config(
        &server,
        tls(PgTlsMode::VerifyFull, &pki.ca, None),
    ))
    .await;
    assert!(text.contains("TLS verify-full"), "{text}");
    assert!(
        text.contains("the server does not offer TLS (ssl = off"),
        "{text}"
    );
    assert!(text.contains("server does not support TLS"), "{text}");
    // Without [store.tls] the same server is fine (today's behaviour).
    let sink = store_and_read_back(&sink_config(&server, None)).await;
    let (with_tls, without, _) = sink_sessions(&server).await;
    sink.stop().await;
    assert!(
        with_tls == 0 && without >= 1,
        "tls {with_tls}, plain {without}"
    );
}
