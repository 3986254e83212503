//! The `[templates]` section: log template mining, and what of the lines may leave the gateway.
//!
//! Only the file format and its checks; the miner is `logmine`, the stage
//! `classify::templates`, the redaction `classify::redact`.

use serde::Deserialize;

use crate::classify::redact::{builtin_names, Redactor};
use crate::logmine::{MinerConfig, TemplateMiner};

use super::validate::Checker;

/// Exemplars per template window at most (`templates.exemplars`).
pub const MAX_EXEMPLARS: usize = 10;

/// Template mining of the lines of `format = "text"` routes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplatesConfig {
    /// Mine every log line into its template: per window, `log.template.<id>`
    /// counts its lines (and carries the template text and exemplars),
    /// `log.template.<id>.p<k>` summarizes its numeric parameters,
    /// `log.template.new` counts templates never seen before.
    #[serde(default)]
    pub enabled: bool,
    /// Templates kept at most (least recently used evicted, counted).
    #[serde(default = "max_templates")]
    pub max_templates: usize,
    /// Extra regexes: a token any of them matches is a variable.
    #[serde(default)]
    pub extra_masks: Vec<String>,
    /// Lines shipped per template window as examples, redacted (0: none; raw
    /// lines then never leave the gateway). At most 10.
    #[serde(default = "exemplars")]
    pub exemplars: usize,
    /// Built-in redactions applied to exemplars and template texts: any of
    /// "url_credentials", "email", "mac", "ip", "serial", "user" (default: all).
    #[serde(default = "redact_builtin")]
    pub redact_builtin: Vec<String>,
    /// Extra regexes whose matches in an exemplar become `<redacted>`.
    #[serde(default)]
    pub redact: Vec<String>,
}

fn max_templates() -> usize {
    10_000
}

fn exemplars() -> usize {
    3
}

fn redact_builtin() -> Vec<String> {
    builtin_names().map(str::to_owned).collect()
}

impl TemplatesConfig {
    /// The miner's settings: the one default configuration plus these.
    pub fn miner_config(&self) -> MinerConfig {
        MinerConfig {
            max_templates: self.max_templates,
            extra_masks: self.extra_masks.clone(),
            ..MinerConfig::default()
        }
    }

    /// The redaction rules for exemplars.
    pub fn redactor(&self) -> Result<Redactor, crate::classify::redact::RedactError> {
        Redactor::new(&self.redact_builtin, &self.redact)
    }

    pub(super) fn check(&self, c: &mut Checker) {
        if !self.enabled {
            return;
        }
        if let Err(e) = TemplateMiner::new(self.miner_config()) {
            c.require(false, "templates", e.to_string());
        }
        c.require(
            self.exemplars <= MAX_EXEMPLARS,
            "templates.exemplars",
            format!("must be at most {MAX_EXEMPLARS}"),
        );
        if let Err(e) = self.redactor() {
            c.require(false, "templates.redact", e.to_string());
        }
    }
}

impl Default for TemplatesConfig {
    fn default() -> Self {
        toml::from_str("").expect("templates defaults")
    }
}
