//! Reads plain-text log files (e.g. Loghub samples) into the lines the simulator publishes.
//!
//! It strips CR/LF and skips empty lines; it does not parse or template the lines.

use std::path::{Path, PathBuf};

use thiserror::Error;

/// A log file could not be read.
#[derive(Debug, Error)]
#[error("log file {path}: {source}")]
pub struct LogReadError {
    /// The file.
    pub path: PathBuf,
    /// The underlying error.
    pub source: std::io::Error,
}

/// The non-empty lines of `path` (CR/LF stripped, invalid UTF-8 replaced), at most `limit`.
pub fn read_log_lines(path: &Path, limit: Option<usize>) -> Result<Vec<String>, LogReadError> {
    let bytes = std::fs::read(path).map_err(|source| LogReadError {
        path: path.to_path_buf(),
        source,
    })?;
    let lines = bytes
        .split(|b| *b == b'\n')
        .map(|raw| {
            let end = raw.iter().rposition(|b| *b != b'\r').map_or(0, |i| i + 1);
            String::from_utf8_lossy(&raw[..end]).into_owned()
        })
        .filter(|line| !line.is_empty())
        .take(limit.unwrap_or(usize::MAX))
        .collect();
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_crlf_and_skips_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.log");
        std::fs::write(&path, b"a b\r\n\r\n\nc\r\nlast").unwrap();
        assert_eq!(read_log_lines(&path, None).unwrap(), ["a b", "c", "last"]);
        assert_eq!(read_log_lines(&path, Some(2)).unwrap(), ["a b", "c"]);
    }
}
