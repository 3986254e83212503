//! The template miner's acceptance on Loghub: every system at least Drain's published GA and
//! a mean GA of at least 0.95; and our scoring equals the official `loghub_ga.py`.
//!
//! Skips (with the reason printed) when the Loghub data or python3 is absent.

use edge_agent::logmine::MinerConfig;
use hil_tests::loghub_eval::{
    acceptance_failures, discover, evaluate, markdown_table, mean_ga, run_official, run_system,
    write_predictions,
};

fn loghub() -> Option<std::path::PathBuf> {
    let dir = hil_tests::paths::data_dir().join("loghub");
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!("skipped: no Loghub data at {}", dir.display());
        None
    }
}

#[test]
fn every_system_beats_drain_and_the_mean_reaches_095() {
    let Some(dir) = loghub() else { return };
    let results = evaluate(&dir, &MinerConfig::default()).expect("evaluation runs");
    assert!(!results.is_empty(), "no systems under {}", dir.display());
    println!("{}", markdown_table(&results));
    let failures = acceptance_failures(&results);
    assert!(
        failures.is_empty(),
        "mean GA {:.4}; {failures:#?}",
        mean_ga(&results)
    );
}

#[test]
fn our_scores_equal_the_official_scorer() {
    let Some(dir) = loghub() else { return };
    let scorer = hil_tests::paths::workspace_root().join("../shared/eval/loghub_ga.py");
    if !scorer.is_file() {
        eprintln!("skipped: no official scorer at {}", scorer.display());
        return;
    }
    let out = tempfile::tempdir().expect("tempdir");
    let systems = discover(&dir).expect("systems");
    let mut compared = 0;
    // Two systems with imperfect grouping, so precision and recall are not trivially 1.
    for system in systems
        .iter()
        .filter(|s| s.name == "Linux" || s.name == "Hadoop")
    {
        let result = run_system(system, &MinerConfig::default()).expect("runs");
        let pred = write_predictions(out.path(), &result).expect("written");
        match run_official(&scorer, &system.structured, &pred).expect("scorer runs") {
            Some(official) => {
                assert_eq!(official, result.scores.official_line(), "{}", system.name);
                compared += 1;
            }
            None => {
                eprintln!("skipped: python3 not found");
                return;
            }
        }
    }
    assert!(
        compared > 0,
        "neither Linux nor Hadoop found under {}",
        dir.display()
    );
}
