//! The simulator gives up with a clear broker error (not a hang) when nothing listens.
//!
//! No broker is started; it does not test reconnection after success (see sim_reconnect).

use std::time::Duration;

use hil_tests::mosquitto::require_or_skip;
use hil_tests::{data_dir, SimError, SimOptions};

#[tokio::test]
async fn unreachable_broker_is_a_clear_error() {
    let skab = data_dir().join("SKAB");
    if !skab.is_dir() {
        require_or_skip(&format!("SKAB not found at {}", skab.display()));
        return;
    }
    // Port 1 on loopback: connection refused.
    let result = hil_tests::run(SimOptions {
        broker: "127.0.0.1:1".into(),
        devices: 2,
        skab_dir: skab,
        max_rows_per_device: Some(5),
        retry_timeout: Duration::from_millis(500),
        ..SimOptions::default()
    })
    .await;
    match result {
        Err(SimError::Broker(e)) => assert!(e.to_string().contains("127.0.0.1:1"), "{e}"),
        other => panic!("expected a broker error, got {other:?}"),
    }
}
