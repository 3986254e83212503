//! The Rust sensor recipe reproduces `models/sensor/pipeline.py` on the real SKAB files:
//! sidecars parse; calibration, features (within 1e-5), tract scores, each file's threshold
//! and alarm count over whole-file replays match `golden.json`; `history_rows` rows of
//! history rebuild featurizer and decider state exactly; a restored device continues exactly.
//!
//! Reads `../shared/data/SKAB` in place; without it the test says so and passes, unless
//! `EDGE_REQUIRE_SERVICES=1` (CI), where missing data is a failure.

use std::path::{Path, PathBuf};

use edge_agent::classify::pool::InferencePool;
use edge_agent::classify::sensor::SensorClassifier;
use edge_agent::classify::sensor_recipe::{
    threshold_from_calibration, Calibration, Decider, Featurizer, SensorRecipe,
};
use edge_agent::model::ScoreModel;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn skab_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("EDGE_DATA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("../shared/data"))
        .join("SKAB/data");
    if dir.is_dir() {
        return Some(dir);
    }
    let msg = format!("SKAB data not found at {}", dir.display());
    assert!(
        std::env::var("EDGE_REQUIRE_SERVICES").as_deref() != Ok("1"),
        "{msg}"
    );
    eprintln!("skipped: {msg}");
    None
}

fn recipe(model: &str) -> SensorRecipe {
    let path = repo().join("models/sensor").join(format!("{model}.json"));
    SensorRecipe::from_json(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Rows of a SKAB file in the recipe's channel order.
fn rows(path: &Path, channels: &[String]) -> Vec<Vec<f64>> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(';').collect();
    let cols: Vec<usize> = channels
        .iter()
        .map(|c| header.iter().position(|h| h == c).unwrap())
        .collect();
    lines
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split(';').collect();
            cols.iter().map(|c| f[*c].trim().parse().unwrap()).collect()
        })
        .collect()
}

fn close(what: &str, got: f64, want: f64, rel: f64) {
    let tol = rel * want.abs().max(1.0);
    assert!(
        (got - want).abs() <= tol,
        "{what}: rust {got} vs python {want}"
    );
}

fn golden() -> serde_json::Value {
    let text = std::fs::read_to_string(repo().join("models/sensor/golden.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn floats(v: &serde_json::Value) -> Vec<f64> {
    serde_json::from_value(v.clone()).unwrap()
}

fn features_of(r: &SensorRecipe, cal: &Calibration, rows: &[Vec<f64>]) -> Vec<f32> {
    let mut f = Featurizer::new(r, cal);
    let mut out = Vec::with_capacity(rows.len() * r.width());
    for row in rows {
        f.push(row, &mut out);
    }
    out
}

fn model(r: &SensorRecipe) -> ScoreModel {
    ScoreModel::load(&repo().join("models/sensor").join(r.model()), r.width()).unwrap()
}

#[test]
fn sidecars_parse_and_describe_their_models() {
    for name in ["student_int8", "teacher"] {
        let r = recipe(name);
        assert_eq!(r.channels().len(), 8);
        assert_eq!(r.calib_rows(), 400);
        assert_eq!(r.width(), 24);
        assert!(r.history_rows() >= 359 && r.history_rows() < 500);
        assert_eq!(model(&r).width(), r.width());
    }
    let path = repo().join("models/sensor/student_int8.json");
    let mut doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    doc["width"] = 8.into();
    assert!(SensorRecipe::from_json(&doc.to_string()).is_err());
    doc["width"] = 24.into();
    doc["history_rows"] = 10.into();
    assert!(SensorRecipe::from_json(&doc.to_string()).is_err());
    doc["history_rows"] = recipe("student_int8").history_rows().into();
    assert!(SensorRecipe::from_json(&doc.to_string()).is_ok());
    doc["kind"] = "log".into();
    assert!(SensorRecipe::from_json(&doc.to_string()).is_err());
}

#[test]
fn features_calibration_and_thresholds_match_the_python_pipeline() {
    let Some(data) = skab_dir() else { return };
    let golden = golden();
    let r = recipe("student_int8");
    let w = r.width();
    let mut checked = 0;
    for rp in golden["replay"].as_array().unwrap() {
        let file = rp["file"].as_str().unwrap().trim_start_matches("data/");
        let all = rows(&data.join(file), r.channels());
        assert_eq!(all.len() as u64, rp["rows"].as_u64().unwrap(), "{file}");
        let cal = Calibration::fit(&r, &all[..r.calib_rows()]);
        let want_cal = &rp["calibration"];
        for (name, got) in [
            ("mu", &cal.mu),
            ("sd", &cal.sd),
            ("s", &cal.s),
            ("r", &cal.r),
        ] {
            let want = floats(&want_cal[name]);
            assert_eq!(got.len(), want.len(), "{file} {name}");
            for (g, w) in got.iter().zip(&want) {
                close(&format!("{file} {name}"), *g, *w, 1e-9);
            }
        }
        assert_eq!(Calibration::from_bytes(&cal.to_bytes()), Some(cal.clone()));
        let feats = features_of(&r, &cal, &all);
        for (k, row) in rp["check_rows"].as_array().unwrap().iter().enumerate() {
            let row = row.as_u64().unwrap() as usize;
            let want = floats(&rp["check_features"][k]);
            for (g, w) in feats[row * w..(row + 1) * w].iter().zip(&want) {
                close(
                    &format!("{file} row {row} feature"),
                    f64::from(*g),
                    *w,
                    1e-5,
                );
            }
        }
        for v in golden["vectors"].as_array().unwrap() {
            if v["file"] == rp["file"] {
                let row = v["row"].as_u64().unwrap() as usize;
                for (g, w) in feats[row * w..(row + 1) * w]
                    .iter()
                    .zip(floats(&v["features"]))
                {
                    close(&format!("{file} vector row {row}"), f64::from(*g), w, 1e-5);
                    checked += 1;
                }
            }
        }

        // The whole classifier (calibration → tract → threshold) on this file.
        let pool = InferencePool::new(model(&r), 1, "test").unwrap();
        let mut c = SensorClassifier::new(r.clone(), pool);
        let batch: Vec<(&str, Vec<f64>)> = all[..r.calib_rows()]
            .iter()
            .map(|x| ("d", x.clone()))
            .collect();
        assert!(c.judge(&batch).unwrap().iter().all(Option::is_none));
        let state = c.encode_state("d").unwrap();
        let threshold = f64::from_le_bytes(state[1..9].try_into().unwrap());
        close(
            &format!("{file} threshold"),
            threshold,
            rp["student_threshold"].as_f64().unwrap(),
            1e-4,
        );
    }
    assert!(checked >= 8 * 24, "only {checked} golden features checked");
}

#[test]
fn tract_scores_thresholds_and_alarms_replay_whole_files_like_python() {
    let Some(data) = skab_dir() else { return };
    let golden = golden();
    for (name, sidecar) in [("student", "student_int8"), ("teacher", "teacher")] {
        let r = recipe(sidecar);
        let m = model(&r);
        for rp in golden["replay"].as_array().unwrap() {
            let file = rp["file"].as_str().unwrap().trim_start_matches("data/");
            let all = rows(&data.join(file), r.channels());
            let cal = Calibration::fit(&r, &all[..r.calib_rows()]);
            let feats = features_of(&r, &cal, &all);
            let scores: Vec<f32> = m
                .score(&feats)
                .unwrap()
                .into_iter()
                .step_by(m.outputs())
                .collect();
            let want = floats(&rp[format!("check_{name}_scores").as_str()]);
            for (row, w) in rp["check_rows"].as_array().unwrap().iter().zip(&want) {
                let g = scores[row.as_u64().unwrap() as usize];
                close(&format!("{file} {name} score"), f64::from(g), *w, 1e-4);
            }
            let thr = threshold_from_calibration(&r, &scores[..r.calib_rows()]);
            let want_thr = rp[format!("{name}_threshold").as_str()].as_f64().unwrap();
            close(&format!("{file} {name} threshold"), thr, want_thr, 1e-6);
            let mut decider = Decider::new(&r, thr);
            let alarms = scores.iter().filter(|s| decider.push(**s).alarm).count() as i64;
            let want = rp[format!("{name}_alarms").as_str()].as_i64().unwrap();
            let slack = rp[format!("{name}_near_threshold_rows").as_str()]
                .as_i64()
                .unwrap();
            assert!(
                (alarms - want).abs() <= slack,
                "{file} {name}: {alarms} alarms vs {want}"
            );
        }
    }
}

#[test]
fn history_rows_rebuild_featurizer_and_decider_state_exactly() {
    let Some(data) = skab_dir() else { return };
    let r = recipe("student_int8");
    let m = model(&r);
    let all = rows(&data.join("other/1.csv"), r.channels());
    let cal = Calibration::fit(&r, &all[..r.calib_rows()]);
    let w = r.width();
    let full = features_of(&r, &cal, &all);
    let scores = m.score(&full).unwrap();
    let mut decider = Decider::new(&r, 2.0);
    let decisions: Vec<_> = scores.iter().map(|s| decider.push(*s)).collect();
    let h = r.history_rows();
    for cut in [h, h + 1, all.len() - 20] {
        // state rebuilt from rows cut-h..cut; rows cut.. then continue as in the full run
        let mut f = Featurizer::new(&r, &cal);
        let mut warm = Vec::new();
        for row in &all[cut - h..cut] {
            f.push(row, &mut warm);
        }
        let mut d = Decider::new(&r, 2.0);
        for s in m.score(&warm).unwrap() {
            d.push(s);
        }
        for (i, row) in all.iter().enumerate().skip(cut).take(20) {
            let mut out = Vec::new();
            f.push(row, &mut out);
            for (g, w) in out.iter().zip(&full[i * w..(i + 1) * w]) {
                assert_eq!(g, w, "row {i} after cut {cut}");
            }
            let got = d.push(m.score(&out).unwrap()[0]);
            close(
                &format!("row {i} smoothed"),
                got.smoothed,
                decisions[i].smoothed,
                1e-6,
            );
        }
    }
}

#[test]
fn restored_state_continues_exactly_like_an_uninterrupted_device() {
    let Some(data) = skab_dir() else { return };
    let r = recipe("student_int8");
    let all = rows(&data.join("valve1/1.csv"), r.channels());
    let load = || {
        let model =
            ScoreModel::load(&repo().join("models/sensor/student_int8.onnx"), r.width()).unwrap();
        SensorClassifier::new(r.clone(), InferencePool::new(model, 2, "test").unwrap())
    };
    let batch = |rows: &[Vec<f64>]| -> Vec<(&'static str, Vec<f64>)> {
        rows.iter().map(|x| ("d", x.clone())).collect()
    };
    let mut straight = load();
    let want = straight.judge(&batch(&all)).unwrap();

    // Cut in calibration and after it; restore from the encoded state each time.
    let mut got = Vec::new();
    let mut state: Option<Vec<u8>> = None;
    for part in [&all[..150], &all[150..600], &all[600..]] {
        let mut c = load();
        if let Some(s) = &state {
            assert!(c.restore_state("d", s).unwrap());
        }
        got.extend(c.judge(&batch(part)).unwrap());
        state = c.encode_state("d");
        // Sized exactly (a snapshot holds every device's state at once), calibrating or ready.
        let s = state.as_ref().unwrap();
        assert_eq!(s.len(), s.capacity(), "state buffer sized exactly");
    }
    assert_eq!(got.len(), want.len());
    let mut alarms = 0;
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        match (g, w) {
            (None, None) => assert!(i < r.calib_rows()),
            (Some(g), Some(w)) => {
                assert_eq!(g.alarm, w.alarm, "row {i}");
                close(&format!("row {i} score"), g.score, w.score, 1e-5);
                alarms += usize::from(g.alarm);
            }
            _ => panic!("row {i}: judged in one run only"),
        }
    }
    assert!(alarms > 0, "valve1/1.csv has anomalies; none flagged");
}

#[test]
fn calibration_and_features_match_python_on_skab_replays() {
    let Some(data) = skab_dir() else { return };
    let r = recipe("student_int8");
    let w = r.width();
    let mut worst = 0.0f64;
    for rp in golden()["replay"].as_array().unwrap() {
        let rel = rp["file"].as_str().unwrap();
        let all = rows(&data.join(rel.trim_start_matches("data/")), r.channels());
        let cal = Calibration::fit(&r, &all[..r.calib_rows()]);
        for (got, key) in [
            (&cal.mu, "mu"),
            (&cal.sd, "sd"),
            (&cal.s, "s"),
            (&cal.r, "r"),
        ] {
            let want = floats(&rp["calibration"][key]);
            assert_eq!(got.len(), want.len(), "{rel} {key}");
            for (g, e) in got.iter().zip(&want) {
                close(&format!("{rel} {key}"), *g, *e, 1e-9);
            }
        }
        assert_eq!(Calibration::from_bytes(&cal.to_bytes()), Some(cal.clone()));
        let feats = features_of(&r, &cal, &all);
        assert_eq!(feats.len(), all.len() * w);
        for (k, row) in rp["check_rows"].as_array().unwrap().iter().enumerate() {
            let row = row.as_u64().unwrap() as usize;
            for (a, b) in feats[row * w..(row + 1) * w]
                .iter()
                .zip(floats(&rp["check_features"][k]))
            {
                let d = (f64::from(*a) - b).abs();
                worst = worst.max(d);
                assert!(d <= 1e-5, "{rel} row {row}: {a} vs {b}");
            }
        }
    }
    eprintln!("largest feature difference vs python: {worst:e}");
}
