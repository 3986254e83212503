//! Unit tests of the embedded store: idempotency, atomic totals, query order
//! and filters, and persistence across reopen. No HTTP here.

use super::*;
use wire::{Counters, Reason, WindowSummary};

fn window(device: &str, metric: &str, start_ms: i64, value: f64) -> WindowSummary {
    WindowSummary {
        device: device.into(),
        metric: metric.into(),
        start_ms,
        end_ms: start_ms + 1000,
        count: 2,
        sum: 2.0 * value,
        min: value,
        max: value,
        mean: value,
        stddev: 0.0,
        p50: value,
        p95: value,
        p99: value,
        sketch_alpha: 0.01,
        first: value,
        first_ms: start_ms,
        last: value,
        last_ms: start_ms + 999,
        verdict: None,
        rolled_up: 0,
        template: None,
        escalations: Vec::new(),
    }
}

fn seal(
    gw: &str,
    epoch: u64,
    seq: u64,
    windows: Vec<WindowSummary>,
    late: u64,
) -> (Envelope, Body) {
    let mut counters = Counters::default();
    counters.add(Reason::Late, late);
    let body = Body {
        windows,
        counters,
        ..Body::default()
    };
    let key = BatchKey {
        gateway: gw.into(),
        epoch,
        seq,
    };
    (Envelope::seal(&key, 1, &body), body)
}

#[test]
fn stores_once_detects_duplicates_and_conflicts() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path()).unwrap();
    let (env, body) = seal("gw", 1, 1, vec![window("d", "m", 0, 1.0)], 3);
    assert_eq!(
        store.put_batch(&env, &body, &[], 10).unwrap(),
        PutOutcome::Stored
    );
    assert_eq!(
        store.put_batch(&env, &body, &[], 11).unwrap(),
        PutOutcome::Duplicate
    );

    let (other, other_body) = seal("gw", 1, 1, vec![window("d", "m", 0, 2.0)], 0);
    assert_eq!(
        store.put_batch(&other, &other_body, &[], 12).unwrap(),
        PutOutcome::Conflict {
            stored_hash: env.body_hash_hex()
        }
    );

    // Nothing from the duplicate or the conflict was written.
    let all = store.series(&SeriesQuery::default()).unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].window.mean, 1.0);
    let gws = store.gateways().unwrap();
    assert_eq!(gws.len(), 1);
    assert_eq!(
        (gws[0].batches, gws[0].windows, gws[0].last_seen_ms),
        (1, 1, 10)
    );
    assert_eq!(gws[0].counters.get(Reason::Late), 3);
    let rec = store.batch(&env.key()).unwrap().unwrap();
    assert_eq!(rec.body_sha256, env.body_hash_hex());
    assert_eq!(rec.received_ms, 10);
}

#[test]
fn same_window_in_two_batches_is_visible_twice() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path()).unwrap();
    let w = window("d", "m", 0, 1.0);
    let (a, ab) = seal("gw", 1, 1, vec![w.clone()], 0);
    let (b, bb) = seal("gw", 1, 2, vec![w.clone(), w], 0);
    store.put_batch(&a, &ab, &[], 1).unwrap();
    store.put_batch(&b, &bb, &[], 2).unwrap();
    let all = store.series(&SeriesQuery::default()).unwrap();
    let keys: Vec<_> = all.iter().map(|w| (w.epoch, w.seq)).collect();
    assert_eq!(keys, [(1, 1), (1, 2), (1, 2)]);
    let gw = &store.gateways().unwrap()[0];
    assert_eq!((gw.batches, gw.windows), (2, 3));
    assert_eq!(
        gw.last_batch,
        Some(BatchKey {
            gateway: "gw".into(),
            epoch: 1,
            seq: 2
        })
    );
}

#[test]
fn series_orders_and_filters() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path()).unwrap();
    let (a, ab) = seal(
        "gw-b",
        1,
        1,
        vec![
            window("d2", "m", 3000, 1.0),
            window("d1", "m", 2000, 1.0),
            window("d1", "m", -1000, 1.0),
            window("d1", "a", 5000, 1.0),
        ],
        0,
    );
    let (b, bb) = seal("gw-a", 7, 1, vec![window("d1", "m", 1000, 1.0)], 0);
    store.put_batch(&a, &ab, &[], 1).unwrap();
    store.put_batch(&b, &bb, &[], 2).unwrap();

    let got = |q: SeriesQuery| -> Vec<(String, String, String, i64)> {
        store
            .series(&q)
            .unwrap()
            .into_iter()
            .map(|w| {
                (
                    w.gateway,
                    w.window.device,
                    w.window.metric,
                    w.window.start_ms,
                )
            })
            .collect()
    };
    let t = |g: &str, d: &str, m: &str, s: i64| (g.to_owned(), d.to_owned(), m.to_owned(), s);

    assert_eq!(
        got(SeriesQuery::default()),
        [
            t("gw-a", "d1", "m", 1000),
            t("gw-b", "d1", "a", 5000),
            t("gw-b", "d1", "m", -1000),
            t("gw-b", "d1", "m", 2000),
            t("gw-b", "d2", "m", 3000),
        ]
    );
    let full = SeriesQuery {
        gateway: Some("gw-b".into()),
        device: Some("d1".into()),
        metric: Some("m".into()),
        from_ms: Some(-1000),
        to_ms: Some(2000),
        ..SeriesQuery::default()
    };
    assert_eq!(got(full.clone()), [t("gw-b", "d1", "m", -1000)]);
    assert_eq!(
        got(SeriesQuery {
            to_ms: Some(2001),
            ..full.clone()
        }),
        [t("gw-b", "d1", "m", -1000), t("gw-b", "d1", "m", 2000)]
    );
    // Filters that skip a leading field are applied by scanning.
    assert_eq!(
        got(SeriesQuery {
            metric: Some("m".into()),
            from_ms: Some(1500),
            ..SeriesQuery::default()
        }),
        [t("gw-b", "d1", "m", 2000), t("gw-b", "d2", "m", 3000)]
    );
    assert_eq!(
        got(SeriesQuery {
            device: Some("d2".into()),
            ..SeriesQuery::default()
        }),
        [t("gw-b", "d2", "m", 3000)]
    );
    assert_eq!(
        got(SeriesQuery {
            limit: 2,
            ..SeriesQuery::default()
        })
        .len(),
        2
    );
    assert!(got(SeriesQuery {
        gateway: Some("gw".into()),
        ..SeriesQuery::default()
    })
    .is_empty());
}

/// Opens the store again in this process. sled releases its file lock only
/// when its background flusher lets go of the dropped database, which can
/// take a moment, so wait for that (bounded) instead of failing on it.
fn reopen(dir: &std::path::Path) -> EmbeddedStore {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match EmbeddedStore::open(dir) {
            Ok(store) => return store,
            Err(e)
                if std::time::Instant::now() < deadline
                    && format!("{e:?}").contains("could not acquire lock") =>
            {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) => panic!("reopen: {e}"),
        }
    }
}

#[test]
fn data_and_idempotency_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (env, body) = seal("gw", 2, 5, vec![window("d", "m", 0, 4.5)], 1);
    {
        let store = EmbeddedStore::open(dir.path()).unwrap();
        assert_eq!(
            store.put_batch(&env, &body, &[], 1).unwrap(),
            PutOutcome::Stored
        );
    }
    let store = reopen(dir.path());
    assert_eq!(
        store.put_batch(&env, &body, &[], 2).unwrap(),
        PutOutcome::Duplicate
    );
    let all = store.series(&SeriesQuery::default()).unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].window, body.windows[0]);
    assert_eq!((all[0].epoch, all[0].seq), (2, 5));
    assert_eq!(store.gateways().unwrap()[0].batches, 1);
}

#[test]
fn concurrent_identical_posts_store_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = std::sync::Arc::new(EmbeddedStore::open(dir.path()).unwrap());
    let (env, body) = seal("gw", 1, 1, vec![window("d", "m", 0, 1.0)], 0);
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let (store, env, body) = (store.clone(), env.clone(), body.clone());
            std::thread::spawn(move || store.put_batch(&env, &body, &[], 1).unwrap())
        })
        .collect();
    let outcomes: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let stored = outcomes
        .iter()
        .filter(|o| **o == PutOutcome::Stored)
        .count();
    assert_eq!(stored, 1, "{outcomes:?}");
    assert_eq!(store.gateways().unwrap()[0].batches, 1);
    assert_eq!(store.series(&SeriesQuery::default()).unwrap().len(), 1);
}

#[test]
fn teacher_judgements_are_stored_with_the_first_copy_only() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path()).unwrap();
    let escalation = |ts_ms| wire::Escalation {
        ts_ms,
        alarm: true,
        score: 1.01,
        confidence: 0.02,
        features: vec![1.0, 2.0],
        indices: Vec::new(),
        exemplar: None,
    };
    let mut judged = window("d1", "anomaly", 0, 1.0);
    judged.escalations = vec![escalation(1), escalation(2)];
    let mut later = window("d2", "anomaly", 0, 1.0);
    later.escalations = vec![escalation(3)];
    let (env, body) = seal(
        "gw",
        1,
        1,
        vec![judged, window("d1", "m", 0, 1.0), later],
        0,
    );
    let verdict = |score: f64| {
        TeacherJudgement::Judged(TeacherVerdict {
            score,
            threshold: 2.4,
            alarm: score > 2.4,
        })
    };
    // Window 2's judgements are missing: stored as no_teacher.
    let first = vec![
        vec![verdict(3.0), TeacherJudgement::Skipped(TeacherSkip::Width)],
        vec![],
    ];
    assert_eq!(
        store.put_batch(&env, &body, &first, 1).unwrap(),
        PutOutcome::Stored
    );
    // A retry judged differently changes nothing.
    let retry = vec![vec![verdict(0.5), verdict(0.5)], vec![], vec![verdict(0.5)]];
    assert_eq!(
        store.put_batch(&env, &body, &retry, 2).unwrap(),
        PutOutcome::Duplicate
    );
    let mut seen = Vec::new();
    store
        .for_each_escalation(Some("gw"), None, |e| {
            seen.push((
                e.device.clone(),
                e.escalation.ts_ms,
                e.teacher,
                e.teacher_skipped,
            ))
        })
        .unwrap();
    let judged_once = TeacherVerdict {
        score: 3.0,
        threshold: 2.4,
        alarm: true,
    };
    assert_eq!(
        seen,
        [
            ("d1".to_owned(), 1, Some(judged_once), None),
            ("d1".to_owned(), 2, None, Some(TeacherSkip::Width)),
            ("d2".to_owned(), 3, None, Some(TeacherSkip::NoTeacher)),
        ]
    );
    let mut only_d2 = 0;
    store
        .for_each_escalation(None, Some("d2"), |_| only_d2 += 1)
        .unwrap();
    assert_eq!(only_d2, 1);
}

#[test]
fn gauges_are_the_newest_sent_and_health_counts_are_summed() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path()).unwrap();
    // Seq 1 arrives after seq 2 (a retry, or another replica): older, it must not win.
    for seq in [2, 1, 3u64] {
        let (_, mut body) = seal("gw", 1, seq, vec![window("d", "m", 0, 1.0)], 0);
        body.counters.add_health("mqtt_errors", seq);
        if seq < 3 {
            body.gauges.insert("outbox_bytes".into(), 10 * seq);
        }
        let key = BatchKey {
            gateway: "gw".into(),
            epoch: 1,
            seq,
        };
        let env = Envelope::seal(&key, 1, &body);
        store.put_batch(&env, &body, &[], 100 + seq as i64).unwrap();
    }
    let gw = &store.gateways().unwrap()[0];
    assert_eq!(gw.counters.health("mqtt_errors"), 6);
    assert_eq!(
        gw.counters.total(),
        0,
        "health counts are not rejected input"
    );
    // Seq 3 carried no gauges: seq 2's stay, with the time it was stored.
    assert_eq!(gw.gauges.get("outbox_bytes"), Some(&20));
    assert_eq!((gw.gauges_batch, gw.gauges_ms), ((1, 2), 102));
}
