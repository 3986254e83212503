//! Order-preserving byte keys for the store's single sled tree.
//!
//! Layout (one tree, one-byte prefixes, so one `apply_batch` covers all of a batch):
//!
//! | prefix | key                                                        | value          |
//! |--------|------------------------------------------------------------|----------------|
//! | `b`    | gateway, epoch, seq                                        | `BatchRecord`  |
//! | `g`    | gateway                                                    | `GatewayInfo`  |
//! | `w`    | gateway, device, metric, start_ms, epoch, seq, index       | `WindowRecord` |
//! | `e`    | gateway, device, ts_ms, epoch, seq, window index, index    | `StoredEscalation` |
//!
//! Strings are escaped (`0x00` → `0x00 0xFF`) and terminated by `0x00 0x01`, so
//! byte order equals string order and no string is a prefix-collision of another.
//! Integers are big-endian; `i64` has its sign bit flipped so negatives sort first.
//! This module only builds bytes; it never touches sled.

use wire::BatchKey;

/// Prefix of batch records.
pub const BATCH: u8 = b'b';
/// Prefix of per-gateway running totals.
pub const GATEWAY: u8 = b'g';
/// Prefix of stored windows.
pub const WINDOW: u8 = b'w';
/// Prefix of escalated rows (also inside their windows; indexed for `/v1/escalations`).
pub const ESCALATION: u8 = b'e';

/// Appends `s` escaped and terminated.
fn push_str(out: &mut Vec<u8>, s: &str) {
    for b in s.bytes() {
        if b == 0 {
            out.extend_from_slice(&[0x00, 0xFF]);
        } else {
            out.push(b);
        }
    }
    out.extend_from_slice(&[0x00, 0x01]);
}

/// Appends `v` so that byte order equals numeric order.
pub fn push_i64(out: &mut Vec<u8>, v: i64) {
    out.extend_from_slice(&((v as u64) ^ (1 << 63)).to_be_bytes());
}

/// Key of the batch record for `key`.
pub fn batch(key: &BatchKey) -> Vec<u8> {
    let mut out = vec![BATCH];
    push_str(&mut out, &key.gateway);
    out.extend_from_slice(&key.epoch.to_be_bytes());
    out.extend_from_slice(&key.seq.to_be_bytes());
    out
}

/// Key of a gateway's running totals.
pub fn gateway(id: &str) -> Vec<u8> {
    let mut out = vec![GATEWAY];
    push_str(&mut out, id);
    out
}

/// Key of window `index` of batch `key`. Two batches carrying the same window
/// get two keys: duplicates stay visible instead of overwriting each other.
pub fn window(key: &BatchKey, device: &str, metric: &str, start_ms: i64, index: u32) -> Vec<u8> {
    let mut out = series_prefix(Some(&key.gateway), Some(device), Some(metric));
    push_i64(&mut out, start_ms);
    out.extend_from_slice(&key.epoch.to_be_bytes());
    out.extend_from_slice(&key.seq.to_be_bytes());
    out.extend_from_slice(&index.to_be_bytes());
    out
}

/// Key of escalation `index` of window `window` of batch `key`.
pub fn escalation(key: &BatchKey, device: &str, ts_ms: i64, window: u32, index: u32) -> Vec<u8> {
    let mut out = escalation_prefix(Some(&key.gateway), Some(device));
    push_i64(&mut out, ts_ms);
    out.extend_from_slice(&key.epoch.to_be_bytes());
    out.extend_from_slice(&key.seq.to_be_bytes());
    out.extend_from_slice(&window.to_be_bytes());
    out.extend_from_slice(&index.to_be_bytes());
    out
}

/// The escalation-key prefix fixed by the leading filters given (gateway, then device).
pub fn escalation_prefix(gateway: Option<&str>, device: Option<&str>) -> Vec<u8> {
    let mut out = vec![ESCALATION];
    for part in [gateway, device] {
        match part {
            Some(s) => push_str(&mut out, s),
            None => break,
        }
    }
    out
}

/// The longest window-key prefix fixed by the leading filters that are given
/// (gateway, then device, then metric). Later filters after a missing one are
/// not part of the prefix; the caller filters on them.
pub fn series_prefix(gateway: Option<&str>, device: Option<&str>, metric: Option<&str>) -> Vec<u8> {
    let mut out = vec![WINDOW];
    for part in [gateway, device, metric] {
        match part {
            Some(s) => push_str(&mut out, s),
            None => break,
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(gw: &str, epoch: u64, seq: u64) -> BatchKey {
        BatchKey {
            gateway: gw.into(),
            epoch,
            seq,
        }
    }

    #[test]
    fn window_keys_sort_by_series_then_time() {
        let k = key("g", 1, 1);
        let mut keys = [
            window(&k, "dev", "temp", 5, 0),
            window(&k, "dev", "temp", -5, 0),
            window(&k, "dev", "temp", i64::MIN, 0),
            window(&k, "dev", "temp", i64::MAX, 0),
            window(&k, "dev", "t", 100, 0),
            window(&k, "de", "z", 100, 0),
            window(&k, "dev\0x", "a", 0, 0),
            window(&key("g", 0, 9), "dev", "temp", 5, 0),
        ];
        keys.sort();
        let expect = [
            window(&k, "de", "z", 100, 0),
            window(&k, "dev", "t", 100, 0),
            window(&k, "dev", "temp", i64::MIN, 0),
            window(&k, "dev", "temp", -5, 0),
            window(&key("g", 0, 9), "dev", "temp", 5, 0),
            window(&k, "dev", "temp", 5, 0),
            window(&k, "dev", "temp", i64::MAX, 0),
            window(&k, "dev\0x", "a", 0, 0),
        ];
        assert_eq!(keys, expect);
    }

    #[test]
    fn prefixes_do_not_leak_into_longer_names() {
        let k = key("g", 1, 1);
        let w = window(&k, "dev10", "m", 0, 0);
        assert!(!w.starts_with(&series_prefix(Some("g"), Some("dev1"), None)));
        assert!(w.starts_with(&series_prefix(Some("g"), Some("dev10"), None)));
        assert!(!gateway("gw1").starts_with(&gateway("gw")));
        assert_ne!(batch(&key("a", 1, 2)), batch(&key("a", 2, 1)));
    }
}
