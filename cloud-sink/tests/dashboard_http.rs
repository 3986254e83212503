//! The dashboard over real HTTP: an in-process sink on 127.0.0.1:0 serves the
//! page with its Content-Security-Policy, each asset with its content type,
//! and `/v1/devices` summarizes what a posted batch stored.
//!
//! It does not run the page's script; `hil-tests/tests/dashboard.rs` does that
//! in headless Chromium against a real fleet.

use cloud_sink::auth::token_sha256_hex;
use cloud_sink::http::CONTENT_SECURITY_POLICY;
use cloud_sink::{Server, SinkConfig};
use reqwest::StatusCode;
use serde_json::Value;
use wire::{BatchKey, Body, Counters, Envelope, Reason, Verdict, WindowSummary};

fn window(device: &str, metric: &str, start_ms: i64) -> WindowSummary {
    WindowSummary {
        device: device.into(),
        metric: metric.into(),
        start_ms,
        end_ms: start_ms + 60_000,
        count: 2,
        sum: 3.0,
        min: 1.0,
        max: 2.0,
        mean: 1.5,
        stddev: 0.5,
        p50: 1.0,
        p95: 2.0,
        p99: 2.0,
        sketch_alpha: 0.01,
        first: 1.0,
        first_ms: start_ms,
        last: 2.0,
        last_ms: start_ms + 1_000,
        verdict: None,
        rolled_up: 0,
        template: None,
        escalations: Vec::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_and_assets_with_their_headers_and_device_summaries() {
    let dir = tempfile::tempdir().unwrap();
    // Parsed from TOML like a real config, so fields added later keep their defaults.
    let text = format!(
        "listen = \"127.0.0.1:0\"\ndata_dir = \"{}\"\n[[gateways]]\nid = \"gw-a\"\ntoken_sha256 = \"{}\"\n",
        dir.path().join("store").display(),
        token_sha256_hex("token-a")
    );
    let config = SinkConfig::parse(&dir.path().join("sink.toml"), &text).unwrap();
    let server = Server::bind(&config).await.unwrap();
    let base = format!("http://{}", server.local_addr());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.run(async {
        let _ = stopped.await;
    }));
    let client = reqwest::Client::new();

    for (path, content_type, needle) in [
        ("/", "text/html; charset=utf-8", "<title>"),
        (
            "/assets/app.js",
            "text/javascript; charset=utf-8",
            "/v1/devices",
        ),
        (
            "/assets/chart.js",
            "text/javascript; charset=utf-8",
            "export function drawChart",
        ),
        ("/assets/style.css", "text/css; charset=utf-8", "#chart"),
    ] {
        let resp = client.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .map(|v| v.to_str().unwrap().to_owned())
        };
        assert_eq!(
            header("content-type").as_deref(),
            Some(content_type),
            "{path}"
        );
        assert_eq!(
            header("content-security-policy").as_deref(),
            Some(CONTENT_SECURITY_POLICY),
            "{path}"
        );
        assert_eq!(header("x-content-type-options").as_deref(), Some("nosniff"));
        let body = resp.text().await.unwrap();
        assert!(body.contains(needle), "{path} lacks {needle:?}");
    }
    assert!(CONTENT_SECURITY_POLICY.contains("script-src 'self';"));
    assert!(!CONTENT_SECURITY_POLICY.contains("unsafe"));
    let missing = client
        .get(format!("{base}/assets/nope.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);

    // Before any batch: an empty list (the page shows its empty states).
    let empty: Value = client
        .get(format!("{base}/v1/devices"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(empty["devices"], serde_json::json!([]));

    let mut judged = window("pump <1>", "anomaly", 60_000);
    judged.verdict = Some(Verdict {
        anomalous: true,
        judged: 2,
        alarms: 1,
        score: 1.2,
        confidence: 0.3,
    });
    let mut counters = Counters::default();
    counters.add(Reason::Late, 2);
    let body = Body {
        windows: vec![window("pump <1>", "temp", 0), judged],
        counters,
        ..Body::default()
    };
    let key = BatchKey {
        gateway: "gw-a".into(),
        epoch: 1,
        seq: 0,
    };
    let resp = client
        .post(format!("{base}/v1/batches"))
        .bearer_auth("token-a")
        .header("content-type", "application/cbor")
        .body(Envelope::seal(&key, 1_700_000_000_000, &body).to_bytes())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);

    let got: Value = client
        .get(format!("{base}/v1/devices?gateway=gw-a"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(got["truncated"], false);
    let devices = got["devices"].as_array().unwrap();
    assert_eq!(devices.len(), 1, "{got}");
    let d = &devices[0];
    assert_eq!(d["device"], "pump <1>");
    assert_eq!(
        (d["windows"].as_u64(), d["alarms"].as_u64()),
        (Some(2), Some(1))
    );
    assert_eq!(d["anomalous_windows"], 1);
    assert_eq!(d["last_end_ms"], 120_000);
    assert_eq!(d["metrics"]["anomaly"]["judgement"], true);
    assert_eq!(d["metrics"]["temp"]["last_width_ms"], 60_000);
    let bad = client
        .get(format!("{base}/v1/devices?device=x"))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);

    let _ = stop.send(());
    task.await.unwrap().unwrap();
}
