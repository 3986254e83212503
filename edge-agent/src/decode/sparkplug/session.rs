//! Sparkplug B session state: which edge nodes and devices are born, their alias tables, seq and bdSeq.
//!
//! One [`Session`] lives in the pipeline (single owner) and sees every message
//! of every `format = "sparkplug"` route in arrival order. An NBIRTH (re)defines
//! the node's metrics, takes its `seq` and `bdSeq` and forgets the node's
//! devices until their DBIRTH; an NDEATH with the birth's `bdSeq` (or none)
//! takes the node and its devices offline, one with another `bdSeq` is stale.
//! `seq` is one 0..=255 wrapping counter per node across all its messages
//! (deaths aside). The state is memory only: after an agent restart every node
//! is unborn until its next NBIRTH. Sizes are capped ([`MAX_NODES`],
//! [`MAX_DEVICES_PER_NODE`], metrics per birth by the decoder). This file
//! does not parse payloads or make readings.

use std::collections::HashMap;

use wire::Reason;

/// Edge nodes remembered at once; a birth of one more is refused (`too_many_series`).
pub const MAX_NODES: usize = 4096;
/// Devices remembered per edge node; a DBIRTH of one more is refused (`too_many_series`).
pub const MAX_DEVICES_PER_NODE: usize = 1024;
/// A `seq` at most this far behind the last one is a redelivery (`duplicate`), not a jump.
pub const REDELIVERY_WINDOW: u8 = 8;

/// A metric a birth defined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Definition {
    pub name: String,
    /// Datatype code (0 when the birth did not say).
    pub datatype: u32,
}

/// The metrics of one birth, by alias and by name.
#[derive(Debug, Default, Clone)]
pub struct Table {
    defs: Vec<Definition>,
    by_alias: HashMap<u64, usize>,
    by_name: HashMap<String, usize>,
}

impl Table {
    /// Adds a birth's metric (a later one of the same name or alias wins).
    pub fn define(&mut self, name: &str, alias: Option<u64>, datatype: u32) {
        let index = self.defs.len();
        self.defs.push(Definition {
            name: name.to_owned(),
            datatype,
        });
        self.by_name.insert(name.to_owned(), index);
        if let Some(alias) = alias {
            self.by_alias.insert(alias, index);
        }
    }

    pub fn by_alias(&self, alias: u64) -> Option<&Definition> {
        self.by_alias.get(&alias).map(|i| &self.defs[*i])
    }

    pub fn by_name(&self, name: &str) -> Option<&Definition> {
        self.by_name.get(name).map(|i| &self.defs[*i])
    }
}

#[derive(Debug, Default)]
struct Node {
    bd_seq: Option<u64>,
    last_seq: u8,
    metrics: Table,
    devices: HashMap<String, Table>,
}

/// What the seq of a message says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeqCheck {
    /// The next one, or the message had none.
    InOrder,
    /// A jump over this many messages (the message is used; counted).
    Gap(u64),
}

/// The born edge nodes (keyed by group and node id) and their devices.
#[derive(Debug, Default)]
pub struct Session {
    nodes: HashMap<(String, String), Node>,
}

impl Session {
    /// An NBIRTH: the node's new metrics, `seq` and `bdSeq`; its devices are
    /// forgotten until they are born again.
    pub fn node_birth(
        &mut self,
        group: &str,
        node: &str,
        seq: u8,
        bd_seq: Option<u64>,
        metrics: Table,
    ) -> Result<(), Reason> {
        let key = (group.to_owned(), node.to_owned());
        if !self.nodes.contains_key(&key) && self.nodes.len() >= MAX_NODES {
            return Err(Reason::TooManySeries);
        }
        self.nodes.insert(
            key,
            Node {
                bd_seq,
                last_seq: seq,
                metrics,
                devices: HashMap::new(),
            },
        );
        Ok(())
    }

    /// An NDEATH: the node and its devices go offline if `bd_seq` is the
    /// birth's (or absent); `Err(SparkplugStaleDeath)` otherwise, or when the
    /// node is not online.
    pub fn node_death(
        &mut self,
        group: &str,
        node: &str,
        bd_seq: Option<u64>,
    ) -> Result<(), Reason> {
        let key = (group.to_owned(), node.to_owned());
        match self.nodes.get(&key) {
            Some(n) if bd_seq.is_none() || bd_seq == n.bd_seq => {
                self.nodes.remove(&key);
                Ok(())
            }
            _ => Err(Reason::SparkplugStaleDeath),
        }
    }

    /// The `seq` of a node message other than NBIRTH/NDEATH: checked against
    /// the node's last one and taken. `Err(SparkplugBeforeBirth)` for a node
    /// that is not online, `Err(Duplicate)` for a redelivery of a recent one.
    pub fn advance(
        &mut self,
        group: &str,
        node: &str,
        seq: Option<u8>,
    ) -> Result<SeqCheck, Reason> {
        let n = self.node_mut(group, node)?;
        let Some(seq) = seq else {
            return Ok(SeqCheck::InOrder);
        };
        let ahead = seq.wrapping_sub(n.last_seq);
        if ahead == 0 || ahead > u8::MAX - REDELIVERY_WINDOW {
            return Err(Reason::Duplicate);
        }
        n.last_seq = seq;
        Ok(match ahead {
            1 => SeqCheck::InOrder,
            _ => SeqCheck::Gap(u64::from(ahead - 1)),
        })
    }

    /// The metric table of an online node.
    pub fn node_table(&self, group: &str, node: &str) -> Result<&Table, Reason> {
        self.node(group, node).map(|n| &n.metrics)
    }

    /// A DBIRTH of an online node's device: its new metric table.
    pub fn device_birth(
        &mut self,
        group: &str,
        node: &str,
        device: &str,
        metrics: Table,
    ) -> Result<(), Reason> {
        let n = self.node_mut(group, node)?;
        if !n.devices.contains_key(device) && n.devices.len() >= MAX_DEVICES_PER_NODE {
            return Err(Reason::TooManySeries);
        }
        n.devices.insert(device.to_owned(), metrics);
        Ok(())
    }

    /// A DDEATH: the device goes offline (`Err(SparkplugBeforeBirth)` if it was not online).
    pub fn device_death(&mut self, group: &str, node: &str, device: &str) -> Result<(), Reason> {
        let n = self.node_mut(group, node)?;
        n.devices
            .remove(device)
            .map(|_| ())
            .ok_or(Reason::SparkplugBeforeBirth)
    }

    /// The metric table of an online device.
    pub fn device_table(&self, group: &str, node: &str, device: &str) -> Result<&Table, Reason> {
        self.node(group, node)?
            .devices
            .get(device)
            .ok_or(Reason::SparkplugBeforeBirth)
    }

    /// Whether a device of an online node is online.
    pub fn device_online(&self, group: &str, node: &str, device: &str) -> bool {
        self.device_table(group, node, device).is_ok()
    }

    fn node(&self, group: &str, node: &str) -> Result<&Node, Reason> {
        self.nodes
            .get(&(group.to_owned(), node.to_owned()))
            .ok_or(Reason::SparkplugBeforeBirth)
    }

    fn node_mut(&mut self, group: &str, node: &str) -> Result<&mut Node, Reason> {
        self.nodes
            .get_mut(&(group.to_owned(), node.to_owned()))
            .ok_or(Reason::SparkplugBeforeBirth)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seq_wraps_jumps_are_measured_and_redeliveries_recognised() {
        let mut s = Session::default();
        assert_eq!(
            s.advance("g", "n", Some(1)),
            Err(Reason::SparkplugBeforeBirth)
        );
        s.node_birth("g", "n", 254, Some(3), Table::default())
            .unwrap();
        assert_eq!(s.advance("g", "n", Some(255)), Ok(SeqCheck::InOrder));
        assert_eq!(s.advance("g", "n", Some(0)), Ok(SeqCheck::InOrder));
        assert_eq!(s.advance("g", "n", Some(0)), Err(Reason::Duplicate));
        assert_eq!(s.advance("g", "n", Some(4)), Ok(SeqCheck::Gap(3)));
        assert_eq!(s.advance("g", "n", Some(2)), Err(Reason::Duplicate));
        assert_eq!(s.advance("g", "n", Some(100)), Ok(SeqCheck::Gap(95)));
        assert_eq!(s.advance("g", "n", None), Ok(SeqCheck::InOrder));
    }

    #[test]
    fn deaths_need_the_births_bdseq_and_take_devices_along() {
        let mut s = Session::default();
        let mut t = Table::default();
        t.define("Temp", Some(1), 10);
        s.node_birth("g", "n", 0, Some(7), t.clone()).unwrap();
        s.device_birth("g", "n", "d", t).unwrap();
        assert_eq!(
            s.node_table("g", "n").unwrap().by_alias(1).unwrap().name,
            "Temp"
        );
        assert_eq!(
            s.node_death("g", "n", Some(6)),
            Err(Reason::SparkplugStaleDeath)
        );
        assert!(s.device_online("g", "n", "d"));
        assert_eq!(s.node_death("g", "n", Some(7)), Ok(()));
        assert!(!s.device_online("g", "n", "d"));
        assert_eq!(
            s.node_death("g", "n", Some(7)),
            Err(Reason::SparkplugStaleDeath)
        );
        assert_eq!(
            s.device_birth("g", "n", "d", Table::default()),
            Err(Reason::SparkplugBeforeBirth)
        );
    }
}
