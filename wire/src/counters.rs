//! Counters of input that did not become (or did not stay in) a window, and
//! the agent's health counts.
//!
//! Every rejected, late, duplicated or dropped reading is counted under a stable
//! reason code and shipped in the next batch, so degradation is visible at the
//! sink, never silent. Keys are strings on the wire so an older sink accepts a
//! newer agent's reasons; [`Reason`] lists the ones this version emits.
//!
//! Keys under [`HEALTH_PREFIX`] count events of the gateway itself (restarts,
//! broker and uplink errors, ingest holds, compactions): they ride the same
//! map so they are persisted, carried through roll-ups and drops, and summed
//! at the sink exactly like the input reasons, and so survive an outage. The
//! agent names them (`edge-agent/src/health.rs`); this module does not.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Why a message or reading was not (fully) used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reason {
    /// Payload was not parseable in the route's format (bad JSON, bad CBOR, bad line).
    Malformed,
    /// A field had a type the decoder cannot use (string where a number belongs).
    WrongType,
    /// A value was NaN or infinite.
    NonFinite,
    /// Payload (or a string inside it) exceeded the configured size limit.
    TooLarge,
    /// The topic matched no configured route.
    UnknownTopic,
    /// A payload carried a timestamp that is not plausible (before 2000, too far ahead).
    BadTimestamp,
    /// More distinct series than `limits.max_series` would be created: the
    /// reading went into the overflow series (`_overflow`/`_overflow`) instead.
    TooManySeries,
    /// The reading's window had already been closed and shipped.
    Late,
    /// A redelivered message (same device sequence number) was recognised and skipped.
    Duplicate,
    /// A message decoded to no readings at all.
    Empty,
    /// Windows that no longer exist on their own: the outbox reached its byte
    /// cap and merged them into coarser windows (resolution lost, data kept).
    RolledUp,
    /// Windows dropped because the outbox was full even after rolling up to
    /// the coarsest width allowed (data lost, counted in original windows:
    /// a dropped roll-up of 4 windows counts 4).
    OutboxFull,
    /// A record of the agent's own store (journal entry, outbox batch,
    /// counters) failed its checks at start-up and was moved to quarantine;
    /// if the store would not open at all, the whole store was moved aside.
    CorruptRecord,
    /// Unsure judgements that were not escalated to the cloud model: over the
    /// device's hourly budget (`routing.max_escalations_per_device_hour`) or
    /// over a window's room for them. The local verdict stands for these.
    EscalationOverBudget,
    /// A field of a kind the decoder does not read (Sparkplug B DataSet,
    /// Template, PropertySet, array or extension values): skipped, siblings flow.
    Unsupported,
    /// A Sparkplug B data or device message of an edge node or device with no
    /// live birth (never born since the agent started, or dead since): dropped.
    SparkplugBeforeBirth,
    /// A Sparkplug B metric whose alias its birth did not define (or with
    /// neither name nor alias): skipped, siblings flow.
    SparkplugUnknownAlias,
    /// A Sparkplug B message whose `seq` was not the edge node's next one
    /// (one count per jump); the message itself is used.
    SparkplugSeqGap,
    /// Sparkplug B messages the jumps counted by `SparkplugSeqGap` skipped over.
    SparkplugSeqMissed,
    /// A Sparkplug B NDEATH whose `bdSeq` is not the current birth's (a will
    /// left over from an earlier session): ignored, the node stays online.
    SparkplugStaleDeath,
    /// A Sparkplug B NDEATH or DDEATH that took its node or device offline.
    SparkplugDeath,
    /// A Sparkplug B message that is not telemetry (NCMD, DCMD, STATE): ignored.
    SparkplugIgnored,
}

impl Reason {
    /// Every reason, in wire order.
    pub const ALL: [Reason; 22] = [
        Reason::Malformed,
        Reason::WrongType,
        Reason::NonFinite,
        Reason::TooLarge,
        Reason::UnknownTopic,
        Reason::BadTimestamp,
        Reason::TooManySeries,
        Reason::Late,
        Reason::Duplicate,
        Reason::Empty,
        Reason::RolledUp,
        Reason::OutboxFull,
        Reason::CorruptRecord,
        Reason::EscalationOverBudget,
        Reason::Unsupported,
        Reason::SparkplugBeforeBirth,
        Reason::SparkplugUnknownAlias,
        Reason::SparkplugSeqGap,
        Reason::SparkplugSeqMissed,
        Reason::SparkplugStaleDeath,
        Reason::SparkplugDeath,
        Reason::SparkplugIgnored,
    ];

    /// The stable wire name of this reason.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Malformed => "malformed",
            Reason::WrongType => "wrong_type",
            Reason::NonFinite => "non_finite",
            Reason::TooLarge => "too_large",
            Reason::UnknownTopic => "unknown_topic",
            Reason::BadTimestamp => "bad_timestamp",
            Reason::TooManySeries => "too_many_series",
            Reason::Late => "late",
            Reason::Duplicate => "duplicate",
            Reason::Empty => "empty",
            Reason::RolledUp => "rolled_up",
            Reason::OutboxFull => "outbox_full",
            Reason::CorruptRecord => "corrupt_record",
            Reason::EscalationOverBudget => "escalation_over_budget",
            Reason::Unsupported => "unsupported",
            Reason::SparkplugBeforeBirth => "sparkplug_before_birth",
            Reason::SparkplugUnknownAlias => "sparkplug_unknown_alias",
            Reason::SparkplugSeqGap => "sparkplug_seq_gap",
            Reason::SparkplugSeqMissed => "sparkplug_seq_missed",
            Reason::SparkplugStaleDeath => "sparkplug_stale_death",
            Reason::SparkplugDeath => "sparkplug_death",
            Reason::SparkplugIgnored => "sparkplug_ignored",
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Prefix of the health-count keys in [`Counters`]: `agent.<name>`.
pub const HEALTH_PREFIX: &str = "agent.";

/// Counts per reason code (and health counts). Missing keys mean zero.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Counters(pub BTreeMap<String, u64>);

impl Counters {
    /// Adds `n` under `reason`, saturating at `u64::MAX`.
    pub fn add(&mut self, reason: Reason, n: u64) {
        if n > 0 {
            let count = self.0.entry(reason.as_str().to_owned()).or_default();
            *count = count.saturating_add(n);
        }
    }

    /// The count under `reason` (zero when absent).
    pub fn get(&self, reason: Reason) -> u64 {
        self.0.get(reason.as_str()).copied().unwrap_or(0)
    }

    /// Adds every count of `other` into `self`, saturating at `u64::MAX`: counters
    /// come from untrusted batches at the sink, and a huge one must not overflow.
    pub fn merge(&mut self, other: &Counters) {
        for (k, v) in &other.0 {
            let count = self.0.entry(k.clone()).or_default();
            *count = count.saturating_add(*v);
        }
    }

    /// Adds `n` under the health count `agent.<name>`, saturating at `u64::MAX`.
    pub fn add_health(&mut self, name: &str, n: u64) {
        if n > 0 {
            let count = self.0.entry(format!("{HEALTH_PREFIX}{name}")).or_default();
            *count = count.saturating_add(n);
        }
    }

    /// The health count `agent.<name>` (zero when absent).
    pub fn health(&self, name: &str) -> u64 {
        self.0
            .iter()
            .find(|(k, _)| k.strip_prefix(HEALTH_PREFIX) == Some(name))
            .map_or(0, |(_, v)| *v)
    }

    /// True when nothing was counted.
    pub fn is_empty(&self) -> bool {
        self.0.values().all(|v| *v == 0)
    }

    /// The input reasons' counts: every key but the health counts.
    pub fn inputs(&self) -> impl Iterator<Item = (&str, u64)> {
        self.0
            .iter()
            .filter(|(k, _)| !k.starts_with(HEALTH_PREFIX))
            .map(|(k, v)| (k.as_str(), *v))
    }

    /// Sum over the input reasons (health counts aside), saturating at `u64::MAX`.
    pub fn total(&self) -> u64 {
        self.inputs()
            .fold(0u64, |sum, (_, v)| sum.saturating_add(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_counts_saturate_instead_of_overflowing() {
        let mut hostile = Counters::default();
        hostile.0.insert("malformed".into(), u64::MAX);
        hostile
            .0
            .insert("made_up_by_a_newer_agent".into(), u64::MAX - 1);
        let mut sum = Counters::default();
        sum.add(Reason::Malformed, 5);
        sum.merge(&hostile);
        sum.merge(&hostile);
        assert_eq!(sum.get(Reason::Malformed), u64::MAX);
        assert_eq!(sum.0["made_up_by_a_newer_agent"], u64::MAX);
        sum.add(Reason::Malformed, 1);
        assert_eq!(sum.get(Reason::Malformed), u64::MAX);
        assert_eq!(sum.total(), u64::MAX);
    }

    #[test]
    fn ordinary_counts_still_add_up() {
        let mut a = Counters::default();
        a.add(Reason::Late, 2);
        a.add(Reason::Late, 0);
        let mut b = Counters::default();
        b.add(Reason::Late, 3);
        b.add(Reason::Duplicate, 1);
        a.merge(&b);
        assert_eq!((a.get(Reason::Late), a.get(Reason::Duplicate)), (5, 1));
        assert_eq!(a.total(), 6);
        assert!(!a.0.contains_key("empty"), "a zero add creates no key");
    }

    #[test]
    fn health_counts_are_kept_apart_from_input_reasons() {
        let mut c = Counters::default();
        c.add_health("uplink_failures", 4);
        assert!(c.inputs().next().is_none() && !c.is_empty());
        assert_eq!(c.total(), 0, "health counts are not rejected input");
        c.add(Reason::Late, 2);
        let mut other = Counters::default();
        other.add_health("uplink_failures", 1);
        c.merge(&other);
        assert_eq!(c.health("uplink_failures"), 5);
        assert_eq!(c.0["agent.uplink_failures"], 5);
        assert_eq!(c.inputs().collect::<Vec<_>>(), vec![("late", 2)]);
        assert_eq!(c.total(), 2);
    }
}
