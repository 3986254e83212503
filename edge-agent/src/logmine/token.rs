//! Tokenizer and variable masking: one log line → a reused vector of [`Tok`]s, each carrying
//! the hash of its masked form and of its raw text.
//!
//! It splits on ASCII whitespace and masks what is a variable *by its shape*: digits, long hex
//! runs, dates spelled with month names, size units after a number, and whatever the optional
//! extra regexes match. It does not decide which tokens vary across lines (that is the
//! grouping, in `miner.rs`) and it never allocates per token: spans point into the line.

use regex::Regex;

/// How a variable is written in template text.
pub const WILDCARD: &str = "<*>";

/// Hash of the fully masked token `<*>`.
pub(crate) const WILD: u64 = fnv(FNV_OFFSET, WILDCARD.as_bytes());

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// FNV-1a over `bytes`, continuing from `h`. `const` so [`WILD`] is a constant.
pub(crate) const fn fnv(mut h: u64, bytes: &[u8]) -> u64 {
    let mut i = 0;
    while i < bytes.len() {
        h ^= bytes[i] as u64;
        h = h.wrapping_mul(FNV_PRIME);
        i += 1;
    }
    h
}

/// FNV-1a of a whole byte string.
pub(crate) fn hash_bytes(bytes: &[u8]) -> u64 {
    fnv(FNV_OFFSET, bytes)
}

/// Folds one token hash into a sequence hash (order matters).
pub(crate) fn mix(h: u64, t: u64) -> u64 {
    (h.rotate_left(23) ^ t).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// What masking made of a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Kind {
    /// Kept as written.
    Const = 0,
    /// A masked value behind a prefix that holds a letter (`uid=<*>`, `index:<*>`): the prefix
    /// names the parameter, so two lines with the same prefix show the same slot.
    Keyed = 1,
    /// Masked whole, or behind punctuation only (`<*>`, `(<*>`); also every generalized slot.
    Wild = 2,
}

impl Kind {
    pub(crate) fn from_u8(v: u8) -> Option<Kind> {
        match v {
            0 => Some(Kind::Const),
            1 => Some(Kind::Keyed),
            2 => Some(Kind::Wild),
            _ => None,
        }
    }
}

/// One token of the current line. Offsets are byte offsets into the line.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tok {
    pub start: u32,
    pub end: u32,
    /// Length of the kept prefix when masked (`uid=` in `uid=0`), 0 otherwise.
    pub prefix: u32,
    pub kind: Kind,
    /// Hash of the masked form: equal tokens after masking have equal hashes.
    pub hash: u64,
    /// Hash of the raw text (for counting distinct values behind a mask).
    pub raw: u64,
}

impl Tok {
    /// The masked text, written into `out` (used only when a template is created).
    pub(crate) fn push_masked(&self, line: &str, out: &mut String) {
        let s = self.start as usize;
        match self.kind {
            Kind::Const => out.push_str(line.get(s..self.end as usize).unwrap_or("")),
            Kind::Keyed | Kind::Wild => {
                out.push_str(line.get(s..s + self.prefix as usize).unwrap_or(""));
                out.push_str(WILDCARD);
            }
        }
    }

    /// The value behind the mask, for numeric parameters (`0.5` in `ratio=0.5,`).
    pub(crate) fn value<'l>(&self, line: &'l str) -> &'l str {
        let s = (self.start + self.prefix) as usize;
        line.get(s..self.end as usize).unwrap_or("")
    }
}

/// Extra masks from configuration: a token any of them matches is a variable.
#[derive(Debug, Clone, Default)]
pub(crate) struct Masks {
    regexes: Vec<Regex>,
}

impl Masks {
    pub(crate) fn compile(patterns: &[String]) -> Result<Masks, (usize, regex::Error)> {
        let mut regexes = Vec::with_capacity(patterns.len());
        for (i, p) in patterns.iter().enumerate() {
            regexes.push(Regex::new(p).map_err(|e| (i, e))?);
        }
        Ok(Masks { regexes })
    }

    fn matches(&self, token: &str) -> bool {
        self.regexes.iter().any(|r| r.is_match(token))
    }
}

/// Separators after which a digit-free prefix is kept as the key of a masked value.
fn is_sep(b: u8) -> bool {
    matches!(
        b,
        b'=' | b':' | b',' | b'.' | b'|' | b'(' | b'[' | b'{' | b'<' | b'"' | b'\''
    )
}

const MONTHS: [&[u8]; 12] = [
    b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
];
const DAYS: [&[u8]; 7] = [b"Mon", b"Tue", b"Wed", b"Thu", b"Fri", b"Sat", b"Sun"];
const UNITS: [&[u8]; 9] = [
    b"B", b"KB", b"MB", b"GB", b"TB", b"KiB", b"MiB", b"GiB", b"TiB",
];

/// Masks one token. Returns (kind, kept prefix length).
fn mask_token(t: &[u8]) -> (Kind, usize) {
    // A digit makes the token a variable; keep the digit-free prefix up to the last separator.
    let mut cut = 0;
    for (i, &c) in t.iter().enumerate() {
        if c.is_ascii_digit() {
            return (keyed_or_wild(&t[..cut]), cut);
        }
        if is_sep(c) {
            cut = i + 1;
        }
    }
    // No digit: a long run of hex letters (`ffffffff`, also as `key=deadbeef,`) is an id.
    let value_at = t.iter().position(|&c| c == b'=').map_or(0, |i| i + 1);
    let value = &t[value_at..];
    let body = value
        .iter()
        .rposition(|c| !matches!(c, b',' | b';' | b')'))
        .map_or(&value[..0], |last| &value[..=last]);
    if body.len() >= 8 && body.iter().all(u8::is_ascii_hexdigit) {
        return (keyed_or_wild(&t[..value_at]), value_at);
    }
    (Kind::Const, 0)
}

fn keyed_or_wild(prefix: &[u8]) -> Kind {
    if prefix.iter().any(u8::is_ascii_alphabetic) {
        Kind::Keyed
    } else {
        Kind::Wild
    }
}

fn masked_hash(prefix: &[u8]) -> u64 {
    fnv(hash_bytes(prefix), WILDCARD.as_bytes())
}

fn wild(start: usize, end: usize, raw: u64) -> Tok {
    Tok {
        start: start as u32,
        end: end as u32,
        prefix: 0,
        kind: Kind::Wild,
        hash: WILD,
        raw,
    }
}

fn is_pure_wild(t: &Tok) -> bool {
    t.kind == Kind::Wild && t.prefix == 0
}

/// Splits and masks `line` into `out` (cleared first). At most `max_tokens` tokens: the rest
/// of a longer line becomes one variable. Lines longer than 4 GiB are not expected; offsets
/// saturate.
pub(crate) fn tokenize(line: &str, masks: &Masks, max_tokens: usize, out: &mut Vec<Tok>) {
    out.clear();
    let bytes = line.as_bytes();
    let max_tokens = max_tokens.max(1);
    let mut i = 0;
    while i < bytes.len() {
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= bytes.len() {
            break;
        }
        let start = i;
        while i < bytes.len() && !bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        if out.len() + 1 == max_tokens {
            // The cap: everything from here on is one variable.
            let end = line.trim_end().len().max(i);
            out.push(wild(start, end, hash_bytes(&bytes[start..end])));
            break;
        }
        let t = &bytes[start..i];
        let raw = hash_bytes(t);
        let (mut kind, mut prefix) = mask_token(t);
        if kind == Kind::Const && !masks.regexes.is_empty() {
            if let Some(text) = line.get(start..i) {
                if masks.matches(text) {
                    (kind, prefix) = (Kind::Wild, 0);
                }
            }
        }
        let hash = match kind {
            Kind::Const => raw,
            _ => masked_hash(&t[..prefix]),
        };
        out.push(Tok {
            start: start as u32,
            end: i as u32,
            prefix: prefix as u32,
            kind,
            hash,
            raw,
        });
    }
    shape_rules(bytes, out);
    collapse(out);
}

/// Rules that look at neighbours: `Sat Jun 18 …` dates and `12.5 KB` quantities.
fn shape_rules(bytes: &[u8], toks: &mut [Tok]) {
    let text = |t: &Tok| &bytes[t.start as usize..t.end as usize];
    for i in 0..toks.len() {
        if toks[i].kind != Kind::Const {
            continue;
        }
        let this = text(&toks[i]);
        let next = toks.get(i + 1).map(text);
        let is_month = MONTHS.contains(&this);
        let date = (is_month
            && next.is_some_and(|n| !n.is_empty() && n.iter().all(u8::is_ascii_digit)))
            || (DAYS.contains(&this) && next.is_some_and(|n| MONTHS.contains(&n)));
        let unit = i > 0 && toks[i - 1].kind != Kind::Const && {
            let end = this
                .iter()
                .rposition(|c| !matches!(c, b',' | b';' | b')'))
                .map_or(0, |p| p + 1);
            UNITS.contains(&&this[..end])
        };
        if date || unit {
            let t = toks[i];
            toks[i] = wild(t.start as usize, t.end as usize, t.raw);
        }
    }
}

/// A run of whole variables is one variable (`ask <*> to delete <*> <*> <*>` lists).
fn collapse(toks: &mut Vec<Tok>) {
    let mut w = 0;
    for r in 0..toks.len() {
        let t = toks[r];
        if w > 0 && is_pure_wild(&t) && is_pure_wild(&toks[w - 1]) {
            let prev = &mut toks[w - 1];
            prev.end = t.end;
            prev.raw = mix(prev.raw, t.raw);
            continue;
        }
        toks[w] = t;
        w += 1;
    }
    toks.truncate(w);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn masked(line: &str) -> String {
        let mut toks = Vec::new();
        tokenize(line, &Masks::default(), 64, &mut toks);
        let mut out = String::new();
        for (i, t) in toks.iter().enumerate() {
            if i > 0 {
                out.push(' ');
            }
            t.push_masked(line, &mut out);
        }
        out
    }

    #[test]
    fn digits_hex_and_keys_are_masked() {
        assert_eq!(
            masked("Received block blk_-1608 of size 91178 from /10.250.10.6"),
            "Received block <*> of size <*> from <*>"
        );
        assert_eq!(
            masked("uid=0 euid=0 tty=NODEVssh rhost=218.188.2.4 user=root"),
            "uid=<*> euid=<*> tty=NODEVssh rhost=<*> user=root"
        );
        assert_eq!(masked("mask=ffffffff, added"), "mask=<*> added");
        assert_eq!(
            masked("data store interrupt caused by dcbf.........0"),
            "data store interrupt caused by dcbf.........<*>"
        );
    }

    #[test]
    fn dates_units_and_runs() {
        assert_eq!(
            masked("connection from 1.2.3.4 () at Sat Jun 18 02:08:10 2005"),
            "connection from <*> () at <*>"
        );
        assert_eq!(masked("size 12.5 KB, free 3 MB)"), "size <*> free <*>");
        assert_eq!(masked("May I help"), "May I help");
    }

    #[test]
    fn kinds_and_cap() {
        let mut toks = Vec::new();
        tokenize("a uid=1 (7 x", &Masks::default(), 64, &mut toks);
        let kinds: Vec<Kind> = toks.iter().map(|t| t.kind).collect();
        assert_eq!(kinds, [Kind::Const, Kind::Keyed, Kind::Wild, Kind::Const]);
        tokenize("a b c d e f", &Masks::default(), 3, &mut toks);
        assert_eq!(toks.len(), 3);
        assert_eq!(toks[2].hash, WILD);
        assert_eq!(toks[2].end as usize, "a b c d e f".len());
    }

    #[test]
    fn extra_masks_apply_to_constants() {
        let masks = Masks::compile(&["^job_[a-z]+$".to_string()]).expect("valid");
        let mut toks = Vec::new();
        tokenize("start job_abc now", &masks, 64, &mut toks);
        assert_eq!(toks[1].hash, WILD);
        assert!(Masks::compile(&["(".to_string()]).is_err());
    }

    #[test]
    fn odd_input_does_not_panic() {
        let mut toks = Vec::new();
        for line in [
            "",
            "   ",
            "\u{e9}t\u{e9} 1\u{e9}",
            "=",
            "==ffffffffff",
            "\t\r\n",
        ] {
            tokenize(line, &Masks::default(), 2, &mut toks);
            for t in &toks {
                let mut s = String::new();
                t.push_masked(line, &mut s);
                let _ = t.value(line);
            }
        }
    }
}
