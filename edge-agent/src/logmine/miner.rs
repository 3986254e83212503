//! The grouping algorithm: which template a line joins, and when templates merge.
//!
//! One pass, one line at a time. A line first looks for a template it fits (cache, then the
//! most specific template of its length). A line that fits none founds a new template, and
//! that is when the evidence is weighed: within its length group, the positions whose token is
//! rarer than the template's own frequent tokens are candidates; a candidate position becomes a
//! variable once the family that shares the frequent tokens shows `min_distinct` different
//! values there. Templates never split; they only merge, and a merged id keeps resolving to
//! the survivor. The byte layout of a snapshot is in `state.rs`, the masking in `token.rs`.

use super::store::{tokens_key, Store, Template};
use super::token::{tokenize, Kind, Masks, Tok, WILD};
use super::{Match, MinerConfig, MinerError, MinerStats, Params};

/// A streaming log template miner. See the [module docs](super).
#[derive(Debug, Clone)]
pub struct TemplateMiner {
    pub(crate) cfg: MinerConfig,
    pub(crate) masks: Masks,
    pub(crate) store: Store,
    scratch: Vec<Tok>,
}

/// What a position of the family shows: a set of value hashes, or "many".
enum Values {
    Many,
    Some(Vec<u64>),
}

impl TemplateMiner {
    /// A miner with this configuration (the extra masks are compiled here).
    pub fn new(cfg: MinerConfig) -> Result<TemplateMiner, MinerError> {
        cfg.check()?;
        let masks = Masks::compile(&cfg.extra_masks).map_err(|(index, e)| MinerError::BadMask {
            index,
            pattern: cfg.extra_masks.get(index).cloned().unwrap_or_default(),
            reason: e.to_string(),
        })?;
        let store = Store::new(cfg.max_templates, cfg.min_distinct);
        Ok(TemplateMiner::from_parts(cfg, masks, store))
    }

    pub(crate) fn from_parts(cfg: MinerConfig, masks: Masks, store: Store) -> TemplateMiner {
        TemplateMiner {
            cfg,
            masks,
            store,
            scratch: Vec::with_capacity(64),
        }
    }

    /// The configuration in use.
    pub fn config(&self) -> &MinerConfig {
        &self.cfg
    }

    /// Mines one line's content (header already stripped) and returns the template it joined.
    pub fn mine(&mut self, content: &str) -> Match {
        let mut toks = std::mem::take(&mut self.scratch);
        tokenize(content, &self.masks, self.cfg.max_tokens, &mut toks);
        let m = self.mine_tokens(content, &toks);
        self.scratch = toks;
        m
    }

    fn mine_tokens(&mut self, line: &str, toks: &[Tok]) -> Match {
        self.store.counters.lines += 1;
        let now = self.store.counters.lines;
        let params = numeric_params(line, toks);
        let key = line_key(toks);
        let found = match self.store.cached(key, toks.len()) {
            Some(id) => Some(id),
            None => {
                let fit = self.store.best_fit(toks);
                if let Some(id) = fit {
                    self.store.remember(key, toks.len(), id);
                }
                fit
            }
        };
        let (id, is_new) = match found {
            Some(id) => {
                let id = self.touch(id, toks, now);
                (id, false)
            }
            None => {
                let t = Template::from_line(toks, line, self.store.k, now);
                let id = self.store.insert(t);
                self.generalize(id, now);
                let survivor = self.store.resolve(id);
                if survivor != id {
                    if let Some(t) = self.store.templates.get_mut(&survivor) {
                        t.last_used = now;
                    }
                    self.record_raw(survivor, toks);
                }
                (survivor, survivor == id)
            }
        };
        Match { id, is_new, params }
    }

    /// Counts a line in its template and records the raw values behind its variables.
    fn touch(&mut self, id: u32, toks: &[Tok], now: u64) -> u32 {
        if let Some(t) = self.store.templates.get_mut(&id) {
            t.count += 1;
            t.last_used = now;
        }
        self.record_raw(id, toks);
        self.store.resolve(id)
    }

    /// Records raw values; a whole-variable position that just reached `min_distinct` values
    /// absorbs the more specific templates it covers (they were founded before it was known
    /// to be a variable).
    fn record_raw(&mut self, id: u32, toks: &[Tok]) {
        let k = self.store.k;
        let Some(t) = self.store.templates.get_mut(&id) else {
            return;
        };
        let mut confirmed = false;
        for (p, tok) in toks.iter().enumerate().take(t.len()) {
            if t.kinds[p] != Kind::Const && t.add_raw(p, tok.raw, k) && t.toks[p] == WILD {
                confirmed = true;
            }
        }
        if confirmed && !t.all_wild() {
            self.absorb_covered(id);
        }
    }

    fn absorb_covered(&mut self, id: u32) {
        let Some(t) = self.store.templates.get(&id) else {
            return;
        };
        let covered: Vec<u32> = self
            .store
            .groups
            .get(&(t.len() as u32))
            .map(|g| {
                g.ids
                    .iter()
                    .copied()
                    .filter(|&j| j != id)
                    .filter(|j| self.store.templates.get(j).is_some_and(|o| t.covers(o)))
                    .collect()
            })
            .unwrap_or_default();
        for j in covered {
            self.store.alias(j, id);
        }
    }

    /// Weighs the evidence around the new template `id` and merges its family if some
    /// position turned out to be a variable.
    fn generalize(&mut self, id: u32, now: u64) {
        let k = self.store.k;
        let Some(t) = self.store.templates.get(&id) else {
            return;
        };
        let len = t.len();
        let Some(group) = self.store.groups.get(&(len as u32)) else {
            return;
        };
        let members: Vec<&Template> = group
            .ids
            .iter()
            .filter_map(|j| self.store.templates.get(j))
            .collect();

        // How many lines of the group share this template's token, position by position.
        let mut freq = vec![0u64; len];
        for m in &members {
            for (p, f) in freq.iter_mut().enumerate() {
                if m.toks[p] == t.toks[p] {
                    *f += m.count;
                }
            }
        }
        // The template's frequent tokens share one frequency: the one most positions have
        // (ties: the lowest). Rarer tokens are the candidates for variables.
        let constants: Vec<usize> = (0..len).filter(|&p| t.toks[p] != WILD).collect();
        let Some(anchor_freq) = mode_lowest(constants.iter().map(|&p| freq[p])) else {
            return;
        };
        let candidates: Vec<usize> = constants
            .iter()
            .copied()
            .filter(|&p| freq[p] < anchor_freq)
            .collect();
        if candidates.is_empty() {
            return;
        }
        let family: Vec<(u32, &Template)> = group
            .ids
            .iter()
            .filter_map(|&j| self.store.templates.get(&j).map(|m| (j, m)))
            .filter(|(_, m)| {
                (0..len).all(|q| {
                    candidates.contains(&q)
                        || m.toks[q] == t.toks[q]
                        || m.toks[q] == WILD
                        || t.toks[q] == WILD
                })
            })
            .collect();
        let mut var = Vec::new();
        for &p in &candidates {
            let mut seen: Vec<u64> = Vec::with_capacity(k);
            let mut many = false;
            for (_, m) in &family {
                match values(m, p, k) {
                    Values::Many => {
                        many = true;
                        break;
                    }
                    Values::Some(vs) => {
                        for v in vs {
                            if !seen.contains(&v) {
                                seen.push(v);
                            }
                        }
                    }
                }
                if seen.len() >= k {
                    break;
                }
            }
            if many || seen.len() >= k {
                var.push(p);
            }
        }
        // Keep at least one constant: a template of nothing but variables groups nothing.
        if var.is_empty() || var.len() + (len - constants.len()) >= len {
            return;
        }
        let merged = t.generalize(&var, k, now);
        let family: Vec<u32> = family
            .iter()
            .filter(|(_, m)| merged.covers(m))
            .map(|(j, _)| *j)
            .collect();
        let into = match self.store.by_tokens(&merged.toks) {
            Some(existing) => {
                if let Some(e) = self.store.templates.get_mut(&existing) {
                    e.generalized = true;
                }
                existing
            }
            None => self.store.insert(merged),
        };
        for j in family {
            self.store.alias(j, into);
        }
    }

    /// The template text with `<*>` for variables, if the id (after merges) is still held.
    pub fn template_text(&self, id: u32) -> Option<String> {
        let id = self.store.resolve(id);
        self.store.templates.get(&id).map(|t| t.text.to_string())
    }

    /// The surviving id of `id` after merges (itself if it never merged).
    pub fn resolve(&self, id: u32) -> u32 {
        self.store.resolve(id)
    }

    /// Counters and the memory held.
    pub fn stats(&self) -> MinerStats {
        let c = self.store.counters;
        MinerStats {
            lines: c.lines,
            templates: self.store.templates.len(),
            created: c.created,
            merges: c.merges,
            evictions: c.evictions,
            aliases: self.store.aliases.len(),
            aliases_dropped: c.aliases_dropped,
            cache_resets: c.cache_resets,
            bytes: self.store.bytes(),
            template_bytes: self.store.template_bytes(),
        }
    }

    /// Live templates as (id, line count, text), oldest id first.
    pub fn templates(&self) -> Vec<(u32, u64, String)> {
        let mut out: Vec<(u32, u64, String)> = self
            .store
            .templates
            .iter()
            .map(|(&id, t)| (id, t.count, t.text.to_string()))
            .collect();
        out.sort_by_key(|(id, _, _)| *id);
        out
    }
}

/// The values a family member shows at `p`: its constant or key (one value), the raw values
/// behind a plain mask, or "many" for a position a merge already made variable.
fn values(m: &Template, p: usize, k: usize) -> Values {
    match m.kinds[p] {
        Kind::Const | Kind::Keyed => Values::Some(vec![m.toks[p]]),
        Kind::Wild if m.generalized && m.toks[p] == WILD => Values::Many,
        Kind::Wild => Values::Some(m.raw_set(p, k).to_vec()),
    }
}

/// The value occurring most often (ties: the lowest); `None` for no values.
fn mode_lowest(values: impl Iterator<Item = u64>) -> Option<u64> {
    let mut vs: Vec<u64> = values.collect();
    vs.sort_unstable();
    let mut best: Option<(usize, u64)> = None;
    let mut i = 0;
    while i < vs.len() {
        let mut j = i;
        while j < vs.len() && vs[j] == vs[i] {
            j += 1;
        }
        if best.is_none_or(|(n, _)| j - i > n) {
            best = Some((j - i, vs[i]));
        }
        i = j;
    }
    best.map(|(_, v)| v)
}

/// Hash of the masked line (the cache key).
fn line_key(toks: &[Tok]) -> u64 {
    let mut h = super::token::mix(0x51_7cc1_b727_220a, toks.len() as u64);
    for t in toks {
        h = super::token::mix(h, t.hash);
    }
    debug_assert_eq!(
        h,
        tokens_key(&toks.iter().map(|t| t.hash).collect::<Vec<_>>())
    );
    h
}

/// Numbers behind the masks, in line order, at most [`Params::CAP`].
fn numeric_params(line: &str, toks: &[Tok]) -> Params {
    let mut params = Params::default();
    for t in toks {
        if t.kind == Kind::Const || params.is_full() {
            continue;
        }
        let v = t
            .value(line)
            .trim_end_matches([',', ';', ')', ']', '}', '"', '\'', '.', ':']);
        if let Ok(x) = v.parse::<f64>() {
            if x.is_finite() {
                params.push(x);
            }
        }
    }
    params
}

#[cfg(test)]
mod tests;
