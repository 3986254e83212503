//! Sparkplug B (ISO/IEC 20237) payloads on `spBv1.0/<group>/<type>/<edge_node>[/<device>]`: stateful decoding into readings.
//!
//! [`Sparkplug::decode`] reads one message with the [`Session`] of everything
//! before it: births define metric names, aliases and datatypes and carry
//! current values (readings too); NDATA/DDATA resolve aliases through their
//! birth; deaths take nodes and devices offline. Node metrics belong to device
//! `<group>/<edge_node>`, a device's to `<group>/<edge_node>/<device>` (capped
//! at `max_name_bytes` like every device name); the metric is the Sparkplug
//! name. A reading's time is the metric's timestamp, else the payload's, else
//! the gateway clock, checked like any payload time; historical metrics
//! (`is_historical`) are placed by that time like any other reading, so the
//! windower's late rule applies to them unchanged. Per-metric problems
//! (unknown alias, string, DataSet, bad time) are counted and skipped; a
//! message before its birth, a stale NDEATH, NCMD/DCMD/STATE are whole-message
//! reasons. `bdSeq` and `Node Control/*` metrics are session control, not
//! readings. Seq jumps are counted (`sparkplug_seq_gap`, `sparkplug_seq_missed`)
//! and the message is used. Data the session cannot read (an unborn node or
//! device, an unknown alias) makes a rebirth request due for its node
//! ([`Sparkplug::rebirth_request`], see `rebirth.rs`). It never panics on
//! input and publishes nothing itself.

pub mod proto;
pub mod rebirth;
mod session;
pub mod values;

use prost::Message;
use tracing::debug;
use wire::{Counters, Reason};

use super::{time, DecodeLimits, Decoded, Reading};
pub use rebirth::Command;
pub use session::{Session, Table, MAX_DEVICES_PER_NODE, MAX_NODES};

/// The Sparkplug B topic namespace (first topic level).
pub const NAMESPACE: &str = "spBv1.0";
/// Metrics of one payload beyond this reject it (`too_large`).
pub const MAX_METRICS: usize = 4096;
/// The birth metric holding the birth/death sequence number.
const BD_SEQ: &str = "bdSeq";
/// Birth metrics under this prefix are commands to the node, not telemetry.
const NODE_CONTROL: &str = "Node Control/";

/// The Sparkplug decoder: its session state and the one-message decode.
#[derive(Debug, Default)]
pub struct Sparkplug {
    session: Session,
    rebirths: rebirth::Rebirths,
}

/// What the topic says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    NBirth,
    NData,
    NDeath,
    DBirth,
    DData,
    DDeath,
}

/// A parsed Sparkplug topic of a node or device message.
#[derive(Debug)]
struct Topic<'a> {
    group: &'a str,
    kind: Kind,
    node: &'a str,
    device: Option<&'a str>,
}

/// Reads `spBv1.0/<group>/<type>/<edge_node>[/<device>]`. Commands and
/// host STATE are `Err(SparkplugIgnored)`, anything else `Err(UnknownTopic)`.
fn parse_topic(topic: &str) -> Result<Topic<'_>, Reason> {
    let levels: Vec<&str> = topic.split('/').collect();
    if levels.first() != Some(&NAMESPACE) {
        return Err(Reason::UnknownTopic);
    }
    if levels.get(1) == Some(&"STATE") {
        return Err(Reason::SparkplugIgnored);
    }
    if levels.len() < 4 || levels.len() > 5 || levels.iter().any(|l| l.is_empty()) {
        return Err(Reason::UnknownTopic);
    }
    let device = levels.get(4).copied();
    let kind = match (levels[2], device.is_some()) {
        ("NBIRTH", false) => Kind::NBirth,
        ("NDATA", false) => Kind::NData,
        ("NDEATH", false) => Kind::NDeath,
        ("DBIRTH", true) => Kind::DBirth,
        ("DDATA", true) => Kind::DData,
        ("DDEATH", true) => Kind::DDeath,
        ("NCMD", false) | ("DCMD", true) => return Err(Reason::SparkplugIgnored),
        _ => return Err(Reason::UnknownTopic),
    };
    Ok(Topic {
        group: levels[1],
        kind,
        node: levels[3],
        device,
    })
}

impl Sparkplug {
    /// Decodes `payload` received on `topic`, updating the session. `now_ms`
    /// is the gateway clock (time of metrics without one, plausibility).
    pub fn decode(
        &mut self,
        limits: &DecodeLimits,
        topic: &str,
        payload: &[u8],
        now_ms: i64,
    ) -> Result<Decoded, Reason> {
        self.rebirths.clear_due();
        if payload.len() > limits.max_payload_bytes {
            return Err(Reason::TooLarge);
        }
        let t = parse_topic(topic)?;
        let decoded = self.decode_parsed(limits, &t, payload, now_ms);
        let unreadable = match &decoded {
            Err(reason) => *reason == Reason::SparkplugBeforeBirth,
            Ok(d) => d.problems.get(Reason::SparkplugUnknownAlias) > 0,
        };
        // A DDEATH of an unknown device needs no birth; an NDEATH never does.
        if unreadable && matches!(t.kind, Kind::NData | Kind::DBirth | Kind::DData) {
            self.rebirths.want(t.group, t.node);
        }
        decoded
    }

    /// The rebirth request (an NCMD to publish) the message just decoded
    /// calls for, if its node was not asked within the retry interval.
    pub fn rebirth_request(&mut self, now_ms: i64) -> Option<Command> {
        self.rebirths.take(now_ms)
    }

    fn decode_parsed(
        &mut self,
        limits: &DecodeLimits,
        t: &Topic<'_>,
        payload: &[u8],
        now_ms: i64,
    ) -> Result<Decoded, Reason> {
        let device = match t.device {
            Some(d) => format!("{}/{}/{d}", t.group, t.node),
            None => format!("{}/{}", t.group, t.node),
        };
        if device.len() > limits.max_name_bytes {
            return Err(Reason::TooLarge);
        }
        let p = proto::Payload::decode(payload).map_err(|_| Reason::Malformed)?;
        if p.metrics.len() > MAX_METRICS {
            return Err(Reason::TooLarge);
        }
        let seq = match p.seq {
            None => None,
            Some(s) => Some(u8::try_from(s).map_err(|_| Reason::Malformed)?),
        };
        let mut problems = Counters::default();
        let s = &mut self.session;
        let (g, n) = (t.group, t.node);
        let readings = match (t.kind, t.device) {
            (Kind::NBirth, _) => {
                let table = birth_table(&p, limits);
                let bd_seq = bd_seq(&p);
                s.node_birth(g, n, seq.unwrap_or(0), bd_seq, table)?;
                let table = s.node_table(g, n)?;
                readings(&p, table, limits, now_ms, &mut problems)
            }
            (Kind::NDeath, _) => {
                s.node_death(g, n, bd_seq(&p))?;
                problems.add(Reason::SparkplugDeath, 1);
                Vec::new()
            }
            (Kind::NData, _) => {
                check_seq(s.advance(g, n, seq)?, &device, &mut problems);
                readings(&p, s.node_table(g, n)?, limits, now_ms, &mut problems)
            }
            (Kind::DBirth, Some(d)) => {
                check_seq(s.advance(g, n, seq)?, &device, &mut problems);
                s.device_birth(g, n, d, birth_table(&p, limits))?;
                readings(&p, s.device_table(g, n, d)?, limits, now_ms, &mut problems)
            }
            (Kind::DData, Some(d)) => {
                check_seq(s.advance(g, n, seq)?, &device, &mut problems);
                readings(&p, s.device_table(g, n, d)?, limits, now_ms, &mut problems)
            }
            (Kind::DDeath, Some(d)) => {
                check_seq(s.advance(g, n, seq)?, &device, &mut problems);
                s.device_death(g, n, d)?;
                problems.add(Reason::SparkplugDeath, 1);
                Vec::new()
            }
            (Kind::DBirth | Kind::DData | Kind::DDeath, None) => return Err(Reason::UnknownTopic),
        };
        if readings.is_empty() && problems.is_empty() {
            return Err(Reason::Empty);
        }
        Ok(Decoded {
            device,
            seq: None,
            readings,
            problems,
        })
    }
}

/// Counts a seq jump (and logs it at debug level: a lossy link makes many).
fn check_seq(check: session::SeqCheck, device: &str, problems: &mut Counters) {
    if let session::SeqCheck::Gap(missed) = check {
        debug!(device, missed, "sparkplug seq gap");
        problems.add(Reason::SparkplugSeqGap, 1);
        problems.add(Reason::SparkplugSeqMissed, missed);
    }
}

/// The `bdSeq` metric's value, if the payload has one that is an integer.
fn bd_seq(p: &proto::Payload) -> Option<u64> {
    p.metrics
        .iter()
        .find(|m| m.name.as_deref() == Some(BD_SEQ))
        .and_then(|m| match m.value {
            Some(proto::Value::LongValue(v)) => Some(v),
            Some(proto::Value::IntValue(v)) => Some(u64::from(v)),
            _ => None,
        })
}

/// A name fit to be a metric: within the cap, no control characters (the
/// store keys series as `device \0 metric`).
fn usable_name(name: &str, limits: &DecodeLimits) -> Result<(), Reason> {
    if name.len() > limits.max_name_bytes {
        Err(Reason::TooLarge)
    } else if name.chars().any(char::is_control) {
        Err(Reason::Malformed)
    } else {
        Ok(())
    }
}

/// The metric table a birth defines: every named metric with its alias and datatype.
fn birth_table(p: &proto::Payload, limits: &DecodeLimits) -> Table {
    let mut table = Table::default();
    for m in &p.metrics {
        if let Some(name) = m.name.as_deref() {
            if !name.is_empty() && usable_name(name, limits).is_ok() {
                table.define(name, m.alias, m.datatype.unwrap_or(0));
            }
        }
    }
    table
}

/// The readings of a payload's metrics, names and datatypes resolved through
/// `table`; what cannot become a reading is counted in `problems`.
fn readings(
    p: &proto::Payload,
    table: &Table,
    limits: &DecodeLimits,
    now_ms: i64,
    problems: &mut Counters,
) -> Vec<Reading> {
    let payload_ts = p.timestamp;
    let mut out = Vec::with_capacity(p.metrics.len());
    for m in &p.metrics {
        match reading(m, payload_ts, table, limits, now_ms) {
            Ok(Some(r)) => out.push(r),
            Ok(None) => {}
            Err(reason) => problems.add(reason, 1),
        }
    }
    out
}

/// One metric as a reading: `Ok(None)` for null values and session metrics.
fn reading(
    m: &proto::Metric,
    payload_ts: Option<u64>,
    table: &Table,
    limits: &DecodeLimits,
    now_ms: i64,
) -> Result<Option<Reading>, Reason> {
    let (name, birth_type) = match (m.name.as_deref().filter(|n| !n.is_empty()), m.alias) {
        (Some(name), _) => (name, table.by_name(name).map_or(0, |d| d.datatype)),
        (None, Some(alias)) => {
            let def = table.by_alias(alias).ok_or(Reason::SparkplugUnknownAlias)?;
            (def.name.as_str(), def.datatype)
        }
        (None, None) => return Err(Reason::SparkplugUnknownAlias),
    };
    if name == BD_SEQ || name.starts_with(NODE_CONTROL) {
        return Ok(None);
    }
    usable_name(name, limits)?;
    let Some(value) = m.value.as_ref().filter(|_| m.is_null != Some(true)) else {
        return Ok(None);
    };
    let datatype = m.datatype.filter(|d| *d != 0).unwrap_or(birth_type);
    let value = values::to_number(datatype, value)?;
    let ts_ms = match m.timestamp.or(payload_ts) {
        Some(ts) => {
            let ts = i64::try_from(ts).map_err(|_| Reason::BadTimestamp)?;
            time::check(ts, now_ms, limits.max_future_ms)?
        }
        None => now_ms,
    };
    Ok(Some(Reading {
        metric: name.into(),
        ts_ms,
        value,
    }))
}

#[cfg(test)]
mod tests;
