//! Envelope::open on untrusted bytes: round trips, tampering, caps, and garbage.

use proptest::prelude::*;
use wire::{BatchKey, Body, Counters, Envelope, OpenError, Reason, MAX_ENVELOPE_BYTES};

fn key(seq: u64) -> BatchKey {
    BatchKey {
        gateway: "gw".into(),
        epoch: 1,
        seq,
    }
}

#[test]
fn tampered_body_is_rejected() {
    let mut env = Envelope::seal(&key(1), 0, &Body::default());
    env.body.push(0);
    assert!(matches!(
        Envelope::open(&env.to_bytes()),
        Err(OpenError::HashMismatch)
    ));
}

#[test]
fn other_versions_are_rejected() {
    let mut env = Envelope::seal(&key(1), 0, &Body::default());
    env.version = 99;
    assert!(matches!(
        Envelope::open(&env.to_bytes()),
        Err(OpenError::Version(99))
    ));
}

#[test]
fn oversized_input_is_refused_before_decoding() {
    let big = vec![0u8; MAX_ENVELOPE_BYTES + 1];
    assert!(matches!(
        Envelope::open(&big),
        Err(OpenError::Codec(wire::CodecError::TooLarge { .. }))
    ));
}

proptest! {
    #[test]
    fn seal_then_open_round_trips(seq in 1u64.., late in 0u64..1000, created in any::<i64>()) {
        let mut counters = Counters::default();
        counters.add(Reason::Late, late);
        let body = Body { windows: vec![], counters, ..Body::default() };
        let env = Envelope::seal(&key(seq), created, &body);
        let (opened, got) = Envelope::open(&env.to_bytes()).unwrap();
        prop_assert_eq!(opened, env);
        prop_assert_eq!(got, body);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        let _ = Envelope::open(&bytes);
    }

    #[test]
    fn mutated_envelopes_never_panic(flip in 0usize..400, bit in 0u8..8) {
        let env = Envelope::seal(&key(3), 5, &Body::default()).to_bytes();
        let mut bytes = env.clone();
        let i = flip % bytes.len();
        bytes[i] ^= 1 << bit;
        let _ = Envelope::open(&bytes);
    }
}
