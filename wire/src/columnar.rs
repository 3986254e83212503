//! The schema-3 and schema-4 body: windows laid out per series in columns of small integers,
//! values exact or rounded (see [`crate::quantize`]). It does not hash, seal or
//! choose a version ([`crate::Envelope`] does).
//!
//! Why: a row per window (schema 2) repeats the device and metric names and
//! spends 9 bytes on every f64, whose mantissa does not compress. Here each
//! distinct name is sent once per batch, each series' windows are grouped,
//! and every field is a column of differences: consecutive starts, widths and
//! counts differ by nothing, the values of one window lie close to its mean,
//! and rounded values differ by few steps, so gzip on the wire is left with little.
//!
//! Layout (CBOR, packed keys; `columns` and `order` are byte strings of LEB128
//! varints, signed ones zigzagged):
//! - `names`: the batch's device and metric names, each once.
//! - `columns`: per series, in order of first appearance: its device and
//!   metric name indices, window count `n` and value precision (0: exact,
//!   else the mantissa bits kept; a series whose readings and sums are all
//!   integers, such as a counter or a meter, travels exact), then `n` entries
//!   of each time column (width, start, count, first_ms − start, end − last_ms,
//!   rolled_up) and each value column (alpha, mean, stddev, sum, p50, p95, p99,
//!   max, min, first, last), each written against a reference
//!   (`series::REFERENCES`: the previous window's, a neighbouring field of the
//!   same window, or for the sum the mean times the count): a rounded code as
//!   the difference, an exact f64's bits as the XOR, bytes swapped. A series'
//!   first entries are written against the series before it, so a live cut of
//!   one window per series stays small too.
//! - `order`: for each window of the body, in body order, its series index
//!   minus the previous one's, so decoding gives the windows in the order they
//!   were sealed. With exact values a body decodes to exactly what was encoded.
//! - `extras`: the optional parts (template, escalations, and in schema 3 the
//!   verdict) of the rare windows that have them, by series and window index,
//!   in that order.
//! - `counters`, `gauges`: as in schema 2.
//! - `verdicts` (schema 4): each verdict as what differs from its window
//!   (`columnar/verdicts.rs`); absent when no window has one, so a body
//!   without verdicts is the same bytes in schema 3 and 4.

mod series;
mod verdicts;

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::quantize::Quantizer;
use crate::{
    codec, Body, CodecError, Counters, Escalation, Gauges, LogTemplate, Verdict, WindowSummary,
};
use series::{put_i64, put_u64, Carry, Reader, TIME_COLUMNS, VALUE_COLUMNS};
use verdicts::VerdictWriter;

/// Most windows one body may hold (the agent's `max_windows_per_batch` is at
/// most this): decoding refuses more before allocating for them.
pub const MAX_WINDOWS_PER_BODY: u64 = 100_000;

#[derive(Debug, Serialize, Deserialize)]
struct ColumnarBody {
    names: Vec<String>,
    #[serde(with = "serde_bytes")]
    columns: Vec<u8>,
    #[serde(with = "serde_bytes")]
    order: Vec<u8>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    extras: Vec<WindowExtras>,
    counters: Counters,
    #[serde(default, skip_serializing_if = "Gauges::is_empty")]
    gauges: Gauges,
    /// Schema 4: the verdicts (see `verdicts.rs`); schema 3 sent them in `extras`.
    #[serde(default, with = "serde_bytes", skip_serializing_if = "Vec::is_empty")]
    verdicts: Vec<u8>,
}

/// Where a columnar body puts its windows' verdicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Layout {
    /// Schema 3: in `extras`, as CBOR.
    VerdictsInExtras,
    /// Schema 4: in the `verdicts` column.
    VerdictColumn,
}

/// The optional parts of one window, by its series and its index within it.
#[derive(Debug, Serialize, Deserialize)]
struct WindowExtras {
    series: u32,
    window: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    verdict: Option<Verdict>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    template: Option<LogTemplate>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    escalations: Vec<Escalation>,
}

/// Encodes `body` with values through `quantizer`, verdicts as `layout` says.
pub(crate) fn encode(body: &Body, quantizer: Quantizer, layout: Layout) -> Vec<u8> {
    let mut names: Vec<String> = Vec::new();
    let mut name_index: HashMap<&str, u32> = HashMap::new();
    // Which series each window belongs to, and each series' windows in order.
    let mut series_index: HashMap<(&str, &str), usize> = HashMap::new();
    let mut members: Vec<Vec<&WindowSummary>> = Vec::new();
    let mut order = Vec::new();
    let mut previous = 0i64;
    for w in &body.windows {
        let next = members.len();
        let s = *series_index
            .entry((w.device.as_str(), w.metric.as_str()))
            .or_insert(next);
        if s == next {
            members.push(Vec::new());
        }
        members[s].push(w);
        put_i64(&mut order, (s as i64).wrapping_sub(previous));
        previous = s as i64;
    }
    let mut carry = Carry::default();
    let mut columns = Vec::with_capacity(body.windows.len() * (TIME_COLUMNS + VALUE_COLUMNS) * 2);
    let mut extras = Vec::new();
    let mut verdicts = VerdictWriter::default();
    for (s, windows) in members.iter().enumerate() {
        let device = intern(&mut names, &mut name_index, &windows[0].device);
        let metric = intern(&mut names, &mut name_index, &windows[0].metric);
        put_u64(&mut columns, device.into());
        put_u64(&mut columns, metric.into());
        put_u64(&mut columns, windows.len() as u64);
        let quantizer = series_quantizer(windows, quantizer);
        put_u64(&mut columns, quantizer.bits().into());
        carry.write(&mut columns, windows, metric.into(), quantizer);
        for (i, w) in windows.iter().enumerate() {
            let mut verdict = w.verdict;
            if let (Some(v), Layout::VerdictColumn) = (&verdict, layout) {
                verdicts.push(s as u64, i as u64, w, v, quantizer);
                verdict = None;
            }
            if verdict.is_some() || w.template.is_some() || !w.escalations.is_empty() {
                extras.push(WindowExtras {
                    series: s as u32,
                    window: i as u32,
                    verdict,
                    template: w.template.clone(),
                    escalations: w.escalations.clone(),
                });
            }
        }
    }
    codec::encode_packed(&ColumnarBody {
        names,
        columns,
        order,
        extras,
        counters: body.counters.clone(),
        gauges: body.gauges.clone(),
        verdicts: verdicts.finish(),
    })
}

/// `quantizer`, or exact for a series whose readings (min, max, first, last)
/// and sums are all integers an f64 holds exactly, some of which rounding
/// would change: counters, meter readings. So a totalizer still adds up on the
/// other side, while integers that rounding keeps as they are (small states,
/// or values already rounded once: a roll-up seals again) stay rounded, and a
/// body opened and sealed again gives the same bytes.
fn series_quantizer(windows: &[&WindowSummary], quantizer: Quantizer) -> Quantizer {
    const EXACT_INTEGERS: f64 = (1u64 << 53) as f64;
    let integers = || {
        windows
            .iter()
            .flat_map(|w| [w.min, w.max, w.first, w.last, w.sum])
    };
    let all_integers = integers().all(|x| x.fract() == 0.0 && x.abs() <= EXACT_INTEGERS);
    if all_integers && integers().any(|x| quantizer.decode(quantizer.encode(x)) != x) {
        Quantizer::Exact
    } else {
        quantizer
    }
}

/// The index of `name` in `names`, added if new.
fn intern<'a>(names: &mut Vec<String>, index: &mut HashMap<&'a str, u32>, name: &'a str) -> u32 {
    *index.entry(name).or_insert_with(|| {
        names.push(name.to_owned());
        (names.len() - 1) as u32
    })
}

/// Decodes a schema-3 or schema-4 body from untrusted bytes (the caller capped their size).
pub(crate) fn decode(bytes: &[u8]) -> Result<Body, CodecError> {
    let body: ColumnarBody = codec::decode_capped(bytes, crate::MAX_ENVELOPE_BYTES)?;
    let mut per_series = Vec::new();
    let mut quantizers = Vec::new();
    let mut total = 0u64;
    let mut carry = Carry::default();
    let mut r = Reader::new(&body.columns);
    while !r.is_empty() {
        let s = per_series.len();
        let (windows, quantizer) = decode_series(&mut r, &body.names, &mut carry, &mut total)
            .map_err(|e| malformed(format!("series {s}: {e}")))?;
        per_series.push(windows);
        quantizers.push(quantizer);
    }
    let mut next = (0u32, 0u32);
    for extras in body.extras {
        let at = (extras.series, extras.window);
        let w = per_series
            .get_mut(at.0 as usize)
            .and_then(|s| s.get_mut(at.1 as usize))
            .filter(|_| at >= next)
            .ok_or_else(|| malformed(format!("extras for series {}, window {}", at.0, at.1)))?;
        next = (at.0, at.1 + 1);
        w.verdict = extras.verdict;
        w.template = extras.template;
        w.escalations = extras.escalations;
    }
    verdicts::read(&body.verdicts, &mut per_series, &quantizers)
        .map_err(|e| malformed(format!("verdicts: {e}")))?;
    let mut per_series: Vec<_> = per_series.into_iter().map(Vec::into_iter).collect();
    let mut windows = Vec::with_capacity(total as usize);
    let mut order = Reader::new(&body.order);
    let mut s = 0i64;
    while !order.is_empty() {
        s = s.wrapping_add(order.i64().map_err(|e| malformed(format!("order: {e}")))?);
        let window = usize::try_from(s)
            .ok()
            .and_then(|s| per_series.get_mut(s))
            .and_then(Iterator::next)
            .ok_or_else(|| {
                malformed(format!("order names series {s}, which has no window left"))
            })?;
        windows.push(window);
    }
    if windows.len() as u64 != total {
        return Err(malformed(format!(
            "order places {} of the {total} windows",
            windows.len()
        )));
    }
    Ok(Body {
        windows,
        counters: body.counters,
        gauges: body.gauges,
    })
}

/// One series off the columns: its names, window count and columns, and the
/// quantizer its values travel through.
/// `total` counts the body's windows so far, capped at [`MAX_WINDOWS_PER_BODY`].
fn decode_series(
    r: &mut Reader<'_>,
    names: &[String],
    carry: &mut Carry,
    total: &mut u64,
) -> Result<(Vec<WindowSummary>, Quantizer), String> {
    let mut name = || -> Result<(&String, u64), String> {
        let i = r.u64()?;
        let name = usize::try_from(i)
            .ok()
            .and_then(|i| names.get(i))
            .ok_or_else(|| format!("name {i} of {}", names.len()))?;
        Ok((name, i))
    };
    let ((device, _), (metric, metric_index)) = (name()?, name()?);
    let n = r.u64()?;
    *total = total.saturating_add(n);
    if *total > MAX_WINDOWS_PER_BODY {
        return Err(format!(
            "over the {MAX_WINDOWS_PER_BODY} windows a body may hold"
        ));
    }
    // Every entry takes at least a byte: refuse before allocating for `n`.
    let n = n as usize;
    if n.saturating_mul(TIME_COLUMNS + VALUE_COLUMNS) > r.len() {
        return Err(format!("{n} windows in {} column bytes", r.len()));
    }
    let bits = r.u64()?;
    if bits >= 52 {
        return Err(format!("{bits} mantissa bits (an f64 has 52)"));
    }
    let mut windows: Vec<WindowSummary> = (0..n).map(|_| blank_window(device, metric)).collect();
    let quantizer = Quantizer::from_bits(bits as u32);
    carry.read(r, &mut windows, metric_index, quantizer)?;
    Ok((windows, quantizer))
}

fn blank_window(device: &str, metric: &str) -> WindowSummary {
    WindowSummary {
        device: device.to_owned(),
        metric: metric.to_owned(),
        start_ms: 0,
        end_ms: 0,
        count: 0,
        sum: 0.0,
        min: 0.0,
        max: 0.0,
        mean: 0.0,
        stddev: 0.0,
        p50: 0.0,
        p95: 0.0,
        p99: 0.0,
        sketch_alpha: 0.0,
        first: 0.0,
        first_ms: 0,
        last: 0.0,
        last_ms: 0,
        verdict: None,
        rolled_up: 0,
        template: None,
        escalations: Vec::new(),
    }
}

pub(crate) fn malformed(why: impl Into<String>) -> CodecError {
    CodecError::Malformed(format!("columnar body: {}", why.into()))
}
