//! Template ids survive a crash: lines mined before and after a drop of the pipeline (what
//! `kill -9` leaves: only what was committed) name the same template series, with the same
//! texts and the same (redacted) exemplars, as one uninterrupted run. Reads Loghub's HDFS
//! and OpenSSH samples in place.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use edge_agent::classify::redact::Redactor;
use edge_agent::classify::templates::{template_id, TemplateStage};
use edge_agent::classify::ClassifyStage;
use edge_agent::config::Settings;
use edge_agent::logmine::MinerConfig;
use edge_agent::pipeline::Pipeline;
use edge_agent::source::{AckToken, Delivery};
use tokio::sync::Notify;
use wire::Envelope;

fn loghub(file: &str) -> Option<Vec<String>> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/data/loghub")
        .join(file);
    match std::fs::read_to_string(&path) {
        Ok(text) => Some(text.lines().take(600).map(str::to_owned).collect()),
        Err(e) => {
            assert!(
                std::env::var_os("EDGE_REQUIRE_SERVICES").is_none(),
                "{}: {e}",
                path.display()
            );
            eprintln!("SKIP: {}: {e}", path.display());
            None
        }
    }
}

fn settings(dir: &std::path::Path) -> Settings {
    common::demo_settings(dir, |c| {
        c.models = Default::default();
        c.templates.enabled = true;
        // Log lines take gateway time: one wide window per series keeps a minute
        // boundary from splitting the runs differently (exemplars are per window).
        c.window.width = Duration::from_secs(24 * 3600);
        c.outbox.max_rollup_width = c.window.width;
    })
}

const EXEMPLARS: usize = 3;

fn stage() -> ClassifyStage {
    let redactor = Redactor::new(&["ip".to_owned()], &[]).unwrap();
    let templates = TemplateStage::new(MinerConfig::default())
        .unwrap()
        .with_exemplars(EXEMPLARS, redactor);
    ClassifyStage::default().with_templates(templates)
}

/// What the outbox says about one template: lines, text, exemplars (window order).
#[derive(Debug, Default, PartialEq)]
struct Shipped {
    lines: u64,
    text: String,
    exemplars: Vec<String>,
}

fn deliveries(lines: &[String]) -> Vec<Delivery> {
    lines
        .chunks(10)
        .map(|chunk| Delivery {
            topic: "plant/host-1/logs".into(),
            payload: Bytes::from(chunk.join("\n")),
            ack: AckToken::none(),
        })
        .collect()
}

/// Per template series, what everything the outbox holds says after closing all windows.
fn drain(p: &mut Pipeline) -> BTreeMap<String, Shipped> {
    p.tick(Instant::now() + Duration::from_secs(3600)).unwrap();
    let mut per_series = BTreeMap::new();
    while let Some((seq, bytes)) = p.store().outbox_first().unwrap() {
        let (_, body) = Envelope::open(&bytes).unwrap();
        for w in body.windows {
            if template_id(&w.metric).is_none() {
                assert!(w.template.is_none(), "{} carries a template", w.metric);
                continue;
            }
            let t = w.template.expect("a template window names its template");
            assert!(t.exemplars.len() <= EXEMPLARS);
            let shipped: &mut Shipped = per_series.entry(w.metric).or_default();
            shipped.lines += w.count;
            shipped.text = t.text;
            shipped.exemplars.extend(t.exemplars);
        }
        p.store().outbox_remove(seq).unwrap();
    }
    per_series
}

#[test]
fn template_series_are_the_same_with_and_without_a_crash() {
    let (Some(hdfs), Some(ssh)) = (loghub("HDFS/HDFS_2k.log"), loghub("OpenSSH/OpenSSH_2k.log"))
    else {
        return;
    };
    let lines: Vec<String> = hdfs
        .into_iter()
        .zip(ssh)
        .flat_map(|(a, b)| [a, b])
        .collect();
    let input = deliveries(&lines);
    let reference = {
        let dir = tempfile::tempdir().unwrap();
        let mut p =
            Pipeline::open(&settings(dir.path()), stage(), Arc::new(Notify::new())).unwrap();
        p.ingest(&input, Instant::now()).unwrap();
        drain(&mut p)
    };
    assert!(
        reference.len() > 5,
        "too few templates to mean anything: {reference:?}"
    );
    let ipv4 = regex::Regex::new(r"\d+\.\d+\.\d+\.\d+").unwrap();
    for (series, s) in &reference {
        assert!(
            !s.text.is_empty(),
            "{series}: the template text is missing: {s:?}"
        );
        assert_eq!(
            s.exemplars.len() as u64,
            s.lines.min(EXEMPLARS as u64),
            "{series}"
        );
        for e in &s.exemplars {
            assert!(!ipv4.is_match(e), "{series}: an IP left the gateway: {e}");
        }
    }
    assert!(
        reference
            .values()
            .flat_map(|s| &s.exemplars)
            .any(|e| e.contains("<ip>")),
        "OpenSSH lines name hosts: some exemplar must show a redaction"
    );
    for crash_after in [1, 30, 77] {
        let dir = tempfile::tempdir().unwrap();
        let s = settings(dir.path());
        {
            let mut p = Pipeline::open(&s, stage(), Arc::new(Notify::new())).unwrap();
            for chunk in input[..crash_after].chunks(5) {
                p.ingest(chunk, Instant::now()).unwrap();
            }
            // Dropped without closing anything: only the commits survive.
        }
        let mut p = Pipeline::open(&s, stage(), Arc::new(Notify::new())).unwrap();
        p.ingest(&input[crash_after..], Instant::now()).unwrap();
        assert_eq!(
            drain(&mut p),
            reference,
            "crash after {crash_after} deliveries"
        );
    }
}
