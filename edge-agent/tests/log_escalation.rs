//! Escalation of log lines through the pipeline with the real int8 log model and real BGL
//! lines (read in place from `../shared/data`): an unsure line rides in its device's
//! `log.alert` window with the model's input row (sparse; equal to the recipe's features of the
//! line) and the line redacted; the budget is per device and hour, the rest counted as
//! `escalation_over_budget`; no IPv4 address, e-mail or MAC of the input appears anywhere in
//! the sealed batches; and a crash ships the same escalations once (journal replay).

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use edge_agent::classify::log_recipe::LogRecipe;
use edge_agent::classify::ClassifyStage;
use edge_agent::config::Settings;
use edge_agent::model::ScoreModel;
use edge_agent::pipeline::Pipeline;
use edge_agent::source::{AckToken, Delivery};
use tokio::sync::Notify;
use wire::{Envelope, Escalation, Reason};

const DEVICES: [&str; 3] = ["web-1", "web-2", "web-3"];
const BUDGET: u32 = 1;
const SECRETS: [&str; 3] = ["10.20.30.40", "alice@corp.example", "00:11:22:aa:bb:cc"];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn settings(dir: &Path) -> Settings {
    let mut s = common::demo_settings(dir, |c| {
        c.window.width = Duration::from_secs(3600);
        c.models.sensor.clear();
        c.models.escalations_per_device_hour = Some(BUDGET);
        c.models.log.as_mut().unwrap().escalate_below = Some(1.0);
        // No template exemplars: every `log.redacted.<kind>` count is an escalation's.
        c.templates.enabled = false;
    });
    s.models.resolve_paths(&repo().join("configs"));
    s
}

/// One line per device carrying personal data (first, so it takes the
/// device's budget if unsure), then 60 real BGL lines round robin.
fn lines() -> Vec<(&'static str, String)> {
    let bgl = repo().join("../shared/data/loghub/BGL/BGL_first1000.log");
    let text = std::fs::read_to_string(&bgl).unwrap_or_else(|e| panic!("{}: {e}", bgl.display()));
    let mut out: Vec<(&str, String)> = DEVICES
        .iter()
        .map(|d| {
            let line = format!(
                "- 1117838570 2005.06.03 R02-M1-N0 RAS KERNEL FATAL ciod: failed to read message \
                 from {} for {} hw {}",
                SECRETS[0], SECRETS[1], SECRETS[2]
            );
            (*d, line)
        })
        .collect();
    for (i, line) in text.lines().take(60).enumerate() {
        out.push((DEVICES[i % DEVICES.len()], line.to_owned()));
    }
    out
}

fn deliveries(lines: &[(&'static str, String)]) -> Vec<Delivery> {
    lines
        .iter()
        .map(|(d, l)| Delivery {
            topic: format!("plant/{d}/logs"),
            payload: Bytes::from(l.clone()),
            ack: AckToken::none(),
        })
        .collect()
}

/// The student's (confidence, features) of `line`, computed apart from the pipeline.
fn student(recipe: &LogRecipe, model: &ScoreModel, line: &str) -> (f32, Vec<f32>) {
    let mut row = Vec::new();
    recipe.featurize(recipe.content(line), &mut row);
    let scores = model.score(&row).unwrap();
    (recipe.judge(&scores).confidence, row)
}

#[test]
fn unsure_lines_escalate_redacted_within_the_budget_and_pii_never_leaves() {
    let dir = tempfile::tempdir().unwrap();
    let s = settings(dir.path());
    let stage = ClassifyStage::load(&s.models).unwrap();
    let mut p = Pipeline::open(&s, stage, Arc::new(Notify::new())).unwrap();
    let input = lines();
    for group in deliveries(&input).chunks(16) {
        p.ingest(group, Instant::now()).unwrap();
    }
    p.tick(Instant::now() + Duration::from_secs(3600 * 24 * 365))
        .unwrap();
    let (mut escalated, mut counters, mut sealed) =
        (Vec::new(), wire::Counters::default(), Vec::new());
    let mut redacted = std::collections::BTreeMap::<(String, String), f64>::new();
    while let Some((seq, bytes)) = p.store().outbox_first().unwrap() {
        let (_, body) = Envelope::open(&bytes).unwrap();
        for w in body.windows {
            if !w.escalations.is_empty() {
                assert_eq!(w.metric, "log.alert", "log escalations ride in log.alert");
            }
            if let Some(kind) = w.metric.strip_prefix("log.redacted.") {
                *redacted
                    .entry((w.device.clone(), kind.to_owned()))
                    .or_default() += w.sum;
            }
            escalated.extend(w.escalations.into_iter().map(|e| (w.device.clone(), e)));
        }
        counters.merge(&body.counters);
        sealed.extend_from_slice(&bytes);
        p.store().outbox_remove(seq).unwrap();
    }

    // Independently: which lines are unsure, and what the model saw.
    let recipe = LogRecipe::from_json(
        &std::fs::read_to_string(repo().join("models/log/student_int8.json")).unwrap(),
    )
    .unwrap();
    let model =
        ScoreModel::load(&repo().join("models/log/student_int8.onnx"), recipe.width()).unwrap();
    let judged: Vec<(f32, Vec<f32>)> = input
        .iter()
        .map(|(_, l)| student(&recipe, &model, l))
        .collect();
    let unsure = judged.iter().filter(|(c, _)| *c < 1.0).count() as u64;
    for (k, d) in DEVICES.iter().enumerate() {
        assert!(judged[k].0 < 1.0, "the PII line of {d} is unsure");
    }

    // One per device (the budget), each the device's PII line.
    assert_eq!(
        escalated.len(),
        DEVICES.len() * BUDGET as usize,
        "{escalated:?}"
    );
    for (k, d) in DEVICES.iter().enumerate() {
        let e: &Escalation = &escalated.iter().find(|(dev, _)| dev == d).unwrap().1;
        let ex = e.exemplar.as_deref().expect("a redacted exemplar");
        assert!(
            ex.contains("<ip>") && ex.contains("<email>") && ex.contains("<mac>"),
            "{ex}"
        );
        assert!(ex.len() <= edge_agent::window::MAX_ESCALATION_EXEMPLAR_BYTES);
        assert_eq!(
            e.dense_row(recipe.width()).unwrap(),
            judged[k].1,
            "the row the model saw"
        );
        assert!(e.indices.len() < 200, "sparse: {}", e.indices.len());
        assert!((e.confidence - f64::from(judged[k].0)).abs() < 1e-6);
    }
    // Each shipped exemplar's redactions are counted by kind, once.
    let expected: std::collections::BTreeMap<(String, String), f64> = DEVICES
        .iter()
        .flat_map(|d| ["email", "ip", "mac"].map(|k| ((d.to_string(), k.to_owned()), 1.0)))
        .collect();
    assert_eq!(redacted, expected, "log.redacted.<kind> sums per device");
    assert_eq!(
        counters.get(Reason::EscalationOverBudget),
        unsure - escalated.len() as u64,
        "every other unsure line counted"
    );
    for secret in SECRETS {
        let hit = sealed.windows(secret.len()).any(|w| w == secret.as_bytes());
        assert!(!hit, "{secret} left the gateway");
    }
}

/// An escalation as shipped: (device, exemplar, indices, features).
type Shipped = (String, Option<String>, Vec<u32>, Vec<f32>);

/// Everything closed and shipped, per escalation.
fn shipped(p: &mut Pipeline) -> Vec<Shipped> {
    p.tick(Instant::now() + Duration::from_secs(3600 * 24 * 365))
        .unwrap();
    let mut out = Vec::new();
    while let Some((seq, bytes)) = p.store().outbox_first().unwrap() {
        let (_, body) = Envelope::open(&bytes).unwrap();
        for w in body.windows {
            for e in w.escalations {
                out.push((w.device.clone(), e.exemplar, e.indices, e.features));
            }
        }
        p.store().outbox_remove(seq).unwrap();
    }
    out.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    out
}

#[test]
fn a_crash_replays_log_escalations_from_the_journal_once() {
    let input = deliveries(&lines());
    let reference = {
        let dir = tempfile::tempdir().unwrap();
        let s = settings(dir.path());
        let stage = ClassifyStage::load(&s.models).unwrap();
        let mut p = Pipeline::open(&s, stage, Arc::new(Notify::new())).unwrap();
        p.ingest(&input, Instant::now()).unwrap();
        shipped(&mut p)
    };
    assert_eq!(reference.len(), DEVICES.len());
    let dir = tempfile::tempdir().unwrap();
    let s = settings(dir.path());
    {
        let stage = ClassifyStage::load(&s.models).unwrap();
        let mut p = Pipeline::open(&s, stage, Arc::new(Notify::new())).unwrap();
        p.ingest(&input[..10], Instant::now()).unwrap();
    } // crash: the escalations live only in the journal and the budget state
    let stage = ClassifyStage::load(&s.models).unwrap();
    let mut p = Pipeline::open(&s, stage, Arc::new(Notify::new())).unwrap();
    p.ingest(&input[10..], Instant::now()).unwrap();
    assert_eq!(shipped(&mut p), reference, "same escalations, once");
}
