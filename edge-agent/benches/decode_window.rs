//! Per-message cost of the hot path on real SKAB rows: decode, decode + window,
//! and the full durable ingest (decode + window + sled group commit of 1024).
//!
//! Reads `../shared/data/SKAB` in place (override with EDGE_DATA_DIR). Results
//! go to BENCHMARKS.md by hand, with the machine and the command.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use edge_agent::classify::ClassifyStage;
use edge_agent::config::{AgentConfig, Settings};
use edge_agent::decode;
use edge_agent::pipeline::Pipeline;
use edge_agent::source::{AckToken, Delivery};
use edge_agent::windower::Windower;

fn data_dir() -> PathBuf {
    std::env::var_os("EDGE_DATA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data"))
}

/// SKAB valve1/0.csv as the JSON payloads fleet-sim publishes.
fn payloads() -> Vec<(String, Bytes)> {
    let path = data_dir().join("SKAB/data/valve1/0.csv");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(';').collect();
    let mut out = Vec::new();
    for (i, line) in lines.enumerate() {
        let cols: Vec<&str> = line.split(';').collect();
        let mut obj = serde_json::Map::new();
        obj.insert("seq".into(), (i as u64 + 1).into());
        obj.insert("ts".into(), (1_583_748_873_000i64 + i as i64 * 1000).into());
        for (name, value) in header.iter().zip(&cols).skip(1).take(8) {
            obj.insert((*name).into(), value.parse::<f64>().unwrap().into());
        }
        let device = format!("dev-{:02}", i % 10);
        out.push((
            format!("plant/{device}/sensors"),
            Bytes::from(serde_json::to_vec(&obj).unwrap()),
        ));
    }
    out
}

fn settings(dir: &std::path::Path) -> Settings {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../configs/demo.toml"))
            .unwrap();
    let mut config = AgentConfig::parse(&text).unwrap();
    config.data_dir = dir.to_owned();
    config.validate().unwrap()
}

fn bench(c: &mut Criterion) {
    let msgs = payloads();
    let dir = tempfile::tempdir().unwrap();
    let s = settings(dir.path());
    let rules = &s.routes[0].rules;
    let now_ms = 1_767_225_600_000;
    let mut group = c.benchmark_group("per_message");
    group.throughput(Throughput::Elements(msgs.len() as u64));

    group.bench_function("decode_json", |b| {
        b.iter(|| {
            for (topic, payload) in &msgs {
                criterion::black_box(
                    decode::decode(rules, &s.limits, topic, payload, now_ms).unwrap(),
                );
            }
        })
    });

    group.bench_function("decode_and_window", |b| {
        b.iter_batched(
            || Windower::new(s.window),
            |mut windower| {
                let now = Instant::now();
                for (id, (topic, payload)) in msgs.iter().enumerate() {
                    let d = decode::decode(rules, &s.limits, topic, payload, now_ms).unwrap();
                    let mut readings = d.readings;
                    windower.ingest(&d.device, &mut readings, id as u64, now, false);
                }
                windower
            },
            BatchSize::LargeInput,
        )
    });

    group.sample_size(10);
    group.bench_function("durable_ingest_group_commit_1024", |b| {
        b.iter_batched(
            || {
                let d = tempfile::tempdir().unwrap();
                let p = Pipeline::open(
                    &settings(d.path()),
                    ClassifyStage::default(),
                    Arc::new(tokio::sync::Notify::new()),
                )
                .unwrap();
                (d, p)
            },
            |(d, mut p)| {
                let now = Instant::now();
                let deliveries: Vec<Delivery> = msgs
                    .iter()
                    .map(|(t, pl)| Delivery {
                        topic: t.clone(),
                        payload: pl.clone(),
                        ack: AckToken::none(),
                    })
                    .collect();
                for chunk in deliveries.chunks(1024) {
                    p.ingest(chunk, now).unwrap();
                }
                (d, p)
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
