//! Fuzz target: the schema-3 (columnar) body decoder on untrusted bytes; the checks live in `wire::fuzzing`, not here.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| wire::fuzzing::decode_columnar(data));
