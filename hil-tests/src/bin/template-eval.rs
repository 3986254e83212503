//! `template-eval`: scores the agent's log template miner on every Loghub system.
//!
//! A thin CLI over `hil_tests::loghub_eval`; it tunes nothing and changes no data.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Parser;
use edge_agent::logmine::MinerConfig;
use hil_tests::loghub_eval::{
    acceptance_failures, evaluate, markdown_table, run_official, write_predictions,
};

/// Evaluate the online log template miner on the Loghub samples.
///
/// Every folder of the Loghub data that holds a `*_structured.csv` is one system. Its
/// `Content` column (Loghub's own header split) is fed to ONE fresh miner with the default
/// configuration, line by line in file order, in one pass: the same code and settings the
/// agent runs, nothing tuned per system. Each line's group is its template id resolved
/// through the merges made up to the end of the stream.
///
/// Printed per system: lines, ground-truth groups, our groups, grouping accuracy (GA: a line
/// counts iff its group holds exactly the lines of one ground-truth group), pairwise F1,
/// GA against the ICSE'22 corrected ground truth where `corrected/` exists, and the
/// published Drain and Brain GA. Scores are computed here exactly as
/// `../shared/eval/loghub_ga.py` computes them; predictions are written as `LineId,Group`
/// CSVs so that script can check them (`--official` runs it too).
///
/// Examples:
///   template-eval                       # table over ../shared/data/loghub
///   template-eval --check --official    # exit 1 unless every system >= Drain and mean >= 0.95
///   template-eval --data-dir /data/loghub --out /tmp/preds --templates
#[derive(Debug, Parser)]
#[command(name = "template-eval", version, verbatim_doc_comment)]
struct Cli {
    /// Loghub folder (one sub-folder per system); default <workspace>/../shared/data/loghub
    /// (or $EDGE_DATA_DIR/loghub).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Where to write `<System>_predictions.csv` (LineId,Group).
    #[arg(long, default_value = "var/loghub-predictions")]
    out: PathBuf,
    /// Exit non-zero if a system is below Drain's published GA or the mean GA < 0.95.
    #[arg(long)]
    check: bool,
    /// Also run the official scorer (python3) on each predictions file and show its line.
    #[arg(long)]
    official: bool,
    /// The official scorer; default <workspace>/../shared/eval/loghub_ga.py.
    #[arg(long)]
    scorer: Option<PathBuf>,
    /// Print each system's templates (id, lines, text) after the table.
    #[arg(long)]
    templates: bool,
    /// Only these systems (repeatable), e.g. --system Linux --system HDFS.
    #[arg(long = "system")]
    systems: Vec<String>,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let loghub = cli
        .data_dir
        .unwrap_or_else(|| hil_tests::paths::data_dir().join("loghub"));
    let cfg = MinerConfig::default();
    let mut results =
        evaluate(&loghub, &cfg).with_context(|| format!("evaluating {}", loghub.display()))?;
    if !cli.systems.is_empty() {
        results.retain(|r| cli.systems.contains(&r.system.name));
    }
    if results.is_empty() {
        bail!(
            "no Loghub systems (folders with *_structured.csv) under {}",
            loghub.display()
        );
    }
    println!("{}", markdown_table(&results));

    let lines: usize = results.iter().map(|r| r.scores.lines).sum();
    let secs: f64 = results.iter().map(|r| r.elapsed.as_secs_f64()).sum();
    let templates: usize = results.iter().map(|r| r.stats.templates).sum();
    let template_bytes: usize = results.iter().map(|r| r.stats.template_bytes).sum();
    let bytes: usize = results.iter().map(|r| r.stats.bytes).sum();
    println!(
        "miner: {lines} lines in {:.1} ms ({:.0} lines/s, cold miners, this build's profile); \
         {templates} templates held, {} B of template data (miner's own accounting) = {:.0} KiB \
         per 1,000 templates; {:.0} KiB per 1,000 templates with line cache and aliases",
        secs * 1e3,
        lines as f64 / secs.max(1e-9),
        template_bytes,
        template_bytes as f64 / templates.max(1) as f64 * 1000.0 / 1024.0,
        bytes as f64 / templates.max(1) as f64 * 1000.0 / 1024.0,
    );

    for r in &results {
        let path = write_predictions(&cli.out, r)?;
        if cli.official {
            let scorer = cli.scorer.clone().unwrap_or_else(|| {
                hil_tests::paths::workspace_root().join("../shared/eval/loghub_ga.py")
            });
            match run_official(&scorer, &r.system.structured, &path)? {
                Some(line) => {
                    let ours = r.scores.official_line();
                    let same = if line == ours { "same" } else { "DIFFERENT" };
                    println!("{:<10} official: {line}  [{same} as ours]", r.system.name);
                }
                None => println!(
                    "{:<10} official: skipped (python3 not found)",
                    r.system.name
                ),
            }
        }
    }
    println!("predictions: {}", cli.out.display());

    if cli.templates {
        for r in &results {
            println!("\n## {} templates", r.system.name);
            for (id, lines, text) in &r.templates {
                println!("{id:>6} {lines:>6}  {text}");
            }
        }
    }

    if cli.check {
        let failures = acceptance_failures(&results);
        if !failures.is_empty() {
            for f in &failures {
                eprintln!("check failed: {f}");
            }
            std::process::exit(1);
        }
        println!("check: every system >= Drain's published GA, mean GA >= 0.95");
    }
    Ok(())
}
