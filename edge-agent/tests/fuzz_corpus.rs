//! Replays every committed file of the agent's cargo-fuzz corpora (`fuzz/corpus/<target>/`) through the same harnesses the fuzz targets run, on stable; it does not fuzz or generate inputs.
//!
//! A corpus file that once crashed a target stays a regression test here. An
//! empty or missing corpus directory fails, so a moved corpus cannot turn this
//! into a test of nothing.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use edge_agent::classify::log_recipe::LogRecipe;
use edge_agent::decode::Format;
use edge_agent::fuzzing;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Runs `harness` on every file of `fuzz/corpus/<target>/`, then fails
/// naming each file that panicked (and the panic's message, printed above).
fn replay(target: &str, harness: impl Fn(&[u8])) {
    let dir = repo().join("fuzz/corpus").join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus {}: {e}", dir.display()))
        .map(|entry| entry.expect("corpus entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "corpus {} is empty", dir.display());
    let failed: Vec<String> = files
        .iter()
        .filter(|path| {
            let data = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            catch_unwind(AssertUnwindSafe(|| harness(&data))).is_err()
        })
        .map(|path| path.display().to_string())
        .collect();
    assert!(
        failed.is_empty(),
        "{target}: {} of {} corpus files failed: {failed:#?}",
        failed.len(),
        files.len()
    );
}

#[test]
fn decode_json_corpus() {
    replay("decode_json", |d| fuzzing::decode_payload(Format::Json, d));
}

#[test]
fn decode_cbor_corpus() {
    replay("decode_cbor", |d| fuzzing::decode_payload(Format::Cbor, d));
}

#[test]
fn decode_influx_corpus() {
    replay("decode_influx", |d| {
        fuzzing::decode_payload(Format::Influx, d)
    });
}

#[test]
fn decode_text_corpus() {
    replay("decode_text", |d| fuzzing::decode_payload(Format::Text, d));
}

#[test]
fn journal_record_corpus() {
    replay("journal_record", fuzzing::journal_record);
}

#[test]
fn log_line_corpus() {
    let path = repo().join("models/log/student_int8.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let recipe = LogRecipe::from_json(&text).expect("log sidecar");
    replay("log_line", |d| fuzzing::log_line(&recipe, d));
}
