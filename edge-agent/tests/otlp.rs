//! Acceptance of the observability issue, on the agent: with `[telemetry]`
//! pointing at an in-process OTLP/HTTP receiver, a group commit of a real
//! pipeline (no broker) arrives as a `pipeline.commit` span (messages,
//! accepted, readings), the syncer's POST of its batch to a stub sink as a
//! `sync.batch` span (epoch, seq, bytes, outcome), and the metrics arrive:
//! messages and decode errors, the log model's inference time, the batch
//! sent, the outbox empty again with no sync lag.
//! One test: it installs the process-wide tracing subscriber.

mod common;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::routing::post;
use bytes::Bytes;
use edge_agent::classify::ClassifyStage;
use edge_agent::metrics::AgentMetrics;
use edge_agent::pipeline::Pipeline;
use edge_agent::source::{AckToken, Delivery};
use edge_agent::syncer::Syncer;
use telemetry::testing::OtlpReceiver;
use telemetry::{LogOptions, TelemetryConfig};
use tokio::sync::{watch, Notify};
use wire::Envelope;

/// Upper bound of every wait; reached only when something is wrong.
const WAIT: Duration = Duration::from_secs(60);
const T0: i64 = 1_583_748_840_000;

fn delivery(topic: &str, payload: String) -> Delivery {
    Delivery {
        topic: topic.into(),
        payload: Bytes::from(payload),
        ack: AckToken::none(),
    }
}

/// A sink that stores everything: 200 to every POST, counted.
async fn stub_sink() -> (String, Arc<AtomicU64>) {
    let posts = Arc::new(AtomicU64::new(0));
    let counted = posts.clone();
    let app = axum::Router::new().route(
        "/v1/batches",
        post(move || {
            let counted = counted.clone();
            async move {
                counted.fetch_add(1, Ordering::SeqCst);
                r#"{"status":"stored"}"#
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, posts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_and_a_sync_arrive_as_spans_and_metrics_over_otlp() {
    let receiver = OtlpReceiver::start().await.expect("receiver binds");
    let (sink_url, posts) = stub_sink().await;
    let dir = tempfile::tempdir().unwrap();
    let endpoint = receiver.endpoint();
    let mut settings = common::demo_settings(dir.path(), |c| {
        c.window.width = Duration::from_secs(10);
        c.uplink.url = sink_url;
        c.models.sensor.clear(); // the log model alone is enough
        c.telemetry = TelemetryConfig {
            otlp_endpoint: Some(endpoint),
            export_interval: Duration::from_millis(200),
            ..TelemetryConfig::default()
        };
    });
    settings
        .models
        .resolve_paths(&PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../configs"));
    let metrics = AgentMetrics::new();
    let guard = telemetry::init(
        "edge-agent",
        &settings.telemetry,
        &LogOptions {
            // Spans at info are exported whatever RUST_LOG says.
            from_env: false,
            ..LogOptions::default()
        },
        &metrics.registry,
    )
    .expect("telemetry starts");

    let ready = Arc::new(Notify::new());
    let classify = ClassifyStage::load(&settings.models).expect("the log model loads");
    let mut p =
        Pipeline::open_with_metrics(&settings, classify, ready.clone(), metrics.clone()).unwrap();
    let group = [
        delivery(
            "plant/pump-1/sensors",
            format!(r#"{{"seq":1,"ts":{T0},"temp":20.5}}"#),
        ),
        delivery(
            "plant/pump-1/sensors",
            format!(r#"{{"seq":2,"ts":{},"temp":21.5}}"#, T0 + 1000),
        ),
        delivery(
            "plant/pump-1/logs",
            "ERROR disk /dev/sda1 is full".to_owned(),
        ),
        delivery("plant/pump-1/sensors", "{not json".to_owned()),
    ];
    p.ingest(&group, Instant::now()).unwrap();
    p.tick(Instant::now() + Duration::from_secs(3600))
        .unwrap()
        .expect("the idle windows are cut");
    let store = p.store().clone();
    let batches = store.outbox_len() as u64;
    assert!(batches >= 1);
    let (first_seq, bytes) = store.outbox_first().unwrap().unwrap();
    let (envelope, _) = Envelope::open(&bytes).unwrap();

    let (stop_tx, stop_rx) = watch::channel(false);
    let syncer = Syncer::new(store.clone(), &settings.uplink, "token".into(), ready)
        .unwrap()
        .with_metrics(metrics.clone());
    let syncer_task = tokio::spawn(syncer.run(stop_rx));

    // The traces: one commit span, and one sync span per batch.
    let (commit, sync) = receiver
        .wait_for(WAIT, |r| {
            let commit = r.spans.iter().find(|s| s.name == "pipeline.commit")?;
            let sync = r
                .spans
                .iter()
                .find(|s| s.name == "sync.batch" && s.attributes["seq"] == first_seq.to_string())?;
            Some((commit.clone(), sync.clone()))
        })
        .await
        .expect("pipeline.commit and sync.batch arrive");
    assert_eq!(commit.service, "edge-agent");
    for (key, value) in [("messages", "4"), ("accepted", "3")] {
        assert_eq!(
            commit.attributes.get(key).map(String::as_str),
            Some(value),
            "{key} of {commit:?}"
        );
    }
    let readings: u64 = commit.attributes["readings"].parse().unwrap();
    assert!(
        readings >= 3,
        "two temperatures and the log line's: {commit:?}"
    );
    for (key, value) in [
        ("epoch", envelope.epoch.to_string()),
        ("bytes", bytes.len().to_string()),
        ("outcome", "stored".to_owned()),
    ] {
        assert_eq!(sync.attributes.get(key), Some(&value), "{key} of {sync:?}");
    }

    // The metrics: every batch sent and stored, the outbox empty again.
    let received = receiver
        .wait_for(WAIT, |r| {
            let sent = r.latest("edge_agent_batches_sent", &[("outcome", "stored")])?;
            let left = r.latest("edge_agent_outbox_batches", &[])?;
            (sent.value == batches as f64 && left.value == 0.0).then(|| r.clone())
        })
        .await
        .expect("batches sent arrives with an empty outbox");
    assert_eq!(posts.load(Ordering::SeqCst), batches);
    let value = |metric: &str, attrs: &[(&str, &str)]| {
        received
            .latest(metric, attrs)
            .unwrap_or_else(|| panic!("{metric} {attrs:?} missing"))
            .value
    };
    assert_eq!(
        value("edge_agent_messages", &[("outcome", "accepted")]),
        3.0
    );
    assert_eq!(
        value("edge_agent_messages", &[("outcome", "rejected")]),
        1.0
    );
    assert_eq!(
        value("edge_agent_decode_errors", &[("reason", "malformed")]),
        1.0
    );
    assert_eq!(
        value("edge_agent_batches_sent", &[("outcome", "failed")]),
        0.0
    );
    assert_eq!(value("edge_agent_sync_lag_seconds", &[]), 0.0);
    assert_eq!(value("edge_agent_outbox_bytes", &[]), 0.0);
    assert_eq!(value("edge_agent_health", &[("kind", "starts")]), 1.0);
    let inference = received
        .latest("edge_agent_inference_seconds", &[("model", "log")])
        .expect("the log model's call is timed");
    assert_eq!(inference.kind, "histogram");
    assert_eq!(inference.value, 1.0, "one call for the group's one line");
    assert!(inference.sum > 0.0);

    let _ = stop_tx.send(true);
    syncer_task.await.unwrap().expect("syncer stops cleanly");
    drop(p);
    drop(guard);
}
