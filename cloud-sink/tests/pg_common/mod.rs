//! Shared by the PostgreSQL tests: the test database (URL from
//! `EDGE_TEST_PG_URL`), one throw-away schema per test, in-process sinks on
//! either backend, batch builders, and a TCP proxy that can cut the sink off
//! from PostgreSQL.
//!
//! A missing PostgreSQL is a skip (`SKIP: …` on stderr) unless
//! `EDGE_REQUIRE_SERVICES=1`, as in `hil-tests` for Mosquitto. It asserts nothing.
#![allow(dead_code)]

use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use cloud_sink::auth::token_sha256_hex;
use cloud_sink::{Backend, GatewayConfig, Limits, Server, SinkConfig, StoreConfig};
use reqwest::StatusCode;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use wire::{BatchKey, Body, Counters, Envelope, Escalation, Reason, Verdict, WindowSummary};

/// Default test database: the machine's PostgreSQL, trust auth.
pub const DEFAULT_PG_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// The test database URL (`EDGE_TEST_PG_URL` or [`DEFAULT_PG_URL`]).
pub fn pg_url() -> String {
    std::env::var("EDGE_TEST_PG_URL").unwrap_or_else(|_| DEFAULT_PG_URL.to_owned())
}

/// Prints `SKIP: what` and returns false, or panics under `EDGE_REQUIRE_SERVICES=1`.
pub fn require_or_skip(what: &str) -> bool {
    if std::env::var("EDGE_REQUIRE_SERVICES").is_ok_and(|v| v == "1") {
        panic!("required service missing (EDGE_REQUIRE_SERVICES=1): {what}");
    }
    eprintln!("SKIP: {what}");
    false
}

/// An admin connection to the test database.
pub async fn admin() -> Result<tokio_postgres::Client, String> {
    let config: tokio_postgres::Config = pg_url().parse().map_err(|e| format!("{e}"))?;
    let mut config = config;
    config.connect_timeout(Duration::from_secs(3));
    let (client, connection) = config.connect(tokio_postgres::NoTls).await.map_err(|e| {
        format!(
            "PostgreSQL at {}: {e}",
            cloud_sink::config::redact_url(&pg_url())
        )
    })?;
    tokio::spawn(connection);
    Ok(client)
}

/// A uniquely named schema, dropped (with everything in it) on drop.
pub struct TestSchema {
    pub name: String,
    pub client: tokio_postgres::Client,
}

impl TestSchema {
    /// Creates a fresh schema; `None` after [`require_or_skip`] if PostgreSQL is unreachable.
    pub async fn create_or_skip(test: &str) -> Option<TestSchema> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let client = match admin().await {
            Ok(c) => c,
            Err(e) => {
                require_or_skip(&e);
                return None;
            }
        };
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let name = format!(
            "t_{test}_{}_{}_{nanos}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        client
            .batch_execute(&format!("CREATE SCHEMA {name}"))
            .await
            .expect("create test schema");
        Some(TestSchema { name, client })
    }

    /// Rows in `table` of this schema matching `where_sql` (or all).
    pub async fn count(&self, table: &str, where_sql: &str) -> i64 {
        let sql = format!("SELECT count(*) FROM {}.{table} {where_sql}", self.name);
        self.client.query_one(&sql, &[]).await.unwrap().get(0)
    }
}

impl Drop for TestSchema {
    fn drop(&mut self) {
        let sql = format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name);
        // Own thread and runtime: drop may run inside (or outside) a runtime.
        let url = pg_url();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                if let Ok((client, conn)) =
                    tokio_postgres::connect(&url, tokio_postgres::NoTls).await
                {
                    tokio::spawn(conn);
                    let _ = client.batch_execute(&sql).await;
                }
            });
        })
        .join();
    }
}

/// The two gateways every test config allows.
pub fn gateways() -> Vec<GatewayConfig> {
    ["gw-a", "gw-b"]
        .iter()
        .map(|id| GatewayConfig {
            id: (*id).into(),
            token_sha256: token_sha256_hex(&format!("token-{}", &id[3..])).into(),
            cert_sha256: Default::default(),
        })
        .collect()
}

/// A sink config on PostgreSQL (`url` instead of the test database if given).
/// A URL given in `EDGE_TEST_PG_URL` is read from there (`url_env`), since
/// it may hold a password, which `url` refuses.
pub fn pg_config(schema: &str, url: Option<String>) -> SinkConfig {
    let (url, url_env) = match url {
        Some(url) => (Some(url), None),
        None if std::env::var_os("EDGE_TEST_PG_URL").is_some() => {
            (None, Some("EDGE_TEST_PG_URL".to_owned()))
        }
        None => (Some(DEFAULT_PG_URL.to_owned()), None),
    };
    SinkConfig {
        telemetry: Default::default(),
        listen: "127.0.0.1:0".into(),
        data_dir: Default::default(),
        store: StoreConfig {
            backend: Backend::Postgres,
            url,
            url_env,
            schema: Some(schema.into()),
            pool_size: 4,
            connect_attempts: 2,
            tls: None,
        },
        limits: Limits::default(),
        tls: None,
        gateways: gateways(),
        teachers: Vec::new(),
    }
}

/// A sink config on the embedded store in `dir`.
pub fn embedded_config(dir: &Path) -> SinkConfig {
    SinkConfig {
        telemetry: Default::default(),
        listen: "127.0.0.1:0".into(),
        data_dir: dir.to_owned(),
        store: StoreConfig::default(),
        limits: Limits::default(),
        tls: None,
        gateways: gateways(),
        teachers: Vec::new(),
    }
}

/// An in-process sink.
pub struct Running {
    pub base: String,
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), cloud_sink::ServerError>>,
}

impl Running {
    pub async fn start(config: &SinkConfig) -> Running {
        let server = Server::bind(config).await.expect("server binds");
        let base = format!("http://{}", server.local_addr());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async {
            let _ = stopped.await;
        }));
        Running { base, stop, task }
    }

    pub async fn stop(self) {
        let _ = self.stop.send(());
        self.task.await.unwrap().expect("server stops cleanly");
    }
}

/// A window with every optional part set as `kind` says (0 plain, 1 judged
/// with escalations, 2 log template, 3 rolled up).
pub fn window(device: &str, metric: &str, start_ms: i64, base: f64, kind: u8) -> WindowSummary {
    let mut w = WindowSummary {
        device: device.into(),
        metric: metric.into(),
        start_ms,
        end_ms: start_ms + 10_000,
        count: 10,
        sum: base * 10.0 + 4.5,
        min: base,
        max: base + 0.9,
        mean: base + 0.45,
        stddev: 0.287,
        p50: base + 0.4,
        p95: base + 0.85,
        p99: base + 0.9,
        sketch_alpha: 0.01,
        first: base,
        first_ms: start_ms + 3,
        last: base + 0.9,
        last_ms: start_ms + 9_990,
        verdict: None,
        rolled_up: 0,
        template: None,
        escalations: Vec::new(),
    };
    match kind {
        1 => {
            w.verdict = Some(Verdict {
                anomalous: base > 1.0,
                judged: 10,
                alarms: 3,
                score: base / 3.0,
                confidence: 0.25,
            });
            w.escalations = (0..2)
                .map(|i| Escalation {
                    ts_ms: start_ms + 1_000 * i,
                    alarm: i == 1,
                    score: 0.9 + 0.1 * i as f64,
                    confidence: 0.05 * (i + 1) as f64,
                    features: vec![0.1, -2.5, base as f32, f32::NAN],
                    // The second is a log line's: a sparse row and its redacted text.
                    indices: if i == 1 {
                        vec![3, 70, 300, 70_000]
                    } else {
                        Vec::new()
                    },
                    exemplar: (i == 1).then(|| format!("line {base} from <ip> for <user> ✓")),
                })
                .collect();
        }
        2 => {
            w.template = Some(wire::LogTemplate {
                text: "user <*> logged in from <*>".into(),
                exemplars: vec!["user <name> logged in from <ip>".into(), "ü ∑ \"q\"".into()],
            });
        }
        3 => w.rolled_up = 4,
        _ => {}
    }
    w
}

/// A sealed batch of `windows` with a few counters.
/// Counters: `late` = seq, one `malformed`, one `agent.uplink_failures`; odd
/// seqs also carry gauges (`outbox_bytes` = 100 × seq, `uptime_s` = seq).
pub fn batch(gateway: &str, epoch: u64, seq: u64, windows: Vec<WindowSummary>) -> Envelope {
    let mut counters = Counters::default();
    counters.add(Reason::Late, seq);
    counters.add(Reason::Malformed, 1);
    counters.add_health("uplink_failures", 1);
    let mut body = Body {
        windows,
        counters,
        ..Body::default()
    };
    if seq % 2 == 1 {
        body.gauges.insert("outbox_bytes".into(), 100 * seq);
        body.gauges.insert("uptime_s".into(), seq);
    }
    let key = BatchKey {
        gateway: gateway.into(),
        epoch,
        seq,
    };
    Envelope::seal(&key, 1_700_000_000_000, &body)
}

/// The token of a test gateway.
pub fn token(gateway: &str) -> String {
    format!("token-{}", &gateway[3..])
}

/// POSTs an envelope; returns the status and JSON answer.
pub async fn post(client: &reqwest::Client, base: &str, env: &Envelope) -> (StatusCode, Value) {
    let resp = client
        .post(format!("{base}/v1/batches"))
        .header("content-type", "application/cbor")
        .bearer_auth(token(&env.gateway))
        .body(env.to_bytes())
        .send()
        .await
        .expect("request completes");
    let status = resp.status();
    (status, resp.json::<Value>().await.expect("JSON body"))
}

/// GETs `path` (with query) and returns the JSON answer, asserting 200.
pub async fn get(client: &reqwest::Client, base: &str, path: &str) -> Value {
    let resp = client.get(format!("{base}{path}")).send().await.unwrap();
    let status = resp.status();
    let body = resp.json::<Value>().await.unwrap();
    assert_eq!(status, StatusCode::OK, "{path}: {body}");
    body
}

/// A loopback TCP proxy to `target` that a test can cut (every connection
/// closed, new ones refused) and restore on the same port.
pub struct Proxy {
    pub port: u16,
    target: String,
    task: Option<JoinHandle<()>>,
}

impl Proxy {
    pub async fn start(target: &str) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut p = Proxy {
            port,
            target: target.to_owned(),
            task: None,
        };
        p.task = Some(tokio::spawn(Self::serve(listener, p.target.clone())));
        p
    }

    async fn serve(listener: TcpListener, target: String) {
        let mut conns = tokio::task::JoinSet::new();
        loop {
            let Ok((mut inbound, _)) = listener.accept().await else {
                return;
            };
            let target = target.clone();
            conns.spawn(async move {
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
        // Dropping the JoinSet (when this task is aborted) aborts every connection.
    }

    /// Closes every proxied connection and stops listening.
    pub async fn cut(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }

    /// Listens again on the same port.
    pub async fn restore(&mut self) {
        let listener = TcpListener::bind(("127.0.0.1", self.port)).await.unwrap();
        self.task = Some(tokio::spawn(Self::serve(listener, self.target.clone())));
    }
}
