//! Locates the workspace root and the shared, read-only evaluation data.
//!
//! It only computes paths; it does not check that the data exists or read it.

use std::path::PathBuf;

/// Environment variable that overrides the shared data location.
pub const DATA_DIR_ENV: &str = "EDGE_DATA_DIR";

/// The workspace root: the parent of this crate's manifest directory.
pub fn workspace_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(PathBuf::from).unwrap_or(manifest)
}

/// The shared data directory (`<workspace root>/../shared/data`), or `$EDGE_DATA_DIR` when set.
///
/// The data is read in place; nothing here copies it into the repository.
pub fn data_dir() -> PathBuf {
    match std::env::var_os(DATA_DIR_ENV) {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => workspace_root().join("..").join("shared").join("data"),
    }
}

/// The SKAB dataset root (`<data dir>/SKAB`).
pub fn skab_dir() -> PathBuf {
    data_dir().join("SKAB")
}
