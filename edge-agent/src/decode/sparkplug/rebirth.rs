//! Sparkplug B rebirth requests: which edge node to ask for a new NBIRTH, how often, and the NCMD that asks.
//!
//! The session is memory only, so after an agent restart (or a birth lost to a
//! broker without a persistent session) an edge node keeps sending NDATA/DDATA
//! that nobody can read: Sparkplug nodes publish births only when they connect
//! or when asked. A host asks with an NCMD carrying the boolean metric
//! `Node Control/Rebirth = true` (Sparkplug 3.0, "Rebirth Request"); the node
//! answers with NBIRTH and all its DBIRTHs. This file decides when a message
//! calls for that (data of an unborn node or device, or an alias its birth did
//! not define) and rate-limits it to one request per node per
//! [`REBIRTH_RETRY_MS`]. It does not publish: the pipeline hands the command to
//! the MQTT client (QoS 0, not retained), and it is off per route
//! (`request_rebirth = false`) where the agent may not write to the plant.

use std::collections::HashMap;

use prost::Message;

use super::proto::{Metric, Payload, Value};
use super::values::code;
use super::{MAX_NODES, NAMESPACE};

/// One rebirth request per edge node at most this often (gateway clock, ms):
/// a node that does not answer (no write access, offline) is asked again, not flooded.
pub const REBIRTH_RETRY_MS: i64 = 30_000;
/// The metric an edge node watches for rebirth requests.
pub const REBIRTH_METRIC: &str = "Node Control/Rebirth";

/// A message the agent publishes to the broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    pub topic: String,
    pub payload: Vec<u8>,
}

/// The node the last decoded message wants reborn, and when each node was last asked.
#[derive(Debug, Default)]
pub struct Rebirths {
    due: Option<(String, String)>,
    last_asked: HashMap<(String, String), i64>,
}

impl Rebirths {
    /// Forgets what the previous message wanted (each decode starts here).
    pub(super) fn clear_due(&mut self) {
        self.due = None;
    }

    /// The message just decoded came from a node (`group`, `node`) whose
    /// session the agent does not have.
    pub(super) fn want(&mut self, group: &str, node: &str) {
        self.due = Some((group.to_owned(), node.to_owned()));
    }

    /// The NCMD asking for the rebirth the last decoded message wants, unless
    /// that node was asked less than [`REBIRTH_RETRY_MS`] ago (a clock that
    /// went back does not silence a node). Taking it counts as asking.
    pub fn take(&mut self, now_ms: i64) -> Option<Command> {
        let key = self.due.take()?;
        if let Some(&asked) = self.last_asked.get(&key) {
            if (asked..asked + REBIRTH_RETRY_MS).contains(&now_ms) {
                return None;
            }
        }
        if self.last_asked.len() >= MAX_NODES && !self.last_asked.contains_key(&key) {
            // Bounded memory: past this many silent nodes, forget who was asked
            // (each is asked at most once more).
            self.last_asked.clear();
        }
        let topic = format!("{NAMESPACE}/{}/NCMD/{}", key.0, key.1);
        self.last_asked.insert(key, now_ms);
        Some(Command {
            topic,
            payload: rebirth_payload(now_ms),
        })
    }
}

/// The NCMD payload of a rebirth request made at `now_ms`.
pub fn rebirth_payload(now_ms: i64) -> Vec<u8> {
    let ts = u64::try_from(now_ms).unwrap_or(0);
    Payload {
        timestamp: Some(ts),
        metrics: vec![Metric {
            name: Some(REBIRTH_METRIC.to_owned()),
            timestamp: Some(ts),
            datatype: Some(code::BOOLEAN),
            value: Some(Value::BooleanValue(true)),
            ..Metric::default()
        }],
        ..Payload::default()
    }
    .encode_to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_is_asked_once_per_retry_interval_and_the_ask_is_a_rebirth_ncmd() {
        let mut r = Rebirths::default();
        assert_eq!(r.take(1_000), None, "nothing wanted");
        r.want("plant", "gw1");
        let c = r.take(1_000).unwrap();
        assert_eq!(c.topic, "spBv1.0/plant/NCMD/gw1");
        let p = Payload::decode(c.payload.as_slice()).unwrap();
        assert_eq!(p.timestamp, Some(1_000));
        assert_eq!(p.seq, None);
        assert_eq!(p.metrics.len(), 1);
        assert_eq!(p.metrics[0].name.as_deref(), Some(REBIRTH_METRIC));
        assert_eq!(p.metrics[0].datatype, Some(code::BOOLEAN));
        assert_eq!(p.metrics[0].value, Some(Value::BooleanValue(true)));
        assert_eq!(r.take(1_001), None, "taken once");

        r.want("plant", "gw1");
        assert_eq!(r.take(1_000 + REBIRTH_RETRY_MS - 1), None, "too soon");
        r.want("plant", "gw2");
        assert!(r.take(2_000).is_some(), "another node is asked at once");
        r.want("plant", "gw1");
        assert!(r.take(1_000 + REBIRTH_RETRY_MS).is_some(), "asked again");
        r.want("plant", "gw1");
        assert!(r.take(500).is_some(), "the clock went back");
        r.want("plant", "gw1");
        r.clear_due();
        assert_eq!(
            r.take(10 * REBIRTH_RETRY_MS),
            None,
            "a new message clears it"
        );
    }

    #[test]
    fn memory_of_asked_nodes_is_bounded() {
        let mut r = Rebirths::default();
        for i in 0..=MAX_NODES {
            r.want("g", &format!("n{i}"));
            assert!(r.take(0).is_some());
        }
        assert!(r.last_asked.len() <= MAX_NODES);
    }
}
