//! The sensor uplink replay counts what it ships: 4 SKAB devices × 9 simulated minutes through
//! the agent's pipeline with models on ship one window per series and minute (the `anomaly`
//! series from the device's 401st row on, with a verdict each), fewer bytes than the raw
//! readings, an attribution that adds up to the bytes sent, and counters-only batches counted
//! as such. Reads SKAB in place; the fleet-size numbers come from `sensor-uplink`.

use hil_tests::sensor_uplink::{replay, Options};

#[test]
fn sensor_replay_accounts_for_every_batch() {
    let skab = hil_tests::paths::skab_dir();
    if !skab.is_dir() {
        assert!(
            std::env::var_os("EDGE_REQUIRE_SERVICES").is_none(),
            "no SKAB data under {}",
            skab.display()
        );
        eprintln!("SKIP: no SKAB data under {}", skab.display());
        return;
    }
    let (devices, minutes) = (4u64, 9u64);
    let options = Options {
        warmup_minutes: 7,
        ..Options::new(devices as usize, minutes as u32)
    };
    let r = replay(&options).unwrap();
    let compact = serde_json::to_string(&r.whole).unwrap();
    eprintln!("whole: {compact}");
    eprintln!("steady: {}", serde_json::to_string(&r.steady).unwrap());

    // One window per series and minute: 8 channels all along, `anomaly` once the model
    // judges (400 calibration rows: from the seventh minute on), every one with a verdict.
    let judged_minutes = minutes - 6;
    let channel_windows = devices * 8 * minutes;
    let anomaly_windows = devices * judged_minutes;
    assert_eq!(r.windows_by_metric.get("anomaly"), Some(&anomaly_windows));
    assert_eq!(
        r.windows_by_metric.values().sum::<u64>() - anomaly_windows,
        channel_windows
    );
    assert_eq!(r.whole.windows, channel_windows + anomaly_windows);
    assert_eq!(r.series, devices * 9);
    assert_eq!(r.whole.verdicts, anomaly_windows);
    // Steady: the windows of minutes 7 and 8; the final cut ships the last minute.
    assert_eq!(r.steady.windows, devices * 9 * (minutes - 7));
    assert_eq!(r.final_flush.windows, r.series);
    assert_eq!(r.whole.messages, devices * minutes * 60);
    assert_eq!(r.steady.messages, devices * (minutes - 7) * 60);

    // Summaries are smaller than the readings, compressed or not.
    for t in [&r.whole, &r.steady] {
        assert!(t.ratio() > 1.0, "{t:?}");
        assert!(t.gzip_ratio() > 1.0, "{t:?}");
        assert!(t.gzip_bytes < t.sealed_bytes);
    }

    // The attribution adds up to the bytes sent, and each part is where it belongs.
    assert_eq!(r.reseal_mismatches, 0);
    for t in [&r.whole, &r.steady, &r.final_flush] {
        let a = &t.attribution;
        assert_eq!(a.total(), t.gzip_bytes as i64, "{a:?}");
        assert!(a.columns > 0 && a.counters_gauges > 0, "{a:?}");
        assert!(a.verdicts >= -2 && a.escalations >= -2, "{a:?}");
        assert_eq!(a.escalations > 2, t.escalations > 0, "{a:?} {t:?}");
    }
    assert!(r.whole.attribution.verdicts > 0);
    assert!(r.whole.escalations <= r.escalation_budget);

    // The batch list is the totals' source, counters-only batches included.
    let sum = |f: fn(&hil_tests::sensor_uplink::BatchRecord) -> u64| -> u64 {
        r.batches.iter().map(f).sum()
    };
    assert_eq!(r.batches.len() as u64, r.whole.batches);
    assert_eq!(sum(|b| b.gzip), r.whole.gzip_bytes);
    assert_eq!(sum(|b| b.windows), r.whole.windows);
    assert_eq!(sum(|b| b.escalations), r.whole.escalations);
    let counters_only: Vec<_> = r.batches.iter().filter(|b| b.windows == 0).collect();
    assert_eq!(counters_only.len() as u64, r.whole.counters_only_batches);
    assert_eq!(
        counters_only.iter().map(|b| b.gzip).sum::<u64>(),
        r.whole.counters_only_gzip_bytes
    );
    // Every counters-only batch carries a count (today the agent's start count rides alone
    // when `counters_interval`, 60 s, ends just before the first windows close); the start
    // is counted once, in whichever batch.
    eprintln!("counters-only: {counters_only:?}");
    assert!(counters_only.iter().all(|b| !b.counters.is_empty()));
    assert_eq!(
        r.batches
            .iter()
            .filter_map(|b| b.counters.get("agent.starts"))
            .sum::<u64>(),
        1
    );
    assert_eq!(
        r.steady.counters_only_batches,
        counters_only.iter().filter(|b| b.steady).count() as u64
    );
}
