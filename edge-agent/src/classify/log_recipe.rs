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

mod header;
pub use header::strip_header;

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
    /// header is recognised. Heuristic: see `header::header_end`.
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
