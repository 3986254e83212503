//! Fuzz target: `wire::decode_capped` into `Body` (the envelope's body bytes); the checks live in `wire::fuzzing`, not here.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| wire::fuzzing::decode_body(data));
