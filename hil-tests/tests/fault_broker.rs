//! Broker-side faults on real processes (Mosquitto, `edge-agent`, `cloud-sink`, fleet-sim),
//! checked against the fleet-sim ledger. It does not kill the agent or the sink (see
//! fault_kill_cycles.rs and end_to_end.rs).
//!
//! - `mosquitto_killed_and_restarted`: the private Mosquitto, with persistence saved after
//!   every change, is stopped with SIGTERM and later killed with SIGKILL mid-run, each time
//!   restarted on the same port and persistence file. The agent must reconnect by itself and
//!   find its session; fleet-sim reconnects and republishes what the broker never
//!   acknowledged. Mosquitto sends PUBACKs before it saves (a snapshot at the end of its
//!   loop iteration), so a SIGKILL can lose messages it acknowledged: an extra persistent
//!   subscriber (offline around the SIGKILL) measures exactly which, the test prints how many,
//!   and leaves the windows holding them out of the exact check (the ledger says what the
//!   broker acknowledged; the broker losing its own acked data is not the agent's loss).
//!   Everything else: 0 missing, 0 duplicated, 0 unexpected sensor windows; bad input, log
//!   lines and log-model judgements at least once (no device seq); judgements stored once.
//! - `oversized_mqtt_packets`: messages above the agent's decode limit (64 KiB) and above its
//!   MQTT packet size (1 MiB), on sensor and log topics, are published between the normal
//!   stream's messages. Each must be counted as `too_large` exactly once, everything else
//!   exactly as published, with one MQTT connection for the whole run (no drop, no
//!   redelivery loop).
//!
//! ```text
//! cargo build -p edge-agent -p cloud-sink && \
//!   cargo test -p hil-tests --test fault_broker -- --nocapture
//! ```

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{
    agent_config, expected_counters, log_lines_classified, logs_published, setup_or_skip_with,
    wait_for, wait_until_checked, Agent, Sink, GATEWAY, SERIAL,
};
use hil_tests::ledger::LedgerRecord;
use hil_tests::mosquitto::Persistence;
use hil_tests::windows::window_start;
use hil_tests::{data_dir, fetch_windows, SimOptions};
use rumqttc::{AsyncClient, Event, MqttOptions, Outgoing, Packet, QoS};
use tokio::sync::{mpsc, oneshot};

const DEVICES: usize = 10;
const WINDOW_MS: i64 = 60_000;
const ALPHA: f64 = 0.01;
const MALFORMED_EACH: usize = 3;
const LOG_LINES: usize = 300;
/// Topic only the tap subscribes to (the agent subscribes to `plant/#`).
const MARKER_TOPIC: &str = "tap-marker/end";
/// fleet-sim's speedup in these runs. Slower pacing would stretch dev-04's 247 s gap in the
/// SKAB data past the harness's `window.idle_close` (2 s, kept by `oversized_mqtt_packets`):
/// its gateway-time log windows would idle-close mid-minute and its next lines in that
/// minute would count as `late`.
const PACED: f64 = 400.0;

fn sim_options(broker: String, ledger: &Path) -> SimOptions {
    SimOptions {
        broker,
        devices: DEVICES,
        skab_dir: data_dir().join("SKAB"),
        loghub: vec![data_dir().join("loghub/HDFS/HDFS_2k.log")],
        max_log_lines: Some(LOG_LINES),
        malformed: MALFORMED_EACH,
        ledger: Some(ledger.to_owned()),
        progress: false,
        // A broker restart takes well under this; fleet-sim must outlast it.
        retry_timeout: Duration::from_secs(60),
        ..SimOptions::default()
    }
}

fn client_options(client_id: &str, port: u16, clean: bool) -> MqttOptions {
    let mut opts = MqttOptions::new(client_id, "127.0.0.1", port);
    opts.set_clean_session(clean)
        .set_keep_alive(Duration::from_secs(30))
        .set_max_packet_size(64 << 20, 64 << 20)
        .set_inflight(100);
    opts
}

/// Polls `eventloop` until `done` says so; panics on a connection error or after 60 s.
async fn drive(
    eventloop: &mut rumqttc::EventLoop,
    what: &str,
    mut done: impl FnMut(&Event) -> bool,
) {
    tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            match eventloop.poll().await {
                Ok(event) if done(&event) => return,
                Ok(_) => {}
                Err(e) => panic!("{what}: {e}"),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{what}: timed out"));
}

/// Publishes `messages` at QoS 1 from a fresh client and returns once every one is PUBACKed.
async fn publish_acked(port: u16, client_id: &str, messages: Vec<(String, Bytes)>) {
    let (client, mut eventloop) = AsyncClient::new(client_options(client_id, port, true), 16);
    let n = messages.len();
    let sender = tokio::spawn(async move {
        for (topic, payload) in messages {
            client
                .publish_bytes(topic, QoS::AtLeastOnce, false, payload)
                .await
                .unwrap();
        }
        client
    });
    let mut acked = 0;
    drive(&mut eventloop, "publishing", |e| {
        if matches!(e, Event::Incoming(Packet::PubAck(_))) {
            acked += 1;
        }
        acked == n
    })
    .await;
    let client = sender.await.unwrap();
    client.disconnect().await.unwrap();
    drive(&mut eventloop, "disconnecting", |e| {
        matches!(e, Event::Outgoing(Outgoing::Disconnect))
    })
    .await;
}

/// A QoS 1 subscriber with a persistent session (`plant/#` and the marker topic) that
/// records everything the broker delivers to it, reconnecting by itself. Around the
/// SIGKILL it goes offline ([`Tap::offline`]) so that the broker has to keep what arrives
/// meanwhile for it in its session: whatever it then never delivers is what the broker
/// lost. Online otherwise, so its queue (and the broker's database) stays small.
struct Tap {
    commands: mpsc::UnboundedSender<TapCommand>,
    task: tokio::task::JoinHandle<Vec<(String, Bytes)>>,
}

enum TapCommand {
    /// Disconnect (session kept) and confirm once the DISCONNECT is sent.
    Offline(oneshot::Sender<()>),
    /// Reconnect and receive what was queued.
    Online,
}

impl Tap {
    /// Connects, subscribes, and returns once both subscriptions are acknowledged.
    async fn start(port: u16) -> Tap {
        let client_id = format!("broker-tap-{}", std::process::id());
        let (commands, mut rx) = mpsc::unbounded_channel();
        let (subscribed_tx, subscribed) = oneshot::channel();
        let task = tokio::spawn(async move {
            let mut got = Vec::new();
            let mut subscribed_tx = Some(subscribed_tx);
            loop {
                let (client, mut eventloop) =
                    AsyncClient::new(client_options(&client_id, port, false), 64);
                if subscribed_tx.is_some() {
                    client.subscribe("plant/#", QoS::AtLeastOnce).await.unwrap();
                    client
                        .subscribe(MARKER_TOPIC, QoS::AtLeastOnce)
                        .await
                        .unwrap();
                }
                let mut subacks = 0;
                let confirm = loop {
                    tokio::select! {
                        event = eventloop.poll() => match event {
                            Ok(Event::Incoming(Packet::Publish(p))) if p.topic == MARKER_TOPIC => {
                                return got;
                            }
                            Ok(Event::Incoming(Packet::Publish(p))) => {
                                got.push((p.topic.clone(), p.payload.clone()));
                            }
                            Ok(Event::Incoming(Packet::SubAck(_))) => {
                                subacks += 1;
                                if subacks == 2 {
                                    if let Some(tx) = subscribed_tx.take() {
                                        let _ = tx.send(());
                                    }
                                }
                            }
                            Ok(_) => {}
                            // The broker is down: rumqttc reconnects on the next poll;
                            // pace the attempts (there is nothing to await).
                            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                        },
                        Some(TapCommand::Offline(confirm)) = rx.recv() => break confirm,
                    }
                };
                client.disconnect().await.unwrap();
                drive(&mut eventloop, "tap disconnecting", |e| {
                    matches!(e, Event::Outgoing(Outgoing::Disconnect))
                })
                .await;
                drop(eventloop);
                let _ = confirm.send(());
                while !matches!(rx.recv().await, Some(TapCommand::Online) | None) {}
            }
        });
        subscribed.await.expect("tap subscribed");
        Tap { commands, task }
    }

    async fn offline(&self) {
        let (tx, rx) = oneshot::channel();
        self.commands.send(TapCommand::Offline(tx)).unwrap();
        rx.await.unwrap();
    }

    fn online(&self) {
        self.commands.send(TapCommand::Online).unwrap();
    }

    /// Publishes the marker and returns everything received up to it.
    async fn finish(self, port: u16) -> Vec<(String, Bytes)> {
        let marker_client = format!("broker-tap-{}-marker", std::process::id());
        publish_acked(
            port,
            &marker_client,
            vec![(MARKER_TOPIC.into(), Bytes::from_static(b"end"))],
        )
        .await;
        tokio::time::timeout(Duration::from_secs(120), self.task)
            .await
            .expect("tap got the marker")
            .unwrap()
    }
}

/// Waits until mosquitto has replaced its database file `n` times (it saves into
/// `<file>.new` and renames, so the inode changes). There is no event to await; the
/// file's metadata is polled every 2 ms.
async fn wait_for_saves(db: &Path, n: usize) {
    use std::os::unix::fs::MetadataExt;
    let inode = || std::fs::metadata(db).map(|m| m.ino()).unwrap_or(0);
    let mut last = inode();
    let mut seen = 0;
    tokio::time::timeout(Duration::from_secs(30), async {
        while seen < n {
            tokio::time::sleep(Duration::from_millis(2)).await;
            let now = inode();
            if now != last {
                seen += 1;
                last = now;
            }
        }
    })
    .await
    .expect("mosquitto saved its database");
}

/// How a message is recognised on the wire, ledger side and tap side alike.
fn ledger_key(r: &LedgerRecord) -> String {
    match r {
        LedgerRecord::Reading(r) => format!("R {} {}", r.device, r.seq),
        LedgerRecord::Log(l) => format!("L {} {}", l.topic, l.line),
        LedgerRecord::Malformed(m) => format!("M {} {}", m.topic, m.payload_len),
    }
}

fn wire_key(topic: &str, payload: &[u8]) -> String {
    if topic.ends_with("/logs") {
        return format!("L {topic} {}", String::from_utf8_lossy(payload));
    }
    let seq = serde_json::from_slice::<serde_json::Value>(payload)
        .ok()
        .and_then(|v| v.get("seq")?.as_u64());
    match (seq, topic.split('/').nth(1)) {
        (Some(seq), Some(device)) if topic.ends_with("/sensors") => format!("R {device} {seq}"),
        _ => format!("M {topic} {}", payload.len()),
    }
}

/// Ledger records the broker acknowledged but no longer had for the offline tap.
fn lost_by_broker<'a>(
    ledger: &'a [LedgerRecord],
    tap: &[(String, Bytes)],
) -> Vec<&'a LedgerRecord> {
    let mut kept: BTreeMap<String, usize> = BTreeMap::new();
    for (topic, payload) in tap {
        *kept.entry(wire_key(topic, payload)).or_default() += 1;
    }
    ledger
        .iter()
        .filter(|r| match kept.get_mut(&ledger_key(r)) {
            Some(n) if *n > 0 => {
                *n -= 1;
                false
            }
            _ => true,
        })
        .collect()
}

/// Waits until the sink holds at least `n` windows of our gateway.
async fn wait_for_windows(sink: &Sink, n: usize) {
    wait_for(
        &format!("{n} windows at the sink"),
        Duration::from_secs(180),
        || async {
            let stored = fetch_windows(&sink.url, GATEWAY)
                .await
                .map(|w| w.len())
                .unwrap_or(0);
            (stored >= n).then_some(())
        },
    )
    .await;
}

/// Waits for the agent's next `mqtt connected` line after line `from`; returns it.
async fn agent_reconnected(agent: &Agent, from: usize) -> String {
    agent
        .wait_line(from, Duration::from_secs(60), |l| {
            l.contains("mqtt connected")
        })
        .await
        .unwrap_or_else(|| panic!("the agent did not reconnect:\n{}", agent.log()))
        .1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_killed_and_restarted() {
    let _serial = SERIAL.lock().await;
    let wall = Instant::now();
    let Some((dir, mut broker)) = setup_or_skip_with(Persistence::Saved) else {
        return;
    };
    let tap = Tap::start(broker.port()).await;
    let sink = Sink::start(&dir.path().join("sink"), "127.0.0.1:0");
    let config = agent_config(dir.path(), broker.port(), &sink.url);
    // A broker that rewrites its database after every change stalls delivery for seconds
    // at a time. With the harness's 2 s `idle_close`, below the 60 s window, a stall
    // idle-closes the current wall-clock window of the gateway-time log series, and the
    // device's later lines in that minute are dropped as `late` (an agent behaviour this
    // test is not about). With `idle_close` at the window width that cannot happen.
    common::set_agent_option(&config, "window", "idle_close", "60s");
    let agent = Agent::start_traced(&config, "info");
    common::wait_subscribed(&agent).await;
    let ledger_path = dir.path().join("ledger.jsonl");
    let sim = tokio::spawn(hil_tests::run(SimOptions {
        // Paced so that both restarts land while fleet-sim is still publishing.
        speedup: PACED,
        ..sim_options(broker.broker(), &ledger_path)
    }));
    let db = broker.persistence_file().unwrap();

    let mut restarts = Vec::new();
    for (threshold, how) in [(300, "SIGTERM"), (1500, "SIGKILL")] {
        wait_for_windows(&sink, threshold).await;
        if how == "SIGKILL" {
            // Everything the tap got online is in the store once a save has started
            // after its DISCONNECT (the second replacement of the file from now).
            tap.offline().await;
            wait_for_saves(&db, 2).await;
        }
        let from = agent.line_count();
        let down = Instant::now();
        if how == "SIGTERM" {
            broker.terminate().unwrap();
        } else {
            broker.kill();
        }
        broker.restart().unwrap();
        tap.online();
        let line = agent_reconnected(&agent, from).await;
        println!(
            "{how}: broker back and agent reconnected by itself after {:?}: {line}",
            down.elapsed()
        );
        restarts.push((how, line));
    }
    let report = sim.await.unwrap().unwrap();
    println!("{report}; fleet-sim connections: {}", report.connects);
    assert!(
        report.connects >= 3,
        "fleet-sim reconnected after both restarts"
    );
    for (how, line) in &restarts {
        assert!(
            line.contains("session_present=true"),
            "{how}: the restarted broker lost the agent's session: {line}"
        );
    }
    assert!(db.exists(), "{} not written", db.display());

    // What the broker kept: everything the tap received, compared with the ledger.
    let ledger = hil_tests::read_ledger(&ledger_path).unwrap();
    let tapped = tap.finish(broker.port()).await;
    let lost = lost_by_broker(&ledger, &tapped);
    let lost_readings: Vec<_> = lost
        .iter()
        .filter_map(|r| match r {
            LedgerRecord::Reading(r) => Some(r),
            _ => None,
        })
        .collect();
    println!(
        "the tap got {} messages for {} acknowledged; lost by the broker (acked before its \
         SIGKILL, not yet in its last save): {} ({} readings)",
        tapped.len(),
        ledger.len(),
        lost.len(),
        lost_readings.len()
    );
    for r in lost.iter().take(10) {
        println!("  lost by the broker: {}", ledger_key(r));
    }
    // Windows holding a reading the broker lost cannot match the ledger, whatever the
    // agent did (it may or may not have received the reading before the broker died);
    // they are left out of the exact check, and must still not be stored twice.
    let affected: BTreeSet<(String, i64)> = lost_readings
        .iter()
        .map(|r| (r.device.clone(), window_start(r.ts_ms, WINDOW_MS)))
        .collect();
    let in_affected = |device: &str, start: i64| affected.contains(&(device.to_owned(), start));
    let kept_ledger: Vec<LedgerRecord> = ledger
        .iter()
        .filter(|r| match r {
            LedgerRecord::Reading(r) => !in_affected(&r.device, window_start(r.ts_ms, WINDOW_MS)),
            _ => true,
        })
        .cloned()
        .collect();
    let log_text = || agent.log();
    let check = wait_until_checked(
        &sink,
        &log_text,
        &kept_ledger,
        WINDOW_MS,
        ALPHA,
        Duration::from_secs(300),
        &|w| in_affected(&w.device, w.start_ms),
    )
    .await;
    println!("{check}");
    assert!(check.expected > 1500, "replay too small: {check}");
    assert_eq!(
        (check.missing, check.duplicate, check.unexpected),
        (0, 0, 0)
    );
    let stored = fetch_windows(&sink.url, GATEWAY).await.unwrap();
    let mut cells = BTreeSet::new();
    for w in common::sensor_windows(&stored) {
        if in_affected(&w.device, w.start_ms) {
            assert!(
                cells.insert((w.device.clone(), w.metric.clone(), w.start_ms)),
                "stored twice: {w:?}"
            );
        }
    }
    println!(
        "{} window(s) touched by broker loss left out of the exact check",
        affected.len()
    );

    // Bad input and log lines (no device seq): at least once, minus what the broker lost.
    let mut expected = expected_counters(&ledger);
    for r in &lost {
        if let LedgerRecord::Malformed(m) = r {
            let n = expected.get_mut(&m.reason).unwrap();
            *n -= 1;
        }
    }
    let lost_logs = lost
        .iter()
        .filter(|r| matches!(r, LedgerRecord::Log(_)))
        .count() as u64;
    let logs = logs_published(&ledger) - lost_logs;
    let (counters, lines) =
        common::wait_for_counters(&sink.url, &expected, logs, Duration::from_secs(60)).await;
    let (classified, _) = log_lines_classified(&sink.url).await;
    assert!(classified >= logs);
    let judged = common::assert_judgements_once(&sink.url).await;
    // The agent counted both broker outages itself, and the counts reached the
    // sink inside its batches (3 connections: the first and one per restart).
    let health = common::wait_for(
        "the agent's MQTT health counts at the sink",
        Duration::from_secs(60),
        || async {
            let h = common::sink_health(&sink.url).await;
            let n = |k: &str| h.get(k).copied().unwrap_or(0);
            (n("mqtt_errors") >= 2 && n("mqtt_connects") >= 3).then_some(h)
        },
    )
    .await;
    println!(
        "counters {counters:?}; agent health {health:?}; log lines {lines} (≥ {logs}); \
         {judged} rows judged; {:.1} s wall",
        wall.elapsed().as_secs_f64()
    );
}

/// (topic suffix, payload bytes) of the oversized messages: above the decode limit
/// (`limits.max_payload_bytes` = 64 KiB) only, and above the MQTT packet size too
/// (`mqtt.max_packet_size` = 1 MiB), on the sensor and the log route.
const OVERSIZED: [(&str, usize); 8] = [
    ("sensors", 100 << 10),
    ("sensors", (1 << 20) + 1),
    ("logs", 900 << 10),
    ("sensors", 3 << 20),
    ("logs", 2 << 20),
    ("sensors", 1 << 20),
    ("sensors", 8 << 20),
    ("logs", (1 << 20) - 64),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_mqtt_packets() {
    let _serial = SERIAL.lock().await;
    let wall = Instant::now();
    let Some((dir, broker)) = setup_or_skip_with(Persistence::Off) else {
        return;
    };
    let sink = Sink::start(&dir.path().join("sink"), "127.0.0.1:0");
    let config = agent_config(dir.path(), broker.port(), &sink.url);
    let settings = edge_agent::config::AgentConfig::load(&config).unwrap();
    let (decode_limit, packet_limit) = (
        settings.limits.max_payload_bytes,
        settings.mqtt.max_packet_size,
    );
    assert_eq!((decode_limit, packet_limit), (64 << 10, 1 << 20));
    let agent = Agent::start_traced(&config, "info,edge_agent::source=debug");
    common::wait_subscribed(&agent).await;
    let ledger_path = dir.path().join("ledger.jsonl");
    let sim = tokio::spawn(hil_tests::run(SimOptions {
        speedup: PACED,
        ..sim_options(broker.broker(), &ledger_path)
    }));

    // Interleave the oversized messages with the stream: one after each step of progress.
    let mut above_packet = 0;
    for (i, (suffix, size)) in OVERSIZED.into_iter().enumerate() {
        wait_for_windows(&sink, 100 + 200 * i).await;
        let topic = format!(
            "plant/{}/{suffix}",
            hil_tests::plan::device_name(i % DEVICES)
        );
        let payload = Bytes::from(vec![b'x'; size]);
        above_packet += usize::from(size > packet_limit);
        publish_acked(
            broker.port(),
            &format!("oversized-{}-{i}", std::process::id()),
            vec![(topic, payload)],
        )
        .await;
    }
    let report = sim.await.unwrap().unwrap();
    println!("{report}");

    let ledger = hil_tests::read_ledger(&ledger_path).unwrap();
    let log_text = || agent.log();
    let check = wait_until_checked(
        &sink,
        &log_text,
        &ledger,
        WINDOW_MS,
        ALPHA,
        Duration::from_secs(180),
        &|_| false,
    )
    .await;
    println!("{check}");
    assert!(check.expected > 1500, "replay too small: {check}");

    // Every rejection counted exactly once: the sim's bad input plus each oversized message.
    let mut expected = expected_counters(&ledger);
    *expected.entry("too_large".into()).or_default() += OVERSIZED.len() as u64;
    let logs = logs_published(&ledger);
    let (counters, lines) =
        common::wait_for_counters(&sink.url, &expected, logs, Duration::from_secs(60)).await;
    let rejected: BTreeMap<String, u64> = counters.into_iter().filter(|(_, v)| *v > 0).collect();
    assert_eq!(rejected, expected, "agent log:\n{}", agent.log());
    assert_eq!(lines, logs, "every log line counted once");

    // One connection for the whole run: no oversized packet broke it.
    let log = agent.lines();
    let connects = log.iter().filter(|l| l.contains("mqtt connected")).count();
    let drops: Vec<_> = log
        .iter()
        .filter(|l| l.contains("mqtt connection:"))
        .collect();
    assert_eq!(
        (connects, drops.len()),
        (1, 0),
        "connection drops: {drops:?}"
    );
    let cut = log
        .iter()
        .filter(|l| l.contains("above mqtt.max_packet_size"))
        .count();
    assert_eq!(cut, above_packet, "oversized payloads cut in the source");
    println!(
        "{} oversized messages ({above_packet} above the 1 MiB packet size) counted as too_large, \
         {connects} connection, {:.1} s wall",
        OVERSIZED.len(),
        wall.elapsed().as_secs_f64()
    );
}
