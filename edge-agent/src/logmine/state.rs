//! The miner's whole state as versioned bytes (export) and back (import), so template ids
//! survive a restart: a line that mapped to id 7 before maps to 7 after.
//!
//! Layout (little endian): magic `LGMN`, version u16, the config, next id, counters, templates
//! per length group in match order, aliases, and an FNV-1a checksum of everything before it.
//! Import checks every count and index against the bytes that remain and returns a
//! [`StateError`] on anything wrong; it never panics. Where the bytes are kept (sled) is the
//! caller's business. The line cache is not saved: it is only an accelerator.

use super::store::{Store, Template};
use super::token::{hash_bytes, Kind, Masks};
use super::{MinerConfig, TemplateMiner};

const MAGIC: &[u8; 4] = b"LGMN";
const VERSION: u16 = 1;

/// Why a snapshot could not be imported.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StateError {
    #[error("miner state truncated")]
    Truncated,
    #[error("not a miner state (bad magic)")]
    BadMagic,
    #[error("miner state version {0} is not supported (this build reads {VERSION})")]
    UnsupportedVersion(u16),
    #[error("miner state checksum mismatch")]
    Checksum,
    #[error("miner state corrupt: {0}")]
    Corrupt(&'static str),
}

impl TemplateMiner {
    /// The state as bytes (see the module docs of `state.rs` for the layout).
    pub fn export(&self) -> Vec<u8> {
        let s = &self.store;
        let mut w = Vec::with_capacity(64 + s.template_bytes());
        w.extend_from_slice(MAGIC);
        put_u16(&mut w, VERSION);
        put_u64(&mut w, self.cfg.max_templates as u64);
        put_u32(&mut w, self.cfg.max_tokens as u32);
        w.push(self.cfg.min_distinct as u8);
        put_u32(&mut w, self.cfg.extra_masks.len() as u32);
        for m in &self.cfg.extra_masks {
            put_bytes(&mut w, m.as_bytes());
        }
        put_u32(&mut w, s.next_id);
        let c = s.counters;
        for v in [
            c.lines,
            c.created,
            c.merges,
            c.evictions,
            c.cache_resets,
            c.aliases_dropped,
        ] {
            put_u64(&mut w, v);
        }
        let mut lens: Vec<u32> = s.groups.keys().copied().collect();
        lens.sort_unstable();
        put_u32(&mut w, lens.len() as u32);
        for len in lens {
            let ids: Vec<u32> = s
                .groups
                .get(&len)
                .map(|g| g.ids.clone())
                .unwrap_or_default();
            put_u32(&mut w, len);
            put_u32(&mut w, ids.len() as u32);
            for id in ids {
                let Some(t) = s.templates.get(&id) else {
                    continue; // cannot happen: groups list live ids only
                };
                put_u32(&mut w, id);
                put_u64(&mut w, t.count);
                put_u64(&mut w, t.last_used);
                w.push(u8::from(t.generalized));
                put_bytes(&mut w, t.text.as_bytes());
                w.extend(t.kinds.iter().map(|&k| k as u8));
                for &h in t.toks.iter() {
                    put_u64(&mut w, h);
                }
                w.extend_from_slice(&t.raw_len);
                for &h in t.raw.iter() {
                    put_u64(&mut w, h);
                }
            }
        }
        put_u32(&mut w, s.aliases.len() as u32);
        for (&from, &to) in &s.aliases {
            put_u32(&mut w, from);
            put_u32(&mut w, to);
        }
        let sum = hash_bytes(&w);
        put_u64(&mut w, sum);
        w
    }

    /// A miner from [`TemplateMiner::export`]ed bytes, with the configuration they carry.
    pub fn import(bytes: &[u8]) -> Result<TemplateMiner, StateError> {
        if bytes.len() < MAGIC.len() + 2 + 8 {
            return Err(StateError::Truncated);
        }
        let (body, sum) = bytes.split_at(bytes.len() - 8);
        let mut r = Reader { b: body };
        if r.take(4)? != MAGIC {
            return Err(StateError::BadMagic);
        }
        let version = r.u16()?;
        if version != VERSION {
            return Err(StateError::UnsupportedVersion(version));
        }
        if u64::from_le_bytes(sum.try_into().map_err(|_| StateError::Truncated)?)
            != hash_bytes(body)
        {
            return Err(StateError::Checksum);
        }
        let max_templates = usize::try_from(r.u64()?).map_err(|_| corrupt("max_templates"))?;
        let max_tokens = r.u32()? as usize;
        let min_distinct = r.u8()? as usize;
        let n_masks = r.count(4)?;
        let mut extra_masks = Vec::with_capacity(n_masks);
        for _ in 0..n_masks {
            extra_masks.push(r.string()?.to_string());
        }
        let cfg = MinerConfig {
            max_templates,
            max_tokens,
            extra_masks,
            min_distinct,
        };
        cfg.check().map_err(|_| corrupt("config out of range"))?;
        let masks = Masks::compile(&cfg.extra_masks).map_err(|_| corrupt("extra mask"))?;
        let k = cfg.min_distinct;
        let mut store = Store::new(cfg.max_templates, k);
        store.next_id = r.u32()?;
        let c = &mut store.counters;
        c.lines = r.u64()?;
        c.created = r.u64()?;
        c.merges = r.u64()?;
        c.evictions = r.u64()?;
        c.cache_resets = r.u64()?;
        c.aliases_dropped = r.u64()?;
        let n_groups = r.count(8)?;
        for _ in 0..n_groups {
            let len = r.u32()? as usize;
            if len > cfg.max_tokens {
                return Err(corrupt("template longer than max_tokens"));
            }
            let n = r.count(21 + len * 10)?;
            for _ in 0..n {
                let id = r.u32()?;
                if id >= store.next_id || store.templates.contains_key(&id) {
                    return Err(corrupt("template id"));
                }
                if store.templates.len() >= cfg.max_templates {
                    return Err(corrupt("more templates than max_templates"));
                }
                let t = read_template(&mut r, len, k)?;
                store.place(id, t);
            }
        }
        let n_aliases = r.count(8)?;
        for _ in 0..n_aliases {
            let (from, to) = (r.u32()?, r.u32()?);
            if from >= store.next_id || to >= store.next_id || store.templates.contains_key(&from) {
                return Err(corrupt("alias"));
            }
            store.aliases.insert(from, to);
        }
        if !r.b.is_empty() {
            return Err(corrupt("trailing bytes"));
        }
        Ok(TemplateMiner::from_parts(cfg, masks, store))
    }
}

fn read_template(r: &mut Reader<'_>, len: usize, k: usize) -> Result<Template, StateError> {
    let count = r.u64()?;
    let last_used = r.u64()?;
    let generalized = match r.u8()? {
        0 => false,
        1 => true,
        _ => return Err(corrupt("flag")),
    };
    let text = r.string()?;
    let words = if text.is_empty() {
        0
    } else {
        text.split(' ').count()
    };
    if words != len {
        return Err(corrupt("template text does not match its length"));
    }
    let kinds = r
        .take(len)?
        .iter()
        .map(|&b| Kind::from_u8(b).ok_or(corrupt("token kind")))
        .collect::<Result<Box<[Kind]>, _>>()?;
    let toks = (0..len)
        .map(|_| r.u64())
        .collect::<Result<Box<[u64]>, _>>()?;
    let raw_len: Box<[u8]> = r.take(len)?.into();
    if raw_len.iter().any(|&n| n as usize > k) {
        return Err(corrupt("raw value count"));
    }
    let raw = (0..len * k)
        .map(|_| r.u64())
        .collect::<Result<Box<[u64]>, _>>()?;
    Ok(Template {
        toks,
        kinds,
        raw,
        raw_len,
        text: text.into(),
        count,
        last_used,
        generalized,
    })
}

fn corrupt(what: &'static str) -> StateError {
    StateError::Corrupt(what)
}

fn put_u16(w: &mut Vec<u8>, v: u16) {
    w.extend_from_slice(&v.to_le_bytes());
}
fn put_u32(w: &mut Vec<u8>, v: u32) {
    w.extend_from_slice(&v.to_le_bytes());
}
fn put_u64(w: &mut Vec<u8>, v: u64) {
    w.extend_from_slice(&v.to_le_bytes());
}
fn put_bytes(w: &mut Vec<u8>, b: &[u8]) {
    put_u32(w, b.len() as u32);
    w.extend_from_slice(b);
}

/// A cursor over untrusted bytes: every read is bounds-checked.
struct Reader<'a> {
    b: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], StateError> {
        if n > self.b.len() {
            return Err(StateError::Truncated);
        }
        let (head, tail) = self.b.split_at(n);
        self.b = tail;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, StateError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, StateError> {
        let mut a = [0u8; 2];
        a.copy_from_slice(self.take(2)?);
        Ok(u16::from_le_bytes(a))
    }
    fn u32(&mut self) -> Result<u32, StateError> {
        let mut a = [0u8; 4];
        a.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(a))
    }
    fn u64(&mut self) -> Result<u64, StateError> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(a))
    }
    /// A count of items of at least `min_size` bytes each, checked against what remains.
    fn count(&mut self, min_size: usize) -> Result<usize, StateError> {
        let n = self.u32()? as usize;
        if n.saturating_mul(min_size.max(1)) > self.b.len() {
            return Err(StateError::Truncated);
        }
        Ok(n)
    }
    fn string(&mut self) -> Result<&'a str, StateError> {
        let n = self.u32()? as usize;
        std::str::from_utf8(self.take(n)?).map_err(|_| corrupt("text is not UTF-8"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINES: [&str; 8] = [
        "session opened for user alice by sshd",
        "session opened for user bob by sshd",
        "Received block blk_1 of size 512",
        "session opened for user carol by sshd",
        "session closed for user alice",
        "Received block blk_2 of size 1024",
        "session opened for user dave by sshd",
        "session closed for user bob",
    ];

    #[test]
    fn ids_survive_export_import() {
        let mut straight = TemplateMiner::new(MinerConfig::default()).expect("valid");
        let expected: Vec<u32> = LINES
            .iter()
            .chain(LINES.iter())
            .map(|l| straight.mine(l).id)
            .collect();
        let mut first = TemplateMiner::new(MinerConfig::default()).expect("valid");
        let mut got: Vec<u32> = LINES.iter().map(|l| first.mine(l).id).collect();
        let mut second = TemplateMiner::import(&first.export()).expect("round trip");
        got.extend(LINES.iter().map(|l| second.mine(l).id));
        assert_eq!(got, expected);
        assert_eq!(second.export(), straight.export());
        for &id in &expected {
            assert_eq!(second.resolve(id), straight.resolve(id));
        }
    }

    #[test]
    fn bad_bytes_are_errors_not_panics() {
        let mut m = TemplateMiner::new(MinerConfig::default()).expect("valid");
        for l in LINES {
            m.mine(l);
        }
        let good = m.export();
        assert!(TemplateMiner::import(&good).is_ok());
        for cut in 0..good.len() {
            assert!(TemplateMiner::import(&good[..cut]).is_err(), "cut {cut}");
        }
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x5a;
            assert!(TemplateMiner::import(&bad).is_err(), "flip {i}");
        }
        assert_eq!(
            TemplateMiner::import(b"nonsense nonsense").err(),
            Some(StateError::BadMagic)
        );
    }

    #[test]
    fn corrupt_body_with_fixed_checksum_is_rejected() {
        let mut m = TemplateMiner::new(MinerConfig::default()).expect("valid");
        m.mine("a b c");
        let mut bytes = m.export();
        bytes.truncate(bytes.len() - 8);
        // Claim a huge number of aliases, then re-seal the checksum.
        let n = bytes.len();
        bytes[n - 4..].copy_from_slice(&u32::MAX.to_le_bytes());
        let sum = hash_bytes(&bytes);
        bytes.extend_from_slice(&sum.to_le_bytes());
        assert_eq!(
            TemplateMiner::import(&bytes).err(),
            Some(StateError::Truncated)
        );
    }
}
