//! The independently encoded Sparkplug vectors through the whole pipeline (no broker): windows and
//! counters in the outbox, and historical readings older than a shipped window counted as `late`.
//!
//! Every reading the vectors expect must land in a window of its device and
//! metric (count and sum per window recomputed from the vectors' JSON), and
//! every whole-message reason and per-field problem must arrive in the
//! batches' counters. The end-to-end path through Mosquitto is not here.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use edge_agent::classify::ClassifyStage;
use edge_agent::config::RouteConfig;
use edge_agent::decode::sparkplug::proto;
use edge_agent::decode::Format;
use edge_agent::pipeline::Pipeline;
use edge_agent::source::{AckToken, Delivery};
use prost::Message;
use serde_json::Value;
use tokio::sync::Notify;
use wire::{Envelope, Reason, WindowSummary};

const WIDTH_MS: i64 = 60_000;

fn vectors() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/sparkplug/sparkplug_vectors.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn delivery(topic: &str, payload: Vec<u8>) -> Delivery {
    Delivery {
        topic: topic.to_owned(),
        payload: Bytes::from(payload),
        ack: AckToken::none(),
    }
}

fn open(dir: &std::path::Path) -> Pipeline {
    let settings = common::demo_settings(dir, |c| {
        c.window.width = Duration::from_millis(WIDTH_MS as u64);
        c.routes.push(RouteConfig {
            topic: "spBv1.0/#".into(),
            format: Format::Sparkplug,
            device_segment: 1,
            time_field: "ts".into(),
            time_unit: None,
            seq_field: None,
            device_tag: "device".into(),
            request_rebirth: None,
        });
    });
    Pipeline::open(&settings, ClassifyStage::default(), Arc::new(Notify::new())).unwrap()
}

/// Closes every window (idle) and returns the outbox's windows and counters.
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
    (windows, counters)
}

#[test]
fn vectors_become_windows_and_counters() {
    let v = vectors();
    let now = v["now_ms"].as_i64().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut p = open(dir.path());
    let mut want_windows: BTreeMap<(String, String, i64), (u64, f64)> = BTreeMap::new();
    let mut want_counters: BTreeMap<String, u64> = BTreeMap::new();
    let mut input = Vec::new();
    for m in v["messages"].as_array().unwrap() {
        input.push(delivery(
            m["topic"].as_str().unwrap(),
            unhex(m["payload_hex"].as_str().unwrap()),
        ));
        let e = &m["expect"];
        if let Some(reason) = e["err"].as_str() {
            *want_counters.entry(reason.to_owned()).or_default() += 1;
            continue;
        }
        for (k, n) in e["problems"].as_object().unwrap() {
            *want_counters.entry(k.clone()).or_default() += n.as_u64().unwrap();
        }
        let device = e["device"].as_str().unwrap();
        for r in e["readings"].as_array().unwrap() {
            let (metric, ts, value) = (
                r[0].as_str().unwrap(),
                r[1].as_i64().unwrap(),
                r[2].as_f64().unwrap(),
            );
            let start = ts.div_euclid(WIDTH_MS) * WIDTH_MS;
            let w = want_windows
                .entry((device.to_owned(), metric.to_owned(), start))
                .or_default();
            w.0 += 1;
            w.1 += value;
        }
    }
    p.ingest_at(&input, Instant::now(), now).unwrap();
    // The vectors open with data before any birth: the node is asked for a
    // rebirth once (all of them arrive within one retry interval).
    let asked: Vec<String> = p.take_commands().into_iter().map(|c| c.topic).collect();
    assert_eq!(asked, ["spBv1.0/plant/NCMD/gw1"]);
    let (windows, counters) = drain(&mut p, 1);
    let got: BTreeMap<(String, String, i64), (u64, f64)> = windows
        .iter()
        .map(|w| {
            (
                (w.device.clone(), w.metric.clone(), w.start_ms),
                (w.count, w.sum),
            )
        })
        .collect();
    assert_eq!(got, want_windows);
    let got_counters: BTreeMap<String, u64> = counters
        .inputs()
        .filter(|(_, n)| *n > 0)
        .map(|(k, n)| (k.to_owned(), n))
        .collect();
    assert_eq!(got_counters, want_counters);
    assert_eq!(want_windows.len(), 19, "windows of the vectors");

    // Historical data (the pump's rpm, re-born with alias 5 at seq 3, last data
    // at seq 4) older than the series' shipped horizon is `late`, however old; in
    // a series that never shipped a window it opens its window, like any
    // timestamped reading (a metric sent by name, not in the birth, is taken).
    let historical = |name: Option<&str>, ts: i64, value: f64| proto::Metric {
        name: name.map(str::to_owned),
        alias: name.is_none().then_some(5),
        datatype: name.map(|_| 10),
        timestamp: Some(ts as u64),
        is_historical: Some(true),
        value: Some(proto::Value::DoubleValue(value)),
        ..proto::Metric::default()
    };
    let shipped = now - 54_000; // the rebirth's window
    let older = now - 3 * 3_600_000;
    let payload = proto::Payload {
        timestamp: Some(now as u64),
        seq: Some(5),
        metrics: vec![
            historical(None, shipped, 1.0),
            historical(None, older, 2.0),
            historical(Some("vibration"), older, 3.0),
        ],
        ..proto::Payload::default()
    };
    let topic = "spBv1.0/plant/DDATA/gw1/pump";
    p.ingest_at(
        &[delivery(topic, payload.encode_to_vec())],
        Instant::now(),
        now,
    )
    .unwrap();
    let (windows, counters) = drain(&mut p, 2);
    assert_eq!(counters.get(Reason::Late), 2);
    let got: Vec<(&str, i64, u64)> = windows
        .iter()
        .map(|w| (w.metric.as_str(), w.start_ms, w.count))
        .collect();
    assert_eq!(
        got,
        vec![("vibration", older.div_euclid(WIDTH_MS) * WIDTH_MS, 1)]
    );
}
