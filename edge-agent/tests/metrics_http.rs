//! The agent's `GET /metrics` (`metrics_listen`) over a real pipeline fed
//! without a broker: exact message, decode-error, reading and health counts,
//! the outbox gauges as the store holds them (before and after the batches
//! leave), the window lag, 404 elsewhere, and a taken address failing with
//! `metrics_listen` named.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use edge_agent::classify::ClassifyStage;
use edge_agent::metrics::AgentMetrics;
use edge_agent::metrics_http::MetricsEndpoint;
use edge_agent::pipeline::{now_ms, Pipeline};
use edge_agent::source::{AckToken, Delivery};
use tokio::sync::{oneshot, Notify};

const T0: i64 = 1_583_748_840_000; // 2020-03-09T10:14:00Z, a window boundary

fn delivery(topic: &str, payload: String) -> Delivery {
    Delivery {
        topic: topic.into(),
        payload: Bytes::from(payload),
        ack: AckToken::none(),
    }
}

fn json(device: &str, seq: u64, ts: i64, value: f64) -> Delivery {
    delivery(
        &format!("plant/{device}/sensors"),
        format!(r#"{{"seq":{seq},"ts":{ts},"temp":{value}}}"#),
    )
}

/// The value of the sample line `series` (name and labels, exactly).
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {series} in\n{text}"))
        .parse()
        .unwrap()
}

async fn scrape(base: &str) -> String {
    let resp = reqwest::get(format!("{base}/metrics")).await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let content_type = resp.headers()["content-type"].to_str().unwrap().to_owned();
    assert_eq!(content_type, telemetry::PROMETHEUS_CONTENT_TYPE);
    resp.text().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_endpoint_counts_what_the_pipeline_took() {
    let dir = tempfile::tempdir().unwrap();
    let settings = common::demo_settings(dir.path(), |c| c.window.width = Duration::from_secs(10));
    let metrics = AgentMetrics::new();
    let mut p = Pipeline::open_with_metrics(
        &settings,
        ClassifyStage::default(),
        Arc::new(Notify::new()),
        metrics.clone(),
    )
    .unwrap();

    // 60 good messages of one reading each (30 s of two pumps), then one of
    // each kind of bad input, in two groups.
    let mut good = Vec::new();
    for i in 0..30u64 {
        let ts = T0 + i as i64 * 1000;
        good.push(json("pump-1", i + 1, ts, i as f64));
        good.push(json("pump-2", i + 1, ts, 100.0 - i as f64));
    }
    p.ingest(&good, Instant::now()).unwrap();
    let bad = [
        delivery("plant/pump-1/sensors", "{not json".into()),
        delivery(
            "plant/pump-1/sensors",
            format!(r#"{{"ts":{T0},"temp":"hot"}}"#),
        ),
        delivery("plant/pump-1/unknown", r#"{"temp":1}"#.into()),
        json("pump-1", 5, T0 + 4000, 999.0), // a redelivery of seq 5
    ];
    p.ingest(&bad, Instant::now()).unwrap();
    let before_cut = now_ms();
    let cut = p
        .tick(Instant::now() + Duration::from_secs(3600))
        .unwrap()
        .expect("the idle windows are cut");
    let after_cut = now_ms();
    assert_eq!(cut.windows, 6, "3 windows of 10 s for each of 2 pumps");
    let store = p.store().clone();
    assert!(store.outbox_len() >= 1);

    let endpoint = MetricsEndpoint::bind("127.0.0.1:0".parse().unwrap())
        .await
        .expect("binds");
    let base = format!("http://{}", endpoint.local_addr());
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(endpoint.serve(metrics.clone(), store.clone(), async {
        let _ = stopped.await;
    }));

    let text = scrape(&base).await;
    let lines: Vec<&str> = text.lines().collect();
    for line in [
        "# TYPE edge_agent_messages_total counter",
        // The "hot" message decoded (a field of the wrong type is counted, the
        // message is not rejected); the other three are.
        r#"edge_agent_messages_total{outcome="accepted"} 61"#,
        r#"edge_agent_messages_total{outcome="rejected"} 3"#,
        r#"edge_agent_decode_errors_total{reason="malformed"} 1"#,
        r#"edge_agent_decode_errors_total{reason="wrong_type"} 1"#,
        r#"edge_agent_decode_errors_total{reason="unknown_topic"} 1"#,
        r#"edge_agent_decode_errors_total{reason="duplicate"} 1"#,
        r#"edge_agent_decode_errors_total{reason="late"} 0"#,
        r#"edge_agent_decode_errors_total{reason="too_large"} 0"#,
        "edge_agent_readings_total 60",
        "edge_agent_dropped_windows_total 0",
        "edge_agent_rolled_up_windows_total 0",
        r#"edge_agent_batches_sent_total{outcome="stored"} 0"#,
        r#"edge_agent_health_total{kind="starts"} 1"#,
        r#"edge_agent_health_total{kind="uplink_failures"} 0"#,
        "# TYPE edge_agent_sync_lag_seconds gauge",
    ] {
        assert!(lines.contains(&line), "missing {line:?} in\n{text}");
    }
    assert_eq!(
        sample(&text, "edge_agent_outbox_batches"),
        store.outbox_len() as f64
    );
    let bytes = sample(&text, "edge_agent_outbox_bytes");
    assert!(bytes > 0.0);
    assert_eq!(bytes, store.outbox_bytes() as f64);
    // The newest closed window ends at T0 + 30 s; the lag is the clock's
    // distance from it when the cut closed it.
    let lag = sample(&text, "edge_agent_window_lag_seconds");
    let end = T0 + 30_000;
    let lag_at = |t: i64| (t - end) as f64 / 1000.0;
    assert!(
        (lag_at(before_cut)..=lag_at(after_cut)).contains(&lag),
        "window lag {lag} outside the cut's time"
    );

    // The batches leave (as after the sink stored them): the gauges follow
    // at the next scrape, and counters do not move.
    while let Some((seq, _)) = store.outbox_first().unwrap() {
        store.outbox_remove(seq).unwrap();
    }
    let text = scrape(&base).await;
    assert_eq!(sample(&text, "edge_agent_outbox_batches"), 0.0);
    assert_eq!(sample(&text, "edge_agent_outbox_bytes"), 0.0);
    assert_eq!(sample(&text, "edge_agent_sync_lag_seconds"), 0.0);
    assert_eq!(
        sample(&text, r#"edge_agent_messages_total{outcome="accepted"}"#),
        61.0
    );

    let other = reqwest::get(format!("{base}/v1/health")).await.unwrap();
    assert_eq!(other.status().as_u16(), 404);

    let _ = stop.send(());
    task.await.unwrap().expect("endpoint stops cleanly");
}

#[tokio::test]
async fn a_taken_address_fails_naming_metrics_listen() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let err = MetricsEndpoint::bind(addr).await.unwrap_err();
    let text = err.to_string();
    assert!(text.starts_with("metrics_listen"), "{text}");
    assert!(text.contains(&addr.to_string()), "{text}");
    // The OS's reason is the error's source (shown once in a `{:#}` chain).
    let source = std::error::Error::source(&err).expect("the bind error");
    assert!(!text.contains(&source.to_string()), "{text}");
}
