//! The escalation router's budget: a judged row whose confidence is below its
//! model's `escalate_below` goes to the cloud model for a second opinion, at
//! most `models.escalations_per_device_hour` per device per event-time hour;
//! over that, the local verdict stands and the row is counted
//! (`escalation_over_budget`). The per-device budget is committed with the
//! group commit that journals the escalations (as classifier state), so a
//! restart neither forgets spent budget nor charges it twice. It decides
//! admission only: which rows are unsure is the model's stage, where an
//! escalation travels (its judgement window, journaled with its message) is
//! the pipeline's.

use std::collections::{BTreeSet, HashMap};

use wire::Escalation;

const HOUR_MS: i64 = 3_600_000;

/// The classifier-state series under which the budget is stored.
pub const STATE_SERIES: &str = "escalation.budget";

/// An escalated row and the judgement series whose window carries it.
#[derive(Debug, Clone, PartialEq)]
pub struct Escalated {
    pub series: String,
    pub escalation: Escalation,
    /// Replacements its exemplar took, by redaction kind. Not journaled: the
    /// pipeline turns them into `log.redacted.<kind>` readings of the message
    /// when it admits the escalation, and journals those readings instead.
    pub redacted: Vec<(&'static str, u64)>,
}

/// Escalations per device in its latest event-time hour.
#[derive(Debug, Default)]
pub struct Router {
    per_hour: u32,
    /// Device → (hour index, escalations admitted in it).
    used: HashMap<String, (i64, u32)>,
    /// Unsure rows refused for the budget since the pipeline last took them.
    over_budget: u64,
    /// Devices whose budget changed since the last [`Router::take_updates`].
    dirty: BTreeSet<String>,
}

impl Router {
    pub fn new(per_hour: u32) -> Router {
        Router {
            per_hour,
            ..Router::default()
        }
    }

    /// Whether an escalation of `device` at `ts_ms` fits the budget; if so it
    /// is charged, if not it is counted as over budget. A row from an earlier
    /// hour than the device's latest is charged to the latest (a late row
    /// cannot reopen a spent hour).
    pub fn admit(&mut self, device: &str, ts_ms: i64) -> bool {
        let fits = self.charge(device, ts_ms);
        if !fits {
            self.over_budget += 1;
        }
        fits
    }

    /// The changed devices' budgets, as (device, bytes) for the store.
    pub fn take_updates(&mut self) -> Vec<(String, Vec<u8>)> {
        std::mem::take(&mut self.dirty)
            .into_iter()
            .filter_map(|d| {
                let (hour, used) = *self.used.get(&d)?;
                let mut bytes = hour.to_le_bytes().to_vec();
                bytes.extend_from_slice(&used.to_le_bytes());
                Some((d, bytes))
            })
            .collect()
    }

    /// Restores a device's budget from [`Router::take_updates`] bytes;
    /// unreadable bytes leave it unspent (returns false).
    pub fn restore(&mut self, device: &str, bytes: &[u8]) -> bool {
        let (Some(hour), Some(used)) = (bytes.get(..8), bytes.get(8..12)) else {
            return false;
        };
        let hour = i64::from_le_bytes(hour.try_into().unwrap_or([0; 8]));
        let used = u32::from_le_bytes(used.try_into().unwrap_or([0; 4]));
        self.used.insert(device.to_owned(), (hour, used));
        bytes.len() == 12
    }

    /// Counts an unsure row that cannot be escalated at all (too large for
    /// a window's room), like one over budget.
    pub fn refuse(&mut self) {
        self.over_budget += 1;
    }

    /// Takes the over-budget count (the pipeline adds it to its counters).
    pub fn take_over_budget(&mut self) -> u64 {
        std::mem::take(&mut self.over_budget)
    }

    fn charge(&mut self, device: &str, ts_ms: i64) -> bool {
        let hour = ts_ms.div_euclid(HOUR_MS);
        let slot = self.used.entry(device.to_owned()).or_insert((hour, 0));
        if hour > slot.0 {
            *slot = (hour, 0);
        }
        if slot.1 >= self.per_hour {
            return false;
        }
        slot.1 += 1;
        self.dirty.insert(device.to_owned());
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn k_per_device_per_hour_and_the_rest_counted() {
        let mut r = Router::new(2);
        let t = 10 * HOUR_MS;
        assert!(r.admit("a", t));
        assert!(r.admit("a", t + 1));
        assert!(!r.admit("a", t + 2), "third in the hour");
        assert!(r.admit("b", t), "budgets are per device");
        assert!(
            !r.admit("a", t - HOUR_MS),
            "a late row does not reopen an hour"
        );
        assert_eq!(r.take_over_budget(), 2);
        assert_eq!(r.take_over_budget(), 0);
        assert!(r.admit("a", t + HOUR_MS), "a new hour, a new budget");
    }

    #[test]
    fn the_budget_survives_a_restart_through_its_state() {
        let mut r = Router::new(2);
        assert!(r.admit("a", 5));
        let updates = r.take_updates();
        assert_eq!(updates.len(), 1);
        assert!(r.take_updates().is_empty(), "only changes");
        let mut restarted = Router::new(2);
        assert!(restarted.restore(&updates[0].0, &updates[0].1));
        assert!(restarted.admit("a", 6));
        assert!(!restarted.admit("a", 7), "spent before the restart");
        assert_eq!(restarted.take_over_budget(), 1);
        assert!(!restarted.restore("b", &[1, 2, 3]));
        assert!(
            !Router::new(0).admit("a", 0),
            "a budget of 0 escalates nothing"
        );
    }
}
