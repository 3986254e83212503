//! Replays every committed file of the agent's cargo-fuzz corpora (`fuzz/corpus/<target>/`) through the same harnesses the fuzz targets run, on stable; it does not fuzz or generate inputs.
//!
//! A corpus file that once crashed a target stays a regression test here. An
//! empty or missing corpus directory fails, so a moved corpus cannot turn this
//! into a test of nothing.

use std::path::{Path, PathBuf};

use edge_agent::classify::log_recipe::LogRecipe;
use edge_agent::decode::Format;
use edge_agent::fuzzing;
use wire::fuzzing::replay_corpus;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[test]
fn decode_json_corpus() {
    replay_corpus("decode_json", |d| fuzzing::decode_payload(Format::Json, d));
}

#[test]
fn decode_cbor_corpus() {
    replay_corpus("decode_cbor", |d| fuzzing::decode_payload(Format::Cbor, d));
}

#[test]
fn decode_influx_corpus() {
    replay_corpus("decode_influx", |d| {
        fuzzing::decode_payload(Format::Influx, d)
    });
}

#[test]
fn decode_text_corpus() {
    replay_corpus("decode_text", |d| fuzzing::decode_payload(Format::Text, d));
}

#[test]
fn sparkplug_session_corpus() {
    replay_corpus("sparkplug_session", fuzzing::sparkplug_session);
}

#[test]
fn journal_record_corpus() {
    replay_corpus("journal_record", fuzzing::journal_record);
}

#[test]
fn log_line_corpus() {
    let path = repo().join("models/log/student_int8.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let recipe = LogRecipe::from_json(&text).expect("log sidecar");
    replay_corpus("log_line", |d| fuzzing::log_line(&recipe, d));
}
