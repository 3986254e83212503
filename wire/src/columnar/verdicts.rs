//! The verdict column of a schema-4 body: each judged window's verdict as what
//! differs from what the window already says. It does not lay out series or
//! windows (see `series.rs`) and does not judge anything.
//!
//! A gateway's verdict repeats its window: `judged` is the count, `score` the
//! max, `confidence` [`Verdict::confidence_at`] the score, and `anomalous`
//! says `alarms > 0`. Schema 3 sent all of it as CBOR (two f64s; 4% of a 1 Hz
//! fleet's gzip uplink, measured); here a verdict takes about seven one-byte
//! varints, and any verdict still round-trips: exact values as the XOR with
//! their reference, rounded ones as the difference of codes.
//!
//! Entry layout, in series then window order: the series index minus the
//! previous entry's; the window index (when the series is the same, minus the
//! previous entry's window plus one); alarms; anomalous (0/1); judged − count
//! (zigzag); the score's code against the max's; the confidence's code against
//! that of the confidence at the (decoded) score.

use super::series::{put_code, put_i64, put_u64, Reader};
use crate::quantize::Quantizer;
use crate::{Verdict, WindowSummary};

/// Writes verdict entries in (series, window) order.
#[derive(Debug, Default)]
pub(super) struct VerdictWriter {
    out: Vec<u8>,
    series: u64,
    next_window: u64,
}

impl VerdictWriter {
    /// Appends the verdict `v` of window `w`, window `window` of series
    /// `series` (whose values travel through `q`). Entries must come in
    /// increasing (series, window) order.
    pub(super) fn push(
        &mut self,
        series: u64,
        window: u64,
        w: &WindowSummary,
        v: &Verdict,
        q: Quantizer,
    ) {
        let out = &mut self.out;
        put_u64(out, series - self.series);
        if series == self.series {
            put_u64(out, window - self.next_window);
        } else {
            put_u64(out, window);
        }
        (self.series, self.next_window) = (series, window + 1);
        put_u64(out, v.alarms);
        put_u64(out, u64::from(v.anomalous));
        put_i64(out, v.judged.wrapping_sub(w.count) as i64);
        let score = q.encode(v.score);
        put_code(out, q, score, q.encode(w.max));
        put_code(
            out,
            q,
            q.encode(v.confidence),
            confidence_reference(q, score),
        );
    }

    /// The column's bytes (empty when no window had a verdict).
    pub(super) fn finish(self) -> Vec<u8> {
        self.out
    }
}

/// The code a confidence is written against: that of the confidence at the
/// score as it decodes.
fn confidence_reference(q: Quantizer, score: i64) -> i64 {
    q.encode(Verdict::confidence_at(q.decode(score)))
}

/// Reads the column `bytes` into the decoded windows of each series (whose
/// values travel through `quantizers[series]`). A window may get at most one
/// verdict (from here or from the body's extras).
pub(super) fn read(
    bytes: &[u8],
    per_series: &mut [Vec<WindowSummary>],
    quantizers: &[Quantizer],
) -> Result<(), String> {
    let mut r = Reader::new(bytes);
    let (mut series, mut next_window) = (0u64, 0u64);
    while !r.is_empty() {
        let step = r.u64()?;
        let window = if step == 0 {
            next_window.checked_add(r.u64()?)
        } else {
            series = series.checked_add(step).ok_or("series index overflows")?;
            Some(r.u64()?)
        }
        .ok_or("window index overflows")?;
        next_window = window.saturating_add(1);
        let at = usize::try_from(series).ok();
        let q = at
            .and_then(|s| quantizers.get(s))
            .copied()
            .ok_or_else(|| format!("a verdict for series {series}, which is not in the body"))?;
        let w = at
            .and_then(|s| per_series.get_mut(s))
            .and_then(|s| usize::try_from(window).ok().and_then(|i| s.get_mut(i)))
            .ok_or_else(|| format!("a verdict for window {window} of series {series}"))?;
        if w.verdict.is_some() {
            return Err(format!(
                "two verdicts for window {window} of series {series}"
            ));
        }
        let alarms = r.u64()?;
        let anomalous = match r.u64()? {
            0 => false,
            1 => true,
            other => return Err(format!("anomalous is {other}, not 0 or 1")),
        };
        let judged = w.count.wrapping_add(r.i64()? as u64);
        let score = r.code(q, q.encode(w.max))?;
        let confidence = r.code(q, confidence_reference(q, score))?;
        w.verdict = Some(Verdict {
            anomalous,
            judged,
            alarms,
            score: q.decode(score),
            confidence: q.decode(confidence),
        });
    }
    Ok(())
}
