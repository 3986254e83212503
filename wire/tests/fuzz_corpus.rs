//! Replays every committed file of the wire cargo-fuzz corpora (`fuzz/corpus/wire_*/`) through the same harnesses the fuzz targets run, on stable; it does not fuzz or generate inputs.
//!
//! A corpus file that once crashed a target stays a regression test here. An
//! empty or missing corpus directory fails, so a moved corpus cannot turn this
//! into a test of nothing.

use wire::fuzzing::{self, replay_corpus};

#[test]
fn wire_envelope_corpus() {
    replay_corpus("wire_envelope", fuzzing::open_envelope);
}

#[test]
fn wire_body_corpus() {
    replay_corpus("wire_body", fuzzing::decode_body);
}

#[test]
fn wire_columnar_corpus() {
    replay_corpus("wire_columnar", fuzzing::decode_columnar);
}

#[test]
fn wire_counters_corpus() {
    replay_corpus("wire_counters", fuzzing::decode_counters);
}
