//! Fuzz target: edge-agent `JournalRecord::decode` of bytes read back from disk; the checks live in `edge_agent::fuzzing`, not here.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| edge_agent::fuzzing::journal_record(data));
