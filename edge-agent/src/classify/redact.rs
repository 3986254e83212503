//! Redacts personal data from a log line before it may leave the gateway as an exemplar.
//!
//! Built-in rules (each can be left out by name): `email`, `mac`, `ip` (IPv4, and IPv6 with
//! four or more groups or a `::`). The config adds its own regexes, whose matches become
//! `<redacted>`. The result is capped at [`MAX_EXEMPLAR_BYTES`] on a character boundary.
//! It does not decide which lines are exemplars (the windower keeps the first few of a
//! window) and it cannot know that a line holds a name in free text: the config must say.

use regex::Regex;

/// Longest exemplar shipped, in bytes; longer lines are cut and end in `…`.
pub const MAX_EXEMPLAR_BYTES: usize = 256;
/// Longest template text shipped, in bytes, cut the same way.
pub const MAX_TEMPLATE_TEXT_BYTES: usize = 512;

/// Built-in rules: name, pattern, replacement. Order matters: a MAC looks like an IPv6 part.
const BUILTIN: &[(&str, &str, &str)] = &[
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
];

/// Names of the built-in rules, for config validation and docs.
pub fn builtin_names() -> impl Iterator<Item = &'static str> {
    BUILTIN.iter().map(|(name, _, _)| *name)
}

/// Why a redaction rule could not be built.
#[derive(Debug, thiserror::Error)]
pub enum RedactError {
    #[error("unknown built-in redaction {0:?} (known: email, mac, ip)")]
    UnknownBuiltin(String),
    #[error("redaction pattern {pattern:?} is not a valid regex: {source}")]
    Pattern {
        pattern: String,
        source: Box<regex::Error>,
    },
}

/// The rules, compiled once.
#[derive(Debug, Clone)]
pub struct Redactor {
    rules: Vec<(Regex, String)>,
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
        for (name, pattern, replacement) in BUILTIN {
            if builtins.iter().any(|b| b == name) {
                rules.push((compile(pattern)?, (*replacement).to_owned()));
            }
        }
        for pattern in extra {
            rules.push((compile(pattern)?, "<redacted>".to_owned()));
        }
        Ok(Redactor { rules })
    }

    /// `line` with every rule applied, then capped in length.
    pub fn redact(&self, line: &str) -> String {
        let mut out = line.to_owned();
        for (re, replacement) in &self.rules {
            if let std::borrow::Cow::Owned(s) = re.replace_all(&out, replacement.as_str()) {
                out = s;
            }
        }
        cap(out, MAX_EXEMPLAR_BYTES)
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
mod tests {
    use super::*;

    fn all() -> Vec<String> {
        builtin_names().map(str::to_owned).collect()
    }

    #[test]
    fn builtins_mask_addresses_and_leave_times_and_names_alone() {
        let r = Redactor::new(&all(), &[]).unwrap();
        assert_eq!(
            r.redact("Accepted password for bob from 10.1.2.3 port 22 at 12:34:56"),
            "Accepted password for bob from <ip> port 22 at 12:34:56"
        );
        assert_eq!(
            r.redact("mail to ops.team+x@plant-3.example.com failed"),
            "mail to <email> failed"
        );
        assert_eq!(
            r.redact("link aa:bb:cc:dd:ee:0f up, peer fe80::1 and 2001:db8:0:0:1:0:0:1"),
            "link <mac> up, peer <ip> and <ip>"
        );
        assert_eq!(
            r.redact("std::vector in Foo::bar"),
            "std::vector in Foo::bar"
        );
    }

    #[test]
    fn config_patterns_add_rules_and_builtins_can_be_left_out() {
        let r = Redactor::new(&["email".into()], &[r"user=\S+".into()]).unwrap();
        assert_eq!(
            r.redact("login user=alice from 10.0.0.1 (a@b.io)"),
            "login <redacted> from 10.0.0.1 (<email>)"
        );
        assert!(matches!(
            Redactor::new(&["phone".into()], &[]),
            Err(RedactError::UnknownBuiltin(_))
        ));
        assert!(matches!(
            Redactor::new(&[], &["(".into()]),
            Err(RedactError::Pattern { .. })
        ));
    }

    #[test]
    fn long_lines_are_capped_on_a_char_boundary() {
        let r = Redactor::new(&[], &[]).unwrap();
        let out = r.redact(&"é".repeat(400));
        assert!(out.len() <= MAX_EXEMPLAR_BYTES, "{}", out.len());
        assert!(out.ends_with('…'));
        assert_eq!(r.redact("short"), "short");
    }
}
