//! A mergeable quantile sketch with a relative-error guarantee (DDSketch).
//!
//! Values are counted in logarithmic buckets: a bucket `i` holds values in
//! `(γ^(i-1), γ^i]` with `γ = (1+α)/(1-α)`, and answers with the point whose
//! relative distance to every value of the bucket is at most `α`. Negative
//! values use a mirrored store, tiny magnitudes a zero bucket. Two sketches with
//! the same `α` merge exactly (bucket counts add), which later roll-ups rely on.
//!
//! It does not track exact min/max (the window does) and it does not bound its
//! bucket count: the span of magnitudes in one window is small in practice
//! (a factor of 10 costs ~115 buckets at α = 1%).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Magnitudes below this are counted as zero.
const MIN_MAGNITUDE: f64 = 1e-9;

/// A DDSketch over f64 values (serializable for window checkpoints).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sketch {
    alpha: f64,
    ln_gamma: f64,
    positive: BTreeMap<i32, u64>,
    negative: BTreeMap<i32, u64>,
    zeros: u64,
    count: u64,
}

impl Sketch {
    /// A sketch whose quantiles are within `alpha` relative error (0 < alpha < 1).
    pub fn new(alpha: f64) -> Sketch {
        assert!(alpha > 0.0 && alpha < 1.0, "sketch alpha must be in (0, 1)");
        let gamma = (1.0 + alpha) / (1.0 - alpha);
        Sketch {
            alpha,
            ln_gamma: gamma.ln(),
            positive: BTreeMap::new(),
            negative: BTreeMap::new(),
            zeros: 0,
            count: 0,
        }
    }

    /// The relative accuracy this sketch was built with.
    pub fn alpha(&self) -> f64 {
        self.alpha
    }

    /// Number of values added.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Adds one finite value. Non-finite values are the caller's to reject.
    pub fn add(&mut self, value: f64) {
        debug_assert!(value.is_finite());
        self.count += 1;
        let magnitude = value.abs();
        if magnitude < MIN_MAGNITUDE {
            self.zeros += 1;
            return;
        }
        let index = self.index(magnitude);
        let store = if value > 0.0 {
            &mut self.positive
        } else {
            &mut self.negative
        };
        *store.entry(index).or_default() += 1;
    }

    /// Adds every value counted by `other`. Panics if the two `alpha`s differ.
    pub fn merge(&mut self, other: &Sketch) {
        assert!(
            self.alpha == other.alpha,
            "only sketches with the same alpha merge"
        );
        for (i, n) in &other.positive {
            *self.positive.entry(*i).or_default() += n;
        }
        for (i, n) in &other.negative {
            *self.negative.entry(*i).or_default() += n;
        }
        self.zeros += other.zeros;
        self.count += other.count;
    }

    /// The value at rank `floor(q * (count - 1))` (0-based, ascending), within
    /// `alpha` relative error. `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let q = q.clamp(0.0, 1.0);
        let rank = (q * (self.count - 1) as f64).floor() as u64;
        let mut seen = 0u64;
        // Most negative first: larger magnitude index = more negative.
        for (i, n) in self.negative.iter().rev() {
            seen += n;
            if seen > rank {
                return Some(-self.value(*i));
            }
        }
        seen += self.zeros;
        if seen > rank {
            return Some(0.0);
        }
        for (i, n) in &self.positive {
            seen += n;
            if seen > rank {
                return Some(self.value(*i));
            }
        }
        // Unreachable while counts are consistent; answer the largest bucket.
        self.positive
            .keys()
            .next_back()
            .map(|i| self.value(*i))
            .or(Some(0.0))
    }

    fn index(&self, magnitude: f64) -> i32 {
        (magnitude.ln() / self.ln_gamma).ceil() as i32
    }

    /// The representative of bucket `i`: the point `2γ^i / (γ + 1)` that is
    /// within `alpha` of both bucket bounds.
    fn value(&self, index: i32) -> f64 {
        let gamma = self.ln_gamma.exp();
        2.0 * (self.ln_gamma * f64::from(index)).exp() / (gamma + 1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn exact(values: &[f64], q: f64) -> f64 {
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        let rank = (q * (sorted.len() - 1) as f64).floor() as usize;
        sorted[rank]
    }

    #[test]
    fn empty_sketch_has_no_quantiles() {
        assert_eq!(Sketch::new(0.01).quantile(0.5), None);
    }

    #[test]
    fn zeros_and_signs_are_ordered() {
        let mut s = Sketch::new(0.01);
        for v in [-5.0, 0.0, 3.0] {
            s.add(v);
        }
        assert!((s.quantile(0.0).unwrap() + 5.0).abs() <= 0.05);
        assert_eq!(s.quantile(0.5), Some(0.0));
        assert!((s.quantile(1.0).unwrap() - 3.0).abs() <= 0.03);
    }

    proptest! {
        #[test]
        fn quantiles_within_alpha_of_exact_rank(
            values in prop::collection::vec(
                prop_oneof![-1e6f64..1e6, 0.0f64..1.0, Just(0.0)], 1..400),
            q in 0.0f64..=1.0,
        ) {
            let mut s = Sketch::new(0.01);
            for v in &values { s.add(*v); }
            let got = s.quantile(q).unwrap();
            let want = exact(&values, q);
            let tolerance = 0.01 * want.abs() + MIN_MAGNITUDE;
            prop_assert!((got - want).abs() <= tolerance,
                "q={q} got={got} want={want}");
        }

        #[test]
        fn merging_equals_adding_everything_to_one(
            a in prop::collection::vec(-1e3f64..1e3, 0..100),
            b in prop::collection::vec(-1e3f64..1e3, 0..100),
        ) {
            let (mut sa, mut sb, mut all) = (Sketch::new(0.02), Sketch::new(0.02), Sketch::new(0.02));
            for v in &a { sa.add(*v); all.add(*v); }
            for v in &b { sb.add(*v); all.add(*v); }
            sa.merge(&sb);
            prop_assert_eq!(sa, all);
        }
    }
}
