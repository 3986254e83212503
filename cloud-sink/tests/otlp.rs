//! Acceptance of the observability issue, on the sink: with `[telemetry]`
//! pointing at an in-process OTLP/HTTP receiver, one real batch POSTed to a
//! real sink arrives there as an `ingest.batch` span (gateway, epoch, seq,
//! outcome; children `teacher.judge` and `store.put`) and as metrics (batches
//! stored = 1, windows, the gateway's counters, sync lag, latency).
//! One test: it installs the process-wide tracing subscriber.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cloud_sink::auth::token_sha256_hex;
use cloud_sink::metrics::SinkMetrics;
use cloud_sink::{GatewayConfig, Server, SinkConfig};
use telemetry::testing::OtlpReceiver;
use telemetry::{LogOptions, TelemetryConfig};
use tokio::sync::oneshot;
use wire::{BatchKey, Body, Counters, Envelope, Reason, WindowSummary};

/// Upper bound of every wait; reached only when something is wrong.
const WAIT: Duration = Duration::from_secs(60);
const CREATED_MS: i64 = 1_700_000_000_000;

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

fn now_ms() -> i64 {
    let d = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    i64::try_from(d.as_millis()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ingested_batch_arrives_as_spans_and_metrics_over_otlp() {
    let receiver = OtlpReceiver::start().await.expect("receiver binds");
    let dir = tempfile::tempdir().unwrap();
    let config = SinkConfig {
        telemetry: TelemetryConfig {
            otlp_endpoint: Some(receiver.endpoint()),
            export_interval: Duration::from_millis(200),
            ..TelemetryConfig::default()
        },
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
    let metrics = SinkMetrics::new();
    let guard = telemetry::init(
        "cloud-sink",
        &config.telemetry,
        &LogOptions {
            // Spans at info are exported whatever RUST_LOG says.
            from_env: false,
            ..LogOptions::default()
        },
        &metrics.registry,
    )
    .expect("telemetry starts");
    let server = Server::bind_with_metrics(&config, metrics)
        .await
        .expect("server binds");
    let base = format!("http://{}", server.local_addr());
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(server.run(async {
        let _ = stopped.await;
    }));

    let mut counters = Counters::default();
    counters.add(Reason::Late, 2);
    let body = Body {
        windows: vec![window(1_000_000), window(1_010_000)],
        counters,
        ..Body::default()
    };
    let key = BatchKey {
        gateway: "gw-a".into(),
        epoch: 3,
        seq: 9,
    };
    let bytes = Envelope::seal(&key, CREATED_MS, &body).to_bytes();
    let before_ms = now_ms();
    let resp = reqwest::Client::new()
        .post(format!("{base}/v1/batches"))
        .bearer_auth("token-a")
        .header("content-type", "application/cbor")
        .body(bytes)
        .send()
        .await
        .expect("POST completes");
    let after_ms = now_ms();
    assert_eq!(resp.status(), reqwest::StatusCode::OK);
    assert_eq!(
        resp.json::<serde_json::Value>().await.unwrap()["status"],
        "stored"
    );

    // The trace: one ingest.batch span with its attributes and two children.
    let (batch, judge, put) = receiver
        .wait_for(WAIT, |r| {
            let batch = r.spans.iter().find(|s| s.name == "ingest.batch")?;
            let child = |name: &str| {
                r.spans
                    .iter()
                    .find(|s| s.name == name && s.parent_span_id == batch.span_id)
                    .cloned()
            };
            Some((batch.clone(), child("teacher.judge")?, child("store.put")?))
        })
        .await
        .expect("ingest.batch and its children arrive");
    assert_eq!(batch.service, "cloud-sink");
    for (key, value) in [
        ("gateway", "gw-a"),
        ("epoch", "3"),
        ("seq", "9"),
        ("windows", "2"),
        ("outcome", "stored"),
    ] {
        assert_eq!(
            batch.attributes.get(key).map(String::as_str),
            Some(value),
            "{key} of {batch:?}"
        );
    }
    assert_eq!(
        (judge.trace_id, put.trace_id),
        (batch.trace_id.clone(), batch.trace_id)
    );
    assert_eq!(put.attributes["windows"], "2");

    // The metrics: read from the same atomics as GET /metrics.
    let received = receiver
        .wait_for(WAIT, |r| {
            let stored = r.latest("cloud_sink_batches", &[("outcome", "stored")])?;
            (stored.value == 1.0 && r.latest("cloud_sink_ingest_latency_seconds", &[]).is_some())
                .then(|| r.clone())
        })
        .await
        .expect("batches stored = 1 arrives");
    let value = |metric: &str, attrs: &[(&str, &str)]| {
        received
            .latest(metric, attrs)
            .unwrap_or_else(|| panic!("{metric} {attrs:?} missing"))
            .value
    };
    assert_eq!(
        value("cloud_sink_batches", &[("outcome", "duplicate")]),
        0.0
    );
    assert_eq!(value("cloud_sink_windows_stored", &[]), 2.0);
    assert_eq!(
        value(
            "cloud_sink_gateway_counters",
            &[("gateway", "gw-a"), ("reason", "late")]
        ),
        2.0
    );
    let lag = value("cloud_sink_sync_lag_seconds", &[("gateway", "gw-a")]);
    let lag_ms = |t: i64| (t - CREATED_MS) as f64 / 1000.0;
    assert!(
        (lag_ms(before_ms)..=lag_ms(after_ms)).contains(&lag),
        "sync lag {lag} outside the request's time"
    );
    let latency = received
        .latest("cloud_sink_ingest_latency_seconds", &[])
        .unwrap();
    assert_eq!((latency.kind, latency.value), ("histogram", 1.0));

    let _ = stop.send(());
    task.await.unwrap().expect("server stops cleanly");
    drop(guard);
}
