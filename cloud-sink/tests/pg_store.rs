//! The PostgreSQL store against the embedded one: the same batches posted to
//! an in-process sink on each give the same answers on every query endpoint;
//! duplicates and conflicts; migrations applied once; a clear start-up error
//! when PostgreSQL is unreachable (password never shown); 503 while the
//! database is cut off, and the retried batch stored once afterwards.
//!
//! Each test works in its own schema (see `pg_common`); without PostgreSQL
//! they print `SKIP: …` (fail under `EDGE_REQUIRE_SERVICES=1`). Replicas
//! sharing one database are in `pg_replicas.rs`.

mod pg_common;

use pg_common::*;
use reqwest::StatusCode;
use serde_json::Value;

/// Batches covering every optional window part, two gateways, two epochs.
fn batches() -> Vec<wire::Envelope> {
    let mut out = Vec::new();
    for (gw, epoch) in [
        ("gw-a", 1_700_000_000_000u64),
        ("gw-b", 5),
        ("gw-a", 1_700_000_500_000),
    ] {
        for seq in 1..=4u64 {
            let t = 1_700_000_000_000 + (seq as i64) * 10_000;
            let windows = vec![
                window("pump-1", "temp", t, seq as f64, 0),
                window("pump-1", "anomaly", t, 0.5 + seq as f64, 1),
                window("pump-2", "log.template.3", t, 1.0, 2),
                window("pump-10", "temp", t - 5_000, -1.5, 3),
                window("pump-2", "anomaly", t + 1, 2.5, 1),
            ];
            out.push(batch(gw, epoch, seq, windows));
        }
    }
    out
}

/// `/v1/gateways` without the sink-clock fields.
fn without_last_seen(mut v: Value) -> Value {
    for g in v.as_array_mut().unwrap() {
        let g = g.as_object_mut().unwrap();
        g.remove("last_seen_ms");
        assert!(g.remove("gauges_ms").unwrap().as_i64().unwrap() > 0);
    }
    v
}

const QUERIES: &[&str] = &[
    "/v1/series",
    "/v1/series?gateway=gw-a",
    "/v1/series?gateway=gw-a&device=pump-1&metric=anomaly",
    "/v1/series?device=pump-2",
    "/v1/series?metric=temp&from=1700000020000&to=1700000040000",
    "/v1/series?gateway=gw-a&limit=7",
    "/v1/series?gateway=nobody",
    "/v1/escalations",
    "/v1/escalations?gateway=gw-b&device=pump-2",
    "/v1/escalations?device=pump-1&limit=3",
    "/v1/escalations/agreement",
    "/v1/escalations/agreement?gateway=gw-a&series=anomaly&buckets=4",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_answers_every_query_like_embedded() {
    let Some(schema) = TestSchema::create_or_skip("parity").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let embedded = Running::start(&embedded_config(dir.path())).await;
    let pg = Running::start(&pg_config(&schema.name, None)).await;
    let client = reqwest::Client::new();

    for env in batches() {
        for base in [&embedded.base, &pg.base] {
            let (status, body) = post(&client, base, &env).await;
            assert_eq!(
                (status, body["status"].as_str()),
                (StatusCode::OK, Some("stored")),
                "{body}"
            );
        }
    }
    // A retry is a duplicate on both, and changes nothing.
    let again = &batches()[2];
    for base in [&embedded.base, &pg.base] {
        let (status, body) = post(&client, base, again).await;
        assert_eq!(
            (status, body["status"].as_str()),
            (StatusCode::OK, Some("duplicate"))
        );
    }

    let e = without_last_seen(get(&client, &embedded.base, "/v1/gateways").await);
    let p = without_last_seen(get(&client, &pg.base, "/v1/gateways").await);
    assert_eq!(e, p);
    assert_eq!(e[0]["batches"], 8);
    assert_eq!(e[0]["windows"], 40);
    // Health counts are summed like input counters; gauges are the newest
    // that were sent (seq 3 of the second epoch: seq 4 carried none).
    assert_eq!(e[0]["counters"]["agent.uplink_failures"], 8);
    assert_eq!(
        e[0]["gauges"],
        serde_json::json!({"outbox_bytes": 300, "uptime_s": 3})
    );
    for q in QUERIES {
        let e = get(&client, &embedded.base, q).await;
        let p = get(&client, &pg.base, q).await;
        assert_eq!(e, p, "{q}");
        if q.starts_with("/v1/series?gateway=gw-a&") && !q.contains("limit") {
            assert!(!e["windows"].as_array().unwrap().is_empty(), "{q}: {e}");
        }
    }
    let series = get(&client, &pg.base, "/v1/series?limit=7").await;
    assert_eq!(series["truncated"], true);
    let escalations = get(&client, &pg.base, "/v1/escalations").await;
    assert_eq!(escalations["escalations"].as_array().unwrap().len(), 48);
    assert_eq!(
        escalations["escalations"][0]["teacher_skipped"],
        "no_teacher"
    );

    assert_eq!(schema.count("batches", "").await, 12);
    assert_eq!(schema.count("windows", "").await, 60);
    assert_eq!(schema.count("escalations", "").await, 48);
    embedded.stop().await;
    pg.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflict_keeps_the_first_body_and_migrations_run_once() {
    let Some(schema) = TestSchema::create_or_skip("conflict").await else {
        return;
    };
    let client = reqwest::Client::new();
    let sink = Running::start(&pg_config(&schema.name, None)).await;
    let first = batch("gw-a", 1, 1, vec![window("d", "m", 0, 1.0, 0)]);
    let other = batch("gw-a", 1, 1, vec![window("d", "m", 0, 2.0, 0)]);
    assert_eq!(
        post(&client, &sink.base, &first).await.1["status"],
        "stored"
    );
    let (status, body) = post(&client, &sink.base, &other).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body["stored_hash"], first.body_hash_hex());
    assert_eq!(body["received_hash"], other.body_hash_hex());
    let windows = get(&client, &sink.base, "/v1/series").await;
    assert_eq!(windows["windows"][0]["min"], 1.0);
    sink.stop().await;

    // A restart (and a second one) applies nothing again and keeps the data.
    for _ in 0..2 {
        let sink = Running::start(&pg_config(&schema.name, None)).await;
        assert_eq!(
            post(&client, &sink.base, &first).await.1["status"],
            "duplicate"
        );
        sink.stop().await;
    }
    // 0001_init, 0002_escalation_exemplar and 0003_gateway_gauges, each once.
    assert_eq!(schema.count("schema_migrations", "").await, 3);
    assert_eq!(schema.count("windows", "").await, 1);

    // A schema newer than the binary is refused.
    let sql = format!(
        "INSERT INTO {}.schema_migrations (version, name) VALUES (99, 'future')",
        schema.name
    );
    schema.client.batch_execute(&sql).await.unwrap();
    let err = cloud_sink::Server::bind(&pg_config(&schema.name, None))
        .await
        .unwrap_err();
    let text = format!("{:?}", anyhow_chain(&err));
    assert!(text.contains("version 99"), "{text}");
}

fn anyhow_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_database_fails_start_up_with_the_cause_and_no_password() {
    // No PostgreSQL needed: nothing listens on the port.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let var = format!("SINK_PG_URL_TEST_{}", std::process::id());
    std::env::set_var(&var, format!("postgres://sink:hunter2@127.0.0.1:{port}/x"));
    let mut config = pg_config("public", None);
    config.store.url = None;
    config.store.url_env = Some(var.clone());
    let started = std::time::Instant::now();
    let err = cloud_sink::Server::bind(&config).await.unwrap_err();
    let text = anyhow_chain(&err);
    assert!(text.contains("cannot connect to PostgreSQL"), "{text}");
    assert!(text.contains("after 2 attempt(s)"), "{text}");
    assert!(text.contains("sink:***@127.0.0.1"), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
    assert!(!format!("{config:?}").contains("hunter2"));
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(500),
        "backed off"
    );

    std::env::remove_var(&var);
    let err = cloud_sink::Server::bind(&config).await.unwrap_err();
    assert!(anyhow_chain(&err).contains(&var), "{}", anyhow_chain(&err));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_outage_is_503_and_the_retry_is_stored_once() {
    let Some(schema) = TestSchema::create_or_skip("outage").await else {
        return;
    };
    let target: tokio_postgres::Config = pg_url().parse().unwrap();
    let host = match &target.get_hosts()[0] {
        tokio_postgres::config::Host::Tcp(h) => h.clone(),
        other => panic!("this test needs a TCP URL, not {other:?}"),
    };
    let port = target.get_ports().first().copied().unwrap_or(5432);
    let mut proxy = Proxy::start(&format!("{host}:{port}")).await;
    let user = target.get_user().unwrap_or("postgres");
    let db = target.get_dbname().unwrap_or("test");
    let url = format!("postgres://{user}@127.0.0.1:{}/{db}", proxy.port);
    let sink = Running::start(&pg_config(&schema.name, Some(url))).await;
    let client = reqwest::Client::new();

    let env = batch("gw-a", 1, 1, vec![window("d", "anomaly", 0, 2.0, 1)]);
    proxy.cut().await;
    let (status, body) = post(&client, &sink.base, &env).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .starts_with("store unavailable"),
        "{body}"
    );
    let resp = client
        .get(format!("{}/v1/gateways", sink.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);

    proxy.restore().await;
    let mut answer = None;
    for _ in 0..50 {
        let (status, body) = post(&client, &sink.base, &env).await;
        if status == StatusCode::OK {
            answer = Some(body);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(answer.expect("stored after the outage")["status"], "stored");
    assert_eq!(
        post(&client, &sink.base, &env).await.1["status"],
        "duplicate"
    );
    assert_eq!(schema.count("batches", "").await, 1);
    assert_eq!(schema.count("windows", "").await, 1);
    assert_eq!(schema.count("escalations", "").await, 2);
    sink.stop().await;
}

/// PostgreSQL text cannot hold NUL; refusing the batch would block the
/// gateway's outbox (the agent retries), so the NUL is replaced and stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_with_nul_is_stored_with_a_replacement_not_refused() {
    let Some(schema) = TestSchema::create_or_skip("nul").await else {
        return;
    };
    let sink = Running::start(&pg_config(&schema.name, None)).await;
    let client = reqwest::Client::new();
    let env = batch("gw-a", 1, 1, vec![window("d\0x", "m", 0, 1.0, 0)]);
    let (status, body) = post(&client, &sink.base, &env).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "stored");
    assert_eq!(
        post(&client, &sink.base, &env).await.1["status"],
        "duplicate"
    );
    assert_eq!(schema.count("batches", "").await, 1);
    assert_eq!(
        schema.count("windows", "WHERE device = 'd\u{FFFD}x'").await,
        1
    );
    sink.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calibrate_reads_a_running_postgres_sink() {
    let Some(schema) = TestSchema::create_or_skip("calibrate").await else {
        return;
    };
    let sink = Running::start(&pg_config(&schema.name, None)).await;
    let client = reqwest::Client::new();
    for env in batches() {
        assert_eq!(post(&client, &sink.base, &env).await.1["status"], "stored");
    }
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sink.toml");
    let gw = &pg_common::gateways()[0];
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\n[store]\nbackend = \"postgres\"\n\
             url_env = \"SINK_TEST_PG_URL\"\nschema = \"{}\"\n\
             [[gateways]]\nid = \"{}\"\ntoken_sha256 = \"{}\"\n",
            schema.name, gw.id, gw.token_sha256.0[0]
        ),
    )
    .unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_cloud-sink"))
        .args(["calibrate", "--json", "--gateway", "gw-a", "--config"])
        .env("SINK_TEST_PG_URL", pg_url())
        .arg(&config)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let result: Value = serde_json::from_slice(&out.stdout).unwrap();
    // gw-a: 8 batches × 2 judgement windows × 2 escalations, none judged (no teacher).
    assert_eq!(result[0]["series"], "anomaly", "{result}");
    assert_eq!(result[0]["escalations"], 32, "{result}");
    sink.stop().await;
}
