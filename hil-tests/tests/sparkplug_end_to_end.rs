//! End to end through a real Mosquitto: the Sparkplug B vectors built by pysparkplug
//! (`edge-agent/tests/sparkplug/`) are published in order to the real `edge-agent` binary,
//! which ships windows and counters to the real `cloud-sink`.
//!
//! The sink must hold exactly the windows (count, sum per device, metric and
//! start) and the counters the vectors' expected outcomes add up to (the agent
//! runs on the real clock: the vectors' times are in the past but plausible,
//! their one future time is in 2200). It does not test restarts (the session
//! is memory only).

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use common::{agent_config, wait_for, Agent, Sink, GATEWAY, SERIAL};
use hil_tests::mosquitto::Persistence;
use hil_tests::publisher::{AckedPublisher, PublisherConfig};
use serde_json::Value;

const WIDTH_MS: i64 = 60_000;

type Windows = BTreeMap<(String, String, i64), (u64, f64)>;

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// The messages, and the windows and counters they must give at the sink.
fn vectors() -> (Vec<(String, Bytes)>, Windows, BTreeMap<String, u64>) {
    let path =
        hil_tests::workspace_root().join("edge-agent/tests/sparkplug/sparkplug_vectors.json");
    let v: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let (mut messages, mut windows, mut counters) = (Vec::new(), Windows::new(), BTreeMap::new());
    let mut add = |device: &str, metric: &str, ts: i64, value: f64| {
        let start = ts.div_euclid(WIDTH_MS) * WIDTH_MS;
        let w: &mut (u64, f64) = windows
            .entry((device.to_owned(), metric.to_owned(), start))
            .or_default();
        w.0 += 1;
        w.1 += value;
    };
    for m in v["messages"].as_array().unwrap() {
        let topic = m["topic"].as_str().unwrap().to_owned();
        messages.push((
            topic,
            Bytes::from(unhex(m["payload_hex"].as_str().unwrap())),
        ));
        let e = &m["expect"];
        if let Some(reason) = e["err"].as_str() {
            *counters.entry(reason.to_owned()).or_insert(0) += 1;
            continue;
        }
        let device = e["device"].as_str().unwrap();
        for (k, n) in e["problems"].as_object().unwrap() {
            *counters.entry(k.clone()).or_insert(0) += n.as_u64().unwrap();
        }
        for r in e["readings"].as_array().unwrap() {
            let (metric, ts) = (r[0].as_str().unwrap(), r[1].as_i64().unwrap());
            add(device, metric, ts, r[2].as_f64().unwrap());
        }
    }
    (messages, windows, counters)
}

async fn publish_all(port: u16, name: &str, messages: Vec<(String, Bytes)>) {
    let n = messages.len();
    let publisher = AckedPublisher::start(
        PublisherConfig {
            host: "127.0.0.1".into(),
            port,
            client_id: format!("spb-{name}-{}", std::process::id()),
            // One in flight: Sparkplug is stateful, the order must hold.
            inflight: 1,
            max_packet_size: 64 * 1024,
            retry_timeout: Duration::from_secs(30),
        },
        messages,
    );
    let all = async {
        for i in 0..n {
            publisher.publish(i).await;
        }
    };
    publisher.supervise(all).await.unwrap();
    publisher.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sparkplug_vectors_arrive_at_the_sink_as_windows_and_counters() {
    let _serial = SERIAL.lock().await;
    let Some(broker) = common::mosquitto_or_skip(Persistence::Off) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::start(&dir.path().join("sink"), "127.0.0.1:0");
    let config = agent_config(dir.path(), broker.port(), &sink.url);
    let mut doc: toml::Table = std::fs::read_to_string(&config).unwrap().parse().unwrap();
    doc.remove("models");
    doc["mqtt"]["subscribe"]
        .as_array_mut()
        .unwrap()
        .push("spBv1.0/#".into());
    let mut route = toml::Table::new();
    route.insert("topic".into(), "spBv1.0/#".into());
    route.insert("format".into(), "sparkplug".into());
    doc["routes"].as_array_mut().unwrap().push(route.into());
    doc["window"]["width"] = "60s".into();
    std::fs::write(&config, toml::to_string(&doc).unwrap()).unwrap();
    let agent = Agent::start(&config);

    // The agent subscribes after connecting; until then the broker drops what is
    // published. Probe with an NCMD (counted `sparkplug_ignored`) until the sink shows it.
    let probe = async {
        for attempt in 0.. {
            let topic = "spBv1.0/probe/NCMD/node".to_owned();
            publish_all(
                broker.port(),
                &format!("probe{attempt}"),
                vec![(topic, Bytes::new())],
            )
            .await;
            for _ in 0..10 {
                if common::sink_counters(&sink.url)
                    .await
                    .contains_key("sparkplug_ignored")
                {
                    return attempt + 1;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        unreachable!()
    };
    let probes = tokio::time::timeout(Duration::from_secs(60), probe)
        .await
        .expect("the agent never received a probe message");

    let (messages, want_windows, mut want_counters) = vectors();
    assert_eq!(messages.len(), 28);
    publish_all(broker.port(), "vectors", messages).await;
    // The probes the agent received (those before its subscription are lost)
    // are counted `sparkplug_ignored` too: between 1 and `probes` of them.
    let vector_ignored = want_counters.remove("sparkplug_ignored").unwrap_or(0);

    let (windows, counters) = wait_for(
        "the vectors' windows and counters at the sink",
        Duration::from_secs(60),
        || async {
            let stored = hil_tests::fetch_windows(&sink.url, GATEWAY)
                .await
                .unwrap_or_default();
            let windows: Windows = stored
                .iter()
                .map(|w| {
                    (
                        (w.device.clone(), w.metric.clone(), w.start_ms),
                        (w.count, w.sum),
                    )
                })
                .collect();
            let mut counters: BTreeMap<String, u64> = common::sink_counters(&sink.url)
                .await
                .into_iter()
                .filter(|(_, n)| *n > 0)
                .collect();
            let ignored = counters.remove("sparkplug_ignored").unwrap_or(0);
            let probes_seen = ignored.saturating_sub(vector_ignored);
            if !(1..=probes).contains(&probes_seen) {
                counters.insert("sparkplug_ignored".into(), ignored);
            }
            let done = windows.len() >= want_windows.len() && counters == want_counters;
            if !done {
                let missing: Vec<_> = want_windows
                    .iter()
                    .filter(|(k, v)| windows.get(*k) != Some(*v))
                    .collect();
                eprintln!(
                    "waiting: counters {counters:?} (want {want_counters:?}); \
                     {} of {} windows not (yet) as expected",
                    missing.len(),
                    want_windows.len()
                );
            }
            done.then_some((windows, counters))
        },
    )
    .await;
    assert_eq!(
        windows,
        want_windows,
        "agent log:\n{}",
        common::tail(&agent.log(), 30)
    );
    assert_eq!(counters, want_counters);
    println!(
        "sparkplug end to end: {} windows, counters {counters:?}",
        windows.len()
    );
}
