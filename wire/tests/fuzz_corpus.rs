//! Replays every committed file of the wire cargo-fuzz corpora (`fuzz/corpus/wire_*/`) through the same harnesses the fuzz targets run, on stable; it does not fuzz or generate inputs.
//!
//! A corpus file that once crashed a target stays a regression test here. An
//! empty or missing corpus directory fails, so a moved corpus cannot turn this
//! into a test of nothing.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use wire::fuzzing;

/// Runs `harness` on every file of `fuzz/corpus/<target>/`, then fails
/// naming each file that panicked (and the panic's message, printed above).
fn replay(target: &str, harness: impl Fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
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
fn wire_envelope_corpus() {
    replay("wire_envelope", fuzzing::open_envelope);
}

#[test]
fn wire_body_corpus() {
    replay("wire_body", fuzzing::decode_body);
}

#[test]
fn wire_counters_corpus() {
    replay("wire_counters", fuzzing::decode_counters);
}
