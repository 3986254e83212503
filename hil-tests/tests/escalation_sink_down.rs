//! Escalations while the sink is down: SKAB replayed through a real Mosquitto into
//! the real `edge-agent` with the int8 sensor model escalating unsure rows; the
//! `cloud-sink` is down for the whole replay, so every escalation waits in the
//! outbox (inside its judgement window). Once the sink is back, everything is
//! delivered and each escalation is stored exactly once: `/v1/escalations` lists
//! exactly the escalations inside the stored windows, none twice, none over the
//! per-device hourly budget. The sink's teacher judged every one of them, and
//! its agreement statistics and counters match the listed verdicts.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::{agent_config, wait_for, Agent, CheckWait, Sink, GATEWAY, SERIAL};
use hil_tests::fetch_windows;
use hil_tests::mosquitto::Persistence;

const DEVICES: usize = 4;
const WINDOW_MS: i64 = 60_000;
const ALPHA: f64 = 0.01;
const BUDGET: i64 = 4;
const HOUR_MS: i64 = 3_600_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn escalations_wait_for_the_sink_and_arrive_exactly_once() {
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
    let models = doc["models"].as_table_mut().unwrap();
    models.insert("escalations_per_device_hour".into(), BUDGET.into());
    let sensor = &mut models["sensor"].as_array_mut().unwrap()[0];
    sensor
        .as_table_mut()
        .unwrap()
        .insert("escalate_below".into(), 0.3.into());
    std::fs::write(&config, toml::to_string(&doc).unwrap()).unwrap();
    let agent = Agent::start(&config);
    common::wait_subscribed(&agent).await;

    let ledger = common::replay_skab(&broker, DEVICES, dir.path()).await;
    wait_for(
        "the agent to find the sink down",
        Duration::from_secs(60),
        || async { agent.log().contains("batch not delivered").then_some(()) },
    )
    .await;

    let sink = Sink::start(&dir.path().join("sink"), &listen);
    let skip_judged = |w: &hil_tests::StoredWindow| !w.is_raw_sensor();
    let checked = CheckWait::new(&ledger, WINDOW_MS, ALPHA, Duration::from_secs(180))
        .skip(&skip_judged)
        .agent_log(&|| agent.log())
        .run(&sink)
        .await;
    println!("{checked}");

    // The judgement windows close with the raw ones; wait until none is missing
    // (every device's last judged minute is there) and read both views.
    let (windows, listed) = wait_for(
        "every judgement window and its escalations",
        Duration::from_secs(60),
        || async {
            let all = fetch_windows(&sink.url, GATEWAY).await.ok()?;
            let judged: Vec<_> = all.into_iter().filter(|w| w.verdict.is_some()).collect();
            let in_windows: usize = judged.iter().map(|w| w.escalations.len()).sum();
            let body: serde_json::Value = reqwest::get(format!("{}/v1/escalations", sink.url))
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            let listed = body["escalations"].as_array()?.clone();
            (in_windows > 0 && listed.len() == in_windows).then_some((judged, listed))
        },
    )
    .await;

    // Exactly once, and the same in both views.
    let mut seen = BTreeSet::new();
    let mut agree = 0;
    let mut per_hour: BTreeMap<(String, i64), i64> = BTreeMap::new();
    for e in &listed {
        let device = e["device"].as_str().unwrap().to_owned();
        let ts = e["escalation"]["ts_ms"].as_i64().unwrap();
        assert!(
            seen.insert((device.clone(), ts)),
            "escalation stored twice: {e}"
        );
        *per_hour
            .entry((device, ts.div_euclid(HOUR_MS)))
            .or_default() += 1;
        assert_eq!(e["escalation"]["features"].as_array().unwrap().len(), 24);
        assert!(e["escalation"]["confidence"].as_f64().unwrap() < 0.3);
        // The sink's teacher judged every one, once, at ingest.
        let teacher = &e["teacher"];
        let score = teacher["score"].as_f64();
        assert!(score.is_some_and(f64::is_finite), "no teacher verdict: {e}");
        assert_eq!(
            teacher["alarm"].as_bool(),
            score.map(|s| s > teacher["threshold"].as_f64().unwrap()),
            "{e}"
        );
        if teacher["alarm"] == e["escalation"]["alarm"] {
            agree += 1;
        }
    }
    let in_windows: BTreeSet<(String, i64)> = windows
        .iter()
        .flat_map(|w| w.escalations.iter().map(|e| (w.device.clone(), e.ts_ms)))
        .collect();
    assert_eq!(
        seen, in_windows,
        "/v1/escalations and the stored windows disagree"
    );
    assert!(per_hour.values().all(|n| *n <= BUDGET), "{per_hour:?}");
    let over = common::sink_counters(&sink.url)
        .await
        .get("escalation_over_budget")
        .copied()
        .unwrap_or(0);
    println!(
        "{} escalations stored once ({} device-hours), {over} unsure rows over budget",
        listed.len(),
        per_hour.len()
    );

    // The agreement endpoint and the sink's counters say the same.
    let stats: serde_json::Value = reqwest::get(format!("{}/v1/escalations/agreement", sink.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let overall = &stats["overall"];
    assert_eq!(overall["judged"], listed.len() as u64, "{stats}");
    assert_eq!(overall["agree"], agree, "{stats}");
    let health: serde_json::Value = reqwest::get(format!("{}/v1/health", sink.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let teacher = &health["teacher"];
    assert_eq!(teacher["judged"], listed.len() as u64, "{health}");
    println!(
        "teacher agreed with the gateway on {agree} of {} escalations; table {}; \
         teacher time {} µs per escalation (mean)",
        listed.len(),
        overall["table"],
        teacher["judge_us_mean"]
    );
}
