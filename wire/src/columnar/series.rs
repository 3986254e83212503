//! One series' windows as columns of varints, written after the previous series' (see [`Carry`]); and the varint reader. It does not know the body around them.

use std::collections::HashMap;

use integer_encoding::VarInt;

use crate::quantize::Quantizer;
use crate::WindowSummary;

/// width, start, count, first offset, last offset, rolled_up.
pub(super) const TIME_COLUMNS: usize = 6;
/// sketch_alpha (always exact), mean, stddev, sum, p50, p95, p99, max, min,
/// first, last: each written against its [`REFERENCES`] entry.
pub(super) const VALUE_COLUMNS: usize = 11;
/// alpha, mean, stddev: written against the previous window's code (see [`Carry`]).
const CARRIED_VALUES: usize = 3;

/// What a value column's code is written against.
#[derive(Debug, Clone, Copy)]
enum Reference {
    /// The previous window's code in this column.
    Carried,
    /// This window's code in another (earlier) column: the fields of one
    /// window lie close together, and ordered statistics closest to their
    /// neighbours (with 60 readings, p99 is the second largest).
    Column(usize),
    /// The code of this window's (decoded) mean times its count: the sum
    /// carries no more than that.
    MeanTimesCount,
}

const MEAN: usize = 1;
const P50: usize = 4;
const P95: usize = 5;
const P99: usize = 6;
const REFERENCES: [Reference; VALUE_COLUMNS] = [
    Reference::Carried,        // alpha
    Reference::Carried,        // mean
    Reference::Carried,        // stddev
    Reference::MeanTimesCount, // sum
    Reference::Column(MEAN),   // p50
    Reference::Column(P50),    // p95
    Reference::Column(P95),    // p99
    Reference::Column(P99),    // max
    Reference::Column(P50),    // min
    Reference::Column(MEAN),   // first
    Reference::Column(MEAN),   // last
];

/// What a series' first window is written against: the state left by the
/// series before it in the body. Width, start (the previous series' first
/// start) and alpha come from the previous series; mean and stddev from the
/// last series of the same metric name, if any (a fleet's pumps report similar
/// pressures), else from the previous series.
#[derive(Debug, Default)]
pub(super) struct Carry {
    width: i64,
    first_start: i64,
    codes: [i64; CARRIED_VALUES],
    by_metric: HashMap<u64, [i64; CARRIED_VALUES]>,
}

impl Carry {
    /// The codes the series of metric name `metric` starts from.
    fn start(&self, metric: u64) -> [i64; CARRIED_VALUES] {
        match self.by_metric.get(&metric) {
            Some(&[_, mean, stddev]) => [self.codes[0], mean, stddev],
            None => self.codes,
        }
    }

    fn finish(&mut self, metric: u64, codes: [i64; CARRIED_VALUES]) {
        self.codes = codes;
        self.by_metric.insert(metric, codes);
    }

    /// Appends the columns of `windows` (one series, metric name `metric`,
    /// values through `quantizer`) to `out`.
    pub(super) fn write(
        &mut self,
        out: &mut Vec<u8>,
        windows: &[&WindowSummary],
        metric: u64,
        quantizer: Quantizer,
    ) {
        for w in windows {
            let width = w.end_ms.wrapping_sub(w.start_ms);
            put_i64(out, width.wrapping_sub(self.width));
            self.width = width;
        }
        let mut previous_end = self.first_start;
        self.first_start = windows.first().map_or(self.first_start, |w| w.start_ms);
        for w in windows {
            put_i64(out, w.start_ms.wrapping_sub(previous_end));
            previous_end = w.end_ms;
        }
        for w in windows {
            put_u64(out, w.count);
        }
        for w in windows {
            put_i64(out, w.first_ms.wrapping_sub(w.start_ms));
        }
        for w in windows {
            put_i64(out, w.end_ms.wrapping_sub(w.last_ms));
        }
        for w in windows {
            put_u64(out, u64::from(w.rolled_up));
        }
        let mut carried = self.start(metric);
        let codes: Vec<[i64; VALUE_COLUMNS]> = windows
            .iter()
            .map(|w| {
                std::array::from_fn(|column| {
                    column_quantizer(column, quantizer).encode(value_field(w, column))
                })
            })
            .collect();
        for column in 0..VALUE_COLUMNS {
            let q = column_quantizer(column, quantizer);
            for (w, codes) in windows.iter().zip(&codes) {
                let code = codes[column];
                let reference = match REFERENCES[column] {
                    Reference::Carried => std::mem::replace(&mut carried[column], code),
                    Reference::Column(other) => codes[other],
                    Reference::MeanTimesCount => mean_times_count(quantizer, codes[MEAN], w.count),
                };
                put_code(out, q, code, reference);
            }
        }
        self.finish(metric, carried);
    }

    /// Reads the columns of `windows` (blank windows of one series, metric
    /// name `metric`, values through `quantizer`) from `r`, as [`Carry::write`]
    /// wrote them.
    pub(super) fn read(
        &mut self,
        r: &mut Reader<'_>,
        windows: &mut [WindowSummary],
        metric: u64,
        quantizer: Quantizer,
    ) -> Result<(), String> {
        // Widths first (held in `end_ms` until the start is known), then starts.
        for w in windows.iter_mut() {
            self.width = self.width.wrapping_add(r.i64()?);
            w.end_ms = self.width;
        }
        let mut previous_end = self.first_start;
        for w in windows.iter_mut() {
            w.start_ms = previous_end.wrapping_add(r.i64()?);
            w.end_ms = w.start_ms.wrapping_add(w.end_ms);
            previous_end = w.end_ms;
        }
        self.first_start = windows.first().map_or(self.first_start, |w| w.start_ms);
        for w in windows.iter_mut() {
            w.count = r.u64()?;
        }
        for w in windows.iter_mut() {
            w.first_ms = w.start_ms.wrapping_add(r.i64()?);
        }
        for w in windows.iter_mut() {
            w.last_ms = w.end_ms.wrapping_sub(r.i64()?);
        }
        for w in windows.iter_mut() {
            w.rolled_up = u32::try_from(r.u64()?).map_err(|_| "rolled_up over u32")?;
        }
        let mut carried = self.start(metric);
        let mut codes = vec![[0i64; VALUE_COLUMNS]; windows.len()];
        for column in 0..VALUE_COLUMNS {
            let q = column_quantizer(column, quantizer);
            for (w, codes) in windows.iter_mut().zip(codes.iter_mut()) {
                let reference = match REFERENCES[column] {
                    Reference::Carried => carried[column],
                    Reference::Column(other) => codes[other],
                    Reference::MeanTimesCount => mean_times_count(quantizer, codes[MEAN], w.count),
                };
                let code = r.code(q, reference)?;
                if let Reference::Carried = REFERENCES[column] {
                    carried[column] = code;
                }
                codes[column] = code;
                *value_field_mut(w, column) = q.decode(code);
            }
        }
        self.finish(metric, carried);
        Ok(())
    }
}

/// The quantizer of value column `column`: alpha (column 0) always travels exact.
fn column_quantizer(column: usize, quantizer: Quantizer) -> Quantizer {
    if column == 0 {
        Quantizer::Exact
    } else {
        quantizer
    }
}

/// The reference of a sum: the code of `mean` (a code) decoded, times `count`.
fn mean_times_count(quantizer: Quantizer, mean: i64, count: u64) -> i64 {
    quantizer.encode(quantizer.decode(mean) * count as f64)
}

fn value_field(w: &WindowSummary, column: usize) -> f64 {
    [
        w.sketch_alpha,
        w.mean,
        w.stddev,
        w.sum,
        w.p50,
        w.p95,
        w.p99,
        w.max,
        w.min,
        w.first,
        w.last,
    ][column]
}

fn value_field_mut(w: &mut WindowSummary, column: usize) -> &mut f64 {
    match column {
        0 => &mut w.sketch_alpha,
        1 => &mut w.mean,
        2 => &mut w.stddev,
        3 => &mut w.sum,
        4 => &mut w.p50,
        5 => &mut w.p95,
        6 => &mut w.p99,
        7 => &mut w.max,
        8 => &mut w.min,
        9 => &mut w.first,
        _ => &mut w.last,
    }
}

/// A value's code against its reference: a rounded code as the (zigzagged)
/// difference; an exact one (an f64's bits) as the XOR, bytes swapped, so a
/// repeated value takes one byte and a short one (1.0, 0.5) a few.
pub(super) fn put_code(out: &mut Vec<u8>, q: Quantizer, code: i64, reference: i64) {
    match q {
        Quantizer::Exact => put_u64(out, ((code ^ reference) as u64).swap_bytes()),
        Quantizer::Rounded { .. } => put_i64(out, code.wrapping_sub(reference)),
    }
}

pub(super) fn put_i64(out: &mut Vec<u8>, v: i64) {
    let mut buf = [0u8; 10];
    let n = v.encode_var(&mut buf);
    out.extend_from_slice(&buf[..n]);
}

pub(super) fn put_u64(out: &mut Vec<u8>, v: u64) {
    let mut buf = [0u8; 10];
    let n = v.encode_var(&mut buf);
    out.extend_from_slice(&buf[..n]);
}

/// Reads varints off a byte string; running out is an error (why, for the body's).
pub(super) struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(super) fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { bytes }
    }

    pub(super) fn len(&self) -> usize {
        self.bytes.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    pub(super) fn i64(&mut self) -> Result<i64, String> {
        let (v, n) = i64::decode_var(self.bytes).ok_or("truncated varint")?;
        self.bytes = &self.bytes[n..];
        Ok(v)
    }

    pub(super) fn u64(&mut self) -> Result<u64, String> {
        let (v, n) = u64::decode_var(self.bytes).ok_or("truncated varint")?;
        self.bytes = &self.bytes[n..];
        Ok(v)
    }

    /// The code after `reference` in a column written by [`put_code`].
    pub(super) fn code(&mut self, q: Quantizer, reference: i64) -> Result<i64, String> {
        Ok(match q {
            Quantizer::Exact => (self.u64()?.swap_bytes() as i64) ^ reference,
            Quantizer::Rounded { .. } => reference.wrapping_add(self.i64()?),
        })
    }
}
