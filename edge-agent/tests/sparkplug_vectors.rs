//! Sparkplug B decoding against vectors built by an independent encoder (pysparkplug 0.6.1, see
//! `tests/sparkplug/make_vectors.py`), and arbitrary bytes through a Sparkplug session never panic.
//!
//! The committed `tests/sparkplug/sparkplug_vectors.json` is the contract: one
//! session decodes its messages in order and every outcome (device, readings,
//! problem counts, or the whole-message reason) must match exactly. When
//! `EDGE_SPARKPLUG_PYTHON` names a Python with pysparkplug 0.6.1, the generator
//! is re-run and its output must equal the committed file; otherwise that test
//! prints SKIP (CI needs no Python packages for the vectors).

use std::collections::BTreeMap;
use std::path::PathBuf;

use edge_agent::decode::sparkplug::Sparkplug;
use edge_agent::fuzzing;
use proptest::prelude::*;
use serde_json::Value;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/sparkplug")
}

fn vectors() -> Value {
    let text = std::fs::read_to_string(dir().join("sparkplug_vectors.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// The outcome of one message in the vectors' JSON shape.
fn outcome(d: Result<edge_agent::decode::Decoded, wire::Reason>) -> Value {
    match d {
        Err(reason) => serde_json::json!({ "err": reason.as_str() }),
        Ok(d) => {
            let problems: BTreeMap<&str, u64> = d.problems.inputs().collect();
            let readings: Vec<Value> = d
                .readings
                .iter()
                .map(|r| serde_json::json!([r.metric.as_str(), r.ts_ms, r.value]))
                .collect();
            serde_json::json!({ "device": d.device, "readings": readings, "problems": problems })
        }
    }
}

/// Numbers compared as f64 (the JSON has 1.0 where Rust may print 1).
fn normalize(v: &Value) -> Value {
    match v {
        Value::Number(n) => serde_json::json!(n.as_f64().unwrap()),
        Value::Array(a) => Value::Array(a.iter().map(normalize).collect()),
        Value::Object(o) => {
            Value::Object(o.iter().map(|(k, v)| (k.clone(), normalize(v))).collect())
        }
        other => other.clone(),
    }
}

#[test]
fn independently_encoded_session_decodes_as_expected() {
    let v = vectors();
    let now = v["now_ms"].as_i64().unwrap();
    let limits = fuzzing::limits();
    let mut session = Sparkplug::default();
    let messages = v["messages"].as_array().unwrap();
    let (mut readings, mut errors) = (0, 0);
    for (i, m) in messages.iter().enumerate() {
        let topic = m["topic"].as_str().unwrap();
        let payload = unhex(m["payload_hex"].as_str().unwrap());
        let got = outcome(session.decode(&limits, topic, &payload, now));
        assert_eq!(
            normalize(&got),
            normalize(&m["expect"]),
            "message {i} ({}) on {topic}",
            m["note"]
        );
        readings += m["expect"]["readings"].as_array().map_or(0, Vec::len);
        errors += usize::from(m["expect"].get("err").is_some());
    }
    assert_eq!(
        (messages.len(), readings, errors),
        (28, 40, 10),
        "the vectors changed: update the counts here and in the report"
    );
}

#[test]
fn committed_vectors_match_the_generator() {
    let Ok(python) = std::env::var("EDGE_SPARKPLUG_PYTHON") else {
        println!(
            "SKIP: EDGE_SPARKPLUG_PYTHON is not set (a Python with pysparkplug==0.6.1); \
             the committed vectors are checked by the other tests"
        );
        return;
    };
    let out = std::process::Command::new(python)
        .arg(dir().join("make_vectors.py"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let fresh: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(fresh, vectors(), "regenerate sparkplug_vectors.json");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Any bytes, cut into messages on Sparkplug topics, through one session.
    #[test]
    fn arbitrary_bytes_never_panic_a_session(data in proptest::collection::vec(any::<u8>(), 0..1024)) {
        fuzzing::sparkplug_session(&data);
    }

    /// The vectors with a few bytes changed, in order through one session.
    #[test]
    fn mutated_vectors_never_panic(flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8)) {
        let v = vectors();
        let limits = fuzzing::limits();
        let mut session = Sparkplug::default();
        for (i, m) in v["messages"].as_array().unwrap().iter().enumerate() {
            let mut payload = unhex(m["payload_hex"].as_str().unwrap());
            for (at, x) in &flips {
                if !payload.is_empty() && at % 28 == i {
                    let n = payload.len();
                    payload[at / 28 % n] ^= x;
                }
            }
            if let Ok(d) = session.decode(&limits, m["topic"].as_str().unwrap(), &payload, fuzzing::NOW_MS) {
                prop_assert!(d.readings.iter().all(|r| r.value.is_finite()));
            }
        }
    }
}
