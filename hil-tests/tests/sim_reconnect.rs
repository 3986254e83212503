//! Fault test: the broker is killed and restarted mid-run; the simulator must reconnect,
//! republish what was not acknowledged, and still finish with a complete ledger.
//!
//! It checks the simulator's own guarantees, not delivery to subscribers (a crashed broker
//! without persistence loses its subscribers' queues by design).

use std::time::Duration;

use hil_tests::ledger::LedgerRecord;
use hil_tests::mosquitto::{require_or_skip, start_or_skip};
use hil_tests::{data_dir, SimOptions};

const DEVICES: usize = 3;
const ROWS: usize = 1500;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sim_survives_broker_restart() {
    let skab = data_dir().join("SKAB");
    if !skab.is_dir() {
        require_or_skip(&format!("SKAB not found at {}", skab.display()));
        return;
    }
    let Some(mut broker) = start_or_skip() else {
        return;
    };
    let opts = SimOptions {
        broker: broker.broker(),
        devices: DEVICES,
        skab_dir: skab,
        max_rows_per_device: Some(ROWS),
        malformed: 1,
        // 1 s of event time per row: ~1000 rows/s per device, so the run lasts ~1.5 s.
        speedup: 1000.0,
        retry_timeout: Duration::from_secs(20),
        ..SimOptions::default()
    };
    let run = tokio::spawn(hil_tests::run(opts));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!run.is_finished(), "run ended before the fault");
    broker.kill();
    tokio::time::sleep(Duration::from_millis(700)).await;
    let _broker = tokio::task::spawn_blocking(move || {
        broker.restart().expect("broker restart");
        broker
    })
    .await
    .expect("restart task");
    let report = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("sim finished in time")
        .expect("sim task")
        .expect("sim run");

    assert!(report.connects >= 2, "expected a reconnect: {report}");
    assert_eq!(report.readings, DEVICES * ROWS, "{report}");
    assert_eq!(report.malformed, hil_tests::MalformedKind::ALL.len());
    // Each device's readings appear once, in order, in the ledger.
    for d in 0..DEVICES {
        let device = format!("dev-{d:02}");
        let seqs: Vec<u64> = report
            .records
            .iter()
            .filter_map(|r| match r {
                LedgerRecord::Reading(r) if r.device == device => Some(r.seq),
                _ => None,
            })
            .collect();
        assert_eq!(seqs, (1..=ROWS as u64).collect::<Vec<_>>(), "{device}");
    }
}
