//! End-to-end tests of the HTTP API: an in-process server on 127.0.0.1:0 with
//! a temporary store, driven by reqwest. Covers every ingest answer, the query
//! endpoints, and persistence across a restart on the same directory.

use std::path::Path;

use cloud_sink::auth::token_sha256_hex;
use cloud_sink::{GatewayConfig, Limits, Server, SinkConfig, StoredWindow};
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use wire::{BatchKey, Body, Counters, Envelope, Reason, WindowSummary};

const LIMIT: usize = 64 * 1024;

/// A running server plus what is needed to stop it.
struct Running {
    base: String,
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), cloud_sink::ServerError>>,
}

impl Running {
    async fn start(data_dir: &Path) -> Running {
        let config = SinkConfig {
            telemetry: Default::default(),
            listen: "127.0.0.1:0".into(),
            data_dir: data_dir.to_owned(),
            store: Default::default(),
            limits: Limits {
                max_body_bytes: LIMIT,
                ..Limits::default()
            },
            tls: None,
            gateways: vec![
                GatewayConfig {
                    id: "gw-a".into(),
                    token_sha256: token_sha256_hex("token-a").into(),
                    cert_sha256: Default::default(),
                },
                GatewayConfig {
                    id: "gw-b".into(),
                    token_sha256: token_sha256_hex("token-b").into(),
                    cert_sha256: Default::default(),
                },
            ],
            teachers: Vec::new(),
        };
        let server = Server::bind(&config).await.expect("server binds");
        let base = format!("http://{}", server.local_addr());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async {
            let _ = stopped.await;
        }));
        Running { base, stop, task }
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        self.task.await.unwrap().expect("server stops cleanly");
    }
}

fn window(device: &str, metric: &str, start_ms: i64, base: f64) -> WindowSummary {
    WindowSummary {
        device: device.into(),
        metric: metric.into(),
        start_ms,
        end_ms: start_ms + 10_000,
        count: 10,
        sum: base * 10.0 + 4.5,
        min: base,
        max: base + 0.9,
        mean: base + 0.45,
        stddev: 0.287,
        p50: base + 0.4,
        p95: base + 0.85,
        p99: base + 0.9,
        sketch_alpha: 0.01,
        first: base,
        first_ms: start_ms + 3,
        last: base + 0.9,
        last_ms: start_ms + 9_990,
        verdict: None,
        rolled_up: 0,
        template: None,
        escalations: Vec::new(),
    }
}

fn batch(
    gateway: &str,
    epoch: u64,
    seq: u64,
    windows: Vec<WindowSummary>,
    late: u64,
) -> (Envelope, Body) {
    let mut counters = Counters::default();
    counters.add(Reason::Late, late);
    counters.add(Reason::Malformed, 1);
    let body = Body {
        windows,
        counters,
        ..Body::default()
    };
    let key = BatchKey {
        gateway: gateway.into(),
        epoch,
        seq,
    };
    (Envelope::seal(&key, 1_700_000_000_000, &body), body)
}

async fn post(
    client: &reqwest::Client,
    base: &str,
    token: Option<&str>,
    bytes: Vec<u8>,
) -> (StatusCode, Value) {
    let mut req = client
        .post(format!("{base}/v1/batches"))
        .header("content-type", "application/cbor")
        .body(bytes);
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    let resp = req.send().await.expect("request completes");
    let status = resp.status();
    let body = resp.json::<Value>().await.expect("JSON body");
    (status, body)
}

async fn get(client: &reqwest::Client, url: String) -> (StatusCode, Value) {
    let resp = client.get(url).send().await.unwrap();
    let status = resp.status();
    (status, resp.json::<Value>().await.unwrap())
}

async fn series(client: &reqwest::Client, base: &str, query: &str) -> Vec<StoredWindow> {
    let (status, body) = get(client, format!("{base}/v1/series?{query}")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    serde_json::from_value(body["windows"].clone()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_query_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = Running::start(dir.path()).await;
    let base = server.base.clone();
    let client = reqwest::Client::new();

    // 1. A new batch is stored.
    let w1 = window("pump-1", "pressure", 1_000_000, 3.0);
    let mut w2 = window("pump-1", "log.template.7", 1_000_000, 7.0);
    // A log template window: its text and exemplars are stored and served as sent.
    w2.template = Some(wire::LogTemplate {
        text: "Failed password for <*> from <*> port <*>".into(),
        exemplars: vec!["sshd[9]: Failed password for root from <ip> port 22".into()],
    });
    let w3 = window("pump-1", "pressure", 1_010_000, 3.5);
    let (env, _) = batch("gw-a", 1, 1, vec![w3.clone(), w1.clone(), w2.clone()], 2);
    let bytes = env.to_bytes();
    let (status, body) = post(&client, &base, Some("token-a"), bytes.clone()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({"status": "stored", "gateway": "gw-a", "epoch": 1, "seq": 1})
    );

    // 2. The same bytes again are a duplicate.
    let (status, body) = post(&client, &base, Some("token-a"), bytes.clone()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({"status": "duplicate", "gateway": "gw-a", "epoch": 1, "seq": 1})
    );

    // 3. Same key, different body: 409 with both hashes, stored data unchanged.
    let (other, _) = batch(
        "gw-a",
        1,
        1,
        vec![window("pump-1", "pressure", 1_000_000, 99.0)],
        0,
    );
    let (status, body) = post(&client, &base, Some("token-a"), other.to_bytes()).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body["status"], "conflict");
    assert_eq!(body["stored_hash"], env.body_hash_hex());
    assert_eq!(body["received_hash"], other.body_hash_hex());
    assert_eq!(
        (
            body["gateway"].clone(),
            body["epoch"].clone(),
            body["seq"].clone()
        ),
        (json!("gw-a"), json!(1), json!(1))
    );

    // 4. Auth and input rejections.
    let (status, body) = post(&client, &base, None, bytes.clone()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body["error"].as_str().unwrap().contains("bearer"), "{body}");
    let (status, _) = post(&client, &base, Some("token-z"), bytes.clone()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body) = post(&client, &base, Some("token-b"), bytes.clone()).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(body["error"].as_str().unwrap().contains("gw-b"), "{body}");
    let (status, body) = post(&client, &base, Some("token-a"), b"not cbor at all".to_vec()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .starts_with("invalid envelope"),
        "{body}"
    );
    let mut tampered = env.clone();
    tampered.body[0] ^= 0xff;
    let (status, body) = post(&client, &base, Some("token-a"), tampered.to_bytes()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["error"].as_str().unwrap().contains("hash"), "{body}");
    let (status, body) = post(&client, &base, Some("token-a"), vec![0u8; LIMIT + 1]).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(body["error"].as_str().unwrap().contains("limit"), "{body}");

    // 5. A second batch for gw-a repeats window w1: both copies stay visible.
    let (env2, _) = batch("gw-a", 1, 2, vec![w1.clone()], 1);
    assert_eq!(
        post(&client, &base, Some("token-a"), env2.to_bytes())
            .await
            .0,
        StatusCode::OK
    );
    let (env_b, _) = batch("gw-b", 4, 1, vec![window("fan", "rpm", 500, 1200.0)], 0);
    assert_eq!(
        post(&client, &base, Some("token-b"), env_b.to_bytes())
            .await
            .0,
        StatusCode::OK
    );

    // 6. Series: ordering, exact fields, filters.
    let all = series(&client, &base, "").await;
    let order: Vec<_> = all
        .iter()
        .map(|w| {
            (
                w.gateway.as_str(),
                w.window.metric.as_str(),
                w.window.start_ms,
                w.seq,
            )
        })
        .collect();
    assert_eq!(
        order,
        [
            ("gw-a", "log.template.7", 1_000_000, 1),
            ("gw-a", "pressure", 1_000_000, 1),
            ("gw-a", "pressure", 1_000_000, 2),
            ("gw-a", "pressure", 1_010_000, 1),
            ("gw-b", "rpm", 500, 1),
        ]
    );
    assert_eq!(all[0].window, w2);
    assert_eq!(all[1].window, w1);
    assert_eq!(all[2].window, w1);
    assert_eq!(all[3].window, w3);
    assert_eq!((all[4].gateway.as_str(), all[4].epoch), ("gw-b", 4));

    let (_, raw) = get(
        &client,
        format!("{base}/v1/series?gateway=gw-a&device=pump-1&metric=log.template.7"),
    )
    .await;
    assert_eq!(raw["truncated"], false);
    let flat = &raw["windows"][0];
    assert_eq!(flat["gateway"], "gw-a");
    assert_eq!(flat["p95"], 7.85);
    assert_eq!(flat["first_ms"], 1_000_003);
    assert_eq!(flat["sketch_alpha"], 0.01);
    assert_eq!(
        flat["template"]["text"],
        "Failed password for <*> from <*> port <*>"
    );
    assert_eq!(flat["template"]["exemplars"].as_array().unwrap().len(), 1);

    let ranged = series(
        &client,
        &base,
        "gateway=gw-a&device=pump-1&metric=pressure&from=1000000&to=1010000",
    )
    .await;
    assert_eq!(ranged.len(), 2);
    assert!(ranged.iter().all(|w| w.window.start_ms == 1_000_000));
    let later = series(&client, &base, "metric=pressure&from=1000001").await;
    assert_eq!(later.len(), 1);
    assert_eq!(later[0].window, w3);
    let only_b = series(&client, &base, "gateway=gw-b&device=&metric=").await;
    assert_eq!(only_b.len(), 1);
    let (_, limited) = get(&client, format!("{base}/v1/series?limit=2")).await;
    assert_eq!(limited["windows"].as_array().unwrap().len(), 2);
    assert_eq!(limited["truncated"], true);

    for bad in [
        "from=yesterday",
        "limit=0",
        "to=1.5",
        "colour=red",
        "from=5&to=4",
    ] {
        let (status, body) = get(&client, format!("{base}/v1/series?{bad}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
        assert!(!body["error"].as_str().unwrap().is_empty());
    }

    // 7. Gateways: totals of stored batches only.
    let (status, gws) = get(&client, format!("{base}/v1/gateways")).await;
    assert_eq!(status, StatusCode::OK);
    let gws = gws.as_array().unwrap();
    assert_eq!(gws.len(), 2);
    assert_eq!(gws[0]["id"], "gw-a");
    assert_eq!(gws[0]["batches"], 2);
    assert_eq!(gws[0]["windows"], 4);
    assert_eq!(gws[0]["counters"], json!({"late": 3, "malformed": 2}));
    assert_eq!(
        gws[0]["last_batch"],
        json!({"gateway": "gw-a", "epoch": 1, "seq": 2})
    );
    assert!(gws[0]["last_seen_ms"].as_i64().unwrap() > 1_600_000_000_000);
    assert_eq!(gws[1]["id"], "gw-b");
    assert_eq!(gws[1]["batches"], 1);

    // 8. Health counts every outcome.
    let (status, health) = get(&client, format!("{base}/v1/health")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(health["status"], "ok");
    assert_eq!(health["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(
        health["counters"],
        json!({
            "stored": 3, "duplicate": 1, "conflict": 1, "unauthorized": 2,
            "forbidden": 1, "rate_limited": 0, "too_large": 1, "malformed": 2, "store_error": 0,
        })
    );

    // 9. Restart on the same directory: data kept, duplicate still detected.
    drop(client);
    server.stop().await;
    let server = Running::start(dir.path()).await;
    let base = server.base.clone();
    let client = reqwest::Client::new();
    let (status, body) = post(&client, &base, Some("token-a"), bytes.clone()).await;
    assert_eq!(
        (status, body["status"].clone()),
        (StatusCode::OK, json!("duplicate"))
    );
    let (status, _) = post(&client, &base, Some("token-a"), other.to_bytes()).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(series(&client, &base, "").await, all);
    let (_, gws_after) = get(&client, format!("{base}/v1/gateways")).await;
    assert_eq!(gws_after.as_array().unwrap().as_slice(), gws);
    drop(client);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_identical_posts_store_once() {
    let dir = tempfile::tempdir().unwrap();
    let server = Running::start(dir.path()).await;
    let client = reqwest::Client::new();
    let (env, _) = batch("gw-b", 9, 1, vec![window("d", "m", 0, 1.0)], 0);
    let bytes = env.to_bytes();
    let posts: Vec<_> = (0..16)
        .map(|_| {
            let (client, base, bytes) = (client.clone(), server.base.clone(), bytes.clone());
            tokio::spawn(async move { post(&client, &base, Some("token-b"), bytes).await })
        })
        .collect();
    let mut stored = 0;
    for p in posts {
        let (status, body) = p.await.unwrap();
        assert_eq!(status, StatusCode::OK);
        if body["status"] == "stored" {
            stored += 1;
        } else {
            assert_eq!(body["status"], "duplicate");
        }
    }
    assert_eq!(stored, 1);
    assert_eq!(series(&client, &server.base, "").await.len(), 1);
    drop(client);
    server.stop().await;
}

async fn post_encoded(base: &str, encoding: &str, bytes: Vec<u8>) -> (StatusCode, Value) {
    let resp = reqwest::Client::new()
        .post(format!("{base}/v1/batches"))
        .header("content-type", "application/cbor")
        .header("content-encoding", encoding)
        .bearer_auth("token-b")
        .body(bytes)
        .send()
        .await
        .expect("request completes");
    let status = resp.status();
    (status, resp.json::<Value>().await.expect("JSON body"))
}

#[tokio::test]
async fn gzip_bodies_are_inflated_under_the_envelope_cap() {
    let dir = tempfile::tempdir().unwrap();
    let server = Running::start(dir.path()).await;
    let windows = (0..200)
        .map(|i| window("d", "m", i * 10_000, 1.0))
        .collect();
    let (env, body) = batch("gw-b", 3, 1, windows, 0);
    let plain = env.to_bytes();
    let packed = wire::transport::gzip(&plain);
    assert!(
        packed.len() * 3 < plain.len(),
        "{} vs {}",
        packed.len(),
        plain.len()
    );

    let (status, answer) = post_encoded(&server.base, "gzip", packed.clone()).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["status"], "stored");
    // The same batch sent plain is the same envelope: a duplicate.
    let (status, answer) = post_encoded(&server.base, "identity", plain).await;
    assert_eq!(
        (status, answer["status"].clone()),
        (StatusCode::OK, json!("duplicate"))
    );
    let stored = series(&reqwest::Client::new(), &server.base, "").await;
    assert_eq!(stored.len(), body.windows.len());

    // A small body that inflates past the largest envelope is refused, not expanded.
    let bomb = wire::transport::gzip(&vec![0u8; wire::MAX_ENVELOPE_BYTES + 1]);
    assert!(bomb.len() < 64 * 1024);
    let (status, answer) = post_encoded(&server.base, "gzip", bomb).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{answer}");
    let (status, answer) = post_encoded(&server.base, "gzip", b"not gzip".to_vec()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert!(
        answer["error"].as_str().unwrap().contains("gzip"),
        "{answer}"
    );
    let (status, answer) = post_encoded(&server.base, "br", packed).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{answer}");
    server.stop().await;
}

#[tokio::test]
async fn escalations_are_stored_once_and_listed_by_device() {
    let dir = tempfile::tempdir().unwrap();
    let server = Running::start(dir.path()).await;
    let client = reqwest::Client::new();
    let escalation = |ts_ms: i64, score: f64| wire::Escalation {
        ts_ms,
        alarm: score > 1.0,
        score,
        confidence: 0.01,
        features: vec![0.5, -1.25, 3.0],
        indices: Vec::new(),
        exemplar: None,
    };
    let mut judged = window("pump-1", "anomaly", 0, 0.9);
    judged.escalations = vec![escalation(20, 0.95), escalation(10, 1.05)];
    let mut other = window("pump-2", "anomaly", 0, 0.9);
    other.escalations = vec![escalation(5, 0.9)];
    let (env, _) = batch("gw-a", 1, 1, vec![judged, other], 0);
    for expect in ["stored", "duplicate"] {
        let (status, body) = post(&client, &server.base, Some("token-a"), env.to_bytes()).await;
        assert_eq!(
            (status, body["status"].as_str()),
            (StatusCode::OK, Some(expect))
        );
    }

    let (status, all) = get(&client, format!("{}/v1/escalations", server.base)).await;
    assert_eq!(status, StatusCode::OK);
    let list = all["escalations"].as_array().unwrap();
    assert_eq!(list.len(), 3, "stored once though posted twice: {all}");
    // Per device in row-time order, with where each came from.
    let first = &list[0];
    assert_eq!(first["device"], "pump-1");
    assert_eq!(first["series"], "anomaly");
    assert_eq!(first["escalation"]["ts_ms"], 10);
    assert_eq!(first["escalation"]["alarm"], true);
    assert_eq!(first["escalation"]["features"], json!([0.5, -1.25, 3.0]));
    // No teacher configured here: stored without a verdict, saying why.
    assert_eq!(first["teacher"], Value::Null);
    assert_eq!(first["teacher_skipped"], "no_teacher");
    assert_eq!(
        (first["epoch"].as_u64(), first["seq"].as_u64()),
        (Some(1), Some(1))
    );

    let url = format!("{}/v1/escalations?gateway=gw-a&device=pump-2", server.base);
    let (_, one) = get(&client, url).await;
    assert_eq!(one["escalations"].as_array().unwrap().len(), 1, "{one}");
    let url = format!("{}/v1/escalations?limit=2", server.base);
    let (_, cut) = get(&client, url).await;
    assert_eq!(cut["escalations"].as_array().unwrap().len(), 2);
    assert_eq!(cut["truncated"], true);
    let (status, bad) = get(&client, format!("{}/v1/escalations?limit=0", server.base)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
    let (status, _) = get(&client, format!("{}/v1/escalations?metric=x", server.base)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    drop(client);
    server.stop().await;
}
