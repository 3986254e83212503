//! Fault: a flood of distinct topics (a misconfigured fleet, a buggy firmware
//! putting a counter in its topic). The agent caps its series at
//! `limits.max_series`; readings beyond it go to the one overflow series
//! (`_overflow`/`_overflow`), counted as `too_many_series`, so nothing
//! acknowledged disappears and memory stays bounded. The test measures the
//! agent's RSS (VmRSS) after each wave of new topics and checks the overflow
//! window counts at the sink add up to exactly the readings beyond the cap.
//!
//! It does not cover floods of distinct devices on a model's route (the sensor
//! classifier keeps state per device; not yet capped, see RELIABILITY.md).

mod common;

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use common::{agent_config, Agent, Sink, GATEWAY, SERIAL};
use hil_tests::mosquitto::Persistence;
use hil_tests::publisher::{AckedPublisher, PublisherConfig};
use hil_tests::{fetch_windows, StoredWindow};

const MAX_SERIES: usize = 500;
const WAVES: usize = 4;
const TOPICS_PER_WAVE: usize = 5_000;
const T0: i64 = 1_700_000_000_000;

/// VmRSS in KiB of the process whose command line mentions `config`.
fn agent_rss_kib(config: &Path) -> u64 {
    let needle = config.display().to_string();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).contains(&needle) {
            let status = std::fs::read_to_string(entry.path().join("status")).unwrap();
            let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
            return line.split_whitespace().nth(1).unwrap().parse().unwrap();
        }
    }
    panic!("agent process not found");
}

/// Publishes `messages` at QoS 1 and returns once the broker acked all of them.
async fn publish_all(port: u16, wave: usize, messages: Vec<(String, Bytes)>) {
    let n = messages.len();
    let publisher = AckedPublisher::start(
        PublisherConfig {
            host: "127.0.0.1".into(),
            port,
            client_id: format!("flood-{}-{wave}", std::process::id()),
            inflight: 100,
            max_packet_size: 64 * 1024,
            retry_timeout: Duration::from_secs(30),
        },
        messages,
    );
    let all_published = async {
        for i in 0..n {
            publisher.publish(i).await;
        }
    };
    publisher.supervise(all_published).await.unwrap();
    publisher.shutdown().await;
}

/// Sum of counts of the overflow windows at the sink.
async fn overflow_readings(sink_url: &str) -> u64 {
    let all = fetch_windows(sink_url, GATEWAY).await.unwrap_or_default();
    all.iter()
        .filter(|w: &&StoredWindow| w.device == "_overflow")
        .map(|w| w.count)
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_flood_lands_in_the_overflow_series_with_bounded_memory() {
    let _serial = SERIAL.lock().await;
    let Some(broker) = common::mosquitto_or_skip(Persistence::Off) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::start(&dir.path().join("sink"), "127.0.0.1:0");
    let config = agent_config(dir.path(), broker.port(), &sink.url);
    let mut doc: toml::Table = std::fs::read_to_string(&config).unwrap().parse().unwrap();
    doc.remove("models");
    let limits = doc
        .entry("limits")
        .or_insert_with(|| toml::Table::new().into())
        .as_table_mut()
        .unwrap();
    limits.insert(
        "max_series".into(),
        i64::try_from(MAX_SERIES).unwrap().into(),
    );
    std::fs::write(&config, toml::to_string(&doc).unwrap()).unwrap();
    let agent = Agent::start(&config);

    // The agent subscribes after connecting; until then the broker drops what is
    // published. Probe with a topic no route takes (counted `unknown_topic`) until
    // the sink shows the count.
    let probe = async {
        for attempt in 0.. {
            let topic = "plant/probe/unrouted".to_owned();
            publish_all(
                broker.port(),
                1000 + attempt,
                vec![(topic, Bytes::from("{}"))],
            )
            .await;
            for _ in 0..10 {
                if common::sink_counters(&sink.url)
                    .await
                    .contains_key("unknown_topic")
                {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(60), probe)
        .await
        .expect("the agent never received a probe message");

    let mut rss = Vec::new();
    for wave in 0..WAVES {
        let messages: Vec<(String, Bytes)> = (0..TOPICS_PER_WAVE)
            .map(|i| {
                let n = wave * TOPICS_PER_WAVE + i;
                // Each wave in its own hour, so no wave is late for the one before.
                let ts = T0 + (wave as i64) * 3_600_000 + i as i64;
                let payload = format!(r#"{{"seq":1,"ts":{ts},"temp":{n}}}"#);
                (format!("plant/flood-{n:06}/sensors"), Bytes::from(payload))
            })
            .collect();
        publish_all(broker.port(), wave, messages).await;
        let beyond = ((wave + 1) * TOPICS_PER_WAVE - MAX_SERIES) as u64;
        let mut last = 0;
        let reached = tokio::time::timeout(Duration::from_secs(120), async {
            loop {
                last = overflow_readings(&sink.url).await;
                if last == beyond {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        })
        .await;
        assert!(
            reached.is_ok(),
            "wave {wave}: the sink holds {last} overflow readings, expected {beyond}; counters {:?}; agent log:\n{}",
            common::sink_counters(&sink.url).await,
            common::tail(&agent.log(), 20)
        );
        rss.push(agent_rss_kib(&config));
        println!(
            "after {} distinct topics: agent VmRSS {} KiB",
            (wave + 1) * TOPICS_PER_WAVE,
            rss[wave]
        );
    }
    let total = (WAVES * TOPICS_PER_WAVE) as u64;
    let counters = common::sink_counters(&sink.url).await;
    assert_eq!(
        counters.get("too_many_series").copied(),
        Some(total - MAX_SERIES as u64),
        "every reading beyond the cap counted; agent log:\n{}",
        common::tail(&agent.log(), 20)
    );
    // Bounded: the last waves add little compared with the first (series are capped;
    // what still grows per device is its seq high-water mark, a few dozen bytes).
    let first_growth = rss[1].saturating_sub(rss[0]);
    let last_growth = rss[WAVES - 1].saturating_sub(rss[WAVES - 2]);
    println!(
        "RSS growth per {TOPICS_PER_WAVE} topics: first {first_growth} KiB, last {last_growth} KiB"
    );
    assert!(
        rss[WAVES - 1] < 200 * 1024,
        "agent RSS {} KiB after {total} topics",
        rss[WAVES - 1]
    );
}
