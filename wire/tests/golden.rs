//! Golden byte vectors: the uplink format is frozen here.
//!
//! If one of these fails, the bytes on the wire changed. That breaks every
//! deployed gateway/sink pair, so it needs a schema version bump, not a new vector.
//! Version 2 (packed body keys) is sealed today; the version 1 vector must still open.

use wire::{BatchKey, Body, Counters, Envelope, Reason, WindowSummary};

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
    let env = Envelope::seal(&sample_key(), 1_700_000_000_000, &sample_body());
    assert_eq!(env.body_hash_hex(), GOLDEN_BODY_SHA256);
}

#[test]
fn envelope_bytes_are_frozen() {
    let env = Envelope::seal(&sample_key(), 1_700_000_000_000, &sample_body());
    assert_eq!(hex::encode(env.to_bytes()), GOLDEN_ENVELOPE);
}

#[test]
fn version_1_envelopes_still_open() {
    let bytes = hex::decode(GOLDEN_V1_ENVELOPE).unwrap();
    let (env, body) = Envelope::open(&bytes).unwrap();
    assert_eq!(env.version, 1);
    assert_eq!(env.key(), sample_key());
    assert_eq!(body, sample_body());
    let packed = Envelope::seal(&sample_key(), 1_700_000_000_000, &body);
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

const GOLDEN_TEMPLATE_BODY_SHA256: &str =
    "95f782588c59f5e3591acee3056c54ba0afb555db1dd6d0245a293f0c46aa900";

#[test]
fn template_window_bytes_are_frozen() {
    let env = Envelope::seal(&sample_key(), 1_700_000_000_000, &template_body());
    assert_eq!(env.body_hash_hex(), GOLDEN_TEMPLATE_BODY_SHA256);
    let (_, body) = Envelope::open(&env.to_bytes()).unwrap();
    assert_eq!(body, template_body());
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

const GOLDEN_ESCALATION_BODY_SHA256: &str =
    "3d2ee51ad499187318c584c090c6ca0aef73b71ece4780dc87c5490996d7ac9b";

#[test]
fn escalation_bytes_are_frozen() {
    let env = Envelope::seal(&sample_key(), 1_700_000_000_000, &escalation_body());
    let (_, body) = Envelope::open(&env.to_bytes()).unwrap();
    assert_eq!(body, escalation_body());
    let dense = wire::encode_packed(&body.windows[0].escalations[0]);
    // Map of 5 entries (keys 0..4): no key for `indices` or `exemplar`.
    assert_eq!(dense[0], 0xa5, "{}", hex::encode(&dense));
    let sparse = wire::encode_packed(&body.windows[0].escalations[1]);
    assert_eq!(sparse[0], 0xa7, "{}", hex::encode(&sparse));
    assert_eq!(env.body_hash_hex(), GOLDEN_ESCALATION_BODY_SHA256);
}

/// The sample with the agent's health: a health count in the counters and gauges.
fn health_body() -> Body {
    let mut body = sample_body();
    body.counters.add_health("uplink_failures", 3);
    body.gauges.insert("outbox_bytes".into(), 123_456);
    body.gauges.insert("uptime_s".into(), 3_600);
    body
}

const GOLDEN_HEALTH_BODY_SHA256: &str =
    "901e41e3d64136ad2b169fef31fa7e7b951bd0dde7ba23518bdce4ea0884c7cd";

#[test]
fn health_bytes_are_frozen() {
    let env = Envelope::seal(&sample_key(), 1_700_000_000_000, &health_body());
    let (_, body) = Envelope::open(&env.to_bytes()).unwrap();
    assert_eq!(body, health_body());
    assert_eq!(body.counters.health("uplink_failures"), 3);
    let packed = wire::encode_packed(&body);
    // Map of 3 entries (windows, counters, gauges); without gauges it has 2.
    assert_eq!(packed[0], 0xa3, "{}", hex::encode(&packed));
    assert_eq!(wire::encode_packed(&sample_body())[0], 0xa2);
    assert_eq!(env.body_hash_hex(), GOLDEN_HEALTH_BODY_SHA256);
}
