//! Ingest benchmark: windows/s stored by the embedded (sled) store and by the
//! PostgreSQL store, same batches, same process, alternating, several runs;
//! prints each run and the medians (BENCHMARKS.md has the numbers).
//!
//! It measures `SinkStore::put_batch` (the durable store step: sled flush /
//! PostgreSQL COMMIT), not HTTP, decoding or the teacher. One writer and 8
//! concurrent writers. Run: `cargo bench -p cloud-sink --bench ingest`
//! (`BENCH_RUNS`, `BENCH_BATCHES`, `BENCH_WINDOWS`, `EDGE_TEST_PG_URL`).
//! Without PostgreSQL it benchmarks the embedded store alone.

use std::sync::Arc;
use std::time::Instant;

use cloud_sink::{Backend, GatewayConfig, Limits, SinkConfig, SinkStore, StoreConfig};
use wire::{BatchKey, Body, Counters, Envelope, Escalation, Reason, Verdict, WindowSummary};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `n` batches of `w` windows (every 10th window a judgement window with one escalation).
fn batches(n: usize, w: usize) -> Vec<(Envelope, Body)> {
    (0..n)
        .map(|b| {
            let windows = (0..w)
                .map(|i| {
                    let start_ms = 1_700_000_000_000 + (b * 60_000) as i64;
                    let v = (b * w + i) as f64;
                    let judged = i % 10 == 0;
                    WindowSummary {
                        device: format!("dev-{}", i % 50),
                        metric: if judged {
                            "anomaly".into()
                        } else {
                            format!("m{}", i % 7)
                        },
                        start_ms,
                        end_ms: start_ms + 60_000,
                        count: 60,
                        sum: v * 60.0,
                        min: v - 1.0,
                        max: v + 1.0,
                        mean: v,
                        stddev: 0.5,
                        p50: v,
                        p95: v + 0.9,
                        p99: v + 0.99,
                        sketch_alpha: 0.01,
                        first: v,
                        first_ms: start_ms,
                        last: v,
                        last_ms: start_ms + 59_000,
                        verdict: judged.then_some(Verdict {
                            anomalous: false,
                            judged: 60,
                            alarms: 0,
                            score: 0.4,
                            confidence: 0.3,
                        }),
                        rolled_up: 0,
                        template: None,
                        escalations: if judged {
                            vec![Escalation {
                                ts_ms: start_ms + 5_000,
                                alarm: false,
                                score: 0.9,
                                confidence: 0.05,
                                features: vec![0.25; 24],
                                indices: Vec::new(),
                                exemplar: None,
                            }]
                        } else {
                            Vec::new()
                        },
                    }
                })
                .collect();
            let mut counters = Counters::default();
            counters.add(Reason::Late, 1);
            let body = Body {
                windows,
                counters,
                ..Body::default()
            };
            let key = BatchKey {
                gateway: format!("gw-{}", b % 8),
                epoch: 1,
                seq: b as u64 + 1,
            };
            (Envelope::seal(&key, 0, &body), body)
        })
        .collect()
}

fn config(store: StoreConfig, data_dir: std::path::PathBuf) -> SinkConfig {
    SinkConfig {
        telemetry: Default::default(),
        listen: "127.0.0.1:0".into(),
        data_dir,
        store,
        limits: Limits::default(),
        tls: None,
        gateways: vec![GatewayConfig {
            id: "gw-0".into(),
            token_sha256: "0".repeat(64).into(),
            cert_sha256: Default::default(),
        }],
        teachers: Vec::new(),
    }
}

/// Stores every batch with `writers` concurrent tasks; returns windows/s.
async fn run(store: &SinkStore, data: &Arc<Vec<(Envelope, Body)>>, writers: usize) -> f64 {
    let windows: usize = data.iter().map(|(_, b)| b.windows.len()).sum();
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..writers {
        let (store, data) = (store.clone(), data.clone());
        tasks.spawn(async move {
            for (env, body) in data.iter().skip(t).step_by(writers) {
                let outcome = store
                    .put_batch(env.clone(), body.clone(), Vec::new(), 0)
                    .await
                    .expect("store");
                assert_eq!(outcome, cloud_sink::PutOutcome::Stored);
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("writer");
    }
    windows as f64 / started.elapsed().as_secs_f64()
}

async fn pg_admin(url: &str) -> Option<tokio_postgres::Client> {
    match tokio_postgres::connect(url, tokio_postgres::NoTls).await {
        Ok((client, conn)) => {
            tokio::spawn(conn);
            Some(client)
        }
        Err(e) => {
            eprintln!("SKIP postgres: {e}");
            None
        }
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let runs = env_usize("BENCH_RUNS", 5);
    let data = Arc::new(batches(
        env_usize("BENCH_BATCHES", 40),
        env_usize("BENCH_WINDOWS", 250),
    ));
    let url = std::env::var("EDGE_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let admin = pg_admin(&url).await;
        let windows: usize = data.iter().map(|(_, b)| b.windows.len()).sum();
        println!(
            "{} batches, {windows} windows per run, {runs} runs",
            data.len()
        );
        for writers in [1usize, 8] {
            let (mut embedded, mut postgres) = (Vec::new(), Vec::new());
            for r in 0..runs {
                let dir = tempfile::tempdir().expect("tempdir");
                let store = SinkStore::open(&config(StoreConfig::default(), dir.path().into()))
                    .await
                    .expect("embedded store");
                let e = run(&store, &data, writers).await;
                store.close().await.expect("close");
                embedded.push(e);
                let Some(admin) = &admin else {
                    println!("writers={writers} run={r} embedded={e:.0} windows/s");
                    continue;
                };
                let schema = format!("bench_{}_{writers}_{r}", std::process::id());
                let pg = StoreConfig {
                    backend: Backend::Postgres,
                    url: Some(url.clone()),
                    schema: Some(schema.clone()),
                    pool_size: writers,
                    ..StoreConfig::default()
                };
                let store = SinkStore::open(&config(pg, Default::default()))
                    .await
                    .expect("postgres store");
                let p = run(&store, &data, writers).await;
                store.close().await.expect("close");
                admin
                    .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
                    .await
                    .expect("drop bench schema");
                postgres.push(p);
                println!("writers={writers} run={r} embedded={e:.0} postgres={p:.0} windows/s");
            }
            let e = median(embedded);
            if postgres.is_empty() {
                println!("writers={writers} MEDIAN embedded={e:.0} windows/s");
            } else {
                let p = median(postgres);
                println!(
                    "writers={writers} MEDIAN embedded={e:.0} postgres={p:.0} windows/s \
                     (postgres/embedded = {:.2})",
                    p / e
                );
            }
        }
    });
}
