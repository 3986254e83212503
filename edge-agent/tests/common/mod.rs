//! What the pipeline tests share: the demo config, adjusted per test and validated.

use std::path::Path;

use edge_agent::config::{AgentConfig, Settings};

/// `configs/demo.toml` with its store in `dir`, changed by `edit`, validated.
pub fn demo_settings(dir: &Path, edit: impl FnOnce(&mut AgentConfig)) -> Settings {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../configs/demo.toml"))
            .unwrap();
    let mut config = AgentConfig::parse(&text).unwrap();
    config.data_dir = dir.to_owned();
    edit(&mut config);
    config.validate().unwrap()
}
