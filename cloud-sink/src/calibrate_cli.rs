//! The `cloud-sink calibrate` command's body: open a stopped sink's store (or
//! the PostgreSQL store its config names), collect its escalations, run
//! [`cloud_sink::calibrate`], print the result.
//!
//! Binary-only (anyhow errors, stdout); the arithmetic lives in the library
//! and is tested there. It never writes to the store.

use anyhow::Context;
use cloud_sink::agreement::Row;
use cloud_sink::calibrate::{calibrate, Outcome, SeriesCalibration, Tally};
use cloud_sink::{Backend, EmbeddedStore, SinkConfig, SinkStore};

use crate::CalibrateArgs;

/// Runs the command.
pub fn run(args: &CalibrateArgs) -> anyhow::Result<()> {
    let (rows, source) = match (&args.config, &args.data) {
        (Some(path), _) => {
            let config = SinkConfig::load(path)?;
            if config.store.backend == Backend::Embedded {
                (
                    embedded_rows(&config.data_dir, args)?,
                    config.data_dir.display().to_string(),
                )
            } else {
                (postgres_rows(&config, args)?, SinkStore::describe(&config))
            }
        }
        (None, Some(dir)) => (embedded_rows(dir, args)?, dir.display().to_string()),
        (None, None) => anyhow::bail!("give --data DIR or --config FILE"),
    };
    let result = calibrate(&rows, args.min_agreement, args.min_rows);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&result)?);
        return Ok(());
    }
    println!(
        "{} escalations in {}; target: rows decided locally agree with the teacher >= {:.2}% (at least {} rows)",
        rows.len(),
        source,
        100.0 * args.min_agreement,
        args.min_rows
    );
    if result.is_empty() {
        println!(
            "nothing to calibrate: no escalations stored (is escalate_below set on the gateways?)"
        );
    }
    for c in &result {
        print_series(c, args);
    }
    println!(
        "note: rows at or above a gateway's current escalate_below are never escalated, so the \
         sink cannot measure them; these numbers can only justify LOWERING the threshold."
    );
    Ok(())
}

/// Every escalation's agreement row from a stopped sink's sled directory.
fn embedded_rows(dir: &std::path::Path, args: &CalibrateArgs) -> anyhow::Result<Vec<Row>> {
    if !dir.is_dir() {
        anyhow::bail!(
            "{}: not a directory (give the sink's data_dir)",
            dir.display()
        );
    }
    let store = EmbeddedStore::open(dir).with_context(|| {
        format!(
            "opening the store in {} (is the sink still running? stop it first)",
            dir.display()
        )
    })?;
    let mut rows = Vec::new();
    store
        .for_each_escalation(args.gateway.as_deref(), None, |e| rows.push(Row::from(&e)))
        .context("reading escalations")?;
    Ok(rows)
}

/// Every escalation's agreement row from the PostgreSQL store of `config`.
fn postgres_rows(config: &SinkConfig, args: &CalibrateArgs) -> anyhow::Result<Vec<Row>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let store = SinkStore::open(config)
            .await
            .with_context(|| format!("opening {}", SinkStore::describe(config)))?;
        let rows = store
            .agreement_rows(args.gateway.clone(), None, None)
            .await
            .context("reading escalations")?;
        store.close().await?;
        Ok(rows)
    })
}

fn pct(t: &Tally) -> String {
    t.rate()
        .map_or_else(|| "-".to_owned(), |r| format!("{:.2}%", 100.0 * r))
}

fn print_series(c: &SeriesCalibration, args: &CalibrateArgs) {
    let range = c.confidence_range.map_or_else(String::new, |[lo, hi]| {
        format!(", confidence {lo:.4}..{hi:.4}")
    });
    println!(
        "series {:?}: {} escalations, {} judged by the teacher, agreement {} ({}/{}){range}",
        c.series,
        c.escalations,
        c.judged.rows,
        pct(&c.judged),
        c.judged.agree,
        c.judged.rows
    );
    match &c.outcome {
        Outcome::Suggest {
            escalate_below,
            at_or_above,
            below,
        } => {
            println!("  suggested escalate_below = {escalate_below:.4}");
            println!(
                "    at or above it: {} rows agree {} ({}/{}), 95% lower bound {:.2}%: decided locally",
                at_or_above.rows,
                pct(at_or_above),
                at_or_above.agree,
                at_or_above.rows,
                100.0 * at_or_above.lower_bound()
            );
            println!(
                "    below it:       {} rows agree {} ({}/{}): still escalated",
                below.rows,
                pct(below),
                below.agree,
                below.rows
            );
            if below.rows == 0 {
                println!(
                    "    every judged row meets the target: escalation adds nothing the teacher \
                     disagreed with in this data"
                );
            }
        }
        Outcome::TooFew => println!(
            "  no suggestion: fewer than {} judged rows; keep the current escalate_below",
            args.min_rows
        ),
        Outcome::Unreachable => println!(
            "  no suggestion: no threshold reaches {:.2}% with at least {} rows; keep the current escalate_below",
            100.0 * args.min_agreement,
            args.min_rows
        ),
    }
}
