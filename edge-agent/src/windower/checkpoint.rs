//! Window checkpoints: every open window, written with a cut, so the journal
//! can let go of the messages they hold before the windows close.
//!
//! Without one, the journal keeps every message of a window until the window
//! ships: a window width of traffic (60 s at 30k msg/s is ~0.5 GB), which
//! outgrew the store cap and held ingest. A checkpoint taken at journal mark
//! `W` holds exactly the effect of the messages below `W`; start-up restores
//! it and replays only the journal from `W` on. It does no I/O: the pipeline
//! commits the bytes with the cut and the store returns them at start-up.

use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::Windower;
use crate::window::Window;

/// Largest checkpoint decoded at start-up (bytes): far above what
/// `max_series` open windows encode to, far below what sled holds.
pub const MAX_CHECKPOINT_BYTES: usize = 48 << 20;

/// The open windows of one series, with its watermark's event time, as
/// decoded (the windower encodes them in place, as `SeriesRef`).
#[derive(Debug, Deserialize)]
pub struct SeriesCheckpoint {
    pub device: String,
    pub metric: String,
    pub max_ts: i64,
    pub windows: Vec<Window>,
}

/// [`SeriesCheckpoint`] borrowed from the windower: encodes to the same bytes.
#[derive(Serialize)]
struct SeriesRef<'a> {
    device: &'a str,
    metric: &'a str,
    max_ts: i64,
    windows: Vec<&'a Window>,
}

impl Windower {
    /// The checkpoint's bytes (CBOR): every series with an open window, and
    /// those windows (encoded in place, not copied; the windower is unchanged).
    pub fn checkpoint(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for (device, metrics) in &self.series {
            for (metric, series) in metrics {
                if series.open.is_empty() {
                    continue;
                }
                out.push(SeriesRef {
                    device,
                    metric,
                    max_ts: series.max_ts,
                    windows: series.open.values().map(|w| &**w).collect(),
                });
            }
        }
        wire::encode(&out)
    }

    /// Puts checkpointed windows back (at start-up, after the shipped
    /// horizons are restored and before the journal from the checkpoint's
    /// mark is replayed). A window that shipped after the checkpoint was
    /// taken (it ends at or before its series' horizon) is dropped. Restored
    /// windows count as updated `now`, like replayed ones.
    pub fn restore(&mut self, checkpoint: Vec<SeriesCheckpoint>, now: Instant) {
        for s in checkpoint {
            let Some(series) = self.series_mut(&s.device, &s.metric, true) else {
                continue;
            };
            series.max_ts = series.max_ts.max(s.max_ts);
            for mut window in s.windows {
                if window.start_ms < series.closed_before {
                    continue;
                }
                window.last_update = now;
                series.open.insert(window.start_ms, Box::new(window));
            }
        }
    }
}

/// A checkpoint from its bytes; `None` if they are over the cap or do not decode.
pub fn decode(bytes: &[u8]) -> Option<Vec<SeriesCheckpoint>> {
    wire::decode_capped(bytes, MAX_CHECKPOINT_BYTES).ok()
}
