//! Window values as integer codes for the columnar body: exact (the f64's bits) or
//! rounded to fewer mantissa bits. It does not lay codes out (see [`crate::columnar`]).
//!
//! Rounded codes are what makes the uplink small: a value kept to `k` mantissa
//! bits is within `2^-(k+1)` of the true one, relatively, and the codes of
//! values close together are close integers, so their differences are small.
//! Rounding is integer arithmetic on the f64's bits (no `ln`/`exp`), so a
//! value rounds to the same code on every machine and build, and a rounded
//! value rounds to itself: a body opened and sealed again (a roll-up, a
//! retry after an upgrade) gives the same bytes.

/// Smallest relative error a rounded body may carry (29 mantissa bits).
pub const MIN_RELATIVE_ERROR: f64 = 1e-9;
/// Largest relative error a rounded body may carry: one percent, the quantile
/// sketch's default error (coarser rounding would blur every field, not just
/// the quantiles).
pub const MAX_RELATIVE_ERROR: f64 = 0.01;

/// f64 mantissa bits.
const MANTISSA_BITS: u32 = 52;
const SIGN: u64 = 1 << 63;
/// The code of NaN (a rounded magnitude code is below 2^63, so never this).
const CODE_NAN: i64 = i64::MIN;

/// How window values are turned into codes and back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quantizer {
    /// The code is the value's bit pattern: decoding gives the same f64, bit for bit.
    Exact,
    /// The code is the value's magnitude rounded to `bits` mantissa bits (to
    /// nearest), signed: the decoded value is within `2^-(bits+1)` of the
    /// original, relatively. Zero (either sign) decodes as +0; infinities and
    /// NaN are kept; a finite value never rounds up to infinity.
    Rounded { bits: u32 },
}

impl Quantizer {
    /// The quantizer for a relative error `a`: 0 means exact; otherwise the
    /// fewest mantissa bits whose error is at most `a`. `None` when `a` is
    /// neither 0 nor in [`MIN_RELATIVE_ERROR`, `MAX_RELATIVE_ERROR`].
    pub fn new(relative_error: f64) -> Option<Quantizer> {
        if relative_error == 0.0 {
            return Some(Quantizer::Exact);
        }
        if !(MIN_RELATIVE_ERROR..=MAX_RELATIVE_ERROR).contains(&relative_error) {
            return None;
        }
        (0..MANTISSA_BITS)
            .find(|&bits| Quantizer::error_of(bits) <= relative_error)
            .map(|bits| Quantizer::Rounded { bits })
    }

    /// The quantizer that keeps `bits` mantissa bits; `bits` of 52 or more
    /// round nothing, so they mean exact. 0 is exact too (the body's field).
    pub fn from_bits(bits: u32) -> Quantizer {
        if bits == 0 || bits >= MANTISSA_BITS {
            Quantizer::Exact
        } else {
            Quantizer::Rounded { bits }
        }
    }

    /// Mantissa bits kept, 0 when exact (what a body records).
    pub fn bits(&self) -> u32 {
        match self {
            Quantizer::Exact => 0,
            Quantizer::Rounded { bits } => *bits,
        }
    }

    fn error_of(bits: u32) -> f64 {
        0.5f64.powi(bits as i32 + 1)
    }

    /// The code of `x`.
    pub fn encode(&self, x: f64) -> i64 {
        let bits = match self {
            Quantizer::Exact => return x.to_bits() as i64,
            Quantizer::Rounded { bits } => *bits,
        };
        if x.is_nan() {
            return CODE_NAN;
        }
        let shift = MANTISSA_BITS - bits;
        let magnitude = x.to_bits() & !SIGN;
        let infinity = f64::INFINITY.to_bits() >> shift;
        let mut code = (magnitude + (1 << (shift - 1))) >> shift;
        if x.is_finite() && code >= infinity {
            code = infinity - 1;
        }
        if x.is_sign_negative() {
            -(code as i64)
        } else {
            code as i64
        }
    }

    /// The value of `code` (any i64: codes from untrusted bytes decode to some
    /// value, never a panic).
    pub fn decode(&self, code: i64) -> f64 {
        let bits = match self {
            Quantizer::Exact => return f64::from_bits(code as u64),
            Quantizer::Rounded { bits } => *bits,
        };
        if code == CODE_NAN {
            return f64::NAN;
        }
        let magnitude = code
            .unsigned_abs()
            .checked_shl(MANTISSA_BITS - bits)
            .unwrap_or(0)
            & !SIGN;
        let sign = if code < 0 { SIGN } else { 0 };
        f64::from_bits(magnitude | sign)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn errors_map_to_mantissa_bits() {
        for a in [-0.001, 1e-10, 0.02, f64::NAN, f64::INFINITY] {
            assert_eq!(Quantizer::new(a), None, "{a}");
        }
        assert_eq!(Quantizer::new(0.0), Some(Quantizer::Exact));
        assert_eq!(Quantizer::new(1e-4), Some(Quantizer::Rounded { bits: 13 }));
        assert_eq!(Quantizer::new(0.01), Some(Quantizer::Rounded { bits: 6 }));
        assert_eq!(Quantizer::new(1e-9), Some(Quantizer::Rounded { bits: 29 }));
        assert!(Quantizer::error_of(13) <= 1e-4 && Quantizer::error_of(12) > 1e-4);
        assert_eq!(Quantizer::from_bits(13), Quantizer::Rounded { bits: 13 });
        assert_eq!(Quantizer::from_bits(0), Quantizer::Exact);
    }

    #[test]
    fn specials_are_kept() {
        let q = Quantizer::new(1e-4).unwrap();
        for x in [0.0, f64::INFINITY, f64::NEG_INFINITY, f64::MAX, -f64::MAX] {
            let y = q.decode(q.encode(x));
            assert!(
                y == x || (x.abs() == f64::MAX && y.is_finite()),
                "{x} -> {y}"
            );
        }
        assert_eq!(q.decode(q.encode(-0.0)), 0.0);
        assert!(q.decode(q.encode(f64::NAN)).is_nan());
        for code in [i64::MAX, i64::MIN + 1, 1 << 62, -(1 << 62)] {
            let _ = q.decode(code);
        }
    }

    #[test]
    fn neighbouring_values_get_neighbouring_codes() {
        // 20.00 and 20.01 at 13 bits: one step is 2^-13 of 16, ~0.002.
        let q = Quantizer::new(1e-4).unwrap();
        let d = q.encode(20.01) - q.encode(20.0);
        assert!((4..=6).contains(&d), "{d}");
        assert_eq!(q.encode(-20.0), -q.encode(20.0));
        assert_eq!(q.encode(1.0), 0x3ff << 13);
    }

    proptest! {
        #[test]
        fn exact_round_trips_bit_for_bit(bits in any::<u64>()) {
            let x = f64::from_bits(bits);
            prop_assert_eq!(Quantizer::Exact.decode(Quantizer::Exact.encode(x)).to_bits(), bits);
        }

        #[test]
        fn rounded_values_are_within_the_error_and_stable(
            bits in any::<u64>(),
            a in prop_oneof![Just(1e-9), Just(1e-6), Just(1e-4), Just(1e-3), Just(0.01)],
        ) {
            let x = f64::from_bits(bits);
            prop_assume!(x.is_finite() && x.abs() < f64::MAX / 2.0);
            let q = Quantizer::new(a).unwrap();
            let code = q.encode(x);
            let y = q.decode(code);
            // Relative for normal values; subnormals keep fewer bits, so absolute there.
            let bound = (a * x.abs()).max(f64::MIN_POSITIVE * a);
            prop_assert!((y - x).abs() <= bound, "{} -> {} at {}", x, y, a);
            prop_assert_eq!(q.encode(y), code, "{} -> {} does not round to itself", x, y);
        }

        #[test]
        fn rounding_keeps_order(x in any::<f64>(), y in any::<f64>()) {
            prop_assume!(!x.is_nan() && !y.is_nan());
            let q = Quantizer::new(1e-3).unwrap();
            if x <= y {
                prop_assert!(q.decode(q.encode(x)) <= q.decode(q.encode(y)), "{} {}", x, y);
            }
        }
    }
}
