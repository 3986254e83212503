//! The windower's tests: closing by watermark and idle time, late readings,
//! replay, the series cap, the low-water mark and window checkpoints.

use super::*;

fn policy() -> WindowPolicy {
    WindowPolicy {
        width_ms: 10_000,
        allowed_lateness_ms: 2_000,
        idle_close: Duration::from_secs(60),
        sketch_alpha: 0.01,
        max_series: 3,
    }
}

fn r(metric: &str, ts_ms: i64, value: f64) -> Reading {
    Reading {
        metric: metric.into(),
        ts_ms,
        value,
    }
}

#[test]
fn watermark_closes_windows_and_late_readings_are_counted() {
    let now = Instant::now();
    let mut w = Windower::new(policy());
    w.ingest(
        "d",
        &mut vec![r("t", 1_000, 1.0), r("t", 9_000, 3.0)],
        1,
        now,
        false,
    );
    assert!(w.close_due(now).closed.is_empty());
    // 12_500 - 2_000 lateness passes the end of [0, 10_000).
    w.ingest("d", &mut vec![r("t", 12_500, 5.0)], 2, now, false);
    let pass = w.close_due(now);
    assert_eq!(pass.closed.len(), 1);
    let s = &pass.closed[0].summary;
    assert_eq!((s.start_ms, s.count, s.mean), (0, 2, 2.0));
    assert_eq!(w.low_water(), Some(2), "message 1 is needed no more");
    let late = w.ingest("d", &mut vec![r("t", 5_000, 9.0)], 3, now, false);
    assert_eq!(late.late, 1);
    assert_eq!(
        w.low_water(),
        Some(2),
        "a late message is held by no window"
    );
}

#[test]
fn idle_windows_close_and_take_earlier_ones_along() {
    let t0 = Instant::now();
    let mut w = Windower::new(policy());
    w.ingest("d", &mut vec![r("t", -15_000, 1.0)], 1, t0, false);
    w.ingest(
        "d",
        &mut vec![r("t", 5_000, 2.0)],
        2,
        t0 + Duration::from_secs(30),
        false,
    );
    let pass = w.close_due(t0 + Duration::from_secs(61));
    let starts: Vec<i64> = pass.closed.iter().map(|c| c.summary.start_ms).collect();
    assert_eq!(starts, vec![-20_000]);
    let pass = w.close_due(t0 + Duration::from_secs(91));
    assert_eq!(pass.closed[0].summary.start_ms, 0);
    assert_eq!(pass.closed[0].closed_before, 10_000);
    assert_eq!(w.open_windows(), 0);
}

#[test]
fn time_ingest_was_held_back_is_not_idle_time() {
    let t0 = Instant::now();
    let mut w = Windower::new(policy());
    w.ingest("d", &mut vec![r("t", 5_000, 2.0)], 1, t0, false);
    // Ingest waited 40 s of the 61: the window has been idle for 21 s only.
    w.postpone_idle(Duration::from_secs(40));
    assert!(w.close_due(t0 + Duration::from_secs(61)).closed.is_empty());
    assert_eq!(w.close_due(t0 + Duration::from_secs(101)).closed.len(), 1);
}

#[test]
fn replay_skips_shipped_windows_silently_and_series_are_capped() {
    let now = Instant::now();
    let mut w = Windower::new(policy());
    w.restore_closed("d", "t", 10_000);
    let o = w.ingest(
        "d",
        &mut vec![r("t", 5_000, 1.0), r("t", 15_000, 2.0)],
        7,
        now,
        true,
    );
    assert_eq!((o.accepted, o.late), (1, 0));
    let o = w.ingest(
        "d",
        &mut vec![r("a", 0, 1.0), r("b", 0, 1.0), r("c", 0, 1.0)],
        8,
        now,
        false,
    );
    assert_eq!((o.accepted, o.too_many_series), (2, 1));
}

#[test]
fn readings_beyond_the_series_cap_go_to_the_overflow_series_also_on_replay() {
    let t0 = Instant::now();
    let mut p = policy();
    p.max_series = 2;
    let mut live = Windower::new(p);
    let mut journal = Vec::new();
    for (id, device) in ["a", "b", "c", "d", "c"].iter().enumerate() {
        let mut readings = vec![r("t", 1_000, id as f64)];
        live.ingest(device, &mut readings, id as u64, t0, false);
        journal.push((device, readings));
    }
    assert_eq!(
        journal[2].1[0].metric, OVERFLOW_METRIC,
        "journaled under the overflow name"
    );
    let mut replayed = Windower::new(p);
    for (id, (device, readings)) in journal.iter().enumerate() {
        replayed.ingest(device, &mut readings.clone(), id as u64, t0, true);
    }
    for w in [&mut live, &mut replayed] {
        let closed = w.close_due(t0 + Duration::from_secs(600)).closed;
        let overflow: Vec<_> = closed
            .iter()
            .filter(|c| c.summary.device == OVERFLOW_DEVICE)
            .map(|c| (c.summary.count, c.summary.sum))
            .collect();
        assert_eq!(overflow, vec![(3, 2.0 + 3.0 + 4.0)]);
        assert_eq!(closed.len(), 3, "a, b and the overflow series");
    }
}

#[test]
fn the_low_water_mark_passes_a_message_only_when_all_its_windows_closed() {
    let t0 = Instant::now();
    let mut p = policy();
    p.max_series = 10;
    let mut w = Windower::new(p);
    w.ingest("d", &mut vec![r("a", 0, 1.0), r("b", 0, 1.0)], 1, t0, false);
    w.ingest("d", &mut vec![r("a", 13_000, 1.0)], 2, t0, false);
    let pass = w.close_due(t0);
    assert_eq!(pass.closed.len(), 1);
    assert_eq!(w.low_water(), Some(1), "series b still holds message 1");
    w.ingest("d", &mut vec![r("b", 14_000, 1.0)], 3, t0, false);
    assert_eq!(w.close_due(t0).closed.len(), 1);
    assert_eq!(w.low_water(), Some(2));
    w.close_due(t0 + Duration::from_secs(60));
    assert_eq!(w.low_water(), None);
}

/// Readings of two devices × two metrics over 40 s, one message each.
fn stream() -> Vec<(String, Vec<Reading>)> {
    (0..200i64)
        .map(|i| {
            let device = format!("d{}", i % 2);
            let ts = i * 200;
            let v = (i as f64 * 0.37).sin() * 10.0 + i as f64 / 7.0;
            (device, vec![r("t", ts, v), r("p", ts, -v * 0.5)])
        })
        .collect()
}

fn summaries(pass: ClosePass) -> Vec<WindowSummary> {
    pass.closed.into_iter().map(|c| c.summary).collect()
}

#[test]
fn a_restored_checkpoint_closes_the_same_windows_as_an_uninterrupted_run() {
    let now = Instant::now();
    let messages = stream();
    let mut straight = Windower::new(policy());
    let mut shipped = Vec::new();
    for (id, (device, readings)) in messages.iter().enumerate() {
        straight.ingest(device, &mut readings.clone(), id as u64 + 1, now, false);
        shipped.extend(summaries(straight.close_due(now)));
    }
    shipped.extend(summaries(
        straight.close_due(now + Duration::from_secs(3600)),
    ));

    // The same stream, checkpointed at message 120 and restored into a new windower.
    let mut before = Windower::new(policy());
    let mut pieces = Vec::new();
    let mut horizons = Vec::new();
    for (id, (device, readings)) in messages.iter().enumerate().take(120) {
        before.ingest(device, &mut readings.clone(), id as u64 + 1, now, false);
        for c in before.close_due(now).closed {
            horizons.push((
                c.summary.device.clone(),
                c.summary.metric.clone(),
                c.closed_before,
            ));
            pieces.push(c.summary);
        }
    }
    let bytes = before.checkpoint();
    let mut after = Windower::new(policy());
    for (device, metric, closed_before) in &horizons {
        after.restore_closed(device, metric, *closed_before);
    }
    after.restore(checkpoint::decode(&bytes).expect("decodes"), now);
    assert_eq!(after.open_windows(), before.open_windows());
    for (id, (device, readings)) in messages.iter().enumerate().skip(120) {
        after.ingest(device, &mut readings.clone(), id as u64 + 1, now, false);
        pieces.extend(summaries(after.close_due(now)));
    }
    pieces.extend(summaries(after.close_due(now + Duration::from_secs(3600))));
    let key = |s: &WindowSummary| (s.device.clone(), s.metric.clone(), s.start_ms);
    shipped.sort_by_key(key);
    pieces.sort_by_key(key);
    assert_eq!(pieces.len(), shipped.len());
    assert_eq!(pieces, shipped, "bit-identical summaries");
}

#[test]
fn a_window_that_shipped_after_the_checkpoint_is_not_restored() {
    let now = Instant::now();
    let mut w = Windower::new(policy());
    w.ingest(
        "d",
        &mut vec![r("t", 1_000, 1.0), r("u", 1_000, 2.0)],
        1,
        now,
        false,
    );
    let bytes = w.checkpoint();
    let mut restored = Windower::new(policy());
    // After the checkpoint, a cut shipped t's window [0, 10_000).
    restored.restore_closed("d", "t", 10_000);
    restored.restore(checkpoint::decode(&bytes).expect("decodes"), now);
    assert_eq!(restored.open_windows(), 1, "only u's window is open again");
    assert!(checkpoint::decode(&bytes[..bytes.len() - 1]).is_none());
}
