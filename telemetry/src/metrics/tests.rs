//! Prometheus text of our registry: names, `_total`, labels, escaping,
//! histogram buckets, shared values between clones.

use super::*;

fn lines(text: &str) -> Vec<&str> {
    text.lines().collect()
}

#[test]
fn counters_gauges_and_histograms_encode_as_prometheus_text() {
    let m = Metrics::new("sink");
    let batches = m.counter_vec("batches", "Batches by outcome.", &["outcome"]);
    batches.with(&["stored"]).inc_by(2);
    batches.with(&["duplicate"]).inc();
    let lag = m.gauge_vec("sync_lag_seconds", "Sync lag.", &["gateway"]);
    lag.with(&["gw-a"]).set(1.5);
    let latency = m.histogram("latency_seconds", "Latency.", &[0.1, 1.0]);
    latency.observe(0.0625);
    latency.observe(0.5);
    latency.observe(7.0);

    let text = m.encode_prometheus();
    let l = lines(&text);
    // Counters: descriptors and samples name the `_total` series (format 0.0.4).
    let at = l
        .iter()
        .position(|x| *x == "# HELP sink_batches_total Batches by outcome.")
        .expect(&text);
    assert_eq!(l[at + 1], "# TYPE sink_batches_total counter");
    let mut samples = l[at + 2..at + 4].to_vec();
    samples.sort_unstable();
    assert_eq!(
        samples,
        [
            "sink_batches_total{outcome=\"duplicate\"} 1",
            "sink_batches_total{outcome=\"stored\"} 2",
        ]
    );
    // Gauges keep their name.
    assert!(l.contains(&"# TYPE sink_sync_lag_seconds gauge"), "{text}");
    assert!(
        l.contains(&"sink_sync_lag_seconds{gateway=\"gw-a\"} 1.5"),
        "{text}"
    );
    // Histograms: cumulative buckets, +Inf, sum, count.
    assert!(
        l.contains(&"# TYPE sink_latency_seconds histogram"),
        "{text}"
    );
    for expected in [
        "sink_latency_seconds_sum 7.5625",
        "sink_latency_seconds_count 3",
        "sink_latency_seconds_bucket{le=\"0.1\"} 1",
        "sink_latency_seconds_bucket{le=\"1.0\"} 2",
        "sink_latency_seconds_bucket{le=\"+Inf\"} 3",
    ] {
        assert!(l.contains(&expected), "missing {expected:?} in\n{text}");
    }
    // No OpenMetrics-only lines.
    assert!(
        !text.contains("# EOF") && !text.contains("# UNIT"),
        "{text}"
    );
}

#[test]
fn unlabelled_instruments_have_no_braces_and_are_exported_from_zero() {
    let m = Metrics::new("a");
    let windows = m.counter("windows_stored", "Windows stored.");
    let _bytes = m.counter("bytes_received", "Bytes received.");
    let _took = m.histogram("took_seconds", "Time taken.", &[1.0]);
    windows.inc_by(40);
    let text = m.encode_prometheus();
    assert!(
        lines(&text).contains(&"a_windows_stored_total 40"),
        "{text}"
    );
    assert!(lines(&text).contains(&"a_bytes_received_total 0"), "{text}");
    assert!(lines(&text).contains(&"a_took_seconds_count 0"), "{text}");
    assert!(
        lines(&text).contains(&"a_took_seconds_bucket{le=\"+Inf\"} 0"),
        "{text}"
    );
}

#[test]
fn clones_share_one_value_and_labels_are_escaped() {
    let m = Metrics::new("a");
    let by_reason = m.counter_vec("rejected", "Rejections.", &["reason", "gateway"]);
    let again = by_reason.clone();
    by_reason.with(&["bad \"gzip\"\\", "gw"]).inc();
    again.with(&["bad \"gzip\"\\", "gw"]).inc();
    let handle = by_reason.with(&["bad \"gzip\"\\", "gw"]);
    assert_eq!(handle.get(), 2);
    let text = m.clone().encode_prometheus();
    assert!(
        lines(&text).contains(&r#"a_rejected_total{reason="bad \"gzip\"\\",gateway="gw"} 2"#),
        "{text}"
    );
}

#[test]
fn a_family_appears_with_its_first_label_set() {
    let m = Metrics::new("a");
    let lag = m.gauge_vec("lag_seconds", "Lag.", &["gateway"]);
    assert_eq!(m.encode_prometheus(), "");
    lag.with(&["gw-b"]).set(0.25);
    assert_eq!(
        lines(&m.encode_prometheus()),
        [
            "# HELP a_lag_seconds Lag.",
            "# TYPE a_lag_seconds gauge",
            "a_lag_seconds{gateway=\"gw-b\"} 0.25",
        ]
    );
}
