//! When loss counts leave the gateway: with the next closed windows, or on
//! their own once per `uplink.counters_interval`, and never lost in between
//! (a crash before they are sealed keeps them). It does not test which
//! reasons are counted (pipeline_replay.rs, the decoders' tests do).

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use edge_agent::classify::ClassifyStage;
use edge_agent::config::Settings;
use edge_agent::pipeline::Pipeline;
use edge_agent::source::{AckToken, Delivery};
use tokio::sync::Notify;
use wire::{Counters, Envelope, Reason};

const T0: i64 = 1_583_748_840_000; // 2020-03-09T10:14:00Z, a window boundary

fn settings(dir: &std::path::Path) -> Settings {
    common::demo_settings(dir, |c| {
        c.window.width = Duration::from_secs(10);
        c.uplink.batch_interval = Duration::from_secs(1);
        c.uplink.counters_interval = Duration::from_secs(30);
    })
}

fn delivery(topic: &str, payload: String) -> Delivery {
    Delivery {
        topic: topic.into(),
        payload: Bytes::from(payload),
        ack: AckToken::none(),
    }
}

fn malformed(n: usize) -> Vec<Delivery> {
    (0..n)
        .map(|_| delivery("plant/pump-1/sensors", "{not json".into()))
        .collect()
}

/// The outbox's batches, taken out: (windows per batch, counters per batch).
fn take_outbox(p: &mut Pipeline) -> Vec<(usize, Counters)> {
    let mut batches = Vec::new();
    while let Some((seq, bytes)) = p.store().outbox_first().unwrap() {
        let (_, body) = Envelope::open(&bytes).unwrap();
        batches.push((body.windows.len(), body.counters));
        p.store().outbox_remove(seq).unwrap();
    }
    batches
}

fn open(s: &Settings) -> Pipeline {
    Pipeline::open(s, ClassifyStage::default(), Arc::new(Notify::new())).unwrap()
}

#[test]
fn counts_alone_wait_for_the_counters_interval_and_survive_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let s = settings(dir.path());
    let start = Instant::now();
    {
        let mut p = open(&s);
        p.ingest(&malformed(3), start).unwrap();
        // Cuts every batch interval: the counts alone do not make a batch.
        for second in 1..30 {
            let cut = p.tick(start + Duration::from_secs(second)).unwrap();
            assert!(cut.is_none(), "second {second}: {cut:?}");
        }
        assert!(take_outbox(&mut p).is_empty());
    } // crash: dropped before the counts were sealed
    let mut p = open(&s);
    let start = Instant::now();
    p.ingest(&malformed(2), start).unwrap();
    assert!(p.tick(start + Duration::from_secs(29)).unwrap().is_none());
    let cut = p.tick(start + Duration::from_secs(30)).unwrap();
    let cut = cut.expect("the counters interval seals the counts alone");
    assert_eq!(cut.windows, 0);
    let batches = take_outbox(&mut p);
    assert_eq!(batches.len(), 1);
    assert_eq!(batches[0].0, 0);
    assert_eq!(
        batches[0].1.get(Reason::Malformed),
        5,
        "the counts from before the crash are kept: {:?}",
        batches[0].1
    );
}

#[test]
fn counts_ride_with_the_next_closed_windows() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = open(&settings(dir.path()));
    let start = Instant::now();
    let readings: Vec<Delivery> = (0..12)
        .map(|i| {
            let ts = T0 + i * 1000;
            let payload = format!(r#"{{"seq":{i},"ts":{ts},"temp":{}}}"#, 20.0 + i as f64);
            delivery("plant/pump-1/sensors", payload)
        })
        .collect();
    p.ingest(&malformed(4), start).unwrap();
    p.ingest(&readings, start).unwrap();
    // The first window ([T0, T0 + 10 s)) closes when a later reading arrives;
    // the counts go with it, in the same batch.
    let mut sealed = Vec::new();
    for second in 1..5 {
        p.tick(start + Duration::from_secs(second)).unwrap();
        sealed.extend(take_outbox(&mut p));
    }
    assert_eq!(sealed.len(), 1, "{sealed:?}");
    let (windows, counters) = &sealed[0];
    assert!(*windows >= 1);
    assert_eq!(counters.get(Reason::Malformed), 4);
}
