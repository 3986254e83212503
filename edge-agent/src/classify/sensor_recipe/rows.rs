//! A device's bounded history of rows for the sensor recipe: the last `cap`
//! rows of `c` values in one flat ring, and trailing means over it. It does
//! not know what the rows mean (`sensor_recipe.rs` and `sensor.rs` do).

/// The last `cap` rows of `c` values each, in one flat ring. It replaced a
/// `VecDeque<Vec<f64>>` (one allocation per row), whose push was 10% of the
/// agent's CPU samples at 10k msg/s over 1,000 devices (perf, BENCHMARKS.md).
/// Sums run oldest to newest, as over a deque, so results are bit-identical.
#[derive(Debug, Clone)]
pub(crate) struct Rows {
    c: usize,
    cap: usize,
    values: Vec<f64>,
    /// Ring index of the oldest row.
    start: usize,
    len: usize,
}

impl Rows {
    pub(crate) fn new(c: usize, cap: usize) -> Rows {
        let cap = cap.max(1);
        Rows {
            c,
            cap,
            values: Vec::with_capacity(c * cap),
            start: 0,
            len: 0,
        }
    }

    pub(crate) fn push(&mut self, row: &[f64]) {
        if self.len < self.cap {
            // Filling: the ring has not wrapped, so rows sit in order from 0.
            self.values.extend_from_slice(row);
            self.len += 1;
            return;
        }
        // Full: the newest row takes the oldest one's place.
        let at = self.start;
        self.values[at * self.c..(at + 1) * self.c].copy_from_slice(row);
        self.start = (at + 1) % self.cap;
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Every row held, oldest first ([`Self::len`] of them).
    pub(crate) fn iter(&self) -> impl Iterator<Item = &[f64]> + '_ {
        // Until the ring wraps `start` is 0; after, the oldest row is at `start`.
        let (wrapped, oldest) = self.values.split_at(self.start * self.c);
        oldest
            .chunks_exact(self.c)
            .chain(wrapped.chunks_exact(self.c))
    }

    /// Channel `j` of the last `n` rows held, oldest first.
    pub(super) fn tail(&self, n: usize, j: usize) -> impl Iterator<Item = f64> + '_ {
        let n = n.min(self.len);
        // The ring's rows in two runs, oldest first (no division per value).
        let first = (self.start + self.len - n) % self.cap;
        let to_end = n.min(self.cap - first);
        let c = self.c;
        let column = move |rows: std::ops::Range<usize>| {
            self.values[rows.start * c..rows.end * c]
                .chunks_exact(c)
                .map(move |row| row[j])
        };
        column(first..first + to_end).chain(column(0..n - to_end))
    }
}

/// Mean of channel `j` over the last `w` rows held (fewer if fewer are held).
pub(super) fn tail_mean(rows: &Rows, w: usize, j: usize) -> f64 {
    let n = rows.len().min(w);
    let sum: f64 = rows.tail(n, j).sum();
    sum / n as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    #[test]
    fn the_ring_holds_the_last_rows_and_sums_them_oldest_first() {
        let (c, cap) = (3, 7);
        let mut ring = Rows::new(c, cap);
        let mut naive: VecDeque<Vec<f64>> = VecDeque::new();
        for i in 0..40 {
            let row: Vec<f64> = (0..c).map(|j| (i * 10 + j) as f64 * 0.1 + 1e-9).collect();
            ring.push(&row);
            if naive.len() == cap {
                naive.pop_front();
            }
            naive.push_back(row);
            assert_eq!(ring.len(), naive.len());
            let rows: Vec<&[f64]> = ring.iter().collect();
            let want: Vec<&[f64]> = naive.iter().map(Vec::as_slice).collect();
            assert_eq!(rows, want, "rows after push {i}");
            for w in [1, 3, cap, cap + 5] {
                for j in 0..c {
                    let n = naive.len().min(w);
                    let want: Vec<f64> = naive.iter().skip(naive.len() - n).map(|r| r[j]).collect();
                    let got: Vec<f64> = ring.tail(w, j).collect();
                    assert_eq!(got, want, "push {i} window {w} channel {j}");
                    let sum: f64 = want.iter().sum();
                    assert_eq!(tail_mean(&ring, w, j).to_bits(), (sum / n as f64).to_bits());
                }
            }
        }
    }
}
