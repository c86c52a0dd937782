//! Rate limiters: `TokenBucket`, `Gcra`, `SlidingWindowLimiter` and `SlidingLogLimiter`.
//!
//! Thin wrappers over `dmsc_core::ratelimit`: every limiter is lock-free
//! (the sliding log holds a short mutex) and shared between threads without a
//! per-call borrow; durations cross into Python as float seconds.

use dmsc_core::clock::Nanos;
use dmsc_core::ratelimit::{self, require_count};
use pyo3::prelude::*;

use crate::clock::{clock_arg, PyManualClock};
use crate::errors::value_error;

/// Seconds for a wait in nanoseconds; a wait that never ends is `inf`.
fn wait_seconds(wait: Option<Nanos>) -> f64 {
    wait.map_or(f64::INFINITY, |nanos| nanos as f64 / 1e9)
}

/// A count argument (`n`, `burst`, `limit`): an integer of at least 1.
fn count(argument: &'static str, value: i64) -> PyResult<u64> {
    require_count(argument, value).map_err(value_error)
}

/// A lock-free token bucket: up to `capacity` tokens, refilled at `refill_per_second`.
///
/// Over any interval of `t` seconds it admits at most
/// `capacity + refill_per_second * t` tokens. Token counts may be fractional.
/// Asking for more than `capacity` tokens never succeeds: `try_acquire`
/// returns False and `time_until_available` returns `inf`. The bucket starts
/// full unless `initial` says otherwise. Time is kept in whole nanoseconds
/// and costs are rounded up, so rates up to 1e9 tokens per second are
/// honoured, never exceeded.
#[pyclass(module = "dmsc_fast._native", name = "TokenBucket", frozen)]
pub struct PyTokenBucket {
    inner: ratelimit::TokenBucket,
}

#[pymethods]
impl PyTokenBucket {
    #[new]
    #[pyo3(signature = (capacity, refill_per_second, initial=None, clock=None))]
    fn new(
        capacity: f64,
        refill_per_second: f64,
        initial: Option<f64>,
        clock: Option<&Bound<'_, PyManualClock>>,
    ) -> PyResult<Self> {
        let inner =
            ratelimit::TokenBucket::new(capacity, refill_per_second, initial, clock_arg(clock))
                .map_err(value_error)?;
        Ok(Self { inner })
    }

    /// Takes `n` tokens if the bucket holds them now; False leaves it unchanged.
    #[pyo3(signature = (n=1.0))]
    fn try_acquire(&self, n: f64) -> PyResult<bool> {
        self.inner.try_acquire(n).map_err(value_error)
    }

    /// Tokens in the bucket now.
    fn available(&self) -> f64 {
        self.inner.available()
    }

    /// Seconds until `n` tokens are available (0.0 if now, `inf` if `n > capacity`), for Retry-After.
    #[pyo3(signature = (n=1.0))]
    fn time_until_available(&self, n: f64) -> PyResult<f64> {
        let wait = self.inner.time_until_available(n).map_err(value_error)?;
        Ok(wait_seconds(wait))
    }

    /// The most tokens the bucket holds.
    #[getter]
    fn capacity(&self) -> f64 {
        self.inner.capacity()
    }

    /// Tokens added per second.
    #[getter]
    fn refill_per_second(&self) -> f64 {
        self.inner.refill_per_second()
    }

    fn __repr__(&self) -> String {
        format!(
            "TokenBucket(capacity={:?}, refill_per_second={:?})",
            self.inner.capacity(),
            self.inner.refill_per_second()
        )
    }
}

/// `#[pymethods]` of a limiter that admits whole requests: the class's own
/// `methods`, then `try_acquire` and `retry_after` (documented by
/// `$retry_after_doc`), which convert `n` and the wait the same way for every
/// such limiter. (PyO3 takes one `#[pymethods]` block per class.)
macro_rules! count_limiter_methods {
    ($class:ident, $retry_after_doc:literal, { $($methods:tt)* }) => {
        #[pymethods]
        impl $class {
            $($methods)*

            /// Admits `n` requests at once, or none.
            #[pyo3(signature = (n=1))]
            fn try_acquire(&self, n: i64) -> PyResult<bool> {
                self.inner.try_acquire(count("n", n)?).map_err(value_error)
            }

            #[doc = $retry_after_doc]
            #[pyo3(signature = (n=1))]
            fn retry_after(&self, n: i64) -> PyResult<f64> {
                let wait = self
                    .inner
                    .retry_after(count("n", n)?)
                    .map_err(value_error)?;
                Ok(wait_seconds(wait))
            }
        }
    };
}

/// The generic cell rate algorithm: `rate` requests per second, bursts of up to `burst`.
///
/// The state is one theoretical arrival time (TAT) updated with a
/// compare-and-swap. With `T = ceil(1e9 / rate)` nanoseconds, a request for
/// `n` is admitted when `max(TAT, now) + n*T - now <= burst*T`, which then
/// becomes the TAT. From idle it admits `burst` requests at once, then one
/// every `T`; over any `t` seconds at most `burst + rate * t`. A request for
/// more than `burst` is never admitted (`retry_after` returns `inf`).
#[pyclass(module = "dmsc_fast._native", name = "Gcra", frozen)]
pub struct PyGcra {
    inner: ratelimit::Gcra,
}

count_limiter_methods!(
    PyGcra,
    "Seconds until `n` requests would be admitted (0.0 if now, `inf` if `n > burst`).",
    {
        #[new]
        #[pyo3(signature = (rate, burst, clock=None))]
        fn new(rate: f64, burst: i64, clock: Option<&Bound<'_, PyManualClock>>) -> PyResult<Self> {
            let inner = ratelimit::Gcra::new(rate, count("burst", burst)?, clock_arg(clock))
                .map_err(value_error)?;
            Ok(Self { inner })
        }

        /// Requests admitted per second.
        #[getter]
        fn rate(&self) -> f64 {
            self.inner.rate()
        }

        /// Requests admitted at once from idle.
        #[getter]
        fn burst(&self) -> u64 {
            self.inner.burst()
        }

        /// Seconds between admissions at the sustained rate: `ceil(1e9 / rate)` ns.
        #[getter]
        fn emission_interval(&self) -> f64 {
            self.inner.emission_interval() as f64 / 1e9
        }

        fn __repr__(&self) -> String {
            format!(
                "Gcra(rate={:?}, burst={})",
                self.inner.rate(),
                self.inner.burst()
            )
        }
    }
);

/// `#[pymethods]` of a limiter admitting `limit` requests per sliding window of
/// `window` seconds, over the core type `$core` (Python name `$name`): the
/// class's own `methods` plus the constructor, the `limit` and `window` getters
/// and `__repr__` that both window limiters share, and what
/// `count_limiter_methods!` adds.
macro_rules! window_limiter_methods {
    ($class:ident($core:ty, $name:literal), { $($methods:tt)* }) => {
        count_limiter_methods!(
            $class,
            "Seconds until `n` requests would be admitted if nothing else were (`inf` if `n > limit`).",
            {
                #[new]
                #[pyo3(signature = (limit, window, clock=None))]
                fn new(
                    limit: i64,
                    window: f64,
                    clock: Option<&Bound<'_, PyManualClock>>,
                ) -> PyResult<Self> {
                    let inner = <$core>::new(count("limit", limit)?, window, clock_arg(clock))
                        .map_err(value_error)?;
                    Ok(Self { inner })
                }

                $($methods)*

                /// Requests admitted per window.
                #[getter]
                fn limit(&self) -> u64 {
                    self.inner.limit()
                }

                /// Length of the window in seconds.
                #[getter]
                fn window(&self) -> f64 {
                    self.inner.window() as f64 / 1e9
                }

                fn __repr__(&self) -> String {
                    format!(
                        concat!($name, "(limit={}, window={:?})"),
                        self.inner.limit(),
                        self.inner.window() as f64 / 1e9
                    )
                }
            }
        );
    };
}

/// A lock-free sliding window counter: about `limit` requests per sliding `window` seconds.
///
/// Algorithm: the sliding window counter (as Cloudflare describes it), not
/// a log. Time is cut into fixed windows starting when the limiter is
/// created; the count in the sliding window ending now is estimated as
/// `previous * (window - elapsed) / window + current`, where `previous` and
/// `current` are the counts of the previous and current fixed windows and
/// `elapsed` is the time into the current one. A request for `n` is admitted
/// when the estimate plus `n` is at most `limit`. Any fixed window admits at
/// most `limit`; any sliding window, fewer than `2 * limit` (the estimate
/// assumes the previous window's requests were spread evenly).
/// `SlidingLogLimiter` is the exact alternative. `limit` is at most 2**24 - 1.
#[pyclass(module = "dmsc_fast._native", name = "SlidingWindowLimiter", frozen)]
pub struct PySlidingWindowLimiter {
    inner: ratelimit::SlidingWindowLimiter,
}

window_limiter_methods!(
    PySlidingWindowLimiter(ratelimit::SlidingWindowLimiter, "SlidingWindowLimiter"),
    {
        /// The estimated number of requests in the sliding window ending now.
        fn estimated_count(&self) -> f64 {
            self.inner.estimated_count()
        }
    }
);

/// An exact sliding window log: at most `limit` requests in any `window` seconds.
///
/// Remembers each admission still inside the window (memory grows with
/// admissions per window, at most `limit` entries) behind a short mutex. An
/// admission at `t` counts until `t + window`.
#[pyclass(module = "dmsc_fast._native", name = "SlidingLogLimiter", frozen)]
pub struct PySlidingLogLimiter {
    inner: ratelimit::SlidingLogLimiter,
}

window_limiter_methods!(
    PySlidingLogLimiter(ratelimit::SlidingLogLimiter, "SlidingLogLimiter"),
    {
        /// Requests admitted in the sliding window ending now.
        fn count(&self) -> u64 {
            self.inner.count()
        }
    }
);

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyTokenBucket>()?;
    m.add_class::<PyGcra>()?;
    m.add_class::<PySlidingWindowLimiter>()?;
    m.add_class::<PySlidingLogLimiter>()?;
    Ok(())
}
