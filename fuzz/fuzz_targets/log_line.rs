//! Fuzz target: the log recipe's header stripper, featurizer and judge on arbitrary text, with the recipe from `models/log/student_int8.json` (read once at start); the checks live in `edge_agent::fuzzing`, not here.
#![no_main]

use std::sync::LazyLock;

use edge_agent::classify::log_recipe::LogRecipe;
use libfuzzer_sys::fuzz_target;

const SIDECAR: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../models/log/student_int8.json"
);

static RECIPE: LazyLock<LogRecipe> = LazyLock::new(|| {
    let text = std::fs::read_to_string(SIDECAR).unwrap_or_else(|e| panic!("{SIDECAR}: {e}"));
    LogRecipe::from_json(&text).unwrap_or_else(|e| panic!("{SIDECAR}: {e}"))
});

fuzz_target!(|data: &[u8]| edge_agent::fuzzing::log_line(&RECIPE, data));
