//! Two sink replicas on one PostgreSQL schema never double-store: the same
//! batches, each retried several times, posted concurrently from many tasks
//! to both replicas are stored exactly once (one "stored" answer per key,
//! every window once), and the gateway totals and queries equal those of one
//! embedded sink that got each batch once. Racing bodies under one key: one
//! is stored, the other is a conflict.
//!
//! Needs PostgreSQL (see `pg_common`); prints `SKIP: …` without it.

mod pg_common;

use std::collections::HashMap;
use std::sync::Arc;

use pg_common::*;
use reqwest::StatusCode;
use serde_json::Value;
use tokio::sync::Mutex;

const BATCHES_PER_GATEWAY: u64 = 25;
const COPIES: usize = 4;
const TASKS: usize = 8;

fn batches() -> Vec<wire::Envelope> {
    let mut out = Vec::new();
    for gw in ["gw-a", "gw-b"] {
        for seq in 1..=BATCHES_PER_GATEWAY {
            let t = 1_700_000_000_000 + (seq as i64) * 10_000;
            let windows = (0..6)
                .map(|i| {
                    window(
                        &format!("dev-{i}"),
                        "temp",
                        t,
                        seq as f64 + i as f64,
                        (i % 4) as u8,
                    )
                })
                .collect();
            out.push(batch(gw, 42, seq, windows));
        }
    }
    out
}

/// `/v1/gateways` without what depends on arrival (sink clock, last batch).
/// The gauges do not: the newest by (epoch, seq) are kept whatever the order.
fn totals(mut v: Value) -> Value {
    for g in v.as_array_mut().unwrap() {
        let g = g.as_object_mut().unwrap();
        g.remove("last_seen_ms");
        g.remove("last_batch");
        g.remove("gauges_ms");
    }
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_store_each_retried_batch_exactly_once() {
    let Some(schema) = TestSchema::create_or_skip("replicas").await else {
        return;
    };
    // Both replicas start together: the migration runs once under the lock.
    let config = pg_config(&schema.name, None);
    let (a, b) = tokio::join!(Running::start(&config), Running::start(&config));
    let bases = [a.base.clone(), b.base.clone()];
    let client = reqwest::Client::new();

    // Batches in a pseudo-random order, each COPIES times in a row, so the
    // copies of one batch are taken by different tasks at about the same time
    // and hit both replicas concurrently.
    let all = batches();
    let mut order: Vec<usize> = (0..all.len()).collect();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in (1..order.len()).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        order.swap(i, (x % (i as u64 + 1)) as usize);
    }
    let posts: Vec<usize> = order.into_iter().flat_map(|i| [i; COPIES]).collect();
    let queue = Arc::new(Mutex::new(posts));
    let all = Arc::new(all);
    let answers = Arc::new(Mutex::new(HashMap::<(usize, String), usize>::new()));
    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..TASKS {
        let (queue, all, answers, bases, client) = (
            queue.clone(),
            all.clone(),
            answers.clone(),
            bases.clone(),
            client.clone(),
        );
        tasks.spawn(async move {
            let mut n = t;
            while let Some(i) = queue.lock().await.pop() {
                let (status, body) = post(&client, &bases[n % 2], &all[i]).await;
                assert_eq!(status, StatusCode::OK, "{body}");
                let status = body["status"].as_str().unwrap().to_owned();
                *answers.lock().await.entry((i, status)).or_default() += 1;
                n += 1;
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    let answers = answers.lock().await;
    for i in 0..all.len() {
        assert_eq!(answers.get(&(i, "stored".into())), Some(&1), "batch {i}");
        assert_eq!(
            answers.get(&(i, "duplicate".into())),
            Some(&(COPIES - 1)),
            "batch {i}"
        );
    }

    // In the database: every batch and window once.
    let windows = all.len() as i64 * 6;
    assert_eq!(schema.count("batches", "").await, all.len() as i64);
    assert_eq!(schema.count("windows", "").await, windows);
    let dup = format!(
        "WHERE (gateway, epoch, seq, idx) IN (SELECT gateway, epoch, seq, idx FROM {}.windows \
         GROUP BY 1, 2, 3, 4 HAVING count(*) > 1)",
        schema.name
    );
    assert_eq!(schema.count("windows", &dup).await, 0);

    // The same batches once into one embedded sink: same totals and answers.
    let dir = tempfile::tempdir().unwrap();
    let single = Running::start(&embedded_config(dir.path())).await;
    for env in all.iter() {
        assert_eq!(post(&client, &single.base, env).await.1["status"], "stored");
    }
    let expected = totals(get(&client, &single.base, "/v1/gateways").await);
    assert_eq!(expected[0]["windows"], BATCHES_PER_GATEWAY * 6);
    for base in &bases {
        assert_eq!(totals(get(&client, base, "/v1/gateways").await), expected);
        for q in ["/v1/series", "/v1/escalations", "/v1/escalations/agreement"] {
            assert_eq!(
                get(&client, base, q).await,
                get(&client, &single.base, q).await,
                "{q}"
            );
        }
    }
    single.stop().await;
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_bodies_under_one_key_store_one_and_conflict_the_other() {
    let Some(schema) = TestSchema::create_or_skip("race").await else {
        return;
    };
    let a = Running::start(&pg_config(&schema.name, None)).await;
    let b = Running::start(&pg_config(&schema.name, None)).await;
    let client = reqwest::Client::new();
    for seq in 1..=20u64 {
        let one = batch("gw-a", 7, seq, vec![window("d", "m", 0, 1.0, 0)]);
        let two = batch("gw-a", 7, seq, vec![window("d", "m", 0, 2.0, 1)]);
        let (x, y) = tokio::join!(post(&client, &a.base, &one), post(&client, &b.base, &two));
        let mut statuses = [x.0, y.0];
        statuses.sort();
        assert_eq!(
            statuses,
            [StatusCode::OK, StatusCode::CONFLICT],
            "{x:?} {y:?}"
        );
    }
    assert_eq!(schema.count("batches", "").await, 20);
    assert_eq!(schema.count("windows", "").await, 20);
    let gateways = get(&client, &a.base, "/v1/gateways").await;
    assert_eq!(gateways[0]["batches"], 20);
    assert_eq!(gateways[0]["windows"], 20);
    a.stop().await;
    b.stop().await;
}
