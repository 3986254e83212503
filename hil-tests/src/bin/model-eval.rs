//! `model-eval`: scores a sensor model on SKAB through the agent's Rust classify path.
//!
//! A thin CLI over `hil_tests::skab_eval`; it trains nothing and changes no model.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context};
use clap::Parser;
use hil_tests::skab_eval::{confusion, evaluate, write_predictions};

/// Evaluate a sensor model on SKAB with the leaderboard protocol, in Rust.
///
/// Every labelled SKAB file is replayed as one new device through the same code the
/// agent runs (calibration on the first rows, recipe features, batched tract inference,
/// per-device threshold). Predictions are written one CSV per file (`datetime,anomaly`,
/// calibration rows 0) and scored twice: here, and by the official
/// `../shared/eval/skab_score.py` (run with python3) when it is present. The first 400
/// rows of each file are not scored (leaderboard protocol).
///
/// Example:
///   model-eval --model models/sensor/student_int8.onnx --out /tmp/skab-preds
#[derive(Debug, Parser)]
#[command(name = "model-eval", version, verbatim_doc_comment)]
struct Cli {
    /// The ONNX model.
    #[arg(long, default_value = "models/sensor/student_int8.onnx")]
    model: PathBuf,
    /// Its recipe sidecar; default: the model path with extension .json.
    #[arg(long)]
    recipe: Option<PathBuf>,
    /// SKAB folder (holding data/); default <workspace>/../shared/data/SKAB.
    #[arg(long)]
    skab_dir: Option<PathBuf>,
    /// Where to write the predictions.
    #[arg(long, default_value = "var/skab-predictions")]
    out: PathBuf,
    /// The official scorer; skipped with a note if missing.
    #[arg(long)]
    scorer: Option<PathBuf>,
    /// Print one line per file too.
    #[arg(long)]
    per_file: bool,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let skab = cli.skab_dir.unwrap_or_else(hil_tests::paths::skab_dir);
    let recipe = cli
        .recipe
        .unwrap_or_else(|| cli.model.with_extension("json"));
    let started = std::time::Instant::now();
    let files = evaluate(&skab, &cli.model, &recipe)
        .with_context(|| format!("evaluating {} on {}", cli.model.display(), skab.display()))?;
    if files.is_empty() {
        bail!("no labelled SKAB files below {}", skab.display());
    }
    if cli.out.exists() {
        std::fs::remove_dir_all(&cli.out)
            .with_context(|| format!("clearing {}", cli.out.display()))?;
    }
    write_predictions(&cli.out, &files)?;
    if cli.per_file {
        for f in &files {
            let c = confusion(std::slice::from_ref(f), 400);
            println!(
                "{:<16} TP={:<5} FP={:<5} FN={:<5} TN={:<5}",
                f.rel.display(),
                c.tp,
                c.fp,
                c.fn_,
                c.tn
            );
        }
    }
    let c = confusion(&files, 400);
    println!(
        "rust path: model={} files={} TP={} FP={} FN={} TN={} F1={:.3} FAR={:.2} MAR={:.2} ({:.1}s)",
        cli.model.display(),
        files.len(),
        c.tp,
        c.fp,
        c.fn_,
        c.tn,
        c.f1(),
        c.far(),
        c.mar(),
        started.elapsed().as_secs_f64()
    );
    let scorer = cli
        .scorer
        .unwrap_or_else(|| hil_tests::paths::data_dir().join("../eval/skab_score.py"));
    if !scorer.exists() {
        println!("official scorer not found at {}; skipped", scorer.display());
        return Ok(());
    }
    let data = if skab.join("data").is_dir() {
        skab.join("data")
    } else {
        skab
    };
    let out = Command::new("python3")
        .arg(&scorer)
        .arg(&data)
        .arg(&cli.out)
        .output()
        .context("running python3 with the official scorer")?;
    if !out.status.success() {
        bail!(
            "official scorer failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    print!("official scorer: {}", String::from_utf8_lossy(&out.stdout));
    Ok(())
}
