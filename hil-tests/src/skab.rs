//! Reads SKAB water-pump CSV files (`;`-separated) into timestamped sensor rows.
//!
//! It parses timestamps (as UTC) and the sensor columns; it ignores the `anomaly` and
//! `changepoint` labels and does not resample, shift or validate the time axis.

use std::path::{Path, PathBuf};

use thiserror::Error;

/// Columns that are not sensor metrics.
const NON_METRIC_COLUMNS: [&str; 3] = ["datetime", "anomaly", "changepoint"];

/// A failure to list or read SKAB files, with the file (and line) it happened at.
#[derive(Debug, Error)]
pub enum SkabError {
    /// A directory or file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The path being read.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The CSV itself (or its header) is unusable.
    #[error("{path}:{line}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based line number (1 = header).
        line: u64,
        /// What was wrong.
        message: String,
    },
}

/// One row: epoch milliseconds (UTC) and `(metric = column name, value)` in column order.
#[derive(Debug, Clone, PartialEq)]
pub struct SkabRow {
    /// Row time, milliseconds since the Unix epoch, UTC.
    pub ts_ms: i64,
    /// Sensor values in column order.
    pub values: Vec<(String, f64)>,
}

/// A whole SKAB file.
#[derive(Debug, Clone, PartialEq)]
pub struct SkabFile {
    /// The file read.
    pub path: PathBuf,
    /// Its rows in file order.
    pub rows: Vec<SkabRow>,
}

/// All `*.csv` files below `<skab_dir>/data` (or below `skab_dir` itself when it has no
/// `data` folder), sorted by their path relative to that folder.
pub fn list_files(skab_dir: &Path) -> Result<Vec<PathBuf>, SkabError> {
    let root = if skab_dir.join("data").is_dir() {
        skab_dir.join("data")
    } else {
        skab_dir.to_path_buf()
    };
    let mut found = Vec::new();
    collect_csv(&root, &mut found)?;
    found.sort_by(|a, b| {
        let ra = a.strip_prefix(&root).unwrap_or(a);
        let rb = b.strip_prefix(&root).unwrap_or(b);
        ra.cmp(rb)
    });
    Ok(found)
}

fn collect_csv(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), SkabError> {
    let io = |source| SkabError::Io {
        path: dir.to_path_buf(),
        source,
    };
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        if path.is_dir() {
            collect_csv(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "csv") {
            out.push(path);
        }
    }
    Ok(())
}

/// Reads one SKAB file. Every sensor value must be a finite number.
pub fn read_file(path: &Path) -> Result<SkabFile, SkabError> {
    let parse_err = |line: u64, message: String| SkabError::Parse {
        path: path.to_path_buf(),
        line,
        message,
    };
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(b';')
        .has_headers(true)
        .from_path(path)
        .map_err(|e| parse_err(1, e.to_string()))?;
    let headers = reader
        .headers()
        .map_err(|e| parse_err(1, e.to_string()))?
        .clone();
    let ts_col = headers
        .iter()
        .position(|h| h == "datetime")
        .ok_or_else(|| parse_err(1, "no `datetime` column".into()))?;
    let metric_cols: Vec<(usize, String)> = headers
        .iter()
        .enumerate()
        .filter(|(_, h)| !NON_METRIC_COLUMNS.contains(h))
        .map(|(i, h)| (i, h.to_owned()))
        .collect();
    if metric_cols.is_empty() {
        return Err(parse_err(1, "no sensor columns".into()));
    }

    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| {
            let line = e.position().map_or(0, |p| p.line());
            parse_err(line, e.to_string())
        })?;
        let line = record.position().map_or(0, |p| p.line());
        let ts_text = record.get(ts_col).unwrap_or_default();
        let ts_ms = parse_datetime_ms(ts_text)
            .ok_or_else(|| parse_err(line, format!("bad datetime {ts_text:?}")))?;
        let mut values = Vec::with_capacity(metric_cols.len());
        for (col, name) in &metric_cols {
            let text = record.get(*col).unwrap_or_default().trim();
            let value: f64 = text
                .parse()
                .map_err(|_| parse_err(line, format!("column {name:?}: bad number {text:?}")))?;
            if !value.is_finite() {
                return Err(parse_err(
                    line,
                    format!("column {name:?}: non-finite {text:?}"),
                ));
            }
            values.push((name.clone(), value));
        }
        rows.push(SkabRow { ts_ms, values });
    }
    Ok(SkabFile {
        path: path.to_path_buf(),
        rows,
    })
}

/// Parses `YYYY-MM-DD HH:MM:SS` (optionally with `T` and fractional seconds) as UTC epoch ms.
pub fn parse_datetime_ms(text: &str) -> Option<i64> {
    let text = text.trim();
    let (date, time) = text.split_once([' ', 'T'])?;
    let mut d = date.splitn(3, '-');
    let year: i64 = d.next()?.parse().ok()?;
    let month: u32 = d.next()?.parse().ok()?;
    let day: u32 = d.next()?.parse().ok()?;
    let mut t = time.splitn(3, ':');
    let hour: i64 = t.next()?.parse().ok()?;
    let minute: i64 = t.next()?.parse().ok()?;
    let sec_text = t.next()?;
    let (whole, frac) = sec_text.split_once('.').unwrap_or((sec_text, ""));
    let second: i64 = whole.parse().ok()?;
    let millis: i64 = if frac.is_empty() {
        0
    } else {
        let digits: String = frac.chars().chain("000".chars()).take(3).collect();
        digits.parse().ok()?
    };
    let valid = (1..=12).contains(&month)
        && (1..=31).contains(&day)
        && (0..24).contains(&hour)
        && (0..60).contains(&minute)
        && (0..=60).contains(&second);
    if !valid {
        return None;
    }
    let days = days_from_civil(year, month, day);
    Some(((days * 24 + hour) * 60 + minute) * 60_000 + second * 1000 + millis)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(1969, 12, 31), -1);
        // 2020-03-09 10:14:33 UTC = 1583748873 s.
        assert_eq!(
            parse_datetime_ms("2020-03-09 10:14:33"),
            Some(1_583_748_873_000)
        );
        assert_eq!(parse_datetime_ms("2020-13-09 10:14:33"), None);
        assert_eq!(parse_datetime_ms("garbage"), None);
    }
}
