//! Golden byte vectors: the uplink format is frozen here.
//!
//! If one of these fails, the bytes on the wire changed. That breaks every
//! deployed gateway/sink pair, so it needs a schema version bump, not a new vector.
//! Version 4 (columnar body, values exact or rounded, verdicts in a column) is
//! sealed today; versions 3 and 2 (packed body keys) can still be sealed and
//! must open, and so must version 1.

use wire::{BatchKey, Body, BodyEncoding, Counters, Envelope, Reason, Verdict, WindowSummary};

const V2: BodyEncoding = BodyEncoding::Packed;
const V3_EXACT: BodyEncoding = BodyEncoding::ColumnarV3 {
    relative_error: 0.0,
};
/// The agent's default rounding (`uplink.relative_error`).
const V3_ROUNDED: BodyEncoding = BodyEncoding::ColumnarV3 {
    relative_error: 1e-4,
};
const ROUNDED: BodyEncoding = BodyEncoding::Columnar {
    relative_error: 1e-4,
};

/// Seals `body` as version 2, version 3 exact and version 3 rounded, checks
/// each body's SHA-256 against `hashes` in that order, and that the first two
/// open to `body` exactly. A body without verdicts is the same bytes in
/// version 4 as in version 3.
fn assert_frozen(body: &Body, hashes: [&str; 3]) {
    let sealed = [V2, V3_EXACT, V3_ROUNDED]
        .map(|encoding| Envelope::seal_as(&sample_key(), 1_700_000_000_000, body, encoding));
    let got = sealed.each_ref().map(Envelope::body_hash_hex);
    assert_eq!(got, hashes.map(str::to_owned), "v2, v3 exact, v3 rounded");
    for env in &sealed[..2] {
        assert_eq!(&Envelope::open(&env.to_bytes()).unwrap().1, body);
    }
    if body.windows.iter().all(|w| w.verdict.is_none()) {
        let v4 = [BodyEncoding::EXACT, ROUNDED]
            .map(|encoding| Envelope::seal_as(&sample_key(), 1_700_000_000_000, body, encoding));
        assert_eq!(v4.each_ref().map(|e| e.version), [4, 4]);
        assert_eq!(
            v4.each_ref().map(|e| &e.body),
            [&sealed[1].body, &sealed[2].body]
        );
    }
}

fn sample_body() -> Body {
    let mut counters = Counters::default();
    counters.add(Reason::Malformed, 2);
    counters.add(Reason::Late, 1);
    Body {
        windows: vec![WindowSummary {
            device: "pump-1".into(),
            metric: "Current".into(),
            start_ms: 1_583_748_840_000,
            end_ms: 1_583_748_900_000,
            count: 3,
            sum: 4.5,
            min: 1.0,
            max: 2.0,
            mean: 1.5,
            stddev: 0.5,
            p50: 1.5,
            p95: 2.0,
            p99: 2.0,
            sketch_alpha: 0.01,
            first: 1.0,
            first_ms: 1_583_748_840_000,
            last: 2.0,
            last_ms: 1_583_748_842_000,
            verdict: None,
            rolled_up: 0,
            template: None,
            escalations: Vec::new(),
        }],
        counters,
        gauges: Default::default(),
    }
}

fn sample_key() -> BatchKey {
    BatchKey {
        gateway: "gw-1".into(),
        epoch: 7,
        seq: 42,
    }
}

const GOLDEN_BODY_SHA256: &str = "93185de66b706dab2d2662710734a4ccf49d52407a1ec466c2b80fd7c0ed82c9";
const GOLDEN_ENVELOPE: &str = concat!(
    "a76776657273696f6e0267676174657761796467772d316565706f63680763736571182a6a637265617465645f6d731b0000018bcfe568006b626f64795f736861323536582093185de66b706dab2d2662710734a4ccf49d52407a1ec466c2b80fd7c0ed82c9",
    "64626f64795884a20081b2006670756d702d31016743757272656e74021b00000170bec97a40031b00000170beca64a0040305f9448006f93c0007f9400008f93e0009f938000af93e000bf940000cf940000dfb3f847ae147ae147b0ef93c000f1b00000170bec97a4010f94000111b00000170bec9821001a2646c61746501696d616c666f726d656402"
);

/// The same sample as sealed by schema version 1 (named body keys): gateways
/// upgraded with such batches in their outbox still deliver them.
const GOLDEN_V1_ENVELOPE: &str = concat!(
    "a76776657273696f6e0167676174657761796467772d316565706f63680763736571182a6a637265617465645f6d731b0000018bcfe568006b626f64795f7368613235365820c70437891118eb87df1bd9890b3c0006d25992378dce41b522053698edd14c5f",
    "64626f647958f2a26777696e646f777381b2666465766963656670756d702d31666d65747269636743757272656e746873746172745f6d731b00000170bec97a4066656e645f6d731b00000170beca64a065636f756e74036373756df94480636d696ef93c00636d6178f94000646d65616ef93e0066737464646576f9380063703530f93e0063703935f9400063703939f940006c736b657463685f616c706861fb3f847ae147ae147b656669727374f93c006866697273745f6d731b00000170bec97a40646c617374f94000676c6173745f6d731b00000170bec9821068636f756e74657273a2646c61746501696d616c666f726d656402"
);

#[test]
fn body_hash_is_frozen() {
    let env = Envelope::seal_as(&sample_key(), 1_700_000_000_000, &sample_body(), V2);
    assert_eq!(env.body_hash_hex(), GOLDEN_BODY_SHA256);
}

#[test]
fn envelope_bytes_are_frozen() {
    let env = Envelope::seal_as(&sample_key(), 1_700_000_000_000, &sample_body(), V2);
    assert_eq!(hex::encode(env.to_bytes()), GOLDEN_ENVELOPE);
}

#[test]
fn version_1_envelopes_still_open() {
    let bytes = hex::decode(GOLDEN_V1_ENVELOPE).unwrap();
    let (env, body) = Envelope::open(&bytes).unwrap();
    assert_eq!(env.version, 1);
    assert_eq!(env.key(), sample_key());
    assert_eq!(body, sample_body());
    let packed = Envelope::seal_as(&sample_key(), 1_700_000_000_000, &body, V2);
    assert!(
        packed.body.len() * 10 < env.body.len() * 7,
        "packed {} vs named {}",
        packed.body.len(),
        env.body.len()
    );
}

#[test]
fn golden_bytes_decode_to_the_sample() {
    let bytes = hex::decode(GOLDEN_ENVELOPE).unwrap();
    let (env, body) = Envelope::open(&bytes).unwrap();
    assert_eq!(env.key(), sample_key());
    assert_eq!(body, sample_body());
}

/// A log template window: the optional `template` field's encoding is frozen too.
fn template_body() -> Body {
    let mut body = sample_body();
    body.counters = Counters::default();
    let w = &mut body.windows[0];
    w.metric = "log.template.7".into();
    w.template = Some(wire::LogTemplate {
        text: "Failed password for <*> from <*> port <*>".into(),
        exemplars: vec![
            "Dec 10 07:13:43 sshd[24227]: Failed password for root from <ip> port 42393".into(),
        ],
    });
    body
}

#[test]
fn template_window_bytes_are_frozen() {
    assert_frozen(
        &template_body(),
        [
            "95f782588c59f5e3591acee3056c54ba0afb555db1dd6d0245a293f0c46aa900",
            "70f716bf77a56611279d744bce4b9f546a14f4a0fc8f68e5193755f96aff3702",
            "7086e8e90f7641d906ed63a8e8126d60f2d3f7684c74772d6de1de4edba8bef9",
        ],
    );
}

/// A judgement window with a sensor escalation (dense row) and a log escalation
/// (sparse row, redacted exemplar): the optional `indices` and `exemplar` are
/// absent from the dense one's encoding, so it encodes as before they existed.
fn escalation_body() -> Body {
    let mut body = sample_body();
    body.counters = Counters::default();
    let w = &mut body.windows[0];
    w.metric = "log.alert".into();
    w.escalations = vec![
        wire::Escalation {
            ts_ms: 1_583_748_841_000,
            alarm: true,
            score: 1.25,
            confidence: 0.5,
            features: vec![0.5, -1.0, 2.0],
            indices: Vec::new(),
            exemplar: None,
        },
        wire::Escalation {
            ts_ms: 1_583_748_842_000,
            alarm: false,
            score: 0.75,
            confidence: 0.25,
            features: vec![0.5, -0.25, 1.0],
            indices: vec![7, 300, 2053],
            exemplar: Some("ciod: failed to read message prefix from <ip>".into()),
        },
    ];
    body
}

#[test]
fn escalation_bytes_are_frozen() {
    assert_frozen(
        &escalation_body(),
        [
            "3d2ee51ad499187318c584c090c6ca0aef73b71ece4780dc87c5490996d7ac9b",
            "681370b3c77a60b208ed3fb2111158ff64905f1f80f69655693a6039e6aa8ad0",
            "c804e4c42e1d25029503fa0d8b793d60a9d615d8ad9aaa384b05e9fb75b6181d",
        ],
    );
    let body = escalation_body();
    let dense = wire::encode_packed(&body.windows[0].escalations[0]);
    // Map of 5 entries (keys 0..4): no key for `indices` or `exemplar`.
    assert_eq!(dense[0], 0xa5, "{}", hex::encode(&dense));
    let sparse = wire::encode_packed(&body.windows[0].escalations[1]);
    assert_eq!(sparse[0], 0xa7, "{}", hex::encode(&sparse));
}

/// The sample with the agent's health: a health count in the counters and gauges.
fn health_body() -> Body {
    let mut body = sample_body();
    body.counters.add_health("uplink_failures", 3);
    body.gauges.insert("outbox_bytes".into(), 123_456);
    body.gauges.insert("uptime_s".into(), 3_600);
    body
}

#[test]
fn health_bytes_are_frozen() {
    assert_frozen(
        &health_body(),
        [
            "901e41e3d64136ad2b169fef31fa7e7b951bd0dde7ba23518bdce4ea0884c7cd",
            "7281b0d4e2a916a9c28de010accdb503eebbf84bb8d7c296cfc62cad9322fa71",
            "16c34a34758cd545a72416b4ac1c4a8b90ff1f654dd539e42783315b20c029a3",
        ],
    );
    let body = health_body();
    assert_eq!(body.counters.health("uplink_failures"), 3);
    let packed = wire::encode_packed(&body);
    // Map of 3 entries (windows, counters, gauges); without gauges it has 2.
    assert_eq!(packed[0], 0xa3, "{}", hex::encode(&packed));
    assert_eq!(wire::encode_packed(&sample_body())[0], 0xa2);
}

/// The sample sealed as version 3, exact values.
const GOLDEN_V3_ENVELOPE: &str = "a76776657273696f6e0367676174657761796467772d316565706f63680763736571182a6a637265617465645f6d731b0000018bcfe568006b626f64795f736861323536582041551b7540ac8eea64bfcf3f0064c017601d07e31efb6a29c6a91e002e79edca64626f6479585ba400826670756d702d316743757272656e7401583000010100c0a90780e9cbec975c0300a08a0700bf88ea8bfec8ab8a7bbff003bfc0030000fff003000080108010fff00302410004a2646c61746501696d616c666f726d656402";

/// The sample sealed as version 3 with values rounded to 1e-4 (the agent's default).
const GOLDEN_V3_ROUNDED_ENVELOPE: &str = "a76776657273696f6e0367676174657761796467772d316565706f63680763736571182a6a637265617465645f6d731b0000018bcfe568006b626f64795f736861323536582028ec6cfbed2ccd8076a4371657753addf6ab10da036d608417a5082b7b010ebf64626f6479585ba400826670756d702d316743757272656e740158300001010dc0a90780e9cbec975c0300a08a0700bf88ea8bfec8ab8a7b80c0ff078080fe07000080400000ff3fff3f804002410004a2646c61746501696d616c666f726d656402";

#[test]
fn version_3_envelope_bytes_are_frozen() {
    let exact = Envelope::seal_as(&sample_key(), 1_700_000_000_000, &sample_body(), V3_EXACT);
    assert_eq!(exact.version, 3);
    assert_eq!(hex::encode(exact.to_bytes()), GOLDEN_V3_ENVELOPE);
    let rounded = Envelope::seal_as(&sample_key(), 1_700_000_000_000, &sample_body(), V3_ROUNDED);
    assert_eq!(hex::encode(rounded.to_bytes()), GOLDEN_V3_ROUNDED_ENVELOPE);
    // The sample's values are exact on the grid or within its error.
    let (env, body) = Envelope::open(&hex::decode(GOLDEN_V3_ROUNDED_ENVELOPE).unwrap()).unwrap();
    assert_eq!(env.key(), sample_key());
    let (w, want) = (&body.windows[0], &sample_body().windows[0]);
    assert_eq!(
        (w.count, w.start_ms, w.end_ms, w.last_ms),
        (want.count, want.start_ms, want.end_ms, want.last_ms)
    );
    assert_eq!(w.sketch_alpha, want.sketch_alpha, "alpha travels exact");
    for (got, want) in [
        (w.sum, want.sum),
        (w.min, want.min),
        (w.p95, want.p95),
        (w.stddev, want.stddev),
    ] {
        assert!((got - want).abs() <= 1e-4 * want.abs(), "{got} vs {want}");
    }
    assert_eq!(body.counters, sample_body().counters);
    // Version 3 is smaller than version 2 even for one window.
    let v2 = Envelope::seal_as(&sample_key(), 1_700_000_000_000, &sample_body(), V2);
    assert!(
        rounded.body.len() < v2.body.len(),
        "{} vs {}",
        rounded.body.len(),
        v2.body.len()
    );
}

/// A sensor judgement window as the agent makes it (verdict: judged = count,
/// score = max, confidence at the score) in a batch with a plain window, and
/// a rolled-up one whose verdict repeats nothing (every field an exception).
fn verdict_body() -> Body {
    let mut body = sample_body();
    let mut judged = body.windows[0].clone();
    judged.metric = "anomaly.score".into();
    judged.count = 60;
    judged.max = 1.375;
    judged.verdict = Some(Verdict {
        anomalous: true,
        judged: 60,
        alarms: 2,
        score: 1.375,
        confidence: Verdict::confidence_at(1.375),
    });
    let mut odd = judged.clone();
    odd.device = "pump-2".into();
    odd.verdict = Some(Verdict {
        anomalous: false,
        judged: 7,
        alarms: 0,
        score: 0.8125,
        confidence: 0.3,
    });
    body.windows.push(judged);
    body.windows.push(odd);
    body
}

#[test]
fn verdict_bytes_are_frozen() {
    let body = verdict_body();
    assert_frozen(
        &body,
        [
            "6a1d1c6d1a1bea7fb7967719eeaca9b885a67973588770528d57044cc9b00393",
            "3fb690f2d0f31ce254331e734ffb6e0179995aae8f09d33ff7aba2f21e448644",
            "f51fd589720413c0677bb08067d29443bbd205165356c8c4c1ffc139b555092a",
        ],
    );
    let v4 = [BodyEncoding::EXACT, ROUNDED]
        .map(|encoding| Envelope::seal_as(&sample_key(), 1_700_000_000_000, &body, encoding));
    assert_eq!(
        v4.each_ref().map(Envelope::body_hash_hex),
        [
            "8ee4cdecf7f959eb0bc5e8b4581ef30f9f1ec6778d71b8c1b374c17db0ace3b6",
            "bb11da889916cb1cfa3f85ee28662288aa3f9024539c9261f2ffc3941d6144d2",
        ]
        .map(str::to_owned),
        "v4 exact, v4 rounded"
    );
    assert_eq!(Envelope::open(&v4[0].to_bytes()).unwrap().1, body);
    let rounded = Envelope::open(&v4[1].to_bytes()).unwrap().1;
    for (got, want) in rounded.windows.iter().zip(&body.windows) {
        let (Some(got), Some(want)) = (got.verdict, want.verdict) else {
            assert_eq!(got.verdict, want.verdict);
            continue;
        };
        assert_eq!(
            (got.anomalous, got.judged, got.alarms),
            (want.anomalous, want.judged, want.alarms)
        );
        assert!((got.score - want.score).abs() <= 1e-4 * want.score);
        assert!((got.confidence - want.confidence).abs() <= 1e-4 * want.confidence);
    }
    // The verdict column is smaller than the verdicts as CBOR.
    let v3 = Envelope::seal_as(&sample_key(), 1_700_000_000_000, &body, V3_EXACT);
    assert!(
        v4[0].body.len() + 30 < v3.body.len(),
        "{} vs {}",
        v4[0].body.len(),
        v3.body.len()
    );
}

/// The sample sealed as version 4 (exact): what `Envelope::seal` sends.
const GOLDEN_V4_ENVELOPE: &str = "a76776657273696f6e0467676174657761796467772d316565706f63680763736571182a6a637265617465645f6d731b0000018bcfe568006b626f64795f73686132353658208ee4cdecf7f959eb0bc5e8b4581ef30f9f1ec6778d71b8c1b374c17db0ace3b664626f647958cfa500846670756d702d316743757272656e746d616e6f6d616c792e73636f72656670756d702d3201587400010100c0a90780e9cbec975c0300a08a0700bf88ea8bfec8ab8a7bbff003bfc0030000fff003000080108010fff0030002010000003c00a08a07000000008088810400fff00300ffec0380108010fff0030302010000003c00a08a07000000008088810400fff00300ffec0380108010fff003024300020204a2646c61746501696d616c666f726d65640206570100020100000001000000698038808ccc9fb3e6cc9933";

#[test]
fn version_4_envelope_bytes_are_frozen() {
    let env = Envelope::seal(&sample_key(), 1_700_000_000_000, &verdict_body());
    assert_eq!(env.version, 4);
    assert_eq!(hex::encode(env.to_bytes()), GOLDEN_V4_ENVELOPE);
    let (_, body) = Envelope::open(&hex::decode(GOLDEN_V4_ENVELOPE).unwrap()).unwrap();
    assert_eq!(body, verdict_body());
}
