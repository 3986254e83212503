//! Outbox batches as bytes: sealing windows (with the counters and gauges
//! in the first) into envelopes of at most `max_windows_per_batch` windows,
//! in the uplink's body encoding,
//! opening them again for a roll-up, and the upper bound on one encoded
//! window that config validation sizes batches by. It does not store or
//! decide anything ([`super::OutboxCap`] and [`crate::store`] do).

use tracing::warn;
use wire::{BatchKey, Body, BodyEncoding, Counters, Envelope, Gauges, WindowSummary};

/// An upper bound on one encoded window: fixed fields and a verdict (512), device and
/// metric names (`max_name_bytes` each, at least 64: derived series names are
/// short but not bound by the limit), and on a template series its text and
/// `exemplars` lines at their caps, and with `escalations` its room of
/// escalated rows at their widest. Config validation keeps
/// `max_windows_per_batch × this` within [`wire::MAX_ENVELOPE_BYTES`], so no
/// sealed batch is too large for the sink.
pub fn worst_window_bytes(
    max_name_bytes: usize,
    exemplars: Option<usize>,
    escalations: bool,
) -> usize {
    use crate::classify::redact::{MAX_EXEMPLAR_BYTES, MAX_TEMPLATE_TEXT_BYTES};
    use crate::window::{MAX_ESCALATIONS_PER_WINDOW, MAX_ESCALATION_FEATURES};
    let template = exemplars.map_or(0, |n| {
        32 + MAX_TEMPLATE_TEXT_BYTES + n * (MAX_EXEMPLAR_BYTES + 4)
    });
    // Per escalation: four scalars with keys (≤ 40) and the row, ≤ 5 bytes a feature.
    let escalated = if escalations {
        8 + MAX_ESCALATIONS_PER_WINDOW * (48 + 5 * MAX_ESCALATION_FEATURES)
    } else {
        0
    };
    512 + 2 * (max_name_bytes.max(64) + 4) + template + escalated
}

/// What a cut's first batch carries besides windows: the counters (input
/// reasons and health counts) and the agent's gauges.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BatchExtras {
    pub counters: Counters,
    pub gauges: Gauges,
}

impl From<Counters> for BatchExtras {
    fn from(counters: Counters) -> BatchExtras {
        BatchExtras {
            counters,
            gauges: Gauges::new(),
        }
    }
}

/// How this gateway seals batches: the key's gateway and outbox epoch, the
/// most windows a batch holds and the body encoding (`uplink.relative_error`).
/// The pipeline's cut and the cap's rewrites both seal through one of these.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchSealer {
    pub gateway: String,
    pub epoch: u64,
    pub per_batch: usize,
    pub encoding: BodyEncoding,
}

impl BatchSealer {
    /// A sealer for `gateway`'s outbox `epoch`, at most `per_batch` windows a
    /// batch (at least 1), bodies as `encoding` says.
    pub fn new(gateway: &str, epoch: u64, per_batch: usize, encoding: BodyEncoding) -> Self {
        BatchSealer {
            gateway: gateway.to_owned(),
            epoch,
            per_batch: per_batch.max(1),
            encoding,
        }
    }

    /// Seals `windows` into batches of at most `per_batch` windows, one batch
    /// per seq taken from `seqs` in order, with `extras` in the first; counters
    /// without windows make one empty batch, and nothing at all makes none.
    pub fn seal(
        &self,
        seqs: impl IntoIterator<Item = u64>,
        windows: &[WindowSummary],
        extras: impl Into<BatchExtras>,
        now_ms: i64,
    ) -> Vec<(u64, Vec<u8>)> {
        let BatchExtras {
            mut counters,
            mut gauges,
        } = extras.into();
        let mut chunks: Vec<&[WindowSummary]> = windows.chunks(self.per_batch).collect();
        if chunks.is_empty() && !counters.is_empty() {
            chunks.push(&[]);
        }
        seqs.into_iter()
            .zip(chunks)
            .map(|(seq, chunk)| {
                let key = BatchKey {
                    gateway: self.gateway.clone(),
                    epoch: self.epoch,
                    seq,
                };
                let body = Body {
                    windows: chunk.to_vec(),
                    counters: std::mem::take(&mut counters),
                    gauges: std::mem::take(&mut gauges),
                };
                let sealed = Envelope::seal_as(&key, now_ms, &body, self.encoding);
                (seq, sealed.to_bytes())
            })
            .collect()
    }
}

/// Windows, counters (summed), the newest gauges and the seqs of the given
/// sealed batches (in seq order) that open. A batch that does not open
/// (start-up quarantines those) is left out and left alone.
pub(super) fn open_all(batches: &[(u64, Vec<u8>)]) -> (Vec<WindowSummary>, BatchExtras, Vec<u64>) {
    let mut windows = Vec::new();
    let mut extras = BatchExtras::default();
    let mut opened = Vec::new();
    for (seq, bytes) in batches {
        match Envelope::open(bytes) {
            Ok((_, body)) => {
                windows.extend(body.windows);
                extras.counters.merge(&body.counters);
                if !body.gauges.is_empty() {
                    extras.gauges = body.gauges;
                }
                opened.push(*seq);
            }
            Err(e) => warn!(seq, "outbox batch does not open during roll-up: {e}"),
        }
    }
    (windows, extras, opened)
}
