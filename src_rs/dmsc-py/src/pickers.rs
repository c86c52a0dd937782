//! Load-balancing pickers: `RoundRobin`, `WeightedRoundRobin`, `RandomPicker`,
//! `LeastRequest`, `PeakEwma`.
//!
//! Each class wraps its `dmsc_core::pick` type; every method is one call into
//! the core. Host indexes out of range raise `IndexError`, other bad
//! arguments `ValueError`, both starting with the argument's name.

use dmsc_core::pick::{self, CountsRequests, HostOutOfRange, Pick};
use dmsc_core::InvalidArgument;
use pyo3::exceptions::{PyIndexError, PyValueError};
use pyo3::prelude::*;

use crate::clock::{clock_arg, PyManualClock};
use crate::errors::value_error;

fn host_error(err: HostOutOfRange) -> PyErr {
    PyIndexError::new_err(err.to_string())
}

/// A host index as given from Python; negative indexes are out of range.
#[inline]
fn host_arg(host: isize, hosts: usize) -> PyResult<usize> {
    match usize::try_from(host) {
        Ok(h) if h < hosts => Ok(h),
        _ => Err(PyIndexError::new_err(format!(
            "host: index {host} is out of range for {hosts} hosts"
        ))),
    }
}

/// A host count given as a Python int.
fn hosts_arg(n: i64) -> PyResult<usize> {
    let n = usize::try_from(n)
        .map_err(|_| InvalidArgument::new("n", format!("must be at least 1 host, got {n}")))
        .and_then(|n| pick::require_hosts("n", n));
    n.map_err(value_error)
}

/// Weights given as any iterable of ints, each in `1..=2**32-1`.
fn weights_arg(weights: &Bound<'_, PyAny>) -> PyResult<Vec<u32>> {
    let mut out = Vec::new();
    for (index, item) in weights.try_iter()?.enumerate() {
        let item = item?;
        let weight = item.extract::<i64>().map_err(|_| {
            PyValueError::new_err(format!(
                "weights: must be integers, got {} at index {index}",
                item.repr().map_or_else(|_| "?".into(), |r| r.to_string())
            ))
        })?;
        out.push(pick::weight_from_i64(index, weight).map_err(value_error)?);
    }
    pick::require_weights(&out).map_err(value_error)?;
    Ok(out)
}

/// Weights that must give one weight per host.
fn weights_for(n: usize, weights: &Bound<'_, PyAny>) -> PyResult<Vec<u32>> {
    let weights = weights_arg(weights)?;
    if weights.len() != n {
        return Err(value_error(InvalidArgument::new(
            "weights",
            format!("must have one weight per host ({n}), got {}", weights.len()),
        )));
    }
    Ok(weights)
}

/// A seed: any Python int, reduced modulo 2**64.
fn seed_arg(seed: Option<&Bound<'_, PyAny>>) -> PyResult<Option<u64>> {
    seed.map(|s| s.bitand(u64::MAX)?.extract::<u64>())
        .transpose()
}

/// A choice count given as a Python int.
fn choice_count_arg(choice_count: i64) -> PyResult<u32> {
    match u32::try_from(choice_count) {
        Ok(c) if c >= 1 => Ok(c),
        _ => Err(value_error(InvalidArgument::new(
            "choice_count",
            format!(
                "must be an integer from 1 to {}, got {choice_count}",
                u32::MAX
            ),
        ))),
    }
}

/// `#[pymethods]` of a picker that counts active requests: its own `methods`, then
/// `pick_and_start` (documented by `$pick_and_start_doc`), `start` and `active`,
/// which call the core's [`CountsRequests`] the same way for every such picker.
/// (PyO3 takes one `#[pymethods]` block per class.)
macro_rules! counting_picker_methods {
    ($class:ident, $pick_and_start_doc:literal, { $($methods:tt)* }) => {
        #[pymethods]
        impl $class {
            $($methods)*

            #[doc = $pick_and_start_doc]
            fn pick_and_start(&self) -> usize {
                self.inner.pick_and_start()
            }

            /// Counts a request starting on `host`; returns its active count.
            fn start(&self, host: isize) -> PyResult<u64> {
                let host = host_arg(host, self.inner.hosts())?;
                self.inner.start(host).map_err(host_error)
            }

            /// Number of requests active on `host`.
            fn active(&self, host: isize) -> PyResult<u64> {
                let host = host_arg(host, self.inner.hosts())?;
                self.inner.active(host).map_err(host_error)
            }
        }
    };
}

/// Round robin over hosts `0..n`: each pick is the next host, starting at `seed % n`.
///
/// With no seed the first host is random (as in Envoy, so that many balancers
/// do not all start on host 0). Thread-safe and lock-free.
#[pyclass(module = "dmsc_fast._native", frozen)]
pub struct RoundRobin {
    inner: pick::RoundRobin,
}

#[pymethods]
impl RoundRobin {
    #[new]
    #[pyo3(signature = (n, seed=None))]
    fn new(n: i64, seed: Option<&Bound<'_, PyAny>>) -> PyResult<Self> {
        let inner = pick::RoundRobin::new(hosts_arg(n)?, seed_arg(seed)?).map_err(value_error)?;
        Ok(Self { inner })
    }

    /// Index of the next host.
    fn pick(&self) -> usize {
        self.inner.pick()
    }

    /// Number of hosts.
    fn __len__(&self) -> usize {
        self.inner.hosts()
    }
}

/// Envoy's weighted round robin (earliest deadline first) over hosts `0..len(weights)`.
///
/// Host i's k-th pick has deadline k / weights[i]; the earliest deadline goes
/// first, ties to the lower weight, then the lower index, which is the order
/// Envoy's EdfScheduler produces from empty. Deadlines are exact fractions, so
/// every sum(weights) consecutive picks contain host i exactly weights[i]
/// times. As Envoy's createWithPicks(seed), the schedule starts as if
/// `seed % 2**32 % 429496729` picks had been made (a random number with no
/// seed). Thread-safe.
#[pyclass(module = "dmsc_fast._native", frozen)]
pub struct WeightedRoundRobin {
    inner: pick::WeightedRoundRobin,
}

#[pymethods]
impl WeightedRoundRobin {
    #[new]
    #[pyo3(signature = (weights, seed=None))]
    fn new(weights: &Bound<'_, PyAny>, seed: Option<&Bound<'_, PyAny>>) -> PyResult<Self> {
        let weights = weights_arg(weights)?;
        let inner =
            pick::WeightedRoundRobin::new(&weights, seed_arg(seed)?).map_err(value_error)?;
        Ok(Self { inner })
    }

    /// Index of the next host.
    fn pick(&self) -> usize {
        self.inner.pick()
    }

    /// The weights, by host index.
    #[getter]
    fn weights(&self) -> Vec<u32> {
        self.inner.weights().to_vec()
    }

    /// Number of hosts.
    fn __len__(&self) -> usize {
        self.inner.hosts()
    }
}

/// A random host of `0..n`: uniform, or with probability weights[i] / sum(weights).
///
/// Thread-safe and lock-free; the same seed gives the same picks from one thread.
#[pyclass(module = "dmsc_fast._native", frozen)]
pub struct RandomPicker {
    inner: pick::RandomPicker,
}

#[pymethods]
impl RandomPicker {
    #[new]
    #[pyo3(signature = (n, seed=None, weights=None))]
    fn new(
        n: i64,
        seed: Option<&Bound<'_, PyAny>>,
        weights: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let n = hosts_arg(n)?;
        let seed = seed_arg(seed)?;
        let inner = match weights {
            Some(weights) => pick::RandomPicker::weighted(&weights_for(n, weights)?, seed),
            None => pick::RandomPicker::new(n, seed),
        };
        Ok(Self {
            inner: inner.map_err(value_error)?,
        })
    }

    /// Index of a random host.
    fn pick(&self) -> usize {
        self.inner.pick()
    }

    /// Number of hosts.
    fn __len__(&self) -> usize {
        self.inner.hosts()
    }
}

/// Envoy's least-request balancer over hosts `0..n`.
///
/// Equal weights (or none): the host with the fewest active requests among
/// `choice_count` drawn at random with replacement (power of two choices by
/// default), the first drawn on ties. Different weights: Envoy's weighted least
/// request, an EDF schedule where a picked host is re-inserted with weight
/// `weight / (active + 1) ** active_request_bias` (0 ignores load).
///
/// `pick()` does not count a request: call `start(host)` and `finish(host)`
/// around it, or `pick_and_start()` then `finish(host)`. Thread-safe.
#[pyclass(module = "dmsc_fast._native", frozen)]
pub struct LeastRequest {
    inner: pick::LeastRequest,
}

counting_picker_methods!(
    LeastRequest,
    "Picks a host and counts a request on it; call `finish(host)` when it ends.",
    {
        #[new]
        #[pyo3(signature = (n, choice_count=2, weights=None, active_request_bias=1.0, seed=None))]
        fn new(
            n: i64,
            choice_count: i64,
            weights: Option<&Bound<'_, PyAny>>,
            active_request_bias: f64,
            seed: Option<&Bound<'_, PyAny>>,
        ) -> PyResult<Self> {
            let n = hosts_arg(n)?;
            let choice_count = choice_count_arg(choice_count)?;
            let weights = weights.map(|w| weights_for(n, w)).transpose()?;
            let inner = pick::LeastRequest::new(
                n,
                choice_count,
                weights.as_deref(),
                active_request_bias,
                seed_arg(seed)?,
            )
            .map_err(value_error)?;
            Ok(Self { inner })
        }

        /// Index of the chosen host (no request is counted).
        fn pick(&self) -> usize {
            self.inner.pick()
        }

        /// Counts a request on `host` as finished; False (and no change) if none was active.
        fn finish(&self, host: isize) -> PyResult<bool> {
            let host = host_arg(host, self.inner.hosts())?;
            self.inner.finish(host).map_err(host_error)
        }

        /// True when picks follow the weighted EDF schedule (the weights differ).
        #[getter]
        fn weighted(&self) -> bool {
            self.inner.is_weighted()
        }

        /// Number of hosts.
        fn __len__(&self) -> usize {
            self.inner.hosts()
        }
    }
);

/// Peak-EWMA latency balancing with power of two choices over hosts `0..n`.
///
/// Each host's latency estimate jumps to any sample at least as high (peak
/// sensitivity), is pulled toward lower samples with weight
/// 1 - exp(-elapsed / decay), and decays toward 0 while the host gets no
/// samples, so slow hosts are retried. A pick takes the cheaper of two different
/// random hosts, cost = estimate * (active + 1). Before a host's first sample
/// its estimate is `default_rtt`.
///
/// Unlike Linkerd, a failure is recorded as
/// max(latency, failure_penalty * slowest recent success), so a host that
/// fails fast looks slow instead of fast; failure_penalty=0 records failures
/// like successes. Durations are float seconds. Thread-safe.
#[pyclass(module = "dmsc_fast._native", frozen)]
pub struct PeakEwma {
    inner: pick::PeakEwma,
}

counting_picker_methods!(
    PeakEwma,
    "Picks a host and counts a request on it; call `finish(host, ...)` when it ends.",
    {
        #[new]
        #[pyo3(signature = (n, decay=10.0, default_rtt=0.03, failure_penalty=2.0, clock=None, seed=None))]
        fn new(
            n: i64,
            decay: f64,
            default_rtt: f64,
            failure_penalty: f64,
            clock: Option<&Bound<'_, PyManualClock>>,
            seed: Option<&Bound<'_, PyAny>>,
        ) -> PyResult<Self> {
            let inner = pick::PeakEwma::new(
                hosts_arg(n)?,
                decay,
                default_rtt,
                failure_penalty,
                clock_arg(clock),
                seed_arg(seed)?,
            )
            .map_err(value_error)?;
            Ok(Self { inner })
        }

        /// Index of the cheaper of two random hosts (no request is counted).
        fn pick(&self) -> usize {
            self.inner.pick()
        }

        /// Counts a request on `host` as finished and, if `latency` is given, records it.
        ///
        /// Returns False (and leaves the count at 0) if no request was active.
        #[pyo3(signature = (host, latency=None, success=true))]
        fn finish(&self, host: isize, latency: Option<f64>, success: bool) -> PyResult<bool> {
            let host = host_arg(host, self.inner.hosts())?;
            if let Some(latency) = latency {
                self.record_sample(host, latency, success)?;
            }
            self.inner.finish(host).map_err(host_error)
        }

        /// Records a response of `host` that took `latency` seconds.
        #[pyo3(signature = (host, latency, success=true))]
        fn record(&self, host: isize, latency: f64, success: bool) -> PyResult<()> {
            let host = host_arg(host, self.inner.hosts())?;
            self.record_sample(host, latency, success)
        }

        /// The latency estimate of `host` now, in seconds.
        fn estimate(&self, host: isize) -> PyResult<f64> {
            let host = host_arg(host, self.inner.hosts())?;
            self.inner.estimate(host).map_err(host_error)
        }

        /// The cost of `host` now: estimate * (active + 1).
        fn cost(&self, host: isize) -> PyResult<f64> {
            let host = host_arg(host, self.inner.hosts())?;
            self.inner.cost(host).map_err(host_error)
        }

        /// Number of hosts.
        fn __len__(&self) -> usize {
            self.inner.hosts()
        }
    }
);

impl PeakEwma {
    fn record_sample(&self, host: usize, latency: f64, success: bool) -> PyResult<()> {
        self.inner
            .record(host, latency, success)
            .map_err(|err| match err {
                pick::RecordError::Host(err) => host_error(err),
                pick::RecordError::Latency(err) => value_error(err),
            })
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<RoundRobin>()?;
    m.add_class::<WeightedRoundRobin>()?;
    m.add_class::<RandomPicker>()?;
    m.add_class::<LeastRequest>()?;
    m.add_class::<PeakEwma>()?;
    Ok(())
}
