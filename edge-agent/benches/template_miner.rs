//! Throughput of the log template miner on the Loghub samples, single core, and the memory it
//! holds per 1,000 templates (the miner's own byte accounting, printed once).
//!
//! Reads `../shared/data/loghub/*/*_structured.csv` in place (override the data folder with
//! EDGE_DATA_DIR); skips with a message when absent. Two measures:
//! - `cold/<System>`: a fresh miner over the system's lines (template discovery included);
//! - `warm/all`: one miner that has seen every system, mining all lines again (steady state).

use std::path::{Path, PathBuf};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use edge_agent::logmine::{MinerConfig, TemplateMiner};

fn data_dir() -> PathBuf {
    std::env::var_os("EDGE_DATA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data"))
}

/// The fields of one CSV record (quotes and doubled quotes handled; no embedded newlines).
fn fields(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => out.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    out.push(cur);
    out
}

/// The `Content` column of a structured CSV.
fn contents(path: &Path) -> Option<Vec<String>> {
    let bytes = std::fs::read(path).ok()?;
    let text = String::from_utf8_lossy(&bytes);
    let mut lines = text.lines();
    let header = fields(lines.next()?);
    let col = header.iter().position(|h| h == "Content")?;
    Some(
        lines
            .filter(|l| !l.is_empty())
            .filter_map(|l| fields(l).into_iter().nth(col))
            .collect(),
    )
}

fn systems() -> Vec<(String, Vec<String>)> {
    let root = data_dir().join("loghub");
    let Ok(entries) = std::fs::read_dir(&root) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for dir in entries.flatten().map(|e| e.path()).filter(|p| p.is_dir()) {
        let Ok(files) = std::fs::read_dir(&dir) else {
            continue;
        };
        let csv = files
            .flatten()
            .map(|e| e.path())
            .find(|p| p.to_string_lossy().ends_with("_structured.csv"));
        if let Some(lines) = csv.as_deref().and_then(contents) {
            let name = dir.file_name().map(|n| n.to_string_lossy().into_owned());
            out.push((name.unwrap_or_default(), lines));
        }
    }
    out.sort();
    out
}

fn miner() -> TemplateMiner {
    TemplateMiner::new(MinerConfig::default()).expect("the default config is valid")
}

fn bench(c: &mut Criterion) {
    let systems = systems();
    if systems.is_empty() {
        eprintln!(
            "template_miner: skipped, no Loghub data under {}",
            data_dir().join("loghub").display()
        );
        return;
    }
    let all: Vec<&str> = systems
        .iter()
        .flat_map(|(_, l)| l.iter().map(String::as_str))
        .collect();

    // Memory: one miner per system (as in the evaluation), summed.
    let (mut templates, mut tbytes, mut bytes) = (0usize, 0usize, 0usize);
    for (_, lines) in &systems {
        let mut m = miner();
        for l in lines {
            m.mine(l);
        }
        let s = m.stats();
        templates += s.templates;
        tbytes += s.template_bytes;
        bytes += s.bytes;
    }
    eprintln!(
        "template_miner memory: {templates} templates over {} systems; template data {} B = \
         {:.1} KiB per 1,000 templates; with line cache and aliases {:.1} KiB per 1,000",
        systems.len(),
        tbytes,
        tbytes as f64 / templates as f64 * 1000.0 / 1024.0,
        bytes as f64 / templates as f64 * 1000.0 / 1024.0,
    );

    let mut cold = c.benchmark_group("cold");
    for (name, lines) in &systems {
        cold.throughput(Throughput::Elements(lines.len() as u64));
        cold.bench_function(name.as_str(), |b| {
            b.iter(|| {
                let mut m = miner();
                let mut acc = 0u64;
                for l in lines {
                    acc = acc.wrapping_add(u64::from(m.mine(l).id));
                }
                acc
            })
        });
    }
    cold.finish();

    let mut warm = c.benchmark_group("warm");
    let mut m = miner();
    for l in &all {
        m.mine(l);
    }
    warm.throughput(Throughput::Elements(all.len() as u64));
    warm.bench_function("all", |b| {
        b.iter(|| {
            let mut acc = 0u64;
            for l in &all {
                acc = acc.wrapping_add(u64::from(m.mine(l).id));
            }
            acc
        })
    });
    warm.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
