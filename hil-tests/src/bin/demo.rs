//! The one-command demo: the whole pipeline on one machine, no external services.
//!
//! An embedded MQTT broker (rumqttd) on a free port, cloud-sink with its embedded
//! store, edge-agent with the demo config, and fleet-sim replaying the real SKAB
//! pump data (and Loghub lines) as 10 devices — all in this one process. It
//! prints one line per batch of closed windows and where the sink answers, then
//! checks every stored window against what was published. State goes to
//! `var/demo/` (wiped at start). It is a showcase, not a deployment recipe:
//! production runs the `edge-agent` and `cloud-sink` binaries separately.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use hil_tests::{check_rounded, data_dir, fetch_windows, read_ledger, workspace_root, SimOptions};
use sha2::{Digest, Sha256};

const GATEWAY: &str = "gw-demo";
const TOKEN: &str = "demo-token";

/// Runs broker, simulated fleet, edge-agent and cloud-sink together and shows data flowing.
///
/// Example:  cargo run -p hil-tests --bin demo
/// Then open http://127.0.0.1:8080/v1/gateways while it runs.
#[derive(Debug, Parser)]
#[command(verbatim_doc_comment)]
struct Args {
    /// Replay speed: seconds of recorded pump time per wall-clock second.
    #[arg(long, default_value_t = 60.0)]
    speedup: f64,
    /// Number of simulated devices (the 23 SKAB files are dealt round-robin).
    #[arg(long, default_value_t = 10)]
    devices: usize,
    /// Address for cloud-sink; falls back to a free port if taken.
    #[arg(long, default_value = "127.0.0.1:8080")]
    sink: String,
    /// Exit once the replay is verified at the sink (instead of serving until Ctrl-C).
    #[arg(long)]
    once: bool,
    /// Working directory for the demo's state (wiped at start).
    #[arg(long, default_value = "var/demo")]
    dir: PathBuf,
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Starts rumqttd on its own threads.
fn start_broker(port: u16) -> Result<()> {
    let config = format!(
        r#"
        id = 0
        [router]
        id = 0
        max_connections = 100
        max_outgoing_packet_count = 200
        max_segment_size = 104857600
        max_segment_count = 10
        [v4.1]
        name = "demo"
        listen = "127.0.0.1:{port}"
        next_connection_delay_ms = 1
        [v4.1.connections]
        connection_timeout_ms = 60000
        max_payload_size = 1048576
        max_inflight_count = 500
        dynamic_filters = true
        "#
    );
    let config: rumqttd::Config = toml::from_str(&config).context("rumqttd config")?;
    std::thread::Builder::new()
        .name("broker".into())
        .spawn(move || {
            if let Err(e) = rumqttd::Broker::new(config).start() {
                eprintln!("demo: embedded broker stopped: {e}");
            }
        })?;
    Ok(())
}

fn agent_settings(
    dir: &Path,
    broker_port: u16,
    sink_url: &str,
) -> Result<edge_agent::config::Settings> {
    let path = workspace_root().join("configs/demo.toml");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let mut config = edge_agent::config::AgentConfig::parse(&text).map_err(anyhow::Error::msg)?;
    let token_file = dir.join("token");
    std::fs::write(&token_file, TOKEN)?;
    config.data_dir = dir.join("agent");
    config.mqtt.port = broker_port;
    config.uplink.url = sink_url.to_owned();
    config.uplink.token_env = None;
    config.uplink.token_file = Some(token_file);
    let mut settings = config
        .validate()
        .map_err(|p| anyhow::anyhow!("demo config: {p:?}"))?;
    settings
        .models
        .resolve_paths(&workspace_root().join("configs"));
    Ok(settings)
}

/// Prints what the cloud sees of the log stream (templates with counts, text and an
/// exemplar) and how many judged rows were escalated.
async fn print_log_summaries(sink_url: &str) -> Result<()> {
    use std::collections::BTreeMap;
    let stored = fetch_windows(sink_url, GATEWAY).await?;
    // metric → (lines, text, first exemplar)
    let mut templates: BTreeMap<String, (u64, String, String)> = BTreeMap::new();
    let mut redacted = 0.0;
    for w in &stored {
        if w.metric
            .starts_with(edge_agent::classify::templates::REDACTED_PREFIX)
        {
            redacted += w.sum;
        }
        if edge_agent::classify::templates::template_id(&w.metric).is_none() {
            continue;
        }
        let entry = templates.entry(w.metric.clone()).or_default();
        entry.0 += w.count;
        if let Some(t) = &w.template {
            entry.1.clone_from(&t.text);
            if entry.2.is_empty() {
                entry.2 = t.exemplars.first().cloned().unwrap_or_default();
            }
        }
    }
    let lines: u64 = templates.values().map(|t| t.0).sum();
    println!(
        "demo: log summaries at the sink: {} templates over {lines} lines, {redacted} values redacted in exemplars; the busiest:",
        templates.len()
    );
    let mut busiest: Vec<_> = templates.values().collect();
    busiest.sort_by_key(|t| std::cmp::Reverse(t.0));
    for (count, text, exemplar) in busiest.into_iter().take(5) {
        println!("demo:   {count:>5} × {text}");
        println!("demo:           e.g. {exemplar}");
    }
    let escalated: usize = stored.iter().map(|w| w.escalations.len()).sum();
    let judged: u64 = stored
        .iter()
        .filter_map(|w| w.verdict.map(|v| v.judged))
        .sum();
    println!(
        "demo: escalations at the sink: {escalated} of {judged} judged rows (the model was unsure; \
         the rest decided on the gateway): {sink_url}/v1/escalations"
    );
    let stats: serde_json::Value = reqwest::get(format!("{sink_url}/v1/escalations/agreement"))
        .await?
        .json()
        .await?;
    let all = &stats["overall"];
    let rate = all["agreement_rate"]
        .as_f64()
        .map_or_else(|| "-".to_owned(), |r| format!("{:.1}%", 100.0 * r));
    println!(
        "demo: the float teacher re-judged {} of them and agreed on {} ({rate}): \
         {sink_url}/v1/escalations/agreement",
        all["judged"], all["agree"]
    );
    Ok(())
}

async fn start_sink(dir: &Path, listen: &str) -> Result<(String, tokio::task::JoinHandle<()>)> {
    let mut config = cloud_sink::SinkConfig {
        telemetry: Default::default(),
        listen: listen.to_owned(),
        data_dir: dir.join("sink"),
        store: Default::default(),
        limits: cloud_sink::Limits::default(),
        tls: None,
        gateways: vec![cloud_sink::GatewayConfig {
            id: GATEWAY.into(),
            token_sha256: hex::encode(Sha256::digest(TOKEN.as_bytes())).into(),
            cert_sha256: Default::default(),
        }],
        // The float teacher re-judges the int8 student's escalations.
        teachers: vec![cloud_sink::TeacherConfig {
            series: "anomaly".into(),
            path: workspace_root().join("models/sensor/teacher.onnx"),
            recipe: None,
        }],
    };
    let server = match cloud_sink::Server::bind(&config).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("demo: {listen} unavailable ({e}); using a free port");
            config.listen = "127.0.0.1:0".into();
            cloud_sink::Server::bind(&config).await?
        }
    };
    let url = format!("http://{}", server.local_addr());
    let task = tokio::spawn(async move {
        if let Err(e) = server.run(std::future::pending()).await {
            eprintln!("demo: cloud-sink stopped: {e}");
        }
    });
    Ok((url, task))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,edge_agent::pipeline=info,rumqttd=off".into()),
        )
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .without_time()
        .init();
    let _ = rustls::crypto::ring::default_provider().install_default();
    if !data_dir().join("SKAB").is_dir() {
        bail!(
            "SKAB data not found at {} (set EDGE_DATA_DIR)",
            data_dir().display()
        );
    }
    let _ = std::fs::remove_dir_all(&args.dir);
    std::fs::create_dir_all(&args.dir)?;
    let dir = args.dir.canonicalize()?;
    let started = Instant::now();

    let broker_port = free_port()?;
    start_broker(broker_port)?;
    let (sink_url, _sink) = start_sink(&dir, &args.sink).await?;
    let settings = agent_settings(&dir, broker_port, &sink_url)?;
    let window_ms = settings.window.width_ms;
    let alpha = settings.window.sketch_alpha;
    // Window values travel rounded to within this (0: exact); the check allows it.
    let rounding = settings.uplink.relative_error;
    let _agent = tokio::spawn(edge_agent::agent::run(settings, std::future::pending()));
    println!(
        "demo: broker mqtt://127.0.0.1:{broker_port}, sink {sink_url}, state in {}",
        dir.display()
    );
    println!("demo: try {sink_url}/v1/gateways  or  {sink_url}/v1/series?gateway={GATEWAY}&device=dev-00&metric=Current");

    let ledger = dir.join("ledger.jsonl");
    let sim = SimOptions {
        broker: format!("127.0.0.1:{broker_port}"),
        devices: args.devices,
        skab_dir: data_dir().join("SKAB"),
        speedup: args.speedup,
        loghub: vec![data_dir().join("loghub/OpenSSH/OpenSSH_2k.log")],
        max_log_lines: Some(500),
        malformed: 1,
        ledger: Some(ledger.clone()),
        progress: false,
        ..SimOptions::default()
    };
    let report = hil_tests::run(sim).await.context("fleet-sim")?;
    println!("demo: fleet-sim {report}");

    // Wait for the last windows (closed after `idle_close`) and verify them all.
    let ledger = read_ledger(&ledger)?;
    let deadline = Instant::now() + Duration::from_secs(60);
    let verdict = loop {
        let stored = fetch_windows(&sink_url, GATEWAY).await?;
        let sensors: Vec<_> = stored.into_iter().filter(|w| w.is_raw_sensor()).collect();
        let verdict = check_rounded(&ledger, window_ms, &sensors, alpha, rounding);
        if verdict.is_ok() || Instant::now() > deadline {
            break verdict;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    println!("demo: {verdict}");
    print_log_summaries(&sink_url).await?;
    println!(
        "demo: done in {:.1}s; sink still serving at {sink_url}",
        started.elapsed().as_secs_f64()
    );
    if !verdict.is_ok() {
        bail!("the sink does not hold exactly what was published");
    }
    if args.once {
        return Ok(());
    }
    println!("demo: press Ctrl-C to stop");
    tokio::signal::ctrl_c().await?;
    Ok(())
}
