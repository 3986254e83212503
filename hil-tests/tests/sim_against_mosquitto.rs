//! End-to-end test of the fleet simulator against a private Mosquitto: the ledger holds
//! exactly what was published, and a subscriber received every ledger record's payload.
//!
//! It does not involve the edge agent or the sink (see the other hil-tests for those).

use std::collections::BTreeMap;
use std::time::Duration;

use hil_tests::ledger::LedgerRecord;
use hil_tests::mosquitto::{require_or_skip, start_or_skip};
use hil_tests::{data_dir, read_ledger, MalformedKind, SimOptions};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio::sync::mpsc;

const DEVICES: usize = 3;
const ROWS: usize = 200;
const MALFORMED: usize = 2;
const LOG_LINES: usize = 50;

/// Subscribes to `plant/#` and returns a receiver of (topic, payload), after the SUBACK.
async fn subscriber(port: u16) -> (AsyncClient, mpsc::UnboundedReceiver<(String, Vec<u8>)>) {
    let mut options = MqttOptions::new("sim-test-sub", "127.0.0.1", port);
    options.set_max_packet_size(1 << 20, 1 << 20);
    let (client, mut eventloop) = AsyncClient::new(options, 100);
    client.subscribe("plant/#", QoS::AtLeastOnce).await.unwrap();
    loop {
        match eventloop.poll().await.expect("subscriber connection") {
            Event::Incoming(Packet::SubAck(_)) => break,
            _ => continue,
        }
    }
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(event) = eventloop.poll().await {
            if let Event::Incoming(Packet::Publish(p)) = event {
                let _ = tx.send((p.topic.clone(), p.payload.to_vec()));
            }
        }
    });
    (client, rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sim_publishes_exactly_its_ledger() {
    let skab = data_dir().join("SKAB");
    let hdfs = data_dir().join("loghub/HDFS/HDFS_2k.log");
    if !skab.is_dir() || !hdfs.is_file() {
        require_or_skip(&format!(
            "shared data not found at {}",
            data_dir().display()
        ));
        return;
    }
    let Some(broker) = start_or_skip() else {
        return;
    };
    let (_sub_client, mut received) = subscriber(broker.port()).await;

    let dir = tempfile::tempdir().unwrap();
    let ledger_path = dir.path().join("ledger.jsonl");
    let report = hil_tests::run(SimOptions {
        broker: broker.broker(),
        devices: DEVICES,
        skab_dir: skab,
        max_rows_per_device: Some(ROWS),
        loghub: vec![hdfs],
        max_log_lines: Some(LOG_LINES),
        malformed: MALFORMED,
        ledger: Some(ledger_path.clone()),
        retry_timeout: Duration::from_secs(10),
        ..SimOptions::default()
    })
    .await
    .expect("sim run");

    // The ledger on disk is what the run reports, with exactly the planned counts.
    let ledger = read_ledger(&ledger_path).unwrap();
    assert_eq!(ledger, report.records);
    assert_eq!(report.readings, DEVICES * ROWS);
    assert_eq!(report.logs, LOG_LINES);
    assert_eq!(report.malformed, MALFORMED * MalformedKind::ALL.len());
    assert_eq!(
        ledger.len(),
        report.readings + report.logs + report.malformed
    );
    assert_eq!(report.connects, 1);
    let mut kinds: BTreeMap<MalformedKind, usize> = BTreeMap::new();
    for r in &ledger {
        if let LedgerRecord::Malformed(m) = r {
            let kind = m.injected.expect("injected kind recorded");
            assert_eq!(m.reason, kind.expected_reason());
            *kinds.entry(kind).or_default() += 1;
        }
    }
    assert!(MalformedKind::ALL.iter().all(|k| kinds[k] == MALFORMED));

    // Per device: reading seq 1, 2, 3 … and strictly increasing timestamps; log seq too.
    for d in 0..DEVICES {
        let device = format!("dev-{d:02}");
        let readings: Vec<_> = ledger
            .iter()
            .filter_map(|r| match r {
                LedgerRecord::Reading(r) if r.device == device => Some(r),
                _ => None,
            })
            .collect();
        assert_eq!(readings.len(), ROWS);
        for (i, pair) in readings.windows(2).enumerate() {
            assert_eq!(pair[0].seq, i as u64 + 1);
            assert!(pair[1].ts_ms > pair[0].ts_ms, "{device}: ts not increasing");
        }
    }

    // The subscriber gets every message (a QoS 1 subscription, so wait for the queue).
    let mut by_topic: BTreeMap<String, Vec<Vec<u8>>> = BTreeMap::new();
    let mut total = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while total < ledger.len() {
        let next = tokio::time::timeout_at(deadline, received.recv()).await;
        let Ok(Some((topic, payload))) = next else {
            panic!("subscriber got {total} of {} messages", ledger.len());
        };
        by_topic.entry(topic).or_default().push(payload);
        total += 1;
    }
    // Nothing beyond the ledger arrives.
    let extra = tokio::time::timeout(Duration::from_millis(300), received.recv()).await;
    assert!(extra.is_err(), "unexpected extra message {extra:?}");

    // Same count per topic, and payloads equal the ledger in per-topic order.
    let mut ledger_by_topic: BTreeMap<String, Vec<&LedgerRecord>> = BTreeMap::new();
    for r in &ledger {
        ledger_by_topic
            .entry(r.topic().to_owned())
            .or_default()
            .push(r);
    }
    assert_eq!(counts(&by_topic), counts(&ledger_by_topic));
    for (topic, records) in &ledger_by_topic {
        for (record, payload) in records.iter().zip(&by_topic[topic]) {
            assert_payload_matches(record, payload);
        }
    }
}

fn assert_payload_matches(record: &LedgerRecord, payload: &[u8]) {
    match record {
        LedgerRecord::Reading(r) => {
            let v: serde_json::Value = serde_json::from_slice(payload).unwrap();
            let obj = v.as_object().unwrap();
            assert_eq!(obj["seq"].as_u64(), Some(r.seq));
            assert_eq!(obj["ts"].as_i64(), Some(r.ts_ms));
            assert_eq!(obj.len(), 2 + r.values.len());
            for (metric, value) in &r.values {
                // Bit-exact: the float text round-trips to the same f64.
                assert_eq!(obj[metric].as_f64(), Some(*value), "{metric} in {v}");
            }
        }
        LedgerRecord::Log(l) => assert_eq!(std::str::from_utf8(payload).unwrap(), l.line),
        LedgerRecord::Malformed(m) => {
            assert_eq!(payload.len(), m.payload_len);
            let kind = m.injected.unwrap();
            assert!(payload.len() >= 7, "{kind}");
        }
    }
}

fn counts<T>(m: &BTreeMap<String, Vec<T>>) -> Vec<(String, usize)> {
    m.iter().map(|(t, v)| (t.clone(), v.len())).collect()
}
