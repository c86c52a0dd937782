//! Log-linear bucket boundaries, computed from the bits of an `f64`.
//!
//! Each power-of-two octave is split into `2^precision` equal sub-buckets (the
//! HDR-histogram layout). For a positive `f64` the exponent and the top
//! `precision` mantissa bits are one integer, the bucket key, so
//! `key = (bits - 1) >> (52 - precision)` finds the bucket with a subtraction
//! and a shift: no logarithm. Subtracting one makes buckets closed at the top,
//! `(lower, upper]`, as Prometheus `le` buckets are.
//!
//! A bucket's width is at most `w = 2^-precision` times its lower bound, so
//! the value `2·lower·upper / (lower + upper)` is within `w / (2 + w)` relative
//! error of anything in the bucket. The precision is the smallest one whose
//! bound meets the requested relative error (0.5% needs 7 bits: 128
//! sub-buckets per octave, a bound of 0.39%; 1e-6..3600 s is 4,059 buckets).

use crate::InvalidArgument;

/// Most buckets a layout may have (8 MiB of counts).
pub const MAX_BUCKETS: usize = 1 << 20;

const MANTISSA_BITS: u32 = 52;
/// Bits of every `f64` at or above +infinity, and of every negative number.
const NOT_FINITE_NON_NEGATIVE: u64 = 0x7ff0_0000_0000_0000;

/// Where values fall: `buckets()` fine buckets covering `[min_value, max_value]`,
/// plus one overflow bucket (index `buckets()`) for values above the last.
#[derive(Debug, Clone, PartialEq)]
pub struct BucketLayout {
    shift: u32,
    first_key: u64,
    buckets: usize,
    min_value: f64,
    max_value: f64,
    relative_error: f64,
}

impl BucketLayout {
    /// The coarsest layout over `[min_value, max_value]` whose bucket values
    /// are within `relative_error` (in `(0, 0.1]`) of the values they stand for.
    pub fn new(
        min_value: f64,
        max_value: f64,
        relative_error: f64,
    ) -> Result<Self, InvalidArgument> {
        if !(min_value.is_finite() && min_value >= f64::MIN_POSITIVE) {
            return Err(InvalidArgument::new(
                "min_value",
                format!(
                    "must be a finite number greater than 0 (at least 2.2e-308), got {min_value}"
                ),
            ));
        }
        if !(max_value.is_finite() && max_value > min_value) {
            return Err(InvalidArgument::new(
                "max_value",
                format!(
                    "must be a finite number greater than min_value ({min_value}), got {max_value}"
                ),
            ));
        }
        if !(relative_error > 0.0 && relative_error <= 0.1) {
            return Err(InvalidArgument::new(
                "relative_error",
                format!("must be in (0, 0.1], got {relative_error}"),
            ));
        }
        let precision = (1..=MANTISSA_BITS)
            .find(|&bits| error_bound(bits) <= relative_error)
            .unwrap_or(MANTISSA_BITS);
        let shift = MANTISSA_BITS - precision;
        let first_key = key(min_value, shift);
        let last_key = key(max_value, shift);
        let buckets = usize::try_from(last_key - first_key + 1).unwrap_or(usize::MAX);
        if buckets > MAX_BUCKETS {
            return Err(InvalidArgument::new(
                "relative_error",
                format!(
                    "{relative_error} over [{min_value}, {max_value}] needs {buckets} buckets, \
                     more than {MAX_BUCKETS}: use a larger error or a narrower range"
                ),
            ));
        }
        Ok(Self {
            shift,
            first_key,
            buckets,
            min_value,
            max_value,
            relative_error: error_bound(precision),
        })
    }

    /// Number of fine buckets; the overflow bucket has this index.
    pub fn buckets(&self) -> usize {
        self.buckets
    }

    /// Smallest value with its own bucket; smaller ones count in bucket 0.
    pub fn min_value(&self) -> f64 {
        self.min_value
    }

    /// Largest value the fine buckets are sized for.
    pub fn max_value(&self) -> f64 {
        self.max_value
    }

    /// The relative error bound the layout guarantees (at most the one asked for).
    pub fn relative_error(&self) -> f64 {
        self.relative_error
    }

    /// The bucket of `x`: values at or below bucket 0's lower bound (zero
    /// included) clamp to bucket 0, values above the last bucket go to the
    /// overflow bucket. `None` for NaN, infinities and negative numbers.
    #[inline]
    pub fn index(&self, x: f64) -> Option<usize> {
        let bits = x.to_bits();
        if bits >= NOT_FINITE_NON_NEGATIVE {
            // -0.0 has the sign bit set but is a fine observation of zero.
            return (x == 0.0).then_some(0);
        }
        let key = bits.saturating_sub(1) >> self.shift;
        Some((key.saturating_sub(self.first_key) as usize).min(self.buckets))
    }

    /// Lower bound (exclusive) of bucket `index`.
    pub fn lower(&self, index: usize) -> f64 {
        if index >= self.buckets {
            return self.upper(self.buckets - 1);
        }
        f64::from_bits((self.first_key + index as u64) << self.shift)
    }

    /// Upper bound (inclusive) of bucket `index`; +infinity for the overflow bucket.
    pub fn upper(&self, index: usize) -> f64 {
        if index >= self.buckets {
            return f64::INFINITY;
        }
        f64::from_bits((self.first_key + index as u64 + 1) << self.shift)
    }

    /// The value bucket `index` stands for: the point of least relative error
    /// in the bucket, and `max_value` for the overflow bucket (clamped).
    pub fn value(&self, index: usize) -> f64 {
        if index >= self.buckets {
            return self.max_value;
        }
        let (lower, upper) = (self.lower(index), self.upper(index));
        2.0 * lower * (upper / (lower + upper))
    }
}

/// Relative error bound of a layout with `precision` sub-bucket bits.
fn error_bound(precision: u32) -> f64 {
    let width = (-(precision as f64)).exp2();
    width / (2.0 + width)
}

fn key(x: f64, shift: u32) -> u64 {
    (x.to_bits() - 1) >> shift
}

#[cfg(test)]
mod tests {
    use super::*;

    fn default_layout() -> BucketLayout {
        BucketLayout::new(1e-6, 3600.0, 0.005).unwrap()
    }

    #[test]
    fn default_layout_has_128_sub_buckets_per_octave() {
        let layout = default_layout();
        assert!(layout.relative_error() <= 0.005);
        assert!((layout.relative_error() - 1.0 / 257.0).abs() < 1e-12);
        // 32 octaves of 128, less the sub-buckets below 1e-6 and above 3600.
        assert_eq!(layout.buckets(), 32 * 128 - 6 - 31);
        assert!(layout.lower(0) < 1e-6 && 1e-6 <= layout.upper(0));
        let last = layout.buckets() - 1;
        assert!(layout.lower(last) < 3600.0 && 3600.0 <= layout.upper(last));
    }

    #[test]
    fn buckets_are_closed_at_the_top() {
        let layout = default_layout();
        for index in [0, 1, 700, layout.buckets() - 1] {
            let upper = layout.upper(index);
            assert_eq!(layout.index(upper), Some(index));
            assert_eq!(
                layout.index(f64::from_bits(upper.to_bits() + 1)),
                Some(index + 1)
            );
            assert_eq!(layout.upper(index), layout.lower(index + 1));
        }
    }

    #[test]
    fn bucket_values_are_within_the_error_bound_everywhere() {
        let layout = default_layout();
        let bound = layout.relative_error();
        let mut x = 1e-6;
        while x <= 3600.0 {
            let index = layout.index(x).unwrap();
            let value = layout.value(index);
            assert!(
                ((value - x) / x).abs() <= bound * (1.0 + 1e-12),
                "x={x} value={value}"
            );
            assert!(layout.lower(index) < x && x <= layout.upper(index));
            x *= 1.0007;
        }
    }

    #[test]
    fn out_of_range_values_clamp_and_bad_values_are_refused() {
        let layout = default_layout();
        assert_eq!(layout.index(0.0), Some(0));
        assert_eq!(layout.index(-0.0), Some(0));
        assert_eq!(layout.index(1e-12), Some(0));
        assert_eq!(layout.index(1e9), Some(layout.buckets()));
        assert_eq!(layout.value(layout.buckets()), 3600.0);
        assert_eq!(layout.upper(layout.buckets()), f64::INFINITY);
        for bad in [-1.0, f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            assert_eq!(layout.index(bad), None);
        }
    }

    #[test]
    fn precision_follows_the_requested_error() {
        let coarse = BucketLayout::new(1.0, 2.0, 0.1).unwrap();
        // 1.0 is a boundary, so it closes the bucket below the octave [1, 2].
        assert_eq!(coarse.buckets(), 1 + 8);
        assert!(coarse.relative_error() <= 0.1);
        let fine = BucketLayout::new(1.0, 2.0, 0.001).unwrap();
        assert!(fine.relative_error() <= 0.001);
        assert_eq!(fine.buckets(), 1 + 512);
    }

    #[test]
    fn bad_arguments_name_themselves() {
        let cases = [
            (0.0, 1.0, 0.01, "min_value"),
            (-1.0, 1.0, 0.01, "min_value"),
            (f64::NAN, 1.0, 0.01, "min_value"),
            (1.0, 1.0, 0.01, "max_value"),
            (1.0, f64::INFINITY, 0.01, "max_value"),
            (1.0, f64::NAN, 0.01, "max_value"),
            (1.0, 2.0, 0.0, "relative_error"),
            (1.0, 2.0, 0.11, "relative_error"),
            (1.0, 2.0, f64::NAN, "relative_error"),
            (1e-300, 1e300, 1e-9, "relative_error"),
        ];
        for (min, max, error, argument) in cases {
            let err = BucketLayout::new(min, max, error).unwrap_err();
            assert_eq!(err.argument, argument, "{min} {max} {error}");
        }
    }
}
