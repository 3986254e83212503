//! The bounded template store: templates by id, their length groups, the line cache, the
//! aliases merges leave behind, least-recently-used eviction and the byte accounting.
//!
//! It keeps the books; it does not decide what is a variable or what merges (`miner.rs`
//! does), and it knows nothing about the byte format of a snapshot (`state.rs`).

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};
use std::mem::size_of;

use super::token::{Kind, Tok, WILD};

/// Hasher for keys that are already ids or hashes: one multiply, no SipHash.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    fn write_u32(&mut self, v: u32) {
        self.write_u64(u64::from(v));
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0 ^ v).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

pub(crate) type IdMap<K, V> = HashMap<K, V, BuildHasherDefault<IdHasher>>;

/// Longest alias chain `resolve` follows (chains are short; this only guards bad state).
const MAX_CHAIN: usize = 64;

/// One template: per position the masked-token hash ([`WILD`] for a variable), its kind, and
/// up to `k` hashes of the raw values seen behind a masked position.
#[derive(Debug, Clone)]
pub(crate) struct Template {
    pub toks: Box<[u64]>,
    pub kinds: Box<[Kind]>,
    pub raw: Box<[u64]>,
    pub raw_len: Box<[u8]>,
    /// Template text, tokens joined by one space, variables as `<*>`.
    pub text: Box<str>,
    /// Lines it holds, including those of templates merged into it.
    pub count: u64,
    /// Line number of its last use (the LRU clock).
    pub last_used: u64,
    /// Made by a merge: its `<*>` positions stand for many values.
    pub generalized: bool,
}

impl Template {
    /// A new template for the line `toks` of `line` (the raw values of its masked positions
    /// recorded).
    pub(crate) fn from_line(toks: &[Tok], line: &str, k: usize, now: u64) -> Template {
        let mut text = String::with_capacity(line.len());
        for (i, t) in toks.iter().enumerate() {
            if i > 0 {
                text.push(' ');
            }
            t.push_masked(line, &mut text);
        }
        let mut t = Template {
            toks: toks.iter().map(|t| t.hash).collect(),
            kinds: toks.iter().map(|t| t.kind).collect(),
            raw: vec![0; toks.len() * k].into_boxed_slice(),
            raw_len: vec![0; toks.len()].into_boxed_slice(),
            text: text.into_boxed_str(),
            count: 1,
            last_used: now,
            generalized: false,
        };
        for (p, tok) in toks.iter().enumerate() {
            if tok.kind != Kind::Const {
                t.add_raw(p, tok.raw, k);
            }
        }
        t
    }

    /// A copy of `self` with the positions in `var` made variables (a merge result).
    pub(crate) fn generalize(&self, var: &[usize], k: usize, now: u64) -> Template {
        let mut toks = self.toks.clone();
        let mut kinds = self.kinds.clone();
        let words: Vec<&str> = self.text.split(' ').collect();
        let mut text = String::with_capacity(self.text.len());
        for (p, w) in words.iter().enumerate() {
            if p > 0 {
                text.push(' ');
            }
            if var.contains(&p) {
                text.push_str(super::token::WILDCARD);
            } else {
                text.push_str(w);
            }
        }
        for &p in var {
            if let (Some(t), Some(kd)) = (toks.get_mut(p), kinds.get_mut(p)) {
                *t = WILD;
                *kd = Kind::Wild;
            }
        }
        Template {
            raw: vec![0; toks.len() * k].into_boxed_slice(),
            raw_len: vec![0; toks.len()].into_boxed_slice(),
            toks,
            kinds,
            text: text.into_boxed_str(),
            count: 0,
            last_used: now,
            generalized: true,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.toks.len()
    }

    /// Number of constants if the line fits this template (same length assumed), else `None`.
    pub(crate) fn fit(&self, line: &[Tok]) -> Option<usize> {
        let mut constants = 0;
        for (&t, l) in self.toks.iter().zip(line) {
            if t != WILD {
                if t != l.hash {
                    return None;
                }
                constants += 1;
            }
        }
        Some(constants)
    }

    /// Whether every line of `other` would fit `self`.
    pub(crate) fn covers(&self, other: &Template) -> bool {
        self.toks.len() == other.toks.len()
            && self
                .toks
                .iter()
                .zip(other.toks.iter())
                .all(|(&a, &b)| a == WILD || a == b)
    }

    pub(crate) fn all_wild(&self) -> bool {
        self.toks.iter().all(|&t| t == WILD)
    }

    /// Records a raw value at `p`; true when this made the set reach `k` values.
    pub(crate) fn add_raw(&mut self, p: usize, raw: u64, k: usize) -> bool {
        let Some(n) = self.raw_len.get(p).map(|&n| n as usize) else {
            return false;
        };
        if n >= k {
            return false;
        }
        let slot = &mut self.raw[p * k..(p + 1) * k];
        if slot[..n].contains(&raw) {
            return false;
        }
        slot[n] = raw;
        self.raw_len[p] = (n + 1) as u8;
        n + 1 == k
    }

    pub(crate) fn raw_set(&self, p: usize, k: usize) -> &[u64] {
        let n = self.raw_len.get(p).map_or(0, |&n| n as usize);
        self.raw.get(p * k..p * k + n).unwrap_or(&[])
    }

    /// Heap bytes owned by this template (its boxed slices and text).
    pub(crate) fn heap_bytes(&self) -> usize {
        self.toks.len() * (size_of::<u64>() + size_of::<Kind>() + 1)
            + self.raw.len() * size_of::<u64>()
            + self.text.len()
    }
}

/// One length group: ids in creation order (the match tie-break) and a change counter that
/// validates cache entries.
#[derive(Debug, Clone, Default)]
pub(crate) struct Group {
    pub ids: Vec<u32>,
    pub epoch: u64,
}

/// Event counters kept with the state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Counters {
    pub lines: u64,
    pub created: u64,
    pub merges: u64,
    pub evictions: u64,
    pub cache_resets: u64,
    pub aliases_dropped: u64,
}

/// All templates and the indexes over them.
#[derive(Debug, Clone)]
pub(crate) struct Store {
    pub k: usize,
    pub max_templates: usize,
    pub templates: IdMap<u32, Template>,
    pub groups: IdMap<u32, Group>,
    by_tokens: IdMap<u64, u32>,
    /// Masked-line hash → (template id, group epoch when cached).
    cache: IdMap<u64, (u32, u64)>,
    pub aliases: BTreeMap<u32, u32>,
    pub next_id: u32,
    epoch: u64,
    pub counters: Counters,
}

impl Store {
    pub(crate) fn new(max_templates: usize, k: usize) -> Store {
        Store {
            k,
            max_templates: max_templates.max(1),
            templates: IdMap::default(),
            groups: IdMap::default(),
            by_tokens: IdMap::default(),
            cache: IdMap::default(),
            aliases: BTreeMap::new(),
            next_id: 0,
            epoch: 0,
            counters: Counters::default(),
        }
    }

    fn cache_cap(&self) -> usize {
        self.max_templates.saturating_mul(4).max(1024)
    }

    fn alias_cap(&self) -> usize {
        self.max_templates.saturating_mul(4).max(1024)
    }

    /// Follows merges to the surviving id (an evicted id resolves to itself).
    pub(crate) fn resolve(&self, mut id: u32) -> u32 {
        for _ in 0..MAX_CHAIN {
            match self.aliases.get(&id) {
                Some(&next) => id = next,
                None => break,
            }
        }
        id
    }

    /// The cached template of a masked line, if the cache entry is still valid.
    pub(crate) fn cached(&self, key: u64, len: usize) -> Option<u32> {
        let &(id, epoch) = self.cache.get(&key)?;
        let group = self.groups.get(&(len as u32))?;
        (group.epoch == epoch && self.templates.contains_key(&id)).then_some(id)
    }

    pub(crate) fn remember(&mut self, key: u64, len: usize, id: u32) {
        let Some(epoch) = self.groups.get(&(len as u32)).map(|g| g.epoch) else {
            return;
        };
        if self.cache.len() >= self.cache_cap() {
            self.cache.clear();
            self.counters.cache_resets += 1;
        }
        self.cache.insert(key, (id, epoch));
    }

    /// The most specific template the line fits (ties: the older one).
    pub(crate) fn best_fit(&self, line: &[Tok]) -> Option<u32> {
        let group = self.groups.get(&(line.len() as u32))?;
        let mut best: Option<(usize, u32)> = None;
        for &id in &group.ids {
            let Some(t) = self.templates.get(&id) else {
                continue;
            };
            if t.all_wild() && t.toks.iter().zip(line).any(|(_, l)| l.hash != WILD) {
                // A template of nothing but variables only takes lines of nothing but variables.
                continue;
            }
            if let Some(c) = t.fit(line) {
                if best.is_none_or(|(bc, _)| c > bc) {
                    best = Some((c, id));
                }
            }
        }
        best.map(|(_, id)| id)
    }

    /// The live template with exactly these tokens.
    pub(crate) fn by_tokens(&self, toks: &[u64]) -> Option<u32> {
        let id = *self.by_tokens.get(&tokens_key(toks))?;
        let t = self.templates.get(&id)?;
        (*t.toks == *toks).then_some(id)
    }

    /// Adds a template under a fresh id, evicting least-recently-used ones first if full.
    pub(crate) fn insert(&mut self, t: Template) -> u32 {
        if self.templates.len() >= self.max_templates {
            self.evict_batch();
        }
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        self.counters.created += 1;
        self.place(id, t);
        id
    }

    /// Puts a template under a known id (also used by import).
    pub(crate) fn place(&mut self, id: u32, t: Template) {
        self.by_tokens.insert(tokens_key(&t.toks), id);
        let len = t.len() as u32;
        self.templates.insert(id, t);
        self.epoch += 1;
        let group = self.groups.entry(len).or_default();
        group.ids.push(id);
        group.epoch = self.epoch;
    }

    fn remove(&mut self, id: u32) -> Option<Template> {
        let t = self.templates.remove(&id)?;
        let key = tokens_key(&t.toks);
        if self.by_tokens.get(&key) == Some(&id) {
            self.by_tokens.remove(&key);
        }
        self.epoch += 1;
        let len = t.len() as u32;
        if let Some(group) = self.groups.get_mut(&len) {
            group.ids.retain(|&g| g != id);
            group.epoch = self.epoch;
            if group.ids.is_empty() {
                self.groups.remove(&len);
            }
        }
        Some(t)
    }

    /// Merges `from` into `into`: its lines count there and its id resolves there from now on.
    pub(crate) fn alias(&mut self, from: u32, into: u32) {
        if from == into || !self.templates.contains_key(&into) {
            return;
        }
        let Some(gone) = self.remove(from) else {
            return;
        };
        if let Some(t) = self.templates.get_mut(&into) {
            t.count += gone.count;
            t.last_used = t.last_used.max(gone.last_used);
        }
        self.counters.merges += 1;
        self.aliases.insert(from, into);
        while self.aliases.len() > self.alias_cap() {
            // The oldest ids go first; their lines were reported long ago.
            self.aliases.pop_first();
            self.counters.aliases_dropped += 1;
        }
    }

    /// Evicts the least recently used sixteenth of the store (at least one template).
    fn evict_batch(&mut self) {
        let n = (self.max_templates / 16).max(1).min(self.templates.len());
        if n == 0 {
            return;
        }
        let mut ages: Vec<(u64, u32)> = self
            .templates
            .iter()
            .map(|(&id, t)| (t.last_used, id))
            .collect();
        ages.select_nth_unstable(n - 1);
        for &(_, id) in &ages[..n] {
            if self.remove(id).is_some() {
                self.counters.evictions += 1;
            }
        }
    }

    /// Bytes held: each template's heap bytes plus every table at its capacity.
    pub(crate) fn bytes(&self) -> usize {
        self.template_bytes()
            + table_bytes::<u64, (u32, u64)>(self.cache.capacity())
            + self.aliases.len() * (2 * size_of::<u32>() + size_of::<usize>())
    }

    /// Bytes that scale with the number of templates (the cache and aliases excluded).
    pub(crate) fn template_bytes(&self) -> usize {
        let heap: usize = self.templates.values().map(Template::heap_bytes).sum();
        let groups: usize = self
            .groups
            .values()
            .map(|g| g.ids.capacity() * size_of::<u32>())
            .sum();
        heap + groups
            + table_bytes::<u32, Template>(self.templates.capacity())
            + table_bytes::<u32, Group>(self.groups.capacity())
            + table_bytes::<u64, u32>(self.by_tokens.capacity())
    }
}

/// A hashbrown table's footprint: one entry and one control byte per slot.
fn table_bytes<K, V>(capacity: usize) -> usize {
    capacity * (size_of::<(K, V)>() + 1)
}

/// Hash of a token sequence (also the line-cache key of a masked line).
pub(crate) fn tokens_key(toks: &[u64]) -> u64 {
    let mut h = super::token::mix(0x51_7cc1_b727_220a, toks.len() as u64);
    for &t in toks {
        h = super::token::mix(h, t);
    }
    h
}

#[cfg(test)]
mod tests;
