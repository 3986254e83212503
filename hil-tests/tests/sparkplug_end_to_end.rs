//! End to end through a real Mosquitto: the Sparkplug B vectors built by pysparkplug
//! (`edge-agent/tests/sparkplug/`) are published in order to the real `edge-agent` binary,
//! which ships windows and counters to the real `cloud-sink`.
//!
//! The sink must hold exactly the windows (count, sum per device, metric and
//! start) and the counters the vectors' expected outcomes add up to (the agent
//! runs on the real clock: the vectors' times are in the past but plausible,
//! their one future time is in 2200).
//!
//! Restarts: the session is memory only, so a restarted agent cannot read an
//! edge node's data until it is born again. A simulated edge node (a plain
//! MQTT client) must receive the agent's rebirth request (NCMD) for the data it
//! sends before its birth, at start and after a kill -9, and what it sends
//! after answering with an NBIRTH must reach the sink.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use common::{agent_config, wait_for, Agent, Sink, GATEWAY, SERIAL};
use edge_agent::decode::sparkplug::proto;
use hil_tests::mosquitto::Persistence;
use hil_tests::publisher::{AckedPublisher, PublisherConfig};
use prost::Message;
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

/// The test agent's config with a `spBv1.0/#` Sparkplug route (no models).
fn sparkplug_config(dir: &Path, broker_port: u16, sink_url: &str) -> PathBuf {
    let config = agent_config(dir, broker_port, sink_url);
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
    config
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
    let agent = Agent::start(&sparkplug_config(dir.path(), broker.port(), &sink.url));

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
    // are counted `sparkplug_ignored` too: between 1 and `probes` of them. So
    // are the agent's own rebirth requests (the vectors open with data before
    // any birth), as many as its health counts say it sent.
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
            // The agent's own rebirth requests (NCMDs) come back to it on `spBv1.0/#`.
            let asked = common::sink_health(&sink.url)
                .await
                .get("sparkplug_rebirth_requests")
                .copied()
                .unwrap_or(0);
            let ignored = counters.remove("sparkplug_ignored").unwrap_or(0);
            let probes_seen = ignored.saturating_sub(vector_ignored + asked);
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
    let health = common::sink_health(&sink.url).await;
    assert!(
        health.get("sparkplug_rebirth_requests") >= Some(&1),
        "data before any birth asks for one: {health:?}"
    );
    println!(
        "sparkplug end to end: {} windows, counters {counters:?}, health {health:?}",
        windows.len()
    );
}

/// A Sparkplug edge node `plant/gw1` whose one metric has alias 1 (its name is
/// the birth's), that answers nothing by itself: the test decides when it is born.
struct EdgeNode {
    client: rumqttc::AsyncClient,
    ncmd: tokio::sync::mpsc::UnboundedReceiver<Vec<u8>>,
    seq: u64,
    task: tokio::task::JoinHandle<()>,
}

const NCMD: &str = "spBv1.0/plant/NCMD/gw1";

impl EdgeNode {
    /// Connects (one QoS 1 message in flight, so the order holds) and listens for its NCMDs.
    async fn connect(port: u16) -> EdgeNode {
        let mut opts = rumqttc::MqttOptions::new(
            format!("spb-node-{}", std::process::id()),
            "127.0.0.1",
            port,
        );
        opts.set_inflight(1);
        let (client, mut events) = rumqttc::AsyncClient::new(opts, 64);
        let (tx, ncmd) = tokio::sync::mpsc::unbounded_channel();
        let (subscribed, is_subscribed) = tokio::sync::oneshot::channel();
        let mut subscribed = Some(subscribed);
        client
            .subscribe(NCMD, rumqttc::QoS::AtLeastOnce)
            .await
            .unwrap();
        let task = tokio::spawn(async move {
            loop {
                match events.poll().await {
                    Ok(rumqttc::Event::Incoming(rumqttc::Packet::SubAck(_))) => {
                        if let Some(s) = subscribed.take() {
                            let _ = s.send(());
                        }
                    }
                    Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(p))) => {
                        let _ = tx.send(p.payload.to_vec());
                    }
                    Ok(_) => {}
                    Err(e) => {
                        eprintln!("edge node: {e}");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(10), is_subscribed)
            .await
            .expect("the broker never acked the edge node's subscription")
            .unwrap();
        EdgeNode {
            client,
            ncmd,
            seq: 0,
            task,
        }
    }

    /// Publishes one node message (`NBIRTH`, `NDATA`) with the next seq.
    async fn send(&mut self, kind: &str, metrics: Vec<proto::Metric>) {
        let payload = proto::Payload {
            timestamp: Some(now_ms()),
            metrics,
            seq: Some(self.seq),
            ..proto::Payload::default()
        };
        self.seq = (self.seq + 1) % 256;
        self.client
            .publish(
                format!("spBv1.0/plant/{kind}/gw1"),
                rumqttc::QoS::AtLeastOnce,
                false,
                payload.encode_to_vec(),
            )
            .await
            .unwrap();
    }

    /// Keeps sending data the agent cannot read (alias only, no birth) until
    /// an NCMD comes; returns its metrics as (name, boolean value).
    async fn wait_for_rebirth_request(&mut self) -> Vec<(String, Option<bool>)> {
        let asked = async {
            loop {
                self.send("NDATA", vec![alias_1(None, 1.0)]).await;
                let wait = tokio::time::timeout(Duration::from_millis(500), self.ncmd.recv());
                if let Ok(Some(payload)) = wait.await {
                    return proto::Payload::decode(payload.as_slice()).unwrap();
                }
            }
        };
        let payload = tokio::time::timeout(Duration::from_secs(90), asked)
            .await
            .expect("no rebirth request (NCMD) within 90 s");
        payload
            .metrics
            .into_iter()
            .map(|m| {
                let value = match m.value {
                    Some(proto::Value::BooleanValue(b)) => Some(b),
                    _ => None,
                };
                (m.name.unwrap_or_default(), value)
            })
            .collect()
    }

    /// Answers a rebirth: NBIRTH (seq 0, a new bdSeq) naming alias 1 `metric`
    /// with `at_birth`, then one NDATA by alias with `then`.
    async fn be_born(&mut self, bd_seq: u64, metric: &str, at_birth: f64, then: f64) {
        self.seq = 0;
        let bd = proto::Metric {
            name: Some("bdSeq".into()),
            datatype: Some(4),
            value: Some(proto::Value::LongValue(bd_seq)),
            ..proto::Metric::default()
        };
        self.send("NBIRTH", vec![bd, alias_1(Some(metric), at_birth)])
            .await;
        self.send("NDATA", vec![alias_1(None, then)]).await;
    }
}

impl Drop for EdgeNode {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Alias 1 (Double) with `value`, named only in births.
fn alias_1(name: Option<&str>, value: f64) -> proto::Metric {
    proto::Metric {
        name: name.map(str::to_owned),
        alias: Some(1),
        datatype: name.map(|_| 10),
        value: Some(proto::Value::DoubleValue(value)),
        ..proto::Metric::default()
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// The count and sum of `plant/gw1` `metric` readings at the sink, once it holds at least `count`.
async fn wait_for_readings(sink_url: &str, metric: &str, count: u64) -> (u64, f64) {
    let what = format!("{count} {metric} readings at the sink");
    wait_for(&what, Duration::from_secs(60), || async {
        let stored = hil_tests::fetch_windows(sink_url, GATEWAY)
            .await
            .unwrap_or_default();
        let got = stored
            .iter()
            .filter(|w| w.device == "plant/gw1" && w.metric == metric)
            .fold((0, 0.0), |(n, s), w| (n + w.count, s + w.sum));
        (got.0 >= count).then_some(got)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unborn_node_is_asked_to_rebirth_at_start_and_after_a_kill_9() {
    let _serial = SERIAL.lock().await;
    let Some(broker) = common::mosquitto_or_skip(Persistence::Off) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::start(&dir.path().join("sink"), "127.0.0.1:0");
    let mut agent = Agent::start(&sparkplug_config(dir.path(), broker.port(), &sink.url));
    let mut node = EdgeNode::connect(broker.port()).await;
    let rebirth = vec![("Node Control/Rebirth".to_owned(), Some(true))];

    // The node was born before the agent started: the agent has never seen its birth.
    assert_eq!(node.wait_for_rebirth_request().await, rebirth);
    node.be_born(0, "Temp", 10.0, 32.0).await;
    let got = wait_for_readings(&sink.url, "Temp", 2).await;
    assert_eq!(got, (2, 42.0), "birth value and data after it");

    // A kill -9 loses the session: the data the node goes on sending is
    // unreadable until the restarted agent asks and the node is born again.
    // The new birth gives alias 1 another name (Temp's window of this minute
    // may already be shipped, and later readings of it would be `late`).
    agent.restart();
    assert_eq!(node.wait_for_rebirth_request().await, rebirth);
    node.be_born(1, "Pressure", 100.0, 200.0).await;
    let got = wait_for_readings(&sink.url, "Pressure", 2).await;
    assert_eq!(got, (2, 300.0), "birth value and data after it");
    let got = wait_for_readings(&sink.url, "Temp", 2).await;
    assert_eq!(got, (2, 42.0), "nothing read from data before a birth");

    let health = wait_for(
        "the rebirth requests in the health counts",
        Duration::from_secs(60),
        || async {
            let health = common::sink_health(&sink.url).await;
            (health
                .get("sparkplug_rebirth_requests")
                .copied()
                .unwrap_or(0)
                >= 2)
                .then_some(health)
        },
    )
    .await;
    let counters = common::sink_counters(&sink.url).await;
    assert!(
        counters.get("sparkplug_before_birth").copied().unwrap_or(0) >= 2,
        "{counters:?}"
    );
    println!(
        "sparkplug rebirth: {} requests, {} messages before birth",
        health["sparkplug_rebirth_requests"], counters["sparkplug_before_birth"]
    );
}
