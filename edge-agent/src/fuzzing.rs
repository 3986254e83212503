//! Fuzz harnesses for the agent's decoders of untrusted bytes (payloads, journal records, log lines); not used at run time.
//!
//! Each `pub fn` here takes one raw input, runs the decoder the agent runs on
//! it, and asserts only what that decoder promises in its docs. The cargo-fuzz
//! targets in `fuzz/fuzz_targets/` are one-line wrappers over these, and
//! `tests/fuzz_corpus.rs` replays the committed corpora through the same
//! functions on stable, so a corpus file that once crashed stays a test. This
//! module does not generate inputs, touch disk (the caller loads the log
//! sidecar) or keep state between calls.
#![doc(hidden)]

use crate::classify::log_recipe::LogRecipe;
use crate::decode::sparkplug::{self, Sparkplug};
use crate::decode::{self, text, DecodeLimits, DecodeRules, Decoded, Format, TimeUnit};
use crate::journal_record::JournalRecord;

/// The gateway clock the decode harnesses use: 2026-01-01T00:00:00Z.
pub const NOW_MS: i64 = 1_767_225_600_000;
/// The topic every payload arrives on; level 1 names the device.
pub const TOPIC: &str = "plant/pump-1/sensors";
/// The device [`TOPIC`] names.
pub const TOPIC_DEVICE: &str = "pump-1";
/// 2000-01-01T00:00:00Z: `decode/time.rs` rejects payload times before this.
const EARLIEST_MS: i64 = 946_684_800_000;
/// Lines of one input the log harness featurizes (lines are independent;
/// this keeps one execution cheap when the fuzzer feeds thousands of them).
const MAX_LOG_LINES: usize = 16;

/// The route of the decode harnesses, as the decoder unit tests build it:
/// device from topic level 1, time field `ts` (ms; ns for Influx), sequence
/// field `seq`, Influx device tag `device`.
pub fn rules(format: Format) -> DecodeRules {
    DecodeRules {
        format,
        device_segment: 1,
        time_field: "ts".into(),
        time_unit: if format == Format::Influx {
            TimeUnit::Nanoseconds
        } else {
            TimeUnit::Milliseconds
        },
        seq_field: Some("seq".into()),
        device_tag: "device".into(),
    }
}

/// The limits of the decode harnesses (the unit tests' values: payloads up
/// to 4 KiB, which libFuzzer's default `-max_len` reaches, names up to 64
/// bytes, one day of clock skew).
pub fn limits() -> DecodeLimits {
    DecodeLimits {
        max_payload_bytes: 4096,
        max_name_bytes: 64,
        max_future_ms: 86_400_000,
    }
}

/// `decode::decode` of `payload` in `format`, then the promises of
/// `decode/`: an accepted message has readings or problems, a non-empty
/// device and names within the cap, finite values, plausible times (payload
/// time within [2000, now + skew], else the gateway clock), never the time or
/// sequence field as a metric, a sequence number below 2^53 (JSON/CBOR only),
/// one reading per log line (text), and it journals and reads back unchanged.
pub fn decode_payload(format: Format, payload: &[u8]) {
    let (rules, limits) = (rules(format), limits());
    let Ok(d) = decode::decode(&rules, &limits, TOPIC, payload, NOW_MS) else {
        return;
    };
    check_decoded(format, &rules, &limits, payload, &d);
    let record = JournalRecord {
        device: d.device.clone(),
        seq: d.seq,
        readings: d.readings.clone(),
        exemplars: Vec::new(),
        escalations: Vec::new(),
    };
    assert_eq!(
        JournalRecord::decode(&record.encode()),
        Some(record),
        "decoded message does not survive the journal"
    );
}

fn check_decoded(
    format: Format,
    rules: &DecodeRules,
    limits: &DecodeLimits,
    payload: &[u8],
    d: &Decoded,
) {
    assert!(
        !d.readings.is_empty() || !d.problems.is_empty(),
        "accepted an empty message"
    );
    assert!(!d.device.is_empty() && d.device.len() <= limits.max_name_bytes);
    assert!(
        d.readings.len() <= payload.len(),
        "more readings than bytes"
    );
    let latest = NOW_MS + limits.max_future_ms;
    for r in &d.readings {
        assert!(r.value.is_finite(), "non-finite value {r:?}");
        assert!(r.metric.len() <= limits.max_name_bytes, "long name {r:?}");
        assert!(
            r.ts_ms == NOW_MS || (EARLIEST_MS..=latest).contains(&r.ts_ms),
            "implausible time {r:?}"
        );
    }
    match format {
        Format::Json | Format::Cbor => {
            assert_eq!(d.device, TOPIC_DEVICE);
            assert!(d.seq.is_none_or(|s| s < 1 << 53));
            assert!(d.readings.iter().all(|r| r.metric != rules.time_field
                && Some(r.metric.as_str()) != rules.seq_field.as_deref()));
        }
        Format::Influx | Format::Sparkplug => assert_eq!(d.seq, None),
        Format::Text => {
            assert_eq!((d.device.as_str(), d.seq), (TOPIC_DEVICE, None));
            let text = std::str::from_utf8(payload).expect("text decode accepted non-UTF-8");
            let want: Vec<f64> = text::lines(text).map(|l| l.len() as f64).collect();
            let got: Vec<f64> = d.readings.iter().map(|r| r.value).collect();
            assert_eq!(got, want, "one reading per line, valued at its length");
            assert!(d.readings.iter().all(|r| r.metric == text::LOG_METRIC));
        }
    }
}

/// The topics [`sparkplug_session`] sends to: one edge node, two devices, and
/// messages the decoder ignores or rejects by topic.
pub const SPARKPLUG_TOPICS: [&str; 10] = [
    "spBv1.0/g/NBIRTH/n",
    "spBv1.0/g/NDATA/n",
    "spBv1.0/g/DBIRTH/n/d1",
    "spBv1.0/g/DDATA/n/d1",
    "spBv1.0/g/DBIRTH/n/d2",
    "spBv1.0/g/DDATA/n/d2",
    "spBv1.0/g/DDEATH/n/d1",
    "spBv1.0/g/NDEATH/n",
    "spBv1.0/g/NCMD/n",
    "spBv1.0/STATE/host",
];

/// One Sparkplug session fed `data` cut into messages: a byte choosing the
/// topic from [`SPARKPLUG_TOPICS`], the payload length (u16, little-endian),
/// the payload (cut short by the end of `data`).
/// Each accepted message must keep the `decode/` promises (see
/// [`decode_payload`]) and name a device of the topic's node. A rebirth
/// request (asked for after every message, on a clock 1 s later per message,
/// so the retry interval passes) may only follow a data or DBIRTH message and
/// must be the node's rebirth NCMD.
pub fn sparkplug_session(data: &[u8]) {
    let limits = limits();
    let mut session = Sparkplug::default();
    let mut rest = data;
    let mut clock = NOW_MS;
    while let [topic, lo, hi, tail @ ..] = rest {
        let len = usize::from(u16::from_le_bytes([*lo, *hi]));
        let (payload, next) = tail.split_at(len.min(tail.len()));
        rest = next;
        let topic = SPARKPLUG_TOPICS[usize::from(*topic) % SPARKPLUG_TOPICS.len()];
        let decoded = session.decode(&limits, topic, payload, NOW_MS);
        clock += 1_000;
        if let Some(c) = session.rebirth_request(clock) {
            assert!(
                topic.contains("DATA/") || topic.contains("DBIRTH/"),
                "{topic}"
            );
            assert_eq!(c.topic, "spBv1.0/g/NCMD/n");
            assert_eq!(c.payload, sparkplug::rebirth::rebirth_payload(clock));
        }
        let Ok(d) = decoded else {
            continue;
        };
        check_decoded(
            Format::Sparkplug,
            &rules(Format::Sparkplug),
            &limits,
            payload,
            &d,
        );
        assert!(d.device == "g/n" || d.device.starts_with("g/n/d"), "{d:?}");
        assert!(
            d.readings
                .iter()
                .all(|r| !r.metric.chars().any(char::is_control)),
            "{d:?}"
        );
    }
}

/// `JournalRecord::decode` of bytes read back from disk: whatever decodes
/// re-encodes to exactly the same bytes (the layout has one encoding).
pub fn journal_record(bytes: &[u8]) {
    if let Some(record) = JournalRecord::decode(bytes) {
        assert_eq!(record.encode(), bytes, "journal layout is not canonical");
    }
}

/// The log path of the classify stage on arbitrary text: the lines the text
/// decoder counts, each header-stripped by `LogRecipe::content` and
/// featurized; then `LogRecipe::judge` on the input's bytes read as an `f32`
/// row (short, long, NaN: it promises never to panic). Asserts: the content is
/// a trimmed piece of its line; exactly `width` finite features, the hashed
/// block L2-normalized (norm 1, or 0 when the token hashes cancel out or there
/// are no tokens, which the `empty` flag says), the ratio features in [0, 1];
/// a judgement's probability and confidence in [0, 1], its
/// severity a valid index, and `alert` exactly when the probability reaches
/// the threshold (confidence 0 when it does not).
pub fn log_line(recipe: &LogRecipe, data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let width = recipe.width();
    let mut features = Vec::with_capacity(width);
    for line in text::lines(&text).take(MAX_LOG_LINES) {
        let content = recipe.content(line);
        assert_eq!(content, content.trim(), "content is not trimmed");
        let (start, end) = (line.as_ptr() as usize, line.as_ptr() as usize + line.len());
        let at = content.as_ptr() as usize;
        assert!(
            content.is_empty() || (start <= at && at + content.len() <= end),
            "content is not a piece of its line"
        );
        features.clear();
        recipe.featurize(content, &mut features);
        assert_eq!(features.len(), width);
        assert!(features.iter().all(|v| v.is_finite()), "{features:?}");
        let (hashed, numeric) = features.split_at(width - 6);
        let norm = hashed.iter().map(|v| f64::from(*v).powi(2)).sum::<f64>();
        assert!(norm == 0.0 || (norm - 1.0).abs() < 1e-3, "norm² {norm}");
        assert!(numeric[0] >= 0.0 && numeric[1] >= 0.0);
        assert!(
            numeric[2..].iter().all(|v| (0.0..=1.0).contains(v)),
            "{numeric:?}"
        );
        assert!(numeric[5] == 0.0 || (numeric[5] == 1.0 && norm == 0.0));
    }
    let scores: Vec<f32> = data
        .chunks_exact(4)
        .take(recipe.outputs() + 1)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let j = recipe.judge(&scores);
    assert!((0.0..=1.0).contains(&j.alert_probability), "{j:?}");
    assert!((0.0..=1.0).contains(&j.confidence), "{j:?}");
    assert!(j.severity < recipe.severity_names().len(), "{j:?}");
    if j.alert {
        assert!(j.alert_probability >= recipe.alert_threshold(), "{j:?}");
    }
}
