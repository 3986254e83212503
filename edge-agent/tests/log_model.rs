//! The log-line model end to end: Rust features equal Python's on the golden
//! strings, the committed ONNX models load in tract and reproduce
//! onnxruntime's outputs, `content()` strips real Loghub headers, and
//! `featurize` is total on garbage.

use std::path::{Path, PathBuf};

use edge_agent::classify::log_recipe::LogRecipe;
use edge_agent::model::ScoreModel;
use proptest::prelude::*;
use serde_json::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn models() -> PathBuf {
    repo().join("models/log")
}

fn recipe(name: &str) -> LogRecipe {
    let text = std::fs::read_to_string(models().join(format!("{name}.json"))).unwrap();
    LogRecipe::from_json(&text).unwrap()
}

fn golden() -> Vec<Value> {
    let text = std::fs::read_to_string(models().join("golden.json")).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    v["cases"].as_array().unwrap().clone()
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

const MODELS: [(&str, &str, &str); 2] = [
    ("student_int8", "student_features", "student_scores"),
    ("teacher", "teacher_features", "teacher_scores"),
];

#[test]
fn features_match_python_on_golden_strings() {
    let cases = golden();
    assert!(cases.len() >= 16, "only {} golden cases", cases.len());
    for (name, fkey, _) in MODELS {
        let r = recipe(name);
        for case in &cases {
            let content = case["content"].as_str().unwrap();
            let want = floats(&case[fkey]);
            let mut got = vec![1.5f32]; // featurize appends
            r.featurize(content, &mut got);
            assert_eq!(got.len(), 1 + r.width(), "{name} {}", case["source"]);
            assert_eq!(want.len(), r.width(), "{name} {}", case["source"]);
            for (i, (g, w)) in got[1..].iter().zip(&want).enumerate() {
                assert!(
                    (g - w).abs() <= 1e-6,
                    "{name} {} feature {i}: rust {g} python {w}",
                    case["source"]
                );
            }
        }
    }
}

#[test]
fn tract_matches_onnxruntime_batched_and_single() {
    let cases = golden();
    for (name, fkey, skey) in MODELS {
        let r = recipe(name);
        let model = ScoreModel::load(&models().join(r.model_file()), r.width()).unwrap();
        assert_eq!(model.outputs(), r.outputs(), "{name}");
        let mut rows = Vec::new();
        for case in &cases {
            r.featurize(case["content"].as_str().unwrap(), &mut rows);
        }
        let batched = model.score(&rows).unwrap();
        assert_eq!(batched.len(), cases.len() * r.outputs());
        for (i, case) in cases.iter().enumerate() {
            let want = floats(&case[skey]);
            let single = model.score(&floats(&case[fkey])).unwrap();
            let got = &batched[i * r.outputs()..(i + 1) * r.outputs()];
            for (j, w) in want.iter().enumerate() {
                for (how, g) in [("batched", got[j]), ("single", single[j])] {
                    assert!(
                        (g - w).abs() <= 1e-4,
                        "{name} {} col {j} {how}: tract {g} onnxruntime {w}",
                        case["source"]
                    );
                }
            }
            let sum: f32 = got[1..].iter().sum();
            assert!((sum - 1.0).abs() < 1e-4, "severity softmax sums to {sum}");
            let j = r.judge(got);
            assert!(j.severity < r.severity_names().len());
            assert!((0.0..=1.0).contains(&j.confidence));
            assert_eq!(j.alert, got[0] >= r.alert_threshold());
        }
    }
}

/// Minimal RFC 4180 reader (quoted fields, doubled quotes, CRLF).
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let (mut rows, mut row, mut field) = (Vec::new(), Vec::new(), String::new());
    let mut chars = text.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') => quoted = true,
            (false, ',') => row.push(std::mem::take(&mut field)),
            (false, '\r') => {}
            (false, '\n') => {
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
            }
            (false, c) => field.push(c),
        }
    }
    if !field.is_empty() || !row.is_empty() {
        row.push(field);
        rows.push(row);
    }
    rows
}

/// Measured agreement of `content()` with the structured CSV's Content, per
/// system (raw `.log` line i vs CSV row i, both trimmed); the floors sit a
/// little under what this heuristic achieves on the files here (measured:
/// 1.0 on every system except Linux, 1993/2000).
#[test]
fn content_strips_real_loghub_headers() {
    let root = std::env::var("LOGHUB_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|_| repo().join("../shared/data/loghub"));
    let r = recipe("student_int8");
    let floors = [
        ("Android", 0.999),
        ("Apache", 0.999),
        ("BGL", 0.999),
        ("HDFS", 0.999),
        ("Hadoop", 0.999),
        ("Linux", 0.99), // measured 0.9965 (1993/2000)
        ("OpenSSH", 0.999),
        ("Spark", 0.999),
        ("Zookeeper", 0.999),
    ];
    let (mut total, mut ok) = (0usize, 0usize);
    for (system, floor) in floors {
        let dir = root.join(system);
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        let find = |suffix: &str| {
            files
                .iter()
                .find(|p| p.to_string_lossy().ends_with(suffix))
                .unwrap()
                .clone()
        };
        let raw = String::from_utf8_lossy(&std::fs::read(find(".log")).unwrap()).into_owned();
        let csv = parse_csv(&std::fs::read_to_string(find("_structured.csv")).unwrap());
        let col = csv[0].iter().position(|h| h == "Content").unwrap();
        let lines: Vec<&str> = raw.lines().collect();
        assert_eq!(
            lines.len(),
            csv.len() - 1,
            "{system}: raw vs structured line count"
        );
        let mut hits = 0;
        let mut misses = Vec::new();
        for (line, row) in lines.iter().zip(&csv[1..]) {
            if r.content(line) == row[col].trim() {
                hits += 1;
            } else if misses.len() < 3 {
                misses.push((r.content(line).to_owned(), row[col].clone()));
            }
        }
        let rate = hits as f64 / lines.len() as f64;
        println!(
            "{system}: content() agreement {hits}/{} = {rate:.4}",
            lines.len()
        );
        assert!(
            rate >= floor,
            "{system}: {rate:.4} < {floor}; e.g. {misses:?}"
        );
        total += lines.len();
        ok += hits;
    }
    println!("all: {ok}/{total}");
}

#[test]
fn content_falls_back_to_the_whole_line() {
    let r = recipe("student_int8");
    for s in [
        "",
        "hello world",
        "3 files: removed",
        "[not a stamp] x",
        "ciod: failed",
    ] {
        assert_eq!(r.content(s), s.trim(), "{s:?}");
    }
}

proptest! {
    #[test]
    fn featurize_is_total(s in ".{0,300}", bytes in proptest::collection::vec(any::<u8>(), 0..6000)) {
        let r = recipe("student_int8");
        for text in [s.clone(), String::from_utf8_lossy(&bytes).into_owned(), s.repeat(40)] {
            let mut out = Vec::new();
            r.featurize(&text, &mut out);
            prop_assert_eq!(out.len(), r.width());
            prop_assert!(out.iter().all(|v| v.is_finite()));
            let c = r.content(&text);
            prop_assert!(text.contains(c));
            let j = r.judge(&out[..r.outputs().min(out.len())]);
            prop_assert!((0.0..=1.0).contains(&j.confidence));
        }
    }
}

/// Latency of tract on the shipped models, single thread, batch 1, one real
/// line; `cargo test --release -p edge-agent --test log_model -- --ignored --nocapture`.
#[test]
#[ignore]
fn tract_latency_batch1() {
    let cases = golden();
    for (name, fkey, _) in MODELS {
        let r = recipe(name);
        let model = ScoreModel::load(&models().join(r.model_file()), r.width()).unwrap();
        let x = floats(&cases[0][fkey]);
        for _ in 0..1000 {
            model.score(&x).unwrap();
        }
        let mut t: Vec<f64> = (0..20_000)
            .map(|_| {
                let a = std::time::Instant::now();
                std::hint::black_box(model.score(&x).unwrap());
                a.elapsed().as_secs_f64() * 1e6
            })
            .collect();
        t.sort_by(f64::total_cmp);
        let mut out = Vec::new();
        let a = std::time::Instant::now();
        for case in &cases {
            out.clear();
            r.featurize(case["content"].as_str().unwrap(), &mut out);
        }
        let feat = a.elapsed().as_secs_f64() * 1e6 / cases.len() as f64;
        println!(
            "tract {name}: p50 {:.2} us p99 {:.2} us (20000 runs); featurize mean {feat:.2} us",
            t[t.len() / 2],
            t[t.len() * 99 / 100]
        );
    }
}

#[test]
fn from_json_rejects_bad_sidecars() {
    let text = std::fs::read_to_string(models().join("student_int8.json")).unwrap();
    let good: Value = serde_json::from_str(&text).unwrap();
    type Edit = (&'static str, fn(&mut Value));
    let edits: [Edit; 5] = [
        ("unknown field", |v| v["extra"] = 1.into()),
        ("kind", |v| v["kind"] = "sensor".into()),
        ("width", |v| v["width"] = 7.into()),
        ("hash", |v| v["features"]["hash"] = "murmur3".into()),
        ("outputs", |v| v["outputs"] = 3.into()),
    ];
    for (what, edit) in edits {
        let mut v = good.clone();
        edit(&mut v);
        let err = LogRecipe::from_json(&v.to_string()).unwrap_err();
        println!("{what}: {err}");
    }
    assert!(LogRecipe::from_json(&text).is_ok());
}
