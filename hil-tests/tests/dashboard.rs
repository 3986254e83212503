//! The fleet dashboard in a real browser. fleet-sim replays SKAB rows and Loghub
//! lines for a few devices through a real Mosquitto into the real `edge-agent`
//! (sensor model with escalations, log templates on), which ships to the real
//! `cloud-sink`; one more device is named with markup (its readings, published
//! first, also show that the agent listens before the replay). Headless Chromium, driven
//! through chromedriver, loads `/` and the test waits (polling the page, no fixed
//! sleeps) until the gateway table lists the gateway and the chart has plotted
//! points; then it checks the markers, templates, escalations and the hostile name
//! against the sink's own JSON, saves a screenshot, and kills the sink to see the
//! error banner.
//!
//! Without chromium/chromedriver (or Mosquitto, or SKAB) it prints `SKIP: …`,
//! unless `EDGE_REQUIRE_SERVICES=1`. It does not check window contents (the
//! end-to-end tests do).

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{agent_config, setup_or_skip, Agent, Sink, GATEWAY, SERIAL};
use hil_tests::mosquitto::Mosquitto;
use hil_tests::webdriver::{Browser, ChromeDriver, WebDriverError};
use hil_tests::{data_dir, require_or_skip, SimOptions};
use serde_json::{json, Value};

const DEVICES: usize = 3;
/// Markup as a device name: the page must show it as text.
const HOSTILE: &str = "<img src=x onerror=window.pwned=1>";
const WAIT: Duration = Duration::from_secs(90);

/// The agent config of `common`, plus log templates and escalations (every
/// unsure row below 0.3 confidence, within the hourly budget).
fn config_with_templates_and_escalations(dir: &Path, broker: u16, sink: &str) -> PathBuf {
    let path = agent_config(dir, broker, sink);
    let mut doc: toml::Table = std::fs::read_to_string(&path).unwrap().parse().unwrap();
    let templates: toml::Table = [("enabled".to_owned(), true.into())].into_iter().collect();
    doc.insert("templates".into(), templates.into());
    let sensor = &mut doc["models"]["sensor"].as_array_mut().unwrap()[0];
    sensor
        .as_table_mut()
        .unwrap()
        .insert("escalate_below".into(), 0.3.into());
    std::fs::write(&path, toml::to_string(&doc).unwrap()).unwrap();
    path
}

/// Publishes reading `seq` of device [`HOSTILE`] (QoS 1) and waits for its PUBACK.
async fn publish_hostile(broker: &Mosquitto, seq: i64) {
    use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
    let mut options = MqttOptions::new(
        format!("dashboard-hostile-{seq}"),
        "127.0.0.1",
        broker.port(),
    );
    options.set_keep_alive(Duration::from_secs(5));
    let (client, mut events) = AsyncClient::new(options, 10);
    let ts = 1_600_000_000_000i64 + seq * 1000;
    let payload = json!({ "ts": ts, "seq": seq, "temp": 21.5 }).to_string();
    client
        .publish(
            format!("plant/{HOSTILE}/sensors"),
            QoS::AtLeastOnce,
            false,
            payload,
        )
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Event::Incoming(Packet::PubAck(_)) = events.poll().await.unwrap() {
                break;
            }
        }
    })
    .await
    .expect("PUBACK for the hostile device's reading");
    let _ = client.disconnect().await;
}

/// The agent subscribes a moment after it starts, and the broker keeps nothing
/// for a subscription that does not exist yet: publish [`HOSTILE`]'s readings
/// until one reaches the sink, so the replay starts only once the agent listens.
async fn wait_until_agent_listens(agent: &Agent, broker: &Mosquitto, sink: &Sink) {
    common::wait_for(
        "the agent to connect to the broker",
        Duration::from_secs(30),
        || async { agent.log().contains("mqtt connected").then_some(()) },
    )
    .await;
    for seq in 1..=10 {
        publish_hostile(broker, seq).await;
        // Its window closes on idle (2 s), then ships within a batch interval.
        let deadline = Instant::now() + Duration::from_secs(4);
        while Instant::now() < deadline {
            if devices(sink).await.iter().any(|d| d["device"] == HOSTILE) {
                println!("agent listening: reading {seq} of {HOSTILE:?} stored");
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    panic!("no reading of {HOSTILE:?} reached the sink in 10 tries");
}

/// `/v1/devices` of our gateway, from the sink itself.
async fn devices(sink: &Sink) -> Vec<Value> {
    let v: Value = reqwest::get(format!("{}/v1/devices?gateway={GATEWAY}", sink.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["devices"].as_array().cloned().unwrap_or_default()
}

/// Anomalous windows of `device`'s `anomaly` series (the sensor model's verdicts),
/// counted from the sink's stored windows.
async fn anomalous_windows(sink: &Sink, device: &str) -> usize {
    let all = hil_tests::fetch_windows(&sink.url, GATEWAY).await.unwrap();
    all.iter()
        .filter(|w| w.device == device && w.metric == "anomaly")
        .filter(|w| w.verdict.is_some_and(|v| v.anomalous))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_shows_the_fleet_in_headless_chromium() {
    let _serial = SERIAL.lock().await;
    let browser = match Browser::find() {
        Ok(b) => b,
        Err(e) => {
            require_or_skip(&e.to_string());
            return;
        }
    };
    let Some((dir, broker)) = setup_or_skip() else {
        return;
    };
    let started = Instant::now();
    let sink_dir = dir.path().join("sink");
    let mut sink = Sink::start(&sink_dir, "127.0.0.1:0");
    let config = config_with_templates_and_escalations(dir.path(), broker.port(), &sink.url);
    let agent = Agent::start(&config);
    wait_until_agent_listens(&agent, &broker, &sink).await;
    println!("agent listening after {:?}", started.elapsed());
    let report = hil_tests::run(SimOptions {
        broker: broker.broker(),
        devices: DEVICES,
        skab_dir: data_dir().join("SKAB"),
        max_rows_per_device: Some(1500),
        loghub: vec![data_dir().join("loghub/HDFS/HDFS_2k.log")],
        max_log_lines: Some(150),
        malformed: 1,
        ..SimOptions::default()
    })
    .await
    .unwrap();
    println!("{report}");
    // The browser must find every device's series; wait until the sink has them
    // (windows close on idle, so the last ones come a few seconds after the replay).
    let mut seen = Vec::new();
    let ready = tokio::time::timeout(WAIT, async {
        loop {
            seen = devices(&sink).await;
            let hostile = seen.iter().any(|d| d["device"] == HOSTILE);
            let templates = seen.iter().any(|d| {
                d["metrics"]
                    .as_object()
                    .is_some_and(|m| m.values().any(|s| s["template"] == true))
            });
            if seen.len() == DEVICES + 1 && hostile && templates {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    if ready.is_err() {
        let names: Vec<String> = seen
            .iter()
            .map(|d| format!("{} ({} windows)", d["device"], d["windows"]))
            .collect();
        panic!(
            "after {WAIT:?} the sink has devices {names:?}; want {DEVICES} + {HOSTILE:?}, \
             with template windows\n--- agent log (tail):\n{}",
            common::tail(&agent.log(), 30)
        );
    }
    println!("pipeline ready after {:?}", started.elapsed());

    let target = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard");
    std::fs::create_dir_all(&target).unwrap();
    let driver = ChromeDriver::start(&browser, &target.join("chromedriver.log"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let session = driver
        .session(1400, 2600, &dir.path().join("chromium-profile"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let result = drive(&session, &mut sink, &target).await;
    let _ = session.close().await;
    if let Err(e) = result {
        panic!(
            "{e}\n--- sink log (tail):\n{}\n--- agent log (tail):\n{}",
            common::tail(&sink.log(), 20),
            common::tail(&agent.log(), 20)
        );
    }
    println!("whole test {:?}", started.elapsed());
}

async fn drive(
    session: &hil_tests::webdriver::Session<'_>,
    sink: &mut Sink,
    target: &Path,
) -> Result<(), WebDriverError> {
    let t0 = Instant::now();
    session.goto(&format!("{}/", sink.url)).await?;
    let loaded = t0.elapsed();
    let row = session
        .wait_for(
            "the gateway in the fleet table",
            "const r = [...document.querySelectorAll('#fleet-table tbody tr')]
                 .find(r => r.dataset.gateway === arguments[0]);
             return r ? [...r.cells].map(c => c.textContent) : null;",
            &[json!(GATEWAY)],
            WAIT,
        )
        .await?;
    let points = session
        .wait_for(
            "plotted points in the chart",
            "const n = document.querySelectorAll('#chart circle.pt').length;
             return n > 0 && document.getElementById('chart').dataset.points == n ? n : null;",
            &[],
            WAIT,
        )
        .await?;
    let first_paint = t0.elapsed();
    println!(
        "page: document loaded in {loaded:?}, fleet table and {points} chart points after {first_paint:?}"
    );
    println!("fleet row: {row}");
    assert_eq!(row[0], GATEWAY);
    assert!(
        row[1].as_str().unwrap().ends_with("ago"),
        "last seen: {row}"
    );
    assert_eq!(
        row[10],
        json!((DEVICES + 1).to_string()),
        "devices column: {row}"
    );
    // Backlog and agent faults come from the agent's own batches (gauges and
    // `agent.*` counts): numbers, not the "—" of an agent that reports none.
    for (column, name) in [(16, "backlog"), (17, "agent faults")] {
        let text = row[column].as_str().unwrap_or_default().replace(',', "");
        assert!(text.parse::<u64>().is_ok(), "{name} column: {row}");
    }

    // The chart is the first device's first sensor series; its anomaly markers
    // must number the sink's anomalous judgement windows of that device.
    let shown: Value = session
        .execute(
            "const c = document.getElementById('chart');
             return { device: JSON.parse(document.getElementById('pick-device').value)[1],
                      metric: document.getElementById('pick-metric').value,
                      points: Number(c.dataset.points), alarms: Number(c.dataset.alarms),
                      marks: c.querySelectorAll('.alarm-mark').length,
                      escalated: c.querySelectorAll('.esc-mark').length };",
            &[],
        )
        .await?;
    println!("chart: {shown}");
    let device = shown["device"].as_str().unwrap().to_owned();
    let summaries = devices(sink).await;
    let summary = summaries.iter().find(|d| d["device"] == device.as_str());
    let summary = summary.expect("the charted device is one of the sink's");
    let metric = shown["metric"].as_str().unwrap();
    assert_eq!(
        shown["points"], summary["metrics"][metric]["windows"],
        "every window of the series in the 3 h span is plotted"
    );
    let alarms = anomalous_windows(sink, &device).await;
    assert!(
        alarms > 0,
        "SKAB rows with anomalies should raise some verdicts"
    );
    assert_eq!(shown["alarms"], json!(alarms));
    assert_eq!(shown["marks"], json!(alarms));
    assert!(shown["escalated"].as_u64().unwrap() > 0, "{shown}");

    // Log templates per window, and escalations with both verdicts.
    let templates = session
        .wait_for(
            "log template rows",
            "const rows = [...document.querySelectorAll('#templates-table tbody tr')];
             return rows.length ? rows.slice(0, 3).map(r => [...r.cells].map(c => c.textContent)) : null;",
            &[],
            WAIT,
        )
        .await?;
    println!("templates: {templates}");
    let escalations = session
        .wait_for(
            "escalation rows with a teacher verdict",
            "const rows = [...document.querySelectorAll('#escalations-table tbody tr')]
                 .map(r => [...r.cells].map(c => c.textContent));
             return rows.some(r => r[5] === 'alarm' || r[5] === 'normal') ? rows.slice(0, 3) : null;",
            &[],
            WAIT,
        )
        .await?;
    println!("escalations: {escalations}");

    // The hostile name is text in the device table, never an element.
    let hostile: Value = session
        .execute(
            "return { text: [...document.querySelectorAll('#devices-table tbody tr')]
                          .map(r => r.cells[1].textContent),
                      imgs: document.querySelectorAll('img').length,
                      pwned: window.pwned === 1 };",
            &[],
        )
        .await?;
    assert!(
        hostile["text"]
            .as_array()
            .unwrap()
            .contains(&json!(HOSTILE)),
        "{hostile}"
    );
    assert_eq!(
        (&hostile["imgs"], &hostile["pwned"]),
        (&json!(0), &json!(false))
    );

    let console = session.console().await?;
    let errors: Vec<&Value> = console.iter().filter(|m| m["level"] == "SEVERE").collect();
    assert!(errors.is_empty(), "browser console errors: {errors:?}");

    let png = session.screenshot().await?;
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "screenshot is a PNG");
    let path = target.join("dashboard.png");
    std::fs::write(&path, &png).unwrap();
    println!("screenshot: {} ({} bytes)", path.display(), png.len());

    // The sink goes away: the page keeps its data and says so.
    sink.kill();
    let banner = session
        .wait_for(
            "the error banner",
            "const b = document.getElementById('error-banner');
             return !b.hidden && document.getElementById('status').dataset.state === 'error'
                 ? b.textContent : null;",
            &[],
            Duration::from_secs(20),
        )
        .await?;
    println!("banner: {banner}");
    let still = session
        .execute(
            "return document.querySelectorAll('#chart circle.pt').length;",
            &[],
        )
        .await?;
    assert_eq!(still, points, "the chart stays while the sink is down");
    let png = session.screenshot().await?;
    std::fs::write(target.join("dashboard-sink-down.png"), png).unwrap();
    Ok(())
}

/// The dashboard's "Agent faults" column sums the health counts its `FAULTS` list names;
/// those are the agent's own `HealthCount` names (a rename on either side would silently
/// drop a count from the column).
#[test]
fn dashboard_fault_names_are_agent_health_counts() {
    let app = hil_tests::paths::workspace_root().join("cloud-sink/assets/dashboard/app.js");
    let text = std::fs::read_to_string(&app).unwrap();
    let list = text
        .split_once("const FAULTS = [")
        .and_then(|(_, rest)| rest.split_once("];"))
        .expect("app.js defines `const FAULTS = [...];`")
        .0;
    let faults: Vec<&str> = list
        .split(',')
        .map(|s| s.trim().trim_matches('"'))
        .filter(|s| !s.is_empty())
        .collect();
    let known: Vec<&str> = edge_agent::health::HealthCount::ALL
        .iter()
        .map(|c| c.as_str())
        .collect();
    assert!(faults.len() >= 5, "{faults:?}");
    for name in &faults {
        assert!(
            known.contains(name),
            "FAULTS names {name:?}, not a HealthCount: {known:?}"
        );
    }
}
