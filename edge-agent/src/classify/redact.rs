//! Redacts personal data from log text before it may leave the gateway (exemplars, template texts).
//!
//! Built-in rules, each can be left out by name (`templates.redact_builtin`), applied in this
//! order: `url_credentials` (`scheme://user:pass@` → `scheme://<credentials>@`), `email`,
//! `mac`, `ip` (IPv4; IPv6 with four or more groups or a `::`), `serial` (the value after a
//! label such as `S/N`, `serial no`, `IMEI`, `VIN`), `user` (the name in common log shapes:
//! `user alice`, `user=alice`, `login: alice`, `for alice from`, `/home/alice/`). The config
//! adds its own regexes (`templates.redact`), whose matches become `<redacted>`.
//!
//! Replacements are fixed tokens (`<ip>`, `<user>`, …): the same input always gives the same
//! output, so redacted lines still group into the same templates, and no token can be turned
//! back into the value. Every replacement is counted by kind. Exemplars are then capped at
//! [`MAX_EXEMPLAR_BYTES`], template texts at [`MAX_TEMPLATE_TEXT_BYTES`]. It does not decide
//! which lines are shipped, and it cannot see a name in free text no rule describes: the
//! config must say.

use regex::{Captures, Regex};

/// Longest exemplar shipped, in bytes; longer lines are cut and end in `…`.
pub const MAX_EXEMPLAR_BYTES: usize = 256;
/// Longest template text shipped, in bytes, cut the same way.
pub const MAX_TEMPLATE_TEXT_BYTES: usize = 512;
/// The kind under which matches of the config's own patterns are counted.
pub const CUSTOM_KIND: &str = "custom";

/// Built-in rules: kind, pattern, replacement (may name the pattern's groups).
/// Order matters: credentials before e-mail (`user:pw@host.com`), MAC before IPv6.
const BUILTIN: &[(&str, &str, &str)] = &[
    (
        "url_credentials",
        r"(?i)\b([a-z][a-z0-9+.-]*://)[^\s/:@]+(?::[^\s/@]*)?@",
        "${1}<credentials>@",
    ),
    (
        "email",
        r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}",
        "<email>",
    ),
    (
        "mac",
        r"\b(?:[0-9A-Fa-f]{2}[:-]){5}[0-9A-Fa-f]{2}\b",
        "<mac>",
    ),
    (
        "ip",
        r"\b(?:\d{1,3}\.){3}\d{1,3}\b|\b(?:[0-9A-Fa-f]{1,4}:){4,7}[0-9A-Fa-f]{1,4}\b|\b(?:[0-9A-Fa-f]{1,4}:)+:(?:[0-9A-Fa-f]{1,4}\b)?|::(?:[0-9A-Fa-f]{1,4}\b)",
        "<ip>",
    ),
    (
        "serial",
        r"(?i)\b(s/?n|serial(?:[ _-]?(?:no|num|number))?|imei|vin)(\s*[:=#]\s*|\s+)[A-Za-z0-9][A-Za-z0-9-]{3,}",
        "${1}${2}<serial>",
    ),
    (
        "user",
        r"(?i)\b(user(?:name)?|login|logname|ruser|account)(=|:\s*|\s+)[A-Za-z0-9._@-]*[A-Za-z][A-Za-z0-9._@-]*|\b(for)(\s+)[A-Za-z0-9._-]+(\s+from\b)|(/home/)[^/\s]+",
        "${1}${2}${3}${4}${6}<user>${5}",
    ),
];

/// Names of the built-in rules, for config validation and docs.
pub fn builtin_names() -> impl Iterator<Item = &'static str> {
    BUILTIN.iter().map(|(name, _, _)| *name)
}

/// Why a redaction rule could not be built.
#[derive(Debug, thiserror::Error)]
pub enum RedactError {
    #[error(
        "unknown built-in redaction {0:?} (known: url_credentials, email, mac, ip, serial, user)"
    )]
    UnknownBuiltin(String),
    #[error("redaction pattern {pattern:?} is not a valid regex: {source}")]
    Pattern {
        pattern: String,
        source: Box<regex::Error>,
    },
}

/// A redacted text and how many replacements of each kind it took.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Redacted {
    pub text: String,
    /// (kind, replacements), only kinds that replaced something, in rule order.
    pub counts: Vec<(&'static str, u64)>,
}

#[derive(Debug, Clone)]
struct Rule {
    kind: &'static str,
    re: Regex,
    replacement: String,
}

/// The rules, compiled once.
#[derive(Debug, Clone)]
pub struct Redactor {
    rules: Vec<Rule>,
}

impl Redactor {
    /// The named built-ins (in their fixed order) followed by `extra` patterns.
    pub fn new(builtins: &[String], extra: &[String]) -> Result<Redactor, RedactError> {
        if let Some(unknown) = builtins
            .iter()
            .find(|b| !builtin_names().any(|n| n == b.as_str()))
        {
            return Err(RedactError::UnknownBuiltin(unknown.clone()));
        }
        let compile = |pattern: &str| {
            Regex::new(pattern).map_err(|e| RedactError::Pattern {
                pattern: pattern.to_owned(),
                source: Box::new(e),
            })
        };
        let mut rules = Vec::new();
        for (kind, pattern, replacement) in BUILTIN {
            if builtins.iter().any(|b| b == kind) {
                rules.push(Rule {
                    kind,
                    re: compile(pattern)?,
                    replacement: (*replacement).to_owned(),
                });
            }
        }
        for pattern in extra {
            rules.push(Rule {
                kind: CUSTOM_KIND,
                re: compile(pattern)?,
                replacement: "<redacted>".to_owned(),
            });
        }
        Ok(Redactor { rules })
    }

    /// `text` with every rule applied, uncapped, with the count per kind.
    pub fn apply(&self, text: &str) -> Redacted {
        let mut out = Redacted {
            text: text.to_owned(),
            counts: Vec::new(),
        };
        for rule in &self.rules {
            let mut n = 0u64;
            let replaced = rule.re.replace_all(&out.text, |caps: &Captures| {
                n += 1;
                let mut dst = String::new();
                caps.expand(&rule.replacement, &mut dst);
                dst
            });
            if let std::borrow::Cow::Owned(s) = replaced {
                out.text = s;
            }
            if n > 0 {
                match out.counts.iter_mut().find(|(k, _)| *k == rule.kind) {
                    Some((_, c)) => *c += n,
                    None => out.counts.push((rule.kind, n)),
                }
            }
        }
        out
    }

    /// A line as it may leave as an exemplar: redacted, capped.
    pub fn exemplar(&self, line: &str) -> Redacted {
        let mut r = self.apply(line);
        r.text = cap(r.text, MAX_EXEMPLAR_BYTES);
        r
    }

    /// A template text as it may leave: redacted (a constant the miner kept, such as
    /// the one user name it has seen, is still personal data), capped.
    pub fn template_text(&self, text: &str) -> String {
        cap(self.apply(text).text, MAX_TEMPLATE_TEXT_BYTES)
    }
}

/// `s` cut to at most `max` bytes on a character boundary, ending in `…` if cut.
pub fn cap(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max.saturating_sub('…'.len_utf8());
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
    s
}

#[cfg(test)]
mod tests;
