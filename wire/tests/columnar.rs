//! The schema-3/4 (columnar) body: exact bodies round-trip bit for bit, rounded ones
//! stay within their error and round to themselves, malformed ones are refused
//! with a reason, and the layout is smaller than schema 2 where it should be.

use proptest::prelude::*;
use wire::{
    BatchKey, Body, BodyEncoding, Counters, Envelope, Escalation, LogTemplate, OpenError, Verdict,
    WindowSummary,
};

fn key() -> BatchKey {
    BatchKey {
        gateway: "gw".into(),
        epoch: 1,
        seq: 1,
    }
}

fn seal(body: &Body, relative_error: f64) -> Envelope {
    Envelope::seal_as(&key(), 0, body, BodyEncoding::Columnar { relative_error })
}

fn open(env: &Envelope) -> Body {
    Envelope::open(&env.to_bytes())
        .expect("a sealed body opens")
        .1
}

/// Every field of a window, floats as bits (so NaN and -0.0 compare exactly).
fn exactly(w: &WindowSummary) -> String {
    let floats = [
        w.sum,
        w.min,
        w.max,
        w.mean,
        w.stddev,
        w.p50,
        w.p95,
        w.p99,
        w.sketch_alpha,
        w.first,
        w.last,
    ]
    .map(f64::to_bits);
    format!(
        "{} {} {} {} {} {} {} {} {:?} {:?} {:?} {:?} {:?}",
        w.device,
        w.metric,
        w.start_ms,
        w.end_ms,
        w.count,
        w.first_ms,
        w.last_ms,
        w.rolled_up,
        floats,
        w.verdict,
        w.template,
        w.escalations,
        ()
    )
}

fn window(device: &str, metric: &str, start_ms: i64, v: f64) -> WindowSummary {
    WindowSummary {
        device: device.into(),
        metric: metric.into(),
        start_ms,
        end_ms: start_ms + 60_000,
        count: 60,
        sum: 60.0 * v,
        min: v - 0.02 * v.abs(),
        max: v + 0.03 * v.abs(),
        mean: v,
        stddev: v.abs() * 0.01,
        p50: v + 0.001 * v.abs(),
        p95: v + 0.02 * v.abs(),
        p99: v + 0.025 * v.abs(),
        sketch_alpha: 0.01,
        first: v - 0.01 * v.abs(),
        first_ms: start_ms,
        last: v + 0.01 * v.abs(),
        last_ms: start_ms + 59_000,
        verdict: None,
        rolled_up: 0,
        template: None,
        escalations: Vec::new(),
    }
}

fn any_float() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<u64>().prop_map(f64::from_bits),
        -1e6..1e6f64,
        Just(0.0),
        Just(-0.0),
        Just(f64::NAN),
        Just(f64::INFINITY),
    ]
}

fn any_window() -> impl Strategy<Value = WindowSummary> {
    (
        (
            0..3usize,
            0..4usize,
            any::<i64>(),
            any::<i64>(),
            any::<u64>(),
            any::<u32>(),
        ),
        proptest::collection::vec(any_float(), 11),
        (any::<i64>(), any::<i64>()),
        proptest::option::of((any::<bool>(), any::<u64>(), -2.0..2.0f64, any::<bool>())),
        proptest::option::of("[a-z <*>]{0,20}"),
        proptest::collection::vec(
            (any::<i64>(), proptest::collection::vec(-3.0..3.0f32, 0..4)),
            0..2,
        ),
    )
        .prop_map(
            |(
                (d, m, start, end, count, rolled),
                f,
                (first_ms, last_ms),
                verdict,
                template,
                esc,
            )| {
                WindowSummary {
                    device: format!("dev-{d}"),
                    metric: ["Current", "Pressure", "log.template.3", "Temperature"][m].into(),
                    start_ms: start,
                    end_ms: end,
                    count,
                    sum: f[0],
                    min: f[1],
                    max: f[2],
                    mean: f[3],
                    stddev: f[4],
                    p50: f[5],
                    p95: f[6],
                    p99: f[7],
                    sketch_alpha: f[8],
                    first: f[9],
                    first_ms,
                    last: f[10],
                    last_ms,
                    // As the agent makes them (derived from the window), or anything.
                    verdict: verdict.map(|(anomalous, judged, score, derived)| {
                        if derived {
                            Verdict {
                                anomalous: judged % 3 > 0,
                                judged: count,
                                alarms: judged % 3,
                                score: f[2],
                                confidence: Verdict::confidence_at(f[2]),
                            }
                        } else {
                            Verdict {
                                anomalous,
                                judged,
                                alarms: judged / 2,
                                score,
                                confidence: score.abs() / 2.0,
                            }
                        }
                    }),
                    rolled_up: rolled,
                    template: template.map(|text| LogTemplate {
                        text,
                        exemplars: vec!["a line".into()],
                    }),
                    escalations: esc
                        .into_iter()
                        .map(|(ts_ms, features)| Escalation {
                            ts_ms,
                            alarm: true,
                            score: 0.5,
                            confidence: 0.25,
                            features,
                            indices: Vec::new(),
                            exemplar: None,
                        })
                        .collect(),
                }
            },
        )
}

proptest! {
    #[test]
    fn exact_bodies_round_trip_bit_for_bit(windows in proptest::collection::vec(any_window(), 0..12)) {
        let mut counters = Counters::default();
        counters.add_health("starts", 2);
        let body = Body { windows, counters, gauges: [("uptime_s".to_string(), 5)].into() };
        let v3 = BodyEncoding::ColumnarV3 { relative_error: 0.0 };
        for env in [Envelope::seal(&key(), 0, &body), Envelope::seal_as(&key(), 0, &body, v3)] {
            let opened = open(&env);
            prop_assert_eq!(opened.windows.iter().map(exactly).collect::<Vec<_>>(),
                body.windows.iter().map(exactly).collect::<Vec<_>>(), "version {}", env.version);
            prop_assert_eq!(&opened.counters, &body.counters);
            prop_assert_eq!(&opened.gauges, &body.gauges);
        }
        prop_assert_eq!(Envelope::seal(&key(), 0, &body).version, 4);
    }

    #[test]
    fn rounded_bodies_keep_the_error_and_round_to_themselves(
        values in proptest::collection::vec(-1e5..1e5f64, 1..40),
        a in prop_oneof![Just(1e-4), Just(1e-3), Just(1e-6)],
    ) {
        let windows: Vec<_> = values.iter().enumerate()
            .map(|(i, &v)| {
                let mut w = window(["a", "b"][i % 2], ["x", "y", "z"][i % 3], 60_000 * i as i64, v);
                // Every third window is judged, as the agent judges (see `verdict`).
                w.verdict = (i % 3 == 2).then(|| verdict(&w, i as u64));
                w
            })
            .collect();
        let body = Body { windows, ..Body::default() };
        let env = seal(&body, a);
        let opened = open(&env);
        prop_assert_eq!(opened.windows.len(), body.windows.len());
        for (got, want) in opened.windows.iter().zip(&body.windows) {
            prop_assert_eq!((&got.device, &got.metric, got.start_ms, got.end_ms, got.count),
                (&want.device, &want.metric, want.start_ms, want.end_ms, want.count));
            prop_assert_eq!((got.first_ms, got.last_ms, got.sketch_alpha), (want.first_ms, want.last_ms, want.sketch_alpha));
            for (g, w) in [(got.sum, want.sum), (got.min, want.min), (got.max, want.max), (got.mean, want.mean),
                (got.stddev, want.stddev), (got.p50, want.p50), (got.p95, want.p95), (got.p99, want.p99),
                (got.first, want.first), (got.last, want.last)] {
                prop_assert!((g - w).abs() <= a * w.abs() * (1.0 + 1e-9), "{} vs {} at {}", g, w, a);
            }
            prop_assert!(got.min <= got.p50 && got.p50 <= got.max, "rounding keeps order");
            prop_assert_eq!(got.verdict.is_some(), want.verdict.is_some());
            if let (Some(g), Some(w)) = (got.verdict, want.verdict) {
                prop_assert_eq!((g.anomalous, g.judged, g.alarms), (w.anomalous, w.judged, w.alarms));
                prop_assert_eq!(g.score, got.max, "the score is the rounded max");
                for (g, w) in [(g.score, w.score), (g.confidence, w.confidence)] {
                    prop_assert!((g - w).abs() <= a * w.abs() * (1.0 + 1e-9), "{} vs {} at {}", g, w, a);
                }
            }
        }
        // Opened and sealed again (a roll-up does this): the same bytes.
        prop_assert_eq!(seal(&opened, a).body, env.body);
    }
}

/// A verdict as the agent makes it for window `w` (its `i`th alarm count).
fn verdict(w: &WindowSummary, i: u64) -> Verdict {
    Verdict {
        anomalous: i % 2 == 1,
        judged: w.count,
        alarms: i % 2,
        score: w.max,
        confidence: Verdict::confidence_at(w.max),
    }
}

/// A counter (readings all integers) travels exact even in a rounded body;
/// a float series next to it is rounded.
#[test]
fn integer_series_travel_exact() {
    let mut counter = window("meter", "energy_wh", 0, 0.0);
    (counter.min, counter.max, counter.first, counter.last) = (
        8_000_000_124.0,
        8_000_000_184.0,
        8_000_000_124.0,
        8_000_000_184.0,
    );
    (counter.sum, counter.mean, counter.stddev) = (480_000_009_240.0, 8_000_000_154.0, 17.3);
    counter.p50 = 8_000_000_150.3;
    let body = Body {
        windows: vec![counter.clone(), window("meter", "voltage", 0, 229.87)],
        ..Body::default()
    };
    let opened = open(&seal(&body, 1e-4));
    assert_eq!(exactly(&opened.windows[0]), exactly(&counter));
    assert_ne!(
        opened.windows[1].mean, 229.87,
        "the float series is rounded"
    );
    assert!((opened.windows[1].mean - 229.87).abs() <= 229.87 * 1e-4);
}

#[test]
fn order_is_kept_across_interleaved_series() {
    let body = Body {
        windows: vec![
            window("b", "x", 0, 1.0),
            window("a", "x", 0, 2.0),
            window("b", "x", 60_000, 3.0),
            window("a", "y", 0, 4.0),
            window("a", "x", 60_000, 5.0),
        ],
        ..Body::default()
    };
    let opened = open(&Envelope::seal(&key(), 0, &body));
    assert_eq!(opened, body);
}

/// A day of one series at 1-minute windows, and a live cut (one window each
/// of 1,000 series): both much smaller than schema 2, rounded at 1e-4.
#[test]
fn columns_are_smaller_than_rows() {
    let day: Vec<_> = (0..1440)
        .map(|i| {
            window(
                "pump-7",
                "Pressure",
                60_000 * i,
                2.5 + (i as f64 / 90.0).sin() * 0.2,
            )
        })
        .collect();
    let cut: Vec<_> = (0..1000)
        .map(|i| {
            window(
                &format!("pump-{}", i / 8),
                &format!("m{}", i % 8),
                0,
                1.0 + i as f64 * 0.37,
            )
        })
        .collect();
    for (what, windows, at_most_percent) in [("day", day, 25), ("cut", cut, 45)] {
        let body = Body {
            windows,
            ..Body::default()
        };
        let rows = Envelope::seal_as(&key(), 0, &body, BodyEncoding::Packed)
            .body
            .len();
        let columns = seal(&body, 1e-4).body.len();
        assert!(
            columns * 100 <= rows * at_most_percent,
            "{what}: {columns} B columnar vs {rows} B rows"
        );
    }
}

/// The bytes of `body` sealed, with its body edited (as CBOR) and re-hashed.
fn tampered(body: &Body, edit: impl FnOnce(&mut serde_cbor::Value)) -> Vec<u8> {
    let mut env = Envelope::seal(&key(), 0, body);
    let mut value: serde_cbor::Value = serde_cbor::from_slice(&env.body).unwrap();
    edit(&mut value);
    env.body = serde_cbor::to_vec(&value).unwrap();
    env.body_sha256 = sha2_of(&env.body);
    env.to_bytes()
}

fn sha2_of(bytes: &[u8]) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).to_vec()
}

/// The packed map's entry `index` (0 names, 1 columns, 2 order).
fn entry(value: &mut serde_cbor::Value, index: i128) -> &mut serde_cbor::Value {
    let serde_cbor::Value::Map(map) = value else {
        panic!("a map")
    };
    map.get_mut(&serde_cbor::Value::Integer(index))
        .expect("entry")
}

/// The columns byte string.
fn columns(value: &mut serde_cbor::Value) -> &mut Vec<u8> {
    let serde_cbor::Value::Bytes(bytes) = entry(value, 1) else {
        panic!("columns are bytes")
    };
    bytes
}

#[test]
fn malformed_bodies_are_refused_with_a_reason() {
    let body = Body {
        windows: vec![window("a", "x", 0, 1.0), window("a", "y", 0, 2.0)],
        ..Body::default()
    };
    let cases: Vec<(&str, Edit)> = vec![
        (
            "series 0: 60 mantissa bits",
            Box::new(|v| columns(v)[3] = 60),
        ),
        (
            "no window left",
            Box::new(|v| *entry(v, 2) = serde_cbor::Value::Bytes(vec![0, 0, 0])),
        ),
        (
            "places 1 of the 2",
            Box::new(|v| *entry(v, 2) = serde_cbor::Value::Bytes(vec![0])),
        ),
        ("series 0: name 9 of 3", Box::new(|v| columns(v)[0] = 9)),
        ("127 windows in", Box::new(|v| columns(v)[2] = 127)),
        (
            "truncated varint",
            Box::new(|v| *columns(v).last_mut().unwrap() = 0x80),
        ),
        ("series 2: truncated", Box::new(|v| columns(v).push(0))),
        (
            "over the 100000 windows",
            Box::new(|v| {
                let c = columns(v);
                c.splice(2..3, [0xa1, 0x8d, 0x06]); // 100,001 windows
            }),
        ),
    ];
    for (why, edit) in cases {
        match Envelope::open(&tampered(&body, edit)) {
            Err(OpenError::Body(e)) => assert!(e.to_string().contains(why), "{why}: {e}"),
            other => panic!("{why}: {other:?}"),
        }
    }
}

/// The verdict column (packed entry 6) replaced by `bytes`.
fn with_verdicts(bytes: Vec<u8>) -> Edit {
    Box::new(move |v| {
        let serde_cbor::Value::Map(map) = v else {
            panic!("a map")
        };
        map.insert(
            serde_cbor::Value::Integer(6),
            serde_cbor::Value::Bytes(bytes),
        );
    })
}

type Edit = Box<dyn FnOnce(&mut serde_cbor::Value)>;

#[test]
fn malformed_verdict_columns_are_refused_with_a_reason() {
    let mut body = Body {
        windows: vec![window("a", "x", 0, 1.0), window("a", "y", 0, 2.0)],
        ..Body::default()
    };
    body.windows[1].verdict = Some(verdict(&body.windows[1], 1));
    // As sealed: series 1, window 0, alarms 1, anomalous 1, judged − count 0,
    // score and confidence as their references (exact: XOR 0).
    let sealed = {
        let mut v: serde_cbor::Value =
            serde_cbor::from_slice(&Envelope::seal(&key(), 0, &body).body).unwrap();
        match entry(&mut v, 6) {
            serde_cbor::Value::Bytes(b) => b.clone(),
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(sealed, [1, 0, 1, 1, 0, 0, 0]);
    let cases: Vec<(&str, Edit)> = vec![
        (
            "a verdict for series 2, which is not in the body",
            with_verdicts(vec![2, 0, 1, 1, 0, 0, 0]),
        ),
        (
            "a verdict for window 1 of series 1",
            with_verdicts(vec![1, 1, 1, 1, 0, 0, 0]),
        ),
        ("anomalous is 2", with_verdicts(vec![1, 0, 1, 2, 0, 0, 0])),
        ("truncated varint", with_verdicts(vec![1, 0, 1, 1, 0, 0])),
    ];
    for (why, edit) in cases {
        match Envelope::open(&tampered(&body, edit)) {
            Err(OpenError::Body(e)) => assert!(e.to_string().contains(why), "{why}: {e}"),
            other => panic!("{why}: {other:?}"),
        }
    }
    // The column opens to the verdict it was sealed from.
    let opened = Envelope::open(&tampered(&body, with_verdicts(sealed.clone())))
        .unwrap()
        .1;
    assert_eq!(opened, body);
    // Schema 3 sent the verdict in the extras: one in the column too is one too many.
    let v3 = BodyEncoding::ColumnarV3 {
        relative_error: 0.0,
    };
    let mut env = Envelope::seal_as(&key(), 0, &body, v3);
    let mut value: serde_cbor::Value = serde_cbor::from_slice(&env.body).unwrap();
    with_verdicts(sealed)(&mut value);
    env.body = serde_cbor::to_vec(&value).unwrap();
    env.body_sha256 = sha2_of(&env.body);
    match Envelope::open(&env.to_bytes()) {
        Err(OpenError::Body(e)) => assert!(
            e.to_string()
                .contains("two verdicts for window 0 of series 1"),
            "{e}"
        ),
        other => panic!("{other:?}"),
    }
}
