//! Log template mining as a stage: every line of a text route becomes readings of its template.
//!
//! Each line's content (header stripped as the log recipe strips it) goes to the
//! [`TemplateMiner`]; the line then adds, at its time:
//! - `log.template.<id>` = 1, so a window's count is the lines of that template;
//! - `log.template.<id>.p<k>` = the k-th numeric parameter (up to [`MAX_PARAMS`]), so the
//!   window's min/max/mean/quantiles are that parameter's statistics;
//! - `log.template.new` = 1 when the line founded a template (a never-seen template is a signal).
//!
//! Like a model's judgement (invariant 11) these are ordinary readings: journaled, replayed,
//! windowed and shipped; replay never mines again. The miner's state is returned for the same
//! group commit whenever its templates changed (founded, merged, evicted), so the ids a
//! committed reading names survive a kill. Between structural changes the state is not
//! rewritten: after a crash, recency and distinct-value evidence may be a little older, the
//! ids are not. It keeps no raw lines: with exemplars configured it offers each line as a
//! candidate ([`Exemplar`], unredacted); [`TemplateStage::keep_exemplars`] asks the windower
//! whether the line's window still wants one, and only then redacts it, for the pipeline to
//! journal with the message. The template's text is looked up, and redacted, when its window
//! is cut ([`TemplateStage::name_templates`]).

use crate::decode::{text, Exemplar, Reading};
use crate::logmine::{MinerConfig, MinerError, MinerStats, StateError, TemplateMiner};

use super::log_recipe::strip_header;
use super::redact::{cap, Redacted, Redactor, MAX_TEMPLATE_TEXT_BYTES};
use super::stage::{Accepted, StateUpdate};
use crate::windower::Windower;
use wire::{LogTemplate, WindowSummary};

/// Prefix of every template series.
pub const TEMPLATE_PREFIX: &str = "log.template.";
/// One reading per line that founded a template.
pub const NEW_TEMPLATE_METRIC: &str = "log.template.new";
/// Prefix of the series counting replacements in shipped exemplars, per kind
/// (`log.redacted.ip`, …): a window's sum is how many values of that kind were redacted.
pub const REDACTED_PREFIX: &str = "log.redacted.";
/// The store key (model series slot) of the miner's state.
pub const STATE_SERIES: &str = "log.templates";
/// Numeric parameters per line that become readings.
pub const MAX_PARAMS: usize = 3;

/// The miner and what the store last saw of it.
#[derive(Debug)]
pub struct TemplateStage {
    miner: TemplateMiner,
    persisted: (u64, u64, u64),
    /// Exemplars per template window (0: lines never leave the gateway).
    exemplars: usize,
    redactor: Option<Redactor>,
}

/// The template id of a template count series (`log.template.<id>`); `None` for
/// parameter series, `log.template.new` and everything else.
pub fn template_id(metric: &str) -> Option<u32> {
    metric.strip_prefix(TEMPLATE_PREFIX)?.parse().ok()
}

fn structure(s: &MinerStats) -> (u64, u64, u64) {
    (s.created, s.merges, s.evictions)
}

impl TemplateStage {
    pub fn new(config: MinerConfig) -> Result<TemplateStage, MinerError> {
        let miner = TemplateMiner::new(config)?;
        let persisted = structure(&miner.stats());
        Ok(TemplateStage {
            miner,
            persisted,
            exemplars: 0,
            redactor: None,
        })
    }

    /// Ships up to `per_window` lines per template window, redacted by `redactor`.
    pub fn with_exemplars(mut self, per_window: usize, redactor: Redactor) -> TemplateStage {
        self.exemplars = per_window;
        self.redactor = Some(redactor);
        self
    }

    /// Exemplars wanted per template window.
    pub fn exemplars_per_window(&self) -> usize {
        if self.redactor.is_some() {
            self.exemplars
        } else {
            0
        }
    }

    /// A candidate line as it may leave the gateway (redacted, capped).
    pub fn redact(&self, line: &str) -> Redacted {
        match &self.redactor {
            Some(r) => r.exemplar(line),
            None => Redacted::default(),
        }
    }

    /// Offers one message's candidate lines to their windows. Returns the kept ones,
    /// redacted, and a `log.redacted.<kind>` reading per kind of replacement they
    /// took (at the line's time), both for the journal: replay folds the readings and
    /// offers the exemplars again, in the same order, to the same windows.
    pub fn keep_exemplars(
        &self,
        windower: &mut Windower,
        device: &str,
        candidates: Vec<Exemplar>,
    ) -> (Vec<Exemplar>, Vec<Reading>) {
        let max = self.exemplars_per_window();
        let mut kept = Vec::new();
        let mut counts = Vec::new();
        for c in candidates {
            if windower.wants_exemplar(device, &c.metric, c.ts_ms, max) {
                let redacted = self.redact(&c.line);
                for (kind, n) in redacted.counts {
                    counts.push(Reading {
                        metric: format!("{REDACTED_PREFIX}{kind}").into(),
                        ts_ms: c.ts_ms,
                        value: n as f64,
                    });
                }
                let e = Exemplar {
                    line: redacted.text,
                    ..c
                };
                windower.offer_exemplar(device, &e, max);
                kept.push(e);
            }
        }
        (kept, counts)
    }

    /// Gives every closing template window its template's current text (empty if
    /// the template was evicted since).
    pub fn name_templates(&self, windows: &mut [WindowSummary]) {
        for w in windows {
            if let Some(id) = template_id(&w.metric) {
                let text = self.miner.template_text(id).unwrap_or_default();
                w.template.get_or_insert_with(LogTemplate::default).text = match &self.redactor {
                    Some(r) => r.template_text(&text),
                    None => cap(text, MAX_TEMPLATE_TEXT_BYTES),
                };
            }
        }
    }

    /// Replaces the miner with the state the store kept (start-up).
    pub fn restore(&mut self, bytes: &[u8]) -> Result<(), StateError> {
        self.miner = TemplateMiner::import(bytes)?;
        self.persisted = structure(&self.miner.stats());
        Ok(())
    }

    pub fn miner(&self) -> &TemplateMiner {
        &self.miner
    }

    /// Mines every line of the text messages, appending their readings (and, with
    /// exemplars on, each line as a candidate); returns the miner's state when its
    /// templates changed.
    pub fn apply(&mut self, messages: &mut [Accepted]) -> Option<StateUpdate> {
        let offer = self.exemplars_per_window() > 0;
        for m in messages.iter_mut() {
            let Some(payload) = &m.text else { continue };
            let ts = m.readings.first().map_or(0, |r| r.ts_ms);
            let mut derived = Vec::new();
            for line in text::lines(payload) {
                let found = self.miner.mine(strip_header(line));
                let series = format!("{TEMPLATE_PREFIX}{}", found.id);
                if offer {
                    m.exemplars.push(Exemplar {
                        metric: series.clone(),
                        ts_ms: ts,
                        line: line.to_owned(),
                    });
                }
                for (k, value) in found.params.as_slice().iter().take(MAX_PARAMS).enumerate() {
                    derived.push(Reading {
                        metric: format!("{series}.p{k}").into(),
                        ts_ms: ts,
                        value: *value,
                    });
                }
                derived.push(Reading {
                    metric: series.into(),
                    ts_ms: ts,
                    value: 1.0,
                });
                if found.is_new {
                    derived.push(Reading {
                        metric: NEW_TEMPLATE_METRIC.into(),
                        ts_ms: ts,
                        value: 1.0,
                    });
                }
            }
            m.readings.extend(derived);
        }
        let now = structure(&self.miner.stats());
        (now != self.persisted).then(|| {
            self.persisted = now;
            (STATE_SERIES.to_owned(), String::new(), self.miner.export())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(lines: &str) -> Accepted {
        Accepted {
            device: "gw".into(),
            seq: None,
            readings: vec![Reading {
                metric: text::LOG_METRIC.into(),
                ts_ms: 7,
                value: 1.0,
            }],
            text: Some(lines.to_owned()),
            exemplars: Vec::new(),
            escalations: Vec::new(),
        }
    }

    fn metrics(m: &Accepted) -> Vec<(String, f64)> {
        m.readings
            .iter()
            .skip(1)
            .map(|r| (r.metric.to_string(), r.value))
            .collect()
    }

    #[test]
    fn lines_become_template_readings_and_state_only_on_change() {
        let mut stage = TemplateStage::new(MinerConfig::default()).unwrap();
        let mut first = [message("Received block blk_1 of size 512 from /10.0.0.1")];
        let state = stage
            .apply(&mut first)
            .expect("a new template is persisted");
        assert_eq!(state.0, STATE_SERIES);
        let got = metrics(&first[0]);
        let id = got
            .iter()
            .find(|(m, _)| {
                m.starts_with(TEMPLATE_PREFIX)
                    && m.matches('.').count() == 2
                    && m != NEW_TEMPLATE_METRIC
            })
            .map(|(m, _)| m.clone())
            .unwrap();
        assert!(got.contains(&(NEW_TEMPLATE_METRIC.to_owned(), 1.0)));
        assert!(got.contains(&(id.clone(), 1.0)));

        let mut second = [message("Received block blk_2 of size 1024 from /10.0.0.2")];
        assert!(
            stage.apply(&mut second).is_none(),
            "nothing structural changed"
        );
        let got = metrics(&second[0]);
        assert!(got.contains(&(id.clone(), 1.0)));
        assert!(!got.iter().any(|(m, _)| m == NEW_TEMPLATE_METRIC));
        assert!(got
            .iter()
            .any(|(m, v)| m.starts_with(&format!("{id}.p")) && *v == 1024.0));
    }

    #[test]
    fn ids_survive_a_restart_from_the_committed_state() {
        let mut stage = TemplateStage::new(MinerConfig::default()).unwrap();
        let mut a = [message(
            "session opened for user root by (uid=0)\nconnection from 1.2.3.4",
        )];
        let (_, _, state) = stage.apply(&mut a).unwrap();
        let mut restarted = TemplateStage::new(MinerConfig::default()).unwrap();
        restarted.restore(&state).unwrap();
        let mut b1 = [message(
            "session opened for user root by (uid=0)\nconnection from 5.6.7.8",
        )];
        let mut b2 = b1.clone();
        stage.apply(&mut b1);
        restarted.apply(&mut b2);
        assert_eq!(metrics(&b1[0]), metrics(&b2[0]));
    }
}
