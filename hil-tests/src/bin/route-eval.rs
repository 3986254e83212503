//! `route-eval`: how much a confidence threshold keeps on the gateway, and what routing costs in F1.
//!
//! A thin CLI over `hil_tests::route_eval`; it tunes no model and changes no data.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Parser;
use hil_tests::route_eval::{bgl_events, markdown, route, skab_events, MAX_F1_GAP, MIN_LOCAL};

/// Evaluate hybrid routing (student on the gateway, teacher in the cloud) on SKAB and BGL.
///
/// Both shipped models of each kind judge every event through the agent's Rust path; an event
/// whose student confidence is below the threshold takes the teacher's verdict. Printed per
/// dataset: student-alone and teacher-alone F1, then per candidate threshold (the student's
/// confidence quantiles 0–50%) the share decided locally and the routed F1. The chosen
/// threshold is the best routed F1 among those deciding at least 80% locally; `--check`
/// fails unless it is within 0.5 F1 point of the teacher. SKAB F1 is point-wise over the
/// scored rows (calibration rows excluded); BGL F1 is line-wise alert vs. `Label`, on the
/// lines the log models were trained on (in-sample for both models alike).
///
/// Examples:
///   route-eval
///   route-eval --check
#[derive(Debug, Parser)]
#[command(name = "route-eval", version, verbatim_doc_comment)]
struct Cli {
    /// Data folder holding SKAB/ and loghub/; default <workspace>/../shared/data (or $EDGE_DATA_DIR).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Models folder; default <workspace>/models.
    #[arg(long)]
    models: Option<PathBuf>,
    /// Exit non-zero unless each chosen threshold meets both targets.
    #[arg(long)]
    check: bool,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let data = cli.data_dir.unwrap_or_else(hil_tests::paths::data_dir);
    let models = cli
        .models
        .unwrap_or_else(|| hil_tests::paths::workspace_root().join("models"));
    let skab = skab_events(&data.join("SKAB"), &models).context("SKAB")?;
    let bgl_csv = data.join("loghub/BGL/BGL_first1000.log_structured.csv");
    let bgl = bgl_events(&bgl_csv, &models).with_context(|| bgl_csv.display().to_string())?;
    let mut failed = Vec::new();
    for (name, events) in [("SKAB (sensor)", skab), ("BGL (log alerts)", bgl)] {
        let table = route(&events);
        println!("{}", markdown(name, &table));
        if !table.meets_targets() {
            failed.push(name);
        }
    }
    println!(
        "targets: at least {:.0}% decided locally, routed F1 within {:.1} point of the teacher",
        100.0 * MIN_LOCAL,
        100.0 * MAX_F1_GAP
    );
    if cli.check && !failed.is_empty() {
        bail!("targets missed on {}", failed.join(", "));
    }
    Ok(())
}
