//! Log-line escalations while the sink is down: real BGL lines (read in place) replayed through a
//! real Mosquitto into the real `edge-agent` with the int8 log model escalating unsure lines;
//! the `cloud-sink` is down for the whole replay, so every escalation waits in the outbox inside
//! its device's `log.alert` window. Once the sink is back, every line is judged and stored, and
//! each escalation is stored exactly once: `/v1/escalations` lists exactly the escalations inside
//! the stored windows, none twice, none over a window's room or the hourly budget, each with its
//! sparse feature row and a redacted exemplar (no IPv4 address of the input), and the sink's
//! log teacher judged every one (agreement per series says the same).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::{agent_config, wait_for, Agent, Sink, GATEWAY, SERIAL};
use hil_tests::fetch_windows;
use hil_tests::mosquitto::Persistence;

const DEVICES: usize = 6;
const BUDGET: i64 = 5;
const ROOM: usize = 2; // edge_agent::window::MAX_ESCALATIONS_PER_WINDOW
const SERIES: &str = "log.alert";

/// Whether `s` holds something shaped like an IPv4 address (`d.d.d.d`).
fn has_ipv4(s: &str) -> bool {
    let b = s.as_bytes();
    (0..b.len()).any(|start| {
        let mut i = start;
        for part in 0..4 {
            let digits = b[i..].iter().take_while(|c| c.is_ascii_digit()).count();
            if digits == 0 || digits > 3 {
                return false;
            }
            i += digits;
            if part < 3 {
                if b.get(i) != Some(&b'.') {
                    return false;
                }
                i += 1;
            }
        }
        start == 0 || !b[start - 1].is_ascii_digit()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_escalations_wait_for_the_sink_and_arrive_exactly_once() {
    let _serial = SERIAL.lock().await;
    let bgl = hil_tests::workspace_root().join("../shared/data/loghub/BGL/BGL_first1000.log");
    if !common::skab_or_skip() || !bgl.exists() {
        return;
    }
    let Some(broker) = common::mosquitto_or_skip(Persistence::Off) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (listen, url) = Sink::down(&dir.path().join("sink"));

    let config = agent_config(dir.path(), broker.port(), &url);
    let mut doc: toml::Table = std::fs::read_to_string(&config).unwrap().parse().unwrap();
    let models = doc["models"].as_table_mut().unwrap();
    models.insert("escalations_per_device_hour".into(), BUDGET.into());
    let log = models["log"].as_table_mut().unwrap();
    log.insert("escalate_below".into(), 0.9.into());
    std::fs::write(&config, toml::to_string(&doc).unwrap()).unwrap();
    let agent = Agent::start(&config);
    common::wait_subscribed(&agent).await;

    let ledger_path = dir.path().join("ledger.jsonl");
    let report = hil_tests::run(hil_tests::SimOptions {
        broker: broker.broker(),
        devices: DEVICES,
        max_rows_per_device: Some(20),
        loghub: vec![bgl],
        ledger: Some(ledger_path.clone()),
        ..hil_tests::SimOptions::default()
    })
    .await
    .unwrap();
    println!("{report}");
    let ledger = hil_tests::read_ledger(&ledger_path).unwrap();
    let lines = common::logs_published(&ledger);
    assert!(lines >= 900, "{lines} lines published");
    wait_for(
        "the agent to find the sink down",
        Duration::from_secs(60),
        || async { agent.log().contains("batch not delivered").then_some(()) },
    )
    .await;

    let sink = Sink::start(&dir.path().join("sink"), &listen);
    // Done when every published line was judged and stored, and both views
    // of the escalations agree in number.
    let (windows, listed) = wait_for(
        "every line judged and every escalation stored",
        Duration::from_secs(120),
        || async {
            let all = fetch_windows(&sink.url, GATEWAY).await.ok()?;
            let alert: Vec<_> = all.into_iter().filter(|w| w.metric == SERIES).collect();
            let judged: u64 = alert.iter().map(|w| w.count).sum();
            let in_windows: usize = alert.iter().map(|w| w.escalations.len()).sum();
            let body: serde_json::Value = reqwest::get(format!("{}/v1/escalations", sink.url))
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            let listed = body["escalations"].as_array()?.clone();
            (judged == lines && in_windows > 0 && listed.len() == in_windows)
                .then_some((alert, listed))
        },
    )
    .await;

    // Each log.alert window stored once (its lines counted once: judged == lines above).
    let keys: BTreeSet<(String, i64)> = windows
        .iter()
        .map(|w| (w.device.clone(), w.start_ms))
        .collect();
    assert_eq!(keys.len(), windows.len(), "a log.alert window stored twice");
    // Lines share a millisecond (gateway clock) and repeat (BGL), so an
    // escalation is known by (device, time, exemplar) and compared as a multiset.
    let mut seen = Vec::new();
    let mut per_window: BTreeMap<(String, i64), usize> = BTreeMap::new();
    let mut agree = 0;
    for e in &listed {
        assert_eq!(e["series"], SERIES, "{e}");
        let device = e["device"].as_str().unwrap().to_owned();
        let x = &e["escalation"];
        let ts = x["ts_ms"].as_i64().unwrap();
        let exemplar = x["exemplar"].as_str().expect("an exemplar").to_owned();
        seen.push((device.clone(), ts, exemplar));
        *per_window
            .entry((device, e["window_start_ms"].as_i64().unwrap()))
            .or_default() += 1;
        assert!(x["confidence"].as_f64().unwrap() < 0.9, "{e}");
        let (idx, val) = (
            x["indices"].as_array().unwrap(),
            x["features"].as_array().unwrap(),
        );
        assert!(
            !idx.is_empty() && idx.len() == val.len(),
            "a sparse row: {e}"
        );
        let exemplar = x["exemplar"].as_str().unwrap();
        assert!(
            !exemplar.is_empty() && exemplar.len() <= 128,
            "{exemplar:?}"
        );
        assert!(
            !has_ipv4(exemplar),
            "raw address left the gateway: {exemplar}"
        );
        let teacher = &e["teacher"];
        let p = teacher["score"].as_f64();
        assert!(
            p.is_some_and(|p| (0.0..=1.0).contains(&p)),
            "no teacher verdict: {e}"
        );
        assert_eq!(teacher["threshold"], 0.5);
        assert_eq!(teacher["alarm"].as_bool(), p.map(|p| p >= 0.5), "{e}");
        if teacher["alarm"] == x["alarm"] {
            agree += 1;
        }
    }
    let mut in_windows: Vec<(String, i64, String)> = windows
        .iter()
        .flat_map(|w| {
            w.escalations.iter().map(move |e| {
                let exemplar = e.exemplar.clone().unwrap_or_default();
                (w.device.clone(), e.ts_ms, exemplar)
            })
        })
        .collect();
    seen.sort();
    in_windows.sort();
    assert_eq!(
        seen, in_windows,
        "/v1/escalations and the stored windows disagree"
    );
    assert!(per_window.values().all(|n| *n <= ROOM), "{per_window:?}");
    let per_device = per_window
        .keys()
        .map(|(d, _)| d)
        .collect::<BTreeSet<_>>()
        .len();
    assert!(per_device >= 2, "escalations from {per_device} devices");
    let over = common::sink_counters(&sink.url)
        .await
        .get("escalation_over_budget")
        .copied()
        .unwrap_or(0);
    assert!(over > 0, "unsure lines beyond the room are counted");

    let stats: serde_json::Value = reqwest::get(format!(
        "{}/v1/escalations/agreement?series={SERIES}",
        sink.url
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let overall = &stats["overall"];
    assert_eq!(overall["judged"], listed.len() as u64, "{stats}");
    assert_eq!(overall["agree"], agree, "{stats}");
    assert_eq!(
        stats["by_series"][SERIES]["judged"],
        listed.len() as u64,
        "{stats}"
    );
    println!(
        "{lines} lines judged; {} log escalations stored once from {per_device} devices, \
         {over} unsure lines over budget or room; teacher agreed on {agree}",
        listed.len()
    );
}
