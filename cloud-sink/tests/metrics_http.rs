//! `GET /metrics` after real POSTs: Prometheus text (format 0.0.4) whose
//! counters match what was sent, and the same values as `/v1/health`.

use cloud_sink::auth::token_sha256_hex;
use cloud_sink::{GatewayConfig, Server, SinkConfig};
use tokio::sync::oneshot;
use wire::{BatchKey, Body, Counters, Envelope, Reason, WindowSummary};

fn window(start_ms: i64) -> WindowSummary {
    WindowSummary {
        device: "pump-1".into(),
        metric: "pressure".into(),
        start_ms,
        end_ms: start_ms + 10_000,
        count: 2,
        sum: 7.0,
        min: 3.0,
        max: 4.0,
        mean: 3.5,
        stddev: 0.5,
        p50: 3.5,
        p95: 4.0,
        p99: 4.0,
        sketch_alpha: 0.01,
        first: 3.0,
        first_ms: start_ms,
        last: 4.0,
        last_ms: start_ms + 9_000,
        verdict: None,
        rolled_up: 0,
        template: None,
        escalations: Vec::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_endpoint_counts_what_was_posted() {
    let dir = tempfile::tempdir().unwrap();
    let config = SinkConfig {
        telemetry: Default::default(),
        listen: "127.0.0.1:0".into(),
        data_dir: dir.path().to_owned(),
        store: Default::default(),
        limits: Default::default(),
        tls: None,
        gateways: vec![GatewayConfig {
            id: "gw-a".into(),
            token_sha256: token_sha256_hex("token-a").into(),
            cert_sha256: Default::default(),
        }],
        teachers: Vec::new(),
    };
    let server = Server::bind(&config).await.expect("server binds");
    let base = format!("http://{}", server.local_addr());
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(server.run(async {
        let _ = stopped.await;
    }));
    let client = reqwest::Client::new();

    let mut counters = Counters::default();
    counters.add(Reason::Malformed, 4);
    let body = Body {
        windows: vec![window(0), window(10_000), window(20_000)],
        counters,
        ..Body::default()
    };
    let key = BatchKey {
        gateway: "gw-a".into(),
        epoch: 1,
        seq: 1,
    };
    let sealed = Envelope::seal(&key, 1_700_000_000_000, &body).to_bytes();
    let garbage = b"not an envelope".to_vec();
    let mut sent_bytes = 0;
    // Stored, duplicate, then an undecodable body.
    for (bytes, status) in [(&sealed, 200), (&sealed, 200), (&garbage, 400)] {
        sent_bytes += bytes.len();
        let resp = client
            .post(format!("{base}/v1/batches"))
            .bearer_auth("token-a")
            .body(bytes.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), status);
    }
    // Unauthenticated: counted, but neither read nor timed.
    let resp = client
        .post(format!("{base}/v1/batches"))
        .body(sealed.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);

    let resp = client.get(format!("{base}/metrics")).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let content_type = resp.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    let text = resp.text().await.unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let expected = [
        "# TYPE cloud_sink_batches_total counter".to_owned(),
        r#"cloud_sink_batches_total{outcome="stored"} 1"#.to_owned(),
        r#"cloud_sink_batches_total{outcome="duplicate"} 1"#.to_owned(),
        r#"cloud_sink_batches_total{outcome="malformed"} 1"#.to_owned(),
        r#"cloud_sink_batches_total{outcome="unauthorized"} 1"#.to_owned(),
        r#"cloud_sink_batches_total{outcome="conflict"} 0"#.to_owned(),
        r#"cloud_sink_rejected_total{reason="envelope"} 1"#.to_owned(),
        r#"cloud_sink_rejected_total{reason="hash_mismatch"} 0"#.to_owned(),
        "cloud_sink_windows_stored_total 3".to_owned(),
        "cloud_sink_escalations_stored_total 0".to_owned(),
        format!("cloud_sink_received_bytes_total {sent_bytes}"),
        r#"cloud_sink_gateway_counters_total{gateway="gw-a",reason="malformed"} 4"#.to_owned(),
        "cloud_sink_ingest_latency_seconds_count 3".to_owned(),
        r#"cloud_sink_ingest_latency_seconds_bucket{le="+Inf"} 3"#.to_owned(),
        "# TYPE cloud_sink_sync_lag_seconds gauge".to_owned(),
        "# TYPE cloud_sink_teacher_latency_seconds histogram".to_owned(),
        r#"cloud_sink_teacher_judgements_total{result="agree"} 0"#.to_owned(),
    ];
    for line in &expected {
        assert!(
            lines.contains(&line.as_str()),
            "missing {line:?} in\n{text}"
        );
    }
    // The lag gauge has the gateway's sample (its value is the clock's).
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with(r#"cloud_sink_sync_lag_seconds{gateway="gw-a"} "#)),
        "{text}"
    );

    // /v1/health reads the same counters.
    let health: serde_json::Value = client
        .get(format!("{base}/v1/health"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["counters"]["stored"], 1);
    assert_eq!(health["counters"]["malformed"], 1);

    let _ = stop.send(());
    task.await.unwrap().expect("server stops cleanly");
}
