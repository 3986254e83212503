//! The log-line model's feature recipe: header stripping, hashed token features, verdicts from scores (it holds no model and does no I/O).
//!
//! Mirrors `models/log/common.py` byte for byte (see its docstring for the
//! recipe); the sidecar `models/log/<model>.json` carries the constants and is
//! validated here, so a recipe this code does not implement is a load error,
//! not silently different features. Features are computed from the CONTENT of
//! a line; [`LogRecipe::content`] strips a typical header heuristically. It
//! does not run the model (see `crate::model::ScoreModel`), mine templates, or
//! decide routing; [`LogRecipe::judge`] only turns one row of model outputs
//! into a [`LogJudgement`].

use serde::Deserialize;

/// Why a log sidecar could not be used.
#[derive(Debug, thiserror::Error)]
pub enum LogRecipeError {
    #[error("log recipe: sidecar is not valid JSON for this version: {0}")]
    Parse(#[from] serde_json::Error),
    #[error("log recipe: kind is {0:?}, expected \"log\"")]
    Kind(String),
    #[error("log recipe: {field} is {got:?}, this build implements only {expected:?}")]
    Unsupported {
        field: &'static str,
        got: String,
        expected: String,
    },
    #[error("log recipe: {0}")]
    Invalid(String),
}

const NUMERIC: [&str; 6] = [
    "ln1p_bytes_over_8",
    "ln1p_tokens_over_5",
    "masked_fraction",
    "upper_fraction",
    "non_ascii_fraction",
    "empty",
];
const MASKS: [&str; 5] = [
    "long:<long>",
    "digits:<num>",
    "0x_hex:<hex>",
    "hex6_mixed:<hex>",
    "digit_runs:0",
];
const FNV_OFFSET: u32 = 0x811c_9dc5;
const FNV_PRIME: u32 = 0x0100_0193;
/// Header parsing looks at most this far into a line.
const HEADER_SCAN: usize = 256;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Features {
    hash_dim: usize,
    hash: String,
    hash_sign: String,
    bigrams: bool,
    cap_bytes: usize,
    max_tokens: usize,
    long_token: usize,
    lowercase: String,
    token_bytes: String,
    masks: Vec<String>,
    normalize: String,
    numeric: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Sidecar {
    kind: String,
    model: String,
    width: usize,
    outputs: usize,
    alert_column: usize,
    severity_names: Vec<String>,
    alert_threshold: f32,
    hidden: usize,
    features: Features,
}

/// A parsed, validated log sidecar (`models/log/<model>.json`).
#[derive(Debug, Clone)]
pub struct LogRecipe {
    hash_dim: usize,
    bigrams: bool,
    cap_bytes: usize,
    max_tokens: usize,
    long_token: usize,
    width: usize,
    outputs: usize,
    alert_column: usize,
    severity_names: Vec<String>,
    threshold: f32,
    model: String,
}

/// The verdict on one line.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LogJudgement {
    /// `alert_probability >= threshold` from the sidecar.
    pub alert: bool,
    pub alert_probability: f32,
    /// Index into [`LogRecipe::severity_names`] (the most probable class).
    pub severity: usize,
    /// `min(p(alert decision), p(severity))`, in `0..=1`; 0 for non-finite scores.
    pub confidence: f32,
}

fn unsupported(field: &'static str, got: &str, expected: &str) -> LogRecipeError {
    LogRecipeError::Unsupported {
        field,
        got: got.to_owned(),
        expected: expected.to_owned(),
    }
}

impl LogRecipe {
    /// Parses and validates a sidecar.
    pub fn from_json(text: &str) -> Result<LogRecipe, LogRecipeError> {
        let s: Sidecar = serde_json::from_str(text)?;
        let f = &s.features;
        if s.kind != "log" {
            return Err(LogRecipeError::Kind(s.kind));
        }
        for (field, got, want) in [
            ("features.hash", &f.hash, "fnv1a32"),
            ("features.hash_sign", &f.hash_sign, "bit31"),
            ("features.lowercase", &f.lowercase, "ascii"),
            (
                "features.token_bytes",
                &f.token_bytes,
                "ascii_alnum_or_non_ascii",
            ),
            ("features.normalize", &f.normalize, "l2_hashed_block"),
        ] {
            if got != want {
                return Err(unsupported(field, got, want));
            }
        }
        if f.masks != MASKS {
            return Err(unsupported(
                "features.masks",
                &f.masks.join(","),
                &MASKS.join(","),
            ));
        }
        if f.numeric != NUMERIC {
            return Err(unsupported(
                "features.numeric",
                &f.numeric.join(","),
                &NUMERIC.join(","),
            ));
        }
        let invalid = |m: String| Err(LogRecipeError::Invalid(m));
        if !(1..=1 << 20).contains(&f.hash_dim) {
            return invalid(format!("hash_dim {} not in 1..=1048576", f.hash_dim));
        }
        if f.cap_bytes == 0 || f.max_tokens == 0 || f.long_token == 0 {
            return invalid("cap_bytes, max_tokens and long_token must be positive".into());
        }
        if s.width != f.hash_dim + NUMERIC.len() {
            return invalid(format!(
                "width {} != hash_dim {} + {} numeric features",
                s.width,
                f.hash_dim,
                NUMERIC.len()
            ));
        }
        if s.severity_names.is_empty() || s.outputs != 1 + s.severity_names.len() {
            return invalid(format!(
                "outputs {} must be 1 alert column + {} severity columns (at least one)",
                s.outputs,
                s.severity_names.len()
            ));
        }
        if s.alert_column != 0 {
            return invalid(format!(
                "alert_column {} unsupported: the alert probability must be column 0",
                s.alert_column
            ));
        }
        if !(s.alert_threshold > 0.0 && s.alert_threshold < 1.0) {
            return invalid(format!(
                "alert_threshold {} not in (0, 1)",
                s.alert_threshold
            ));
        }
        if s.hidden == 0 {
            return invalid("hidden must be positive".into());
        }
        Ok(LogRecipe {
            hash_dim: f.hash_dim,
            bigrams: f.bigrams,
            cap_bytes: f.cap_bytes,
            max_tokens: f.max_tokens,
            long_token: f.long_token,
            width: s.width,
            outputs: s.outputs,
            alert_column: s.alert_column,
            severity_names: s.severity_names,
            threshold: s.alert_threshold,
            model: s.model,
        })
    }

    /// Features per line = model input width.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Model output width `M` (1 alert column + severity columns).
    pub fn outputs(&self) -> usize {
        self.outputs
    }

    /// Severity class names, in model column order (columns 1..M).
    pub fn severity_names(&self) -> &[String] {
        &self.severity_names
    }

    /// The `.onnx` file name the sidecar belongs to.
    pub fn model_file(&self) -> &str {
        &self.model
    }

    /// The alert decision threshold on column 0.
    pub fn alert_threshold(&self) -> f32 {
        self.threshold
    }

    /// Strips a typical log header (timestamps, host, pid, level, component)
    /// and returns the content, trimmed; the whole (trimmed) line when no
    /// header is recognised. Heuristic: see `header_end`.
    pub fn content<'a>(&self, line: &'a str) -> &'a str {
        strip_header(line)
    }

    /// Appends exactly [`width`](Self::width) features for `content`.
    pub fn featurize(&self, content: &str, out: &mut Vec<f32>) {
        let data = &content.as_bytes()[..content.len().min(self.cap_bytes)];
        // Masked tokens are stored back to back in `arena`, spans in `toks`.
        let mut arena: Vec<u8> = Vec::with_capacity(data.len() + 16);
        let mut toks: Vec<(usize, usize)> = Vec::new();
        let mut cur: Vec<u8> = Vec::with_capacity(64);
        let mut masked = 0usize;
        let mut i = 0;
        while i <= data.len() && toks.len() < self.max_tokens {
            let b = data.get(i).copied();
            match b {
                Some(b) if is_tok(b) => cur.push(b.to_ascii_lowercase()),
                _ => {
                    if !cur.is_empty() {
                        let start = arena.len();
                        masked += usize::from(self.mask_into(&cur, &mut arena));
                        toks.push((start, arena.len()));
                        cur.clear();
                    }
                }
            }
            i += 1;
        }
        let mut block = vec![0f64; self.hash_dim];
        let mut add = |h: u32| {
            let v = &mut block[(h % self.hash_dim as u32) as usize];
            *v += if h >> 31 == 1 { -1.0 } else { 1.0 };
        };
        for &(a, b) in &toks {
            add(fnv(FNV_OFFSET, &arena[a..b]));
        }
        if self.bigrams {
            for w in toks.windows(2) {
                let h = fnv(FNV_OFFSET, &arena[w[0].0..w[0].1]);
                let h = fnv(fnv(h, b" "), &arena[w[1].0..w[1].1]);
                add(h);
            }
        }
        let norm = block.iter().map(|v| v * v).sum::<f64>().sqrt();
        let scale = if norm > 0.0 { norm } else { 1.0 };
        out.extend(block.iter().map(|v| (v / scale) as f32));
        let n = toks.len();
        let upper = data.iter().filter(|b| b.is_ascii_uppercase()).count();
        let letters = upper + data.iter().filter(|b| b.is_ascii_lowercase()).count();
        let non_ascii = data.iter().filter(|&&b| b >= 0x80).count();
        let frac = |a: usize, b: usize| a as f64 / b.max(1) as f64;
        out.extend(
            [
                (content.len() as f64).ln_1p() / 8.0,
                (n as f64).ln_1p() / 5.0,
                frac(masked, n),
                frac(upper, letters),
                frac(non_ascii, data.len()),
                if n == 0 { 1.0 } else { 0.0 },
            ]
            .map(|v| v as f32),
        );
    }

    /// Writes the masked form of `tok` (lower-cased token bytes) to `arena`;
    /// true if it was masked.
    fn mask_into(&self, tok: &[u8], arena: &mut Vec<u8>) -> bool {
        let is_hex = |b: &u8| b.is_ascii_digit() || (b'a'..=b'f').contains(b);
        let has_digit = tok.iter().any(u8::is_ascii_digit);
        let replacement: Option<&[u8]> = if tok.len() > self.long_token {
            Some(b"<long>")
        } else if tok.iter().all(u8::is_ascii_digit) {
            Some(b"<num>")
        } else if (tok.len() > 2 && tok.starts_with(b"0x") && tok[2..].iter().all(is_hex))
            || (tok.len() >= 6
                && tok.iter().all(is_hex)
                && has_digit
                && tok.iter().any(|&b| b >= b'a'))
        {
            Some(b"<hex>")
        } else {
            None
        };
        if let Some(r) = replacement {
            arena.extend_from_slice(r);
            return true;
        }
        if !has_digit {
            arena.extend_from_slice(tok);
            return false;
        }
        let mut prev_digit = false;
        for &b in tok {
            let d = b.is_ascii_digit();
            if !d {
                arena.push(b);
            } else if !prev_digit {
                arena.push(b'0');
            }
            prev_digit = d;
        }
        true
    }

    /// Turns one row of `M` model outputs into a verdict. Never panics: a
    /// short row or non-finite values give a non-alert verdict with confidence 0.
    pub fn judge(&self, scores: &[f32]) -> LogJudgement {
        let p = scores.get(self.alert_column).copied().unwrap_or(f32::NAN);
        let sev = scores.get(1..self.outputs.min(scores.len())).unwrap_or(&[]);
        let (severity, p_sev) =
            sev.iter()
                .enumerate()
                .fold((0usize, f32::NAN), |(bi, bv), (i, &v)| {
                    if v > bv || (bv.is_nan() && !v.is_nan()) {
                        (i, v)
                    } else {
                        (bi, bv)
                    }
                });
        if !p.is_finite() || !p_sev.is_finite() || sev.len() + 1 != self.outputs {
            return LogJudgement {
                alert: false,
                alert_probability: if p.is_finite() {
                    p.clamp(0.0, 1.0)
                } else {
                    0.0
                },
                severity,
                confidence: 0.0,
            };
        }
        let p = p.clamp(0.0, 1.0);
        let alert = p >= self.threshold;
        let p_decision = if alert { p } else { 1.0 - p };
        LogJudgement {
            alert,
            alert_probability: p,
            severity,
            confidence: p_decision.min(p_sev.clamp(0.0, 1.0)),
        }
    }
}

fn is_tok(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b >= 0x80
}

fn fnv(mut h: u32, data: &[u8]) -> u32 {
    for &b in data {
        h = (h ^ u32::from(b)).wrapping_mul(FNV_PRIME);
    }
    h
}

fn skip_spaces(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && (b[i] == b' ' || b[i] == b'\t') {
        i += 1;
    }
    i
}

fn token_end(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && b[i] != b' ' && b[i] != b'\t' {
        i += 1;
    }
    i
}

/// Index of the `]` closing the `[` at `open` (nesting-aware, bounded scan).
fn matching_bracket(b: &[u8], open: usize) -> Option<usize> {
    let mut depth = 0usize;
    for (i, &c) in b.iter().enumerate().skip(open).take(2 * HEADER_SCAN) {
        match c {
            b'[' => depth += 1,
            b']' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

/// A date, time, epoch or similar: digits and `-:.,/` only, with a
/// separator or at least 6 digits (so a bare pid is not a timestamp).
fn is_stamp(t: &str) -> bool {
    let sep = |c: u8| matches!(c, b'-' | b':' | b'.' | b',' | b'/');
    let b = t.as_bytes();
    b.iter().all(|&c| c.is_ascii_digit() || sep(c))
        && b.iter().any(u8::is_ascii_digit)
        && (b.iter().any(|&c| sep(c)) || b.len() >= 6)
}

fn is_month_or_day(t: &str) -> bool {
    const NAMES: [&str; 19] = [
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec", "mon",
        "tue", "wed", "thu", "fri", "sat", "sun",
    ];
    t.len() == 3 && NAMES.iter().any(|n| t.eq_ignore_ascii_case(n))
}

fn is_level(t: &str) -> bool {
    const LEVELS: [&str; 16] = [
        "trace", "debug", "info", "notice", "warn", "warning", "error", "err", "severe", "crit",
        "critical", "alert", "emerg", "fatal", "failure", "verbose",
    ];
    matches!(t, "V" | "D" | "I" | "W" | "E" | "F" | "A")
        || LEVELS.iter().any(|l| t.eq_ignore_ascii_case(l))
}

/// Byte offset where the content starts, if `s` starts with a recognised
/// header: leading timestamp-like fields (dates, times, epochs, month and
/// day names, `[bracketed stamps]`), then other fields (host, pid, node),
/// up to either a level word (`INFO`, `[error]`, Android `D`, …) or a
/// `component:` token. After a bare level, a `[thread]` group, a ` - `
/// separator and a `component:` are stripped too, unless the level came
/// after an upper-case component word (BGL: `RAS KERNEL INFO content`).
/// A log line without its header (timestamp, host, level, component, as
/// recognised by shape), trimmed; the whole line if no header is recognised.
pub fn strip_header(line: &str) -> &str {
    let s = line.trim();
    match header_end(s) {
        Some(i) => s.get(i..).map_or(s, str::trim),
        None => s,
    }
}

fn header_end(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let (mut pos, mut saw_stamp, mut prev_upper, mut saw_month) = (0usize, false, false, false);
    for ntok in 1..=16 {
        pos = skip_spaces(b, pos);
        if pos >= b.len() || pos > HEADER_SCAN {
            return None;
        }
        if b[pos] == b'[' {
            let close = matching_bracket(b, pos)?;
            let inner = s.get(pos + 1..close)?;
            if saw_stamp && is_level(inner) {
                return Some(close + 1);
            }
            if inner.bytes().any(|c| c.is_ascii_digit()) && inner.contains(':') {
                saw_stamp = true;
                prev_upper = false;
                pos = close + 1;
                continue;
            }
            return None;
        }
        let end = token_end(b, pos);
        let tok = s.get(pos..end)?;
        if is_stamp(tok) || (saw_month && tok.bytes().all(|c| c.is_ascii_digit())) {
            saw_stamp = true;
            prev_upper = false;
        } else if is_month_or_day(tok) {
            saw_month = true;
        } else if tok == "-" {
        } else if saw_stamp && is_level(tok) {
            return Some(after_level(s, end, prev_upper));
        } else if saw_stamp && tok.len() > 1 && tok.ends_with(':') {
            return Some(end);
        } else if saw_stamp || ntok == 1 {
            prev_upper = tok.len() > 1 && tok.bytes().all(|c| c.is_ascii_uppercase());
        } else {
            return None;
        }
        pos = end;
    }
    None
}

fn after_level(s: &str, end: usize, prev_upper: bool) -> usize {
    let b = s.as_bytes();
    let mut p = skip_spaces(b, end);
    if prev_upper || p >= b.len() {
        return p;
    }
    if b[p] == b'[' {
        if let Some(close) = matching_bracket(b, p) {
            p = skip_spaces(b, close + 1);
            if s[p..].starts_with("- ") {
                return p + 2;
            }
        }
    }
    let e = token_end(b, p);
    if e > p + 1 && b[e - 1] == b':' {
        return e;
    }
    // `component  : content` (Android pads some tags before the colon)
    let q = skip_spaces(b, e);
    if e > p && q > e && q < b.len() && b[q] == b':' && b.get(q + 1).is_none_or(|&c| c == b' ') {
        return q + 1;
    }
    p
}
