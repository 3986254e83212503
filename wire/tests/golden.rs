//! Golden byte vectors: the uplink format is frozen here.
//!
//! If one of these fails, the bytes on the wire changed. That breaks every
//! deployed gateway/sink pair, so it needs a schema version bump, not a new vector.

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
        }],
        counters,
    }
}

fn sample_key() -> BatchKey {
    BatchKey {
        gateway: "gw-1".into(),
        epoch: 7,
        seq: 42,
    }
}

const GOLDEN_BODY_SHA256: &str = "c70437891118eb87df1bd9890b3c0006d25992378dce41b522053698edd14c5f";
const GOLDEN_ENVELOPE: &str = concat!(
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
    "77cb1ee334450dbc004f18d1c866a6f6f053c0dfdb8d4ef91a75f5763342482e";

#[test]
fn template_window_bytes_are_frozen() {
    let env = Envelope::seal(&sample_key(), 1_700_000_000_000, &template_body());
    assert_eq!(env.body_hash_hex(), GOLDEN_TEMPLATE_BODY_SHA256);
    let (_, body) = Envelope::open(&env.to_bytes()).unwrap();
    assert_eq!(body, template_body());
}
