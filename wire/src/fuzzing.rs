//! Fuzz harnesses for the wire decoders of untrusted bytes (envelope opening, capped body and counters decode); not used at run time.
//!
//! Each `pub fn` here takes one raw input, runs the decoder the sink or the
//! agent runs on it, and asserts only what this crate promises. The cargo-fuzz
//! targets in `fuzz/fuzz_targets/` are one-line wrappers over these, and
//! `tests/fuzz_corpus.rs` replays the committed corpora through the same
//! functions on stable, with [`replay_corpus`] (shared with the agent's replay
//! test). This module does not generate inputs.
#![doc(hidden)]

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::columnar::Layout;
use crate::quantize::Quantizer;
use crate::{
    columnar, decode_capped, encode, encode_packed, Body, CodecError, Counters, Envelope,
    MIN_SCHEMA_VERSION, SCHEMA_VERSION,
};

/// The cap the agent applies when it reads counters back from its store.
pub const COUNTERS_CAP: usize = 1 << 20;

/// `Envelope::open`, as the sink calls it on a request body. Asserts: the cap
/// is applied before decoding (one byte under the input's length refuses it
/// as too large); an opened envelope has a supported schema version and a body that
/// hashes to its header; and sealing the opened body again under the same key
/// gives an envelope that opens to the same key and to a body that seals to
/// the same bytes again (the encoder is deterministic, so retries send the
/// same bytes).
pub fn open_envelope(bytes: &[u8]) {
    if let Some(cap) = bytes.len().checked_sub(1) {
        assert!(matches!(
            decode_capped::<Envelope>(bytes, cap),
            Err(CodecError::TooLarge { .. })
        ));
    }
    let Ok((env, body)) = Envelope::open(bytes) else {
        return;
    };
    assert!((MIN_SCHEMA_VERSION..=SCHEMA_VERSION).contains(&env.version));
    assert_eq!(Sha256::digest(&env.body).as_slice(), env.body_sha256);
    let resealed = Envelope::seal(&env.key(), env.created_ms, &body);
    let (again, body_again) =
        Envelope::open(&resealed.to_bytes()).expect("a sealed envelope opens");
    assert_eq!(again, resealed);
    assert_eq!(again.version, SCHEMA_VERSION);
    assert_eq!(
        Envelope::seal(&env.key(), env.created_ms, &body_again).body,
        resealed.body,
        "body encoding is unstable"
    );
}

/// The schema-3/4 (columnar) body decoder on untrusted bytes, as `open` runs it
/// once the hash matched. Asserts: a decoded body encodes with exact values
/// to bytes that decode and encode again to the same bytes, and with rounded
/// values to bytes that decode to as many windows, series by series in the
/// same order.
pub fn decode_columnar(bytes: &[u8]) {
    let Ok(body) = columnar::decode(bytes) else {
        return;
    };
    for layout in [Layout::VerdictColumn, Layout::VerdictsInExtras] {
        let exact = columnar::encode(&body, Quantizer::Exact, layout);
        let again = columnar::decode(&exact).expect("an encoded body decodes");
        assert_eq!(
            columnar::encode(&again, Quantizer::Exact, layout),
            exact,
            "columnar encoding is unstable ({layout:?})"
        );
    }
    let rounded = Quantizer::new(1e-4).expect("a valid error");
    let coarse = columnar::decode(&columnar::encode(&body, rounded, Layout::VerdictColumn))
        .expect("a rounded body decodes");
    assert_eq!(
        coarse
            .windows
            .iter()
            .map(|w| w.verdict.is_some())
            .collect::<Vec<_>>(),
        body.windows
            .iter()
            .map(|w| w.verdict.is_some())
            .collect::<Vec<_>>(),
        "every verdict survives rounding"
    );
    let names = |b: &Body| -> Vec<(String, String, i64)> {
        b.windows
            .iter()
            .map(|w| (w.device.clone(), w.metric.clone(), w.start_ms))
            .collect()
    };
    assert_eq!(names(&coarse), names(&body));
}

/// `decode_capped::<Body>` under the envelope cap (what `open` does with the
/// body bytes). Asserts, for the named (version 1) and the packed (version 2)
/// encoding each: a decoded body encodes, that encoding decodes, and encodes
/// again to the same bytes (compared as bytes, so NaN is fine); and the packed
/// form decodes to what the named form decodes to.
pub fn decode_body(bytes: &[u8]) {
    let Ok(body) = decode_capped::<Body>(bytes, crate::MAX_ENVELOPE_BYTES) else {
        return;
    };
    let named = encode(&body);
    let again: Body = decode_capped(&named, usize::MAX).expect("an encoded body decodes");
    assert_eq!(encode(&again), named, "body encoding is unstable");
    let packed = encode_packed(&body);
    let from_packed: Body = decode_capped(&packed, usize::MAX).expect("a packed body decodes");
    assert_eq!(
        encode_packed(&from_packed),
        packed,
        "packed encoding is unstable"
    );
    assert_eq!(
        encode(&from_packed),
        named,
        "packed and named decode differently"
    );
}

/// `decode_capped::<Counters>` under the agent's store cap. Asserts: decoded
/// counters round-trip exactly through encode and decode.
pub fn decode_counters(bytes: &[u8]) {
    let Ok(counters) = decode_capped::<Counters>(bytes, COUNTERS_CAP) else {
        return;
    };
    let again: Counters =
        decode_capped(&encode(&counters), usize::MAX).expect("encoded counters decode");
    assert_eq!(again, counters);
}

/// Runs `harness` on every file of the repository's `fuzz/corpus/<target>/`,
/// then fails naming each file that panicked (the panic's message is printed
/// above). An empty or missing corpus fails too, so a moved corpus cannot
/// turn a replay into a test of nothing.
pub fn replay_corpus(target: &str, harness: impl Fn(&[u8])) {
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
