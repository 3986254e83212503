//! Fuzz target: one edge-agent Sparkplug B session fed the input cut into messages (framing, topics and checks in `edge_agent::fuzzing::sparkplug_session`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| edge_agent::fuzzing::sparkplug_session(data));
