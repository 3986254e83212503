//! OTLP end to end within the crate: `init` with an endpoint, then a span
//! (with a child), a counter, a gauge and a histogram arrive at the in-process
//! OTLP/HTTP receiver, decoded from protobuf. One test: it installs the
//! process-wide subscriber.

use std::time::Duration;

use telemetry::testing::OtlpReceiver;
use telemetry::{LogOptions, Metrics, TelemetryConfig};

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_and_metrics_arrive_at_an_otlp_http_receiver() {
    let receiver = OtlpReceiver::start().await.expect("receiver binds");
    let metrics = Metrics::new("demo");
    let jobs = metrics.counter_vec("jobs", "Jobs by result.", &["result"]);
    let config = TelemetryConfig {
        otlp_endpoint: Some(receiver.endpoint()),
        export_interval: Duration::from_millis(200),
        resource: [("deployment.environment".to_owned(), "test".to_owned())].into(),
        ..TelemetryConfig::default()
    };
    let guard = telemetry::init(
        "demo-service",
        &config,
        &LogOptions {
            // Spans at info are exported whatever RUST_LOG says.
            from_env: false,
            ..LogOptions::default()
        },
        &metrics,
    )
    .expect("telemetry starts");
    assert!(guard.exporting());
    // Registered after init: bridged at once.
    let depth = metrics.gauge("queue_depth", "Queue depth.");
    let took = metrics.histogram("job_seconds", "Job time.", &[0.5, 1.0]);

    {
        let span = tracing::info_span!("job.run", job = "j-7", attempt = 2_u64);
        let _entered = span.enter();
        tracing::info_span!("job.step", step = "load").in_scope(|| {});
    }
    jobs.with(&["ok"]).inc_by(3);
    depth.set(4.5);
    took.observe(0.25);

    let (parent, child) = receiver
        .wait_for(WAIT, |r| {
            let parent = r.spans.iter().find(|s| s.name == "job.run")?;
            let child = r.spans.iter().find(|s| s.name == "job.step")?;
            Some((parent.clone(), child.clone()))
        })
        .await
        .expect("both spans arrive");
    assert_eq!(parent.service, "demo-service");
    assert_eq!(parent.attributes["job"], "j-7");
    assert_eq!(parent.attributes["attempt"], "2");
    assert_eq!(child.parent_span_id, parent.span_id);
    assert_eq!(child.trace_id, parent.trace_id);

    let received = receiver
        .wait_for(WAIT, |r| {
            let ok = r.latest("demo_jobs", &[("result", "ok")])?;
            let depth = r.latest("demo_queue_depth", &[])?;
            let took = r.latest("demo_job_seconds", &[])?;
            (ok.value == 3.0 && depth.value == 4.5 && took.value == 1.0).then_some(r.clone())
        })
        .await
        .expect("the metrics arrive with their values");
    let ok = received.latest("demo_jobs", &[("result", "ok")]).unwrap();
    assert_eq!(ok.kind, "sum");
    let took = received.latest("demo_job_seconds", &[]).unwrap();
    assert_eq!((took.kind, took.sum), ("histogram", 0.25));

    // Dropping the guard flushes: a span ended just before is exported.
    tracing::info_span!("job.last").in_scope(|| {});
    drop(guard);
    let spans = receiver.received().spans;
    assert!(spans.iter().any(|s| s.name == "job.last"), "{spans:?}");
}
