//! The pipeline without a broker: windows, counters, dedup, and crash replay.
//!
//! A "crash" here is dropping the pipeline without closing anything: what it
//! committed is all that survives, exactly as after `kill -9` (the end-to-end
//! tests in hil-tests do the real kill).

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use edge_agent::classify::ClassifyStage;
use edge_agent::config::Settings;
use edge_agent::pipeline::Pipeline;
use edge_agent::source::{AckToken, Delivery};
use tokio::sync::Notify;
use wire::{Envelope, Reason, WindowSummary};

const T0: i64 = 1_583_748_840_000; // 2020-03-09T10:14:00Z, a window boundary

fn settings(dir: &std::path::Path) -> Settings {
    common::demo_settings(dir, |c| c.window.width = Duration::from_secs(10))
}

fn json(device: &str, seq: u64, ts: i64, value: f64) -> Delivery {
    Delivery {
        topic: format!("plant/{device}/sensors"),
        payload: Bytes::from(format!(r#"{{"seq":{seq},"ts":{ts},"temp":{value}}}"#)),
        ack: AckToken::none(),
    }
}

fn raw(topic: &str, payload: &str) -> Delivery {
    Delivery {
        topic: topic.into(),
        payload: Bytes::from(payload.to_owned()),
        ack: AckToken::none(),
    }
}

/// Closes everything (idle) and returns the windows and counters of the outbox.
/// `hours` moves the clock forward; each drain of one pipeline needs a later one.
fn drain(p: &mut Pipeline, hours: u64) -> (Vec<WindowSummary>, wire::Counters) {
    p.tick(Instant::now() + Duration::from_secs(3600 * hours))
        .unwrap();
    let (mut windows, mut counters) = (Vec::new(), wire::Counters::default());
    while let Some((seq, bytes)) = p.store().outbox_first().unwrap() {
        let (_, body) = Envelope::open(&bytes).unwrap();
        windows.extend(body.windows);
        counters.merge(&body.counters);
        p.store().outbox_remove(seq).unwrap();
    }
    windows.sort_by(|a, b| {
        (&a.device, &a.metric, a.start_ms).cmp(&(&b.device, &b.metric, b.start_ms))
    });
    (windows, counters)
}

fn stream() -> Vec<Delivery> {
    let mut v = Vec::new();
    for i in 0..30u64 {
        v.push(json("pump-1", i + 1, T0 + i as i64 * 1000, i as f64 * 0.5));
        v.push(json(
            "pump-2",
            i + 1,
            T0 + i as i64 * 1000,
            100.0 - i as f64,
        ));
    }
    v
}

#[test]
fn windows_are_exact_and_bad_input_is_counted() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = Pipeline::open(
        &settings(dir.path()),
        ClassifyStage::default(),
        Arc::new(Notify::new()),
    )
    .unwrap();
    let mut input = stream();
    input.push(raw("plant/pump-1/sensors", "{not json"));
    input.push(raw(
        "plant/pump-1/sensors",
        r#"{"ts":1583748840000,"temp":"hot"}"#,
    ));
    input.push(raw("plant/pump-1/unknown", r#"{"temp":1}"#));
    input.push(json("pump-1", 5, T0 + 4000, 999.0)); // redelivery of seq 5
    p.ingest(&input, Instant::now()).unwrap();
    let (windows, counters) = drain(&mut p, 1);
    assert_eq!(windows.len(), 6, "3 windows of 10 s for each of 2 devices");
    let first = &windows[0];
    assert_eq!(
        (first.device.as_str(), first.start_ms, first.count),
        ("pump-1", T0, 10)
    );
    assert_eq!((first.min, first.max, first.mean), (0.0, 4.5, 2.25));
    assert_eq!(first.sum, (0..10).map(|i| i as f64 * 0.5).sum::<f64>());
    assert_eq!(counters.get(Reason::Malformed), 1);
    assert_eq!(counters.get(Reason::WrongType), 1);
    assert_eq!(counters.get(Reason::UnknownTopic), 1);
    assert_eq!(counters.get(Reason::Duplicate), 1);
    // Late data after the window shipped is counted, not merged.
    p.ingest(&[json("pump-1", 100, T0 + 1000, 5.0)], Instant::now())
        .unwrap();
    let (windows, counters) = drain(&mut p, 2);
    assert!(windows.is_empty());
    assert_eq!(counters.get(Reason::Late), 1);
}

#[test]
fn a_crash_at_any_point_gives_the_same_windows_as_no_crash() {
    let reference = {
        let dir = tempfile::tempdir().unwrap();
        let mut p = Pipeline::open(
            &settings(dir.path()),
            ClassifyStage::default(),
            Arc::new(Notify::new()),
        )
        .unwrap();
        p.ingest(&stream(), Instant::now()).unwrap();
        drain(&mut p, 1).0
    };
    for crash_after in [1, 17, 33, 59] {
        let dir = tempfile::tempdir().unwrap();
        let s = settings(dir.path());
        let input = stream();
        {
            let mut p =
                Pipeline::open(&s, ClassifyStage::default(), Arc::new(Notify::new())).unwrap();
            for chunk in input[..crash_after].chunks(7) {
                p.ingest(chunk, Instant::now()).unwrap();
            }
            // Some windows close and ship before the crash.
            p.tick(Instant::now() + Duration::from_secs(2)).unwrap();
        } // crash: dropped without a clean stop
        let mut p = Pipeline::open(&s, ClassifyStage::default(), Arc::new(Notify::new())).unwrap();
        // The broker redelivers the last unacked group too.
        let redeliver_from = crash_after.saturating_sub(3);
        p.ingest(&input[redeliver_from..], Instant::now()).unwrap();
        let (windows, counters) = drain(&mut p, 1);
        assert_eq!(windows, reference, "crash after {crash_after} messages");
        assert_eq!(counters.get(Reason::Late), 0);
    }
}

#[test]
fn a_crash_after_window_checkpoints_gives_the_same_windows_as_no_crash() {
    // Windows wider than the stream, checkpointed at every cut: the journal
    // lets go of their messages while they are still open.
    let wide = |dir: &std::path::Path| {
        common::demo_settings(dir, |c| {
            c.window.width = Duration::from_secs(60);
            c.journal.checkpoint_bytes = 0;
        })
    };
    let reference = {
        let dir = tempfile::tempdir().unwrap();
        let mut p = Pipeline::open(
            &wide(dir.path()),
            ClassifyStage::default(),
            Arc::new(Notify::new()),
        )
        .unwrap();
        p.ingest(&stream(), Instant::now()).unwrap();
        drain(&mut p, 1).0
    };
    assert_eq!(reference.len(), 2, "one open window per pump");
    for crash_after in [9, 30, 53] {
        let dir = tempfile::tempdir().unwrap();
        let s = wide(dir.path());
        let input = stream();
        let mut t = Instant::now();
        let mut mark = 0;
        {
            let mut p =
                Pipeline::open(&s, ClassifyStage::default(), Arc::new(Notify::new())).unwrap();
            for chunk in input[..crash_after].chunks(4) {
                p.ingest(chunk, t).unwrap();
                // A cut each batch interval (1 s), never long enough to close
                // a window by idleness (3 s).
                t += Duration::from_millis(1100);
                let cut = p.tick(t).unwrap();
                assert_eq!(
                    cut.as_ref().map_or(0, |c| c.windows),
                    0,
                    "nothing closes: {cut:?}"
                );
                assert!(p.checkpoint_mark() > mark, "every cut checkpoints");
                mark = p.checkpoint_mark();
            }
            // Messages after the last checkpoint, in the journal only.
            p.ingest(&input[crash_after..crash_after + 2], t).unwrap();
        } // crash
        let mut p = Pipeline::open(&s, ClassifyStage::default(), Arc::new(Notify::new())).unwrap();
        assert_eq!(
            p.checkpoint_mark(),
            mark,
            "start-up restores the checkpoint"
        );
        let redeliver_from = crash_after.saturating_sub(3);
        p.ingest(&input[redeliver_from..], Instant::now()).unwrap();
        let (windows, counters) = drain(&mut p, 1);
        assert_eq!(windows, reference, "crash after {crash_after} messages");
        assert_eq!(counters.get(Reason::Late), 0);
    }
}
