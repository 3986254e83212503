//! Log header stripping: where a line's content starts after its timestamp,
//! host, level and component, recognised by shape. It computes no features
//! and knows no model.

/// Header parsing looks at most this far into a line.
const HEADER_SCAN: usize = 256;

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

/// A log line without its header (timestamp, host, level, component, as
/// recognised by shape), trimmed; the whole line if no header is recognised.
pub fn strip_header(line: &str) -> &str {
    let s = line.trim();
    match header_end(s) {
        Some(i) => s.get(i..).map_or(s, str::trim),
        None => s,
    }
}

/// Byte offset where the content starts, if `s` starts with a recognised
/// header: leading timestamp-like fields (dates, times, epochs, month and
/// day names, `[bracketed stamps]`), then other fields (host, pid, node),
/// up to either a level word (`INFO`, `[error]`, Android `D`, …) or a
/// `component:` token. After a bare level, a `[thread]` group, a ` - `
/// separator and a `component:` are stripped too, unless the level came
/// after an upper-case component word (BGL: `RAS KERNEL INFO content`).
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
