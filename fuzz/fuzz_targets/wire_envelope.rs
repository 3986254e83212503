//! Fuzz target: `wire::Envelope::open` on a request body, as the sink calls it; the checks live in `wire::fuzzing`, not here.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| wire::fuzzing::open_envelope(data));
