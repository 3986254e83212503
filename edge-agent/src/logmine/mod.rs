//! Online log template mining: each log line (header already stripped) → a stable template id,
//! in one pass, with bounded memory.
//!
//! It groups lines; it does not parse headers, store lines, or decide what a new template
//! means for the rest of the pipeline (the caller gets `is_new` and acts on it).
//!
//! How a line is handled:
//!
//! 1. [`token`]: split on whitespace and mask what is a variable by its shape (digits, long
//!    hex, `key=` values, month-name dates, size units, optional extra regexes). No per-token
//!    allocation.
//! 2. [`miner`]: the line joins the most specific template of its token count it fits. If
//!    none fits, it founds a template, and the length group's evidence decides whether some
//!    of its words are variables (Brain-style: within the group, a template's frequent tokens
//!    share one frequency; its rarer tokens are candidates, and a candidate position becomes
//!    a variable when the family sharing the frequent tokens shows `min_distinct` values
//!    there). Templates only ever merge; the merged id resolves to the survivor.
//! 3. [`store`]: at most `max_templates` templates, least recently used evicted first (and
//!    counted); ids are never reused.
//! 4. [`state`]: the whole state as versioned bytes, so ids survive a restart.
//!
//! ```
//! use edge_agent::logmine::{MinerConfig, TemplateMiner};
//!
//! let mut miner = TemplateMiner::new(MinerConfig::default()).unwrap();
//! let a = miner.mine("Received block blk_1 of size 512 from /10.0.0.1");
//! let b = miner.mine("Received block blk_2 of size 1024 from /10.0.0.2");
//! assert!(a.is_new && !b.is_new && a.id == b.id);
//! assert_eq!(b.params.as_slice(), &[1024.0]);
//!
//! let restarted = TemplateMiner::import(&miner.export()).unwrap();
//! assert_eq!(restarted.template_text(a.id), miner.template_text(a.id));
//! ```

mod miner;
mod state;
mod store;
mod token;

pub use miner::TemplateMiner;
pub use state::StateError;
pub use token::WILDCARD;

/// Miner settings. [`Default`] is *the* configuration: the same for every log source, since
/// users have no ground truth to tune against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MinerConfig {
    /// Templates held at most; beyond it the least recently used are evicted.
    pub max_templates: usize,
    /// Tokens per line at most; the rest of a longer line is one variable.
    pub max_tokens: usize,
    /// Extra masks (regexes): a token any of them matches is a variable.
    pub extra_masks: Vec<String>,
    /// Distinct values a position must show before it is a variable (2..=8).
    pub min_distinct: usize,
}

impl Default for MinerConfig {
    fn default() -> Self {
        MinerConfig {
            max_templates: 10_000,
            max_tokens: 128,
            extra_masks: Vec::new(),
            min_distinct: 3,
        }
    }
}

impl MinerConfig {
    fn check(&self) -> Result<(), MinerError> {
        if self.max_templates == 0 || self.max_templates > u32::MAX as usize / 2 {
            return Err(MinerError::Invalid("max_templates must be in 1..=2^31"));
        }
        if self.max_tokens == 0 || self.max_tokens > 4096 {
            return Err(MinerError::Invalid("max_tokens must be in 1..=4096"));
        }
        if !(2..=8).contains(&self.min_distinct) {
            return Err(MinerError::Invalid("min_distinct must be in 2..=8"));
        }
        Ok(())
    }
}

/// A configuration the miner cannot run with.
#[derive(Debug, thiserror::Error)]
pub enum MinerError {
    #[error("invalid miner config: {0}")]
    Invalid(&'static str),
    #[error("extra mask #{index} ({pattern:?}) is not a valid regex: {reason}")]
    BadMask {
        index: usize,
        pattern: String,
        reason: String,
    },
}

/// The template a line joined.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Match {
    /// Template id (resolve it again later: a later merge may alias it).
    pub id: u32,
    /// This line founded a template that did not merge into an older one.
    pub is_new: bool,
    /// Numeric values behind the masked positions, in line order.
    pub params: Params,
}

/// Up to [`Params::CAP`] numbers, inline (no allocation per line).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Params {
    vals: [f64; Params::CAP],
    len: u8,
}

impl Params {
    /// Numbers kept per line.
    pub const CAP: usize = 8;

    pub fn as_slice(&self) -> &[f64] {
        &self.vals[..self.len as usize]
    }

    pub fn len(&self) -> usize {
        self.len as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn is_full(&self) -> bool {
        self.len as usize >= Self::CAP
    }

    fn push(&mut self, v: f64) {
        if let Some(slot) = self.vals.get_mut(self.len as usize) {
            *slot = v;
            self.len += 1;
        }
    }
}

/// Counters and memory of a miner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MinerStats {
    /// Lines mined.
    pub lines: u64,
    /// Templates held now.
    pub templates: usize,
    /// Templates ever created (founded or made by a merge).
    pub created: u64,
    /// Templates merged into another.
    pub merges: u64,
    /// Templates evicted by the `max_templates` cap.
    pub evictions: u64,
    /// Alias entries held (merged id → survivor).
    pub aliases: usize,
    /// Alias entries dropped by their cap (4 × `max_templates`).
    pub aliases_dropped: u64,
    /// Times the line cache hit its cap (4 × `max_templates`) and was cleared.
    pub cache_resets: u64,
    /// Bytes held: templates, their indexes, the line cache and the aliases.
    pub bytes: usize,
    /// Bytes that scale with templates (template data and indexes, no cache or aliases).
    pub template_bytes: usize,
}
