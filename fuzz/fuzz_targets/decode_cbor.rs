//! Fuzz target: edge-agent `decode::decode` of one CBOR-map payload (route and limits in `edge_agent::fuzzing`); the checks live there, not here.
#![no_main]

use edge_agent::decode::Format;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| edge_agent::fuzzing::decode_payload(Format::Cbor, data));
