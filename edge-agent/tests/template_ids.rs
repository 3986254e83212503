//! Template ids survive a crash: lines mined before and after a drop of the pipeline (what
//! `kill -9` leaves: only what was committed) name the same template series as one
//! uninterrupted run. Reads Loghub's HDFS and OpenSSH samples in place.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use edge_agent::classify::templates::{TemplateStage, TEMPLATE_PREFIX};
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
    })
}

fn stage() -> ClassifyStage {
    ClassifyStage::default().with_templates(TemplateStage::new(MinerConfig::default()).unwrap())
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

/// Lines per template series in everything the outbox holds after closing all windows.
fn drain(p: &mut Pipeline) -> BTreeMap<String, u64> {
    p.tick(Instant::now() + Duration::from_secs(3600)).unwrap();
    let mut per_series = BTreeMap::new();
    while let Some((seq, bytes)) = p.store().outbox_first().unwrap() {
        let (_, body) = Envelope::open(&bytes).unwrap();
        for w in body.windows {
            let is_count = w.metric.starts_with(TEMPLATE_PREFIX) && !w.metric.contains(".p");
            if is_count {
                *per_series.entry(w.metric).or_default() += w.count;
            }
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
