//! Histograms of non-negative values (latencies, sizes) with percentiles.
//!
//! Counts live in one `AtomicU64` per log-linear bucket ([`BucketLayout`]);
//! an observation is one relaxed `fetch_add` on its bucket plus an add to a
//! striped sum, so observing never locks. The total count is the sum of the
//! buckets, read when asked for.
//!
//! Percentiles use the rank definition of `numpy.percentile(...,
//! method="inverted_cdf")`: the p-th percentile of `n` values is the value of
//! rank `ceil(n·p/100)` (1-based, at least 1) in sorted order, computed with
//! numpy's floating-point steps so both pick the same rank. The answer is the
//! value of the bucket holding that rank, within the layout's relative error
//! of the true one unless the rank fell on a value clamped into an end bucket.

use std::sync::atomic::{AtomicU64, Ordering};

use super::layout::BucketLayout;
use super::striped::StripedF64;
use crate::InvalidArgument;

/// Prometheus client libraries' default `le` bounds, in seconds.
pub const DEFAULT_EXPOSITION_BOUNDS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

/// The shape of a histogram: its fine buckets and the coarse `le` bounds it
/// exposes to Prometheus. Cheap to clone; labelled families share one.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSpec {
    layout: BucketLayout,
    exposition: Vec<usize>,
}

impl HistogramSpec {
    /// Fine buckets over `[min_value, max_value]` within `relative_error`, and
    /// Prometheus `le` bounds at the fine-bucket boundaries at or just above
    /// `exposition_bounds` (strictly increasing, inside the range; `None` takes
    /// [`DEFAULT_EXPOSITION_BOUNDS`] that fall in the range). Moving each bound
    /// to a boundary (up by at most twice the relative error) makes each
    /// exposed cumulative count exact for the `le` it is printed with.
    pub fn new(
        min_value: f64,
        max_value: f64,
        relative_error: f64,
        exposition_bounds: Option<&[f64]>,
    ) -> Result<Self, InvalidArgument> {
        let layout = BucketLayout::new(min_value, max_value, relative_error)?;
        let bounds: Vec<f64> = match exposition_bounds {
            Some(bounds) => {
                check_bounds(bounds, min_value, max_value)?;
                bounds.to_vec()
            }
            None => DEFAULT_EXPOSITION_BOUNDS
                .into_iter()
                .filter(|bound| (min_value..=max_value).contains(bound))
                .collect(),
        };
        let mut exposition: Vec<usize> = bounds
            .iter()
            .filter_map(|&bound| layout.index(bound))
            .collect();
        // Two bounds in one fine bucket expose the same boundary once.
        exposition.dedup();
        Ok(Self { layout, exposition })
    }

    /// The fine buckets.
    pub fn layout(&self) -> &BucketLayout {
        &self.layout
    }

    /// The exposed `le` bounds (fine-bucket upper boundaries), increasing, without +Inf.
    pub fn exposition_bounds(&self) -> Vec<f64> {
        self.exposition
            .iter()
            .map(|&index| self.layout.upper(index))
            .collect()
    }
}

fn check_bounds(bounds: &[f64], min_value: f64, max_value: f64) -> Result<(), InvalidArgument> {
    for (i, &bound) in bounds.iter().enumerate() {
        if !(min_value..=max_value).contains(&bound) {
            return Err(InvalidArgument::new(
                "buckets",
                format!(
                    "bound {bound} is outside [min_value, max_value] = [{min_value}, {max_value}]"
                ),
            ));
        }
        if i > 0 && bound <= bounds[i - 1] {
            return Err(InvalidArgument::new(
                "buckets",
                format!(
                    "bounds must be strictly increasing, got {} then {bound}",
                    bounds[i - 1]
                ),
            ));
        }
    }
    Ok(())
}

/// A lock-free histogram with relative-error percentiles.
#[derive(Debug)]
pub struct Histogram {
    spec: HistogramSpec,
    counts: Box<[AtomicU64]>,
    sum: StripedF64,
}

impl Histogram {
    /// An empty histogram of the given shape.
    pub fn new(spec: HistogramSpec) -> Self {
        let counts = (0..=spec.layout.buckets())
            .map(|_| AtomicU64::new(0))
            .collect();
        Self {
            spec,
            counts,
            sum: StripedF64::default(),
        }
    }

    /// The histogram's shape.
    pub fn spec(&self) -> &HistogramSpec {
        &self.spec
    }

    /// Records `x`, a finite number of at least 0. Values outside
    /// `[min_value, max_value]` count in the first or the overflow bucket.
    #[inline]
    pub fn observe(&self, x: f64) -> Result<(), InvalidArgument> {
        let Some(index) = self.spec.layout.index(x) else {
            return Err(InvalidArgument::new(
                "x",
                format!("must be a finite number of at least 0, got {x}"),
            ));
        };
        self.counts[index].fetch_add(1, Ordering::Relaxed);
        self.sum.add(x);
        Ok(())
    }

    /// Records every value of `xs`, or none of them if one is refused.
    pub fn observe_many(&self, xs: &[f64]) -> Result<(), InvalidArgument> {
        if let Some(bad) = xs.iter().find(|&&x| self.spec.layout.index(x).is_none()) {
            return Err(InvalidArgument::new(
                "values",
                format!("must be finite numbers of at least 0, got {bad}"),
            ));
        }
        for &x in xs {
            if let Some(index) = self.spec.layout.index(x) {
                self.counts[index].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.sum.add(xs.iter().sum());
        Ok(())
    }

    /// Number of observations.
    pub fn count(&self) -> u64 {
        self.counts
            .iter()
            .map(|count| count.load(Ordering::Relaxed))
            .sum()
    }

    /// Sum of the observed values.
    pub fn sum(&self) -> f64 {
        self.sum.get()
    }

    /// A copy of the bucket counts (fine buckets, then overflow) and the sum.
    pub fn snapshot(&self) -> HistogramSnapshot<'_> {
        let counts: Vec<u64> = self
            .counts
            .iter()
            .map(|count| count.load(Ordering::Relaxed))
            .collect();
        HistogramSnapshot {
            layout: &self.spec.layout,
            exposition: &self.spec.exposition,
            cumulative: counts
                .iter()
                .scan(0u64, |total, &count| {
                    *total += count;
                    Some(*total)
                })
                .collect(),
            counts,
            sum: self.sum.get(),
        }
    }

    /// The `p`-th percentile (`p` in `[0, 100]`); NaN when nothing was observed.
    pub fn percentile(&self, p: f64) -> Result<f64, InvalidArgument> {
        check_percentile("p", p)?;
        Ok(self.snapshot().percentile(p))
    }

    /// Several percentiles from one consistent snapshot.
    pub fn percentiles(&self, ps: &[f64]) -> Result<Vec<f64>, InvalidArgument> {
        for &p in ps {
            check_percentile("ps", p)?;
        }
        let snapshot = self.snapshot();
        Ok(ps.iter().map(|&p| snapshot.percentile(p)).collect())
    }
}

fn check_percentile(argument: &'static str, p: f64) -> Result<(), InvalidArgument> {
    if (0.0..=100.0).contains(&p) {
        Ok(())
    } else {
        Err(InvalidArgument::new(
            argument,
            format!("percentiles must be in [0, 100], got {p}"),
        ))
    }
}

/// The counts of a histogram at one moment.
#[derive(Debug, Clone)]
pub struct HistogramSnapshot<'a> {
    layout: &'a BucketLayout,
    exposition: &'a [usize],
    counts: Vec<u64>,
    cumulative: Vec<u64>,
    sum: f64,
}

impl HistogramSnapshot<'_> {
    /// Count per bucket: fine buckets, then the overflow bucket.
    pub fn counts(&self) -> &[u64] {
        &self.counts
    }

    /// Upper bound of each bucket of [`Self::counts`] (+infinity for overflow).
    pub fn upper_bounds(&self) -> Vec<f64> {
        (0..self.counts.len())
            .map(|index| self.layout.upper(index))
            .collect()
    }

    /// Number of observations.
    pub fn count(&self) -> u64 {
        self.cumulative.last().copied().unwrap_or(0)
    }

    /// Sum of the observations.
    pub fn sum(&self) -> f64 {
        self.sum
    }

    /// Cumulative counts at the exposed `le` bounds: `(le, observations <= le)`,
    /// increasing, without the final +Inf bucket (which is [`Self::count`]).
    pub fn exposition_buckets(&self) -> impl Iterator<Item = (f64, u64)> + '_ {
        self.exposition
            .iter()
            .map(|&index| (self.layout.upper(index), self.cumulative[index]))
    }

    /// The `p`-th percentile, `p` already checked to be in `[0, 100]`; NaN when empty.
    pub fn percentile(&self, p: f64) -> f64 {
        let n = self.count();
        if n == 0 {
            return f64::NAN;
        }
        let rank = inverted_cdf_rank(n, p);
        let index = self.cumulative.partition_point(|&below| below < rank);
        self.layout.value(index)
    }
}

/// 1-based rank that `numpy.percentile(a, p, method="inverted_cdf")` takes
/// for `n` values, with numpy's arithmetic: index `n·(p/100) - 1`, rounded up
/// unless it is whole, clipped to `[0, n-1]`.
fn inverted_cdf_rank(n: u64, p: f64) -> u64 {
    let virtual_index = n as f64 * (p / 100.0) - 1.0;
    let previous = virtual_index.floor();
    let index = if virtual_index - previous == 0.0 {
        previous
    } else {
        previous + 1.0
    };
    (index.max(0.0) as u64).min(n - 1) + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn histogram() -> Histogram {
        Histogram::new(HistogramSpec::new(1e-6, 3600.0, 0.005, None).unwrap())
    }

    /// The value numpy's inverted_cdf picks from sorted `values`.
    fn oracle(sorted: &[f64], p: f64) -> f64 {
        sorted[inverted_cdf_rank(sorted.len() as u64, p) as usize - 1]
    }

    #[test]
    fn ranks_match_numpy_inverted_cdf() {
        // numpy.percentile(range(1, 11), p, method="inverted_cdf") for these p.
        let expected = [
            (0.0, 1),
            (10.0, 1),
            (10.5, 2),
            (50.0, 5),
            (95.0, 10),
            (100.0, 10),
        ];
        for (p, rank) in expected {
            assert_eq!(inverted_cdf_rank(10, p), rank, "p={p}");
        }
        assert_eq!(inverted_cdf_rank(1, 50.0), 1);
        // 0.29·100 is 28.999999999999996 in floating point: numpy takes rank 29.
        assert_eq!(inverted_cdf_rank(100, 29.0), 29);
    }

    #[test]
    fn percentiles_are_within_the_error_bound_of_the_exact_ones() {
        let histogram = histogram();
        let mut rng = fastrand::Rng::with_seed(7);
        let mut values: Vec<f64> = (0..20_000)
            .map(|_| (rng.f64() * 14.0 - 12.0).exp2())
            .collect();
        for &value in &values {
            histogram.observe(value).unwrap();
        }
        values.sort_by(f64::total_cmp);
        let bound = histogram.spec().layout().relative_error();
        let ps = [0.0, 1.0, 25.0, 50.0, 90.0, 99.0, 99.9, 100.0];
        let batch = histogram.percentiles(&ps).unwrap();
        for (&p, &estimate) in ps.iter().zip(&batch) {
            let exact = oracle(&values, p);
            assert!(
                ((estimate - exact) / exact).abs() <= bound,
                "p={p} {estimate} vs {exact}"
            );
            assert_eq!(histogram.percentile(p).unwrap(), estimate);
        }
        assert_eq!(histogram.count(), 20_000);
        let exact_sum: f64 = values.iter().sum();
        assert!((histogram.sum() - exact_sum).abs() <= 1e-9 * exact_sum);
    }

    #[test]
    fn observe_many_is_all_or_nothing() {
        let one_by_one = histogram();
        let batch = histogram();
        let values = [0.001, 0.5, 0.5, 2.0, 7000.0];
        for value in values {
            one_by_one.observe(value).unwrap();
        }
        batch.observe_many(&values).unwrap();
        assert_eq!(batch.snapshot().counts(), one_by_one.snapshot().counts());
        assert_eq!(batch.sum(), one_by_one.sum());
        assert_eq!(
            batch.observe_many(&[1.0, -1.0]).unwrap_err().argument,
            "values"
        );
        assert_eq!(batch.count(), 5);
    }

    #[test]
    fn empty_histogram_has_no_percentiles() {
        let histogram = histogram();
        assert!(histogram.percentile(50.0).unwrap().is_nan());
        assert_eq!(histogram.count(), 0);
        assert_eq!(histogram.sum(), 0.0);
    }

    #[test]
    fn out_of_range_values_are_counted_and_clamped() {
        let histogram = histogram();
        histogram.observe(0.0).unwrap();
        histogram.observe(1e6).unwrap();
        assert_eq!(histogram.count(), 2);
        let snapshot = histogram.snapshot();
        assert_eq!(snapshot.counts()[0], 1);
        assert_eq!(*snapshot.counts().last().unwrap(), 1);
        assert_eq!(*snapshot.upper_bounds().last().unwrap(), f64::INFINITY);
        assert_eq!(histogram.percentile(100.0).unwrap(), 3600.0);
        assert!((histogram.percentile(0.0).unwrap() - 1e-6).abs() < 1e-8);
    }

    #[test]
    fn bad_input_is_refused_and_not_counted() {
        let histogram = histogram();
        for bad in [-1.0, f64::NAN, f64::INFINITY] {
            assert_eq!(histogram.observe(bad).unwrap_err().argument, "x");
        }
        assert_eq!(histogram.count(), 0);
        for bad in [-0.1, 100.5, f64::NAN] {
            assert_eq!(histogram.percentile(bad).unwrap_err().argument, "p");
            assert_eq!(
                histogram.percentiles(&[50.0, bad]).unwrap_err().argument,
                "ps"
            );
        }
    }

    #[test]
    fn exposition_bounds_snap_up_to_boundaries_and_count_exactly() {
        let spec = HistogramSpec::new(1e-3, 100.0, 0.005, Some(&[0.01, 0.1, 1.0, 2.5])).unwrap();
        let bounds = spec.exposition_bounds();
        // Powers of two times k/128 are boundaries; 0.01 and 0.1 are not.
        assert_eq!(bounds[2..], [1.0, 2.5]);
        for (bound, asked) in bounds.iter().zip([0.01, 0.1]) {
            assert!(
                *bound >= asked && *bound <= asked * 1.008,
                "{bound} for {asked}"
            );
        }
        let histogram = Histogram::new(spec);
        let values = [
            0.0005,
            0.01,
            bounds[0],
            bounds[0] * 1.0001,
            0.5,
            1.0,
            1.0001,
            50.0,
            500.0,
        ];
        for value in values {
            histogram.observe(value).unwrap();
        }
        let snapshot = histogram.snapshot();
        for (le, cumulative) in snapshot.exposition_buckets() {
            let exact = values.iter().filter(|&&value| value <= le).count() as u64;
            assert_eq!(cumulative, exact, "le={le}");
        }
        assert_eq!(snapshot.count(), values.len() as u64);
    }

    #[test]
    fn exposition_bounds_are_checked() {
        for bad in [&[0.5, 0.5][..], &[2.0, 1.0], &[1e-9], &[1e9], &[f64::NAN]] {
            let err = HistogramSpec::new(1e-6, 3600.0, 0.005, Some(bad)).unwrap_err();
            assert_eq!(err.argument, "buckets", "{bad:?}");
        }
        let narrow = HistogramSpec::new(1.0, 100.0, 0.01, None).unwrap();
        assert_eq!(narrow.exposition_bounds(), [1.0, 2.5, 5.0, 7.5, 10.0]);
    }
}
