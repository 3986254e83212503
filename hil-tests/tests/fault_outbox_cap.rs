//! Fault: the sink is down for the whole replay and the agent's outbox cap is far
//! smaller than what the replay produces. The agent must roll old windows up
//! instead of dropping them, keep its outbox under the cap, count every loss of
//! resolution, and deliver everything once the sink is back: the checker finds
//! every expected window either on its own or inside a roll-up whose count, sum,
//! min, max, first, last and stddev match the originals it holds.
//!
//! Real processes: a private Mosquitto, fleet-sim (library), the `edge-agent`
//! and `cloud-sink` binaries. It does not test drops (the proptest in
//! `edge-agent/tests/outbox_model.rs` drives the outbox past its coarsest width).

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{agent_config, wait_for, Agent, CheckWait, Sink, SERIAL};
use hil_tests::mosquitto::Persistence;

const DEVICES: usize = 2;
const ALPHA: f64 = 0.01;
/// The smallest cap the config accepts: the store (journal, outbox, sled's
/// own overhead) must stay under it on disk, with roll-ups doing the work.
const CAP: u64 = 16 * 1024 * 1024;

/// The `key=value` number after `key` in a log line.
fn number_after(line: &str, key: &str) -> Option<u64> {
    let rest = &line[line.find(key)? + key.len()..];
    rest.split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// 10 s windows: one SKAB replay then makes ~29 000 windows (~6 MB of
/// batches), enough to press against a realistic cap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbox_cap_rolls_up_during_a_long_outage_and_conserves_aggregates() {
    outage_under_the_cap(10_000).await;
}

/// 2 s windows: five times the windows (~140 000) from the same replay, closed
/// and cut within seconds; cuts and roll-ups, not ingest, then write most of
/// the store's bytes, and a single cut can alone be larger than the outbox's
/// live budget.
///
/// It failed (issue 4) with 50 000–75 000 of the 142 136 expected windows
/// missing: the cap dropped them (`outbox_full`, counted, but only shown by
/// the sink's counters and early agent log lines). The room made before such
/// a cut was `budget − incoming` = 0, so the walk dropped every old batch,
/// and a counters-only batch at the outbox's tail was taken for "as coarse as
/// allowed", which froze every batch before it for later walks. Both fixed in
/// `edge-agent/src/outbox.rs` (`roll_up_to`, contiguous `coarse_until`).
///
/// It then passed the cap (17.2–22.2 MB of 16.8 in 5 of 7 runs, session 8):
/// one cut of the burst closed up to 24 000 windows, written fine (4.2 MB
/// of batches, ~10 MB on disk with sled's old copies) and rolled up right
/// after, which wrote them again. A cut over the room left is now rolled up
/// in memory before it is written (`rollup::roll_up_to_fit` in the
/// pipeline's cut), and a compaction measures disk use just before it sizes
/// its snapshot. The peak left is a compaction's snapshot beside the old
/// files, which its allowance keeps under the cap.
///
/// It passed the cap once more in CI (16.83 MB, then 17.2 MB in the drain):
/// one step (a group commit and a cut with its roll-ups) wrote 2–5 MB before
/// the guard measured again, more than the fixed 15% margin, and a stalled
/// wait resumed just under the cap and crept past it 1% at a time. The full
/// mark now keeps back the largest step seen, and a stall resumes only below
/// the cap less that step (`disk_guard`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbox_cap_holds_under_a_burst_of_short_windows() {
    outage_under_the_cap(2_000).await;
}

async fn outage_under_the_cap(window_ms: i64) {
    let _serial = SERIAL.lock().await;
    if !common::skab_or_skip() {
        return;
    }
    let Some(broker) = common::mosquitto_or_skip(Persistence::Off) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // The sink stays down for the whole replay.
    let (listen, url) = Sink::down(&dir.path().join("sink"));

    let config = agent_config(dir.path(), broker.port(), &url);
    let mut doc: toml::Table = std::fs::read_to_string(&config).unwrap().parse().unwrap();
    let mut outbox = toml::Table::new();
    outbox.insert("max_bytes".into(), i64::try_from(CAP).unwrap().into());
    outbox.insert("max_rollup_width".into(), "1h".into());
    doc["window"].as_table_mut().unwrap()["width"] = format!("{window_ms}ms").into();
    doc.insert("outbox".into(), outbox.into());
    std::fs::write(&config, toml::to_string(&doc).unwrap()).unwrap();
    let agent = Agent::start(&config);
    common::wait_subscribed(&agent).await;
    // Sample the store's disk use (allocated blocks, like `du`) all through the outage.
    let data = dir.path().join("agent-data");
    let max_disk = Arc::new(AtomicU64::new(0));
    // The peak of each second, printed as a timeline when the test fails or asks.
    let per_second = Arc::new(std::sync::Mutex::new(Vec::<u64>::new()));
    let sampler = {
        let (data, max_disk, per_second) = (data.clone(), max_disk.clone(), per_second.clone());
        let start = std::time::Instant::now();
        tokio::spawn(async move {
            loop {
                if let Ok(n) = edge_agent::disk_usage::disk_usage(&data) {
                    max_disk.fetch_max(n, Ordering::Relaxed);
                    let second = start.elapsed().as_secs() as usize;
                    let mut peaks = per_second.lock().unwrap();
                    if peaks.len() <= second {
                        peaks.resize(second + 1, 0);
                    }
                    peaks[second] = peaks[second].max(n);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };

    let ledger = common::replay_skab(&broker, DEVICES, dir.path()).await;

    // Every window closes (idle) and lands in the outbox; wait until the cap has acted.
    wait_for(
        "the outbox to roll windows up",
        Duration::from_secs(120),
        || async { agent.log().contains("rolled old windows up").then_some(()) },
    )
    .await;
    // Let the last idle windows close and the cap act on them.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let disk_during_outage = max_disk.load(Ordering::Relaxed);
    let outage_seconds = per_second.lock().unwrap().len();
    let mut largest_after = 0;
    for line in agent
        .log()
        .lines()
        .filter(|l| l.contains("rolled old windows up"))
    {
        let after = number_after(line, "bytes_after=").expect("bytes_after in the log line");
        largest_after = largest_after.max(after);
    }
    let pauses = agent
        .log()
        .lines()
        .filter(|l| l.contains("ingest waits for room"))
        .count();
    println!("{}", timeline(&per_second.lock().unwrap(), usize::MAX));
    println!(
        "outage: outbox at most {largest_after} bytes after each roll-up (cap {CAP}); \
         agent store at most {disk_during_outage} bytes on disk; ingest paused {pauses} time(s)"
    );
    assert!(
        largest_after <= CAP,
        "outbox over its cap: {largest_after} > {CAP}"
    );

    let sink = Sink::start(&dir.path().join("sink"), &listen);
    let checked = CheckWait::new(&ledger, window_ms, ALPHA, Duration::from_secs(180))
        .accept(&|report| report.rolled_up > 0)
        .agent_log(&|| agent.log())
        // Drops are logged early; the failure shows only the log's tail.
        .context(&|| {
            agent
                .log()
                .lines()
                .filter(|l| l.contains("dropped the oldest windows"))
                .map(|l| format!("agent: {l}\n"))
                .collect()
        })
        .run(&sink)
        .await;
    // The sampler ran on while the backlog drained: the cap holds then too.
    sampler.abort();
    let peak = max_disk.load(Ordering::Relaxed);
    for line in agent.log().lines().filter(|l| {
        l.contains("compacted") || l.contains("waits for room") || l.contains("unchanged while")
    }) {
        println!("agent: {line}");
    }
    println!("{}", timeline(&per_second.lock().unwrap(), outage_seconds));
    println!("outage and drain: agent store at most {peak} bytes on disk");
    println!("{checked}");
    assert!(
        disk_during_outage <= CAP,
        "agent store used {disk_during_outage} bytes on disk during the outage, over the {CAP}-byte cap"
    );
    assert!(
        peak <= CAP,
        "agent store used {peak} bytes on disk while the backlog drained, over the {CAP}-byte cap"
    );
    assert!(checked.expected > 500, "replay too small: {checked}");
    assert!(checked.covered_by_rollups > 0);
    let counters = common::sink_counters(&sink.url).await;
    println!("sink counters: {counters:?}");
    assert!(
        counters.get("rolled_up").copied().unwrap_or(0) > 0,
        "roll-ups not counted"
    );
    assert_eq!(
        counters.get("outbox_full").copied().unwrap_or(0),
        0,
        "dropped data"
    );
}

/// Each second's peak disk use in MB, `|` where the sink came back.
fn timeline(peaks: &[u64], sink_back_at: usize) -> String {
    let seconds: Vec<String> = peaks
        .iter()
        .enumerate()
        .map(|(s, b)| {
            let mark = if s == sink_back_at { "| " } else { "" };
            format!("{mark}{:.1}", *b as f64 / 1e6)
        })
        .collect();
    format!(
        "store on disk, peak MB per second (| = sink back): {}",
        seconds.join(" ")
    )
}
