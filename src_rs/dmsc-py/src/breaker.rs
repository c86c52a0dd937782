//! Circuit breaking: `CircuitBreaker` (resilience4j semantics) and `ConcurrencyLimits` (Envoy).
//!
//! Thin wrappers over `dmsc_core::breaker`. `allow()` in CLOSED is one atomic load; `record()`
//! takes one short mutex; the concurrency limits are lock-free counters.

use dmsc_core::breaker::{
    duration_from_seconds, CircuitBreakerConfig, ConcurrencyLimits, Limit, State, WindowType,
};
use dmsc_core::clock::{seconds_to_nanos, Nanos};
use dmsc_core::{breaker, InvalidArgument};
use pyo3::exceptions::PyRuntimeError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};

use crate::clock::{clock_arg, PyManualClock};
use crate::errors::value_error;

/// An integer argument that must not be negative (the core checks its lower and upper bounds).
fn non_negative(argument: &'static str, value: i64) -> PyResult<u64> {
    u64::try_from(value).map_err(|_| {
        value_error(InvalidArgument::new(
            argument,
            format!("must be a non-negative integer, got {value}"),
        ))
    })
}

fn seconds(argument: &'static str, value: f64) -> PyResult<Nanos> {
    duration_from_seconds(argument, value).map_err(value_error)
}

/// The interned Python name of a state.
fn state_name<'py>(py: Python<'py>, state: State) -> Bound<'py, PyString> {
    match state {
        State::Closed => intern!(py, "closed"),
        State::Open => intern!(py, "open"),
        State::HalfOpen => intern!(py, "half_open"),
        State::Disabled => intern!(py, "disabled"),
        State::ForcedOpen => intern!(py, "forced_open"),
    }
    .clone()
}

/// A resilience4j-style circuit breaker: CLOSED, OPEN, HALF_OPEN (+ DISABLED, FORCED_OPEN).
///
/// Rates and thresholds are fractions in (0, 1] (resilience4j's 50 % is 0.5 here); durations
/// are float seconds. CLOSED records outcomes in a sliding window: the last `window_size`
/// calls (`window_type="count"`) or the calls of the last `window_size` whole seconds of the
/// clock (`"time"`, one bucket per second). Once the window holds `minimum_number_of_calls`
/// (capped at `window_size` for a count window), a failure rate or slow-call rate at or above
/// its threshold opens the breaker. A call is slow when its latency is strictly greater than
/// `slow_call_duration_threshold`. OPEN refuses calls; the first `allow()` once
/// `wait_duration_in_open_state` has elapsed moves to HALF_OPEN (lazily: no timer thread, so
/// `.state` stays "open" until then). HALF_OPEN admits `permitted_calls_in_half_open_state`
/// trial calls; once `min(minimum_number_of_calls, permitted)` of them are recorded it goes to
/// OPEN (a rate at or above a threshold) or CLOSED (both below). With a non-zero
/// `max_wait_in_half_open_state`, a HALF_OPEN that lasts that long without a decision is OPEN
/// from that deadline on. Transitions into CLOSED and HALF_OPEN start a fresh window; OPEN
/// keeps the window it came from. `failure_rate` and `slow_call_rate` are -1.0 while the
/// window holds fewer than the minimum number of calls. Thread-safe.
#[pyclass(module = "dmsc_fast._native", name = "CircuitBreaker", frozen)]
pub struct PyCircuitBreaker {
    inner: breaker::CircuitBreaker,
}

#[pymethods]
impl PyCircuitBreaker {
    #[new]
    #[pyo3(signature = (
        *,
        failure_rate_threshold=0.5,
        slow_call_rate_threshold=1.0,
        slow_call_duration_threshold=60.0,
        window_type="count",
        window_size=100,
        minimum_number_of_calls=100,
        wait_duration_in_open_state=60.0,
        permitted_calls_in_half_open_state=10,
        max_wait_in_half_open_state=0.0,
        clock=None,
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        failure_rate_threshold: f64,
        slow_call_rate_threshold: f64,
        slow_call_duration_threshold: f64,
        window_type: &str,
        window_size: i64,
        minimum_number_of_calls: i64,
        wait_duration_in_open_state: f64,
        permitted_calls_in_half_open_state: i64,
        max_wait_in_half_open_state: f64,
        clock: Option<&Bound<'_, PyManualClock>>,
    ) -> PyResult<Self> {
        let config = CircuitBreakerConfig {
            failure_rate_threshold,
            slow_call_rate_threshold,
            slow_call_duration_threshold: seconds(
                "slow_call_duration_threshold",
                slow_call_duration_threshold,
            )?,
            window_type: window_type.parse::<WindowType>().map_err(value_error)?,
            window_size: non_negative("window_size", window_size)?,
            minimum_number_of_calls: non_negative(
                "minimum_number_of_calls",
                minimum_number_of_calls,
            )?,
            wait_duration_in_open_state: seconds(
                "wait_duration_in_open_state",
                wait_duration_in_open_state,
            )?,
            permitted_calls_in_half_open_state: non_negative(
                "permitted_calls_in_half_open_state",
                permitted_calls_in_half_open_state,
            )?,
            max_wait_in_half_open_state: seconds(
                "max_wait_in_half_open_state",
                max_wait_in_half_open_state,
            )?,
        };
        let inner = breaker::CircuitBreaker::new(config, clock_arg(clock)).map_err(value_error)?;
        Ok(Self { inner })
    }

    /// Asks permission for one call: True to proceed, False if refused (counted as not
    /// permitted). In HALF_OPEN each True uses one trial permit; record the call's outcome with
    /// `record()`, or give the permit back with `release()` if the call is not made.
    fn allow(&self) -> bool {
        self.inner.allow()
    }

    /// Records the outcome of a call that took `latency` seconds, applying any transition.
    #[pyo3(signature = (success, latency=0.0))]
    fn record(&self, success: bool, latency: f64) -> PyResult<()> {
        if !(latency >= 0.0 && latency.is_finite()) {
            return Err(value_error(InvalidArgument::new(
                "latency",
                format!("must be a finite number of seconds of at least 0, got {latency}"),
            )));
        }
        self.inner.record(success, seconds_to_nanos(latency));
        Ok(())
    }

    /// Gives back a HALF_OPEN trial permit whose call was never made (no-op in other states).
    fn release(&self) {
        self.inner.release()
    }

    /// "closed", "open", "half_open", "disabled" or "forced_open".
    #[getter]
    fn state<'py>(&self, py: Python<'py>) -> Bound<'py, PyString> {
        state_name(py, self.inner.state())
    }

    /// Failed over recorded calls in the current window; -1.0 below the minimum number of calls.
    #[getter]
    fn failure_rate(&self) -> f64 {
        self.inner.metrics().failure_rate
    }

    /// Slow over recorded calls in the current window; -1.0 below the minimum number of calls.
    #[getter]
    fn slow_call_rate(&self) -> f64 {
        self.inner.metrics().slow_call_rate
    }

    /// Number of state changes since construction.
    #[getter]
    fn transitions(&self) -> u64 {
        self.inner.transitions()
    }

    /// The most recent state changes (up to 64), oldest first, as `(from, to)` pairs.
    fn events<'py>(&self, py: Python<'py>) -> Vec<(Bound<'py, PyString>, Bound<'py, PyString>)> {
        self.inner
            .events()
            .into_iter()
            .map(|t| (state_name(py, t.from), state_name(py, t.to)))
            .collect()
    }

    /// A consistent snapshot: state, failure_rate, slow_call_rate, buffered_calls,
    /// failed_calls, slow_calls, slow_failed_calls, not_permitted_calls (since the current
    /// window started) and transitions.
    fn metrics<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let m = self.inner.metrics();
        let dict = PyDict::new(py);
        dict.set_item(intern!(py, "state"), state_name(py, m.state))?;
        dict.set_item(intern!(py, "failure_rate"), m.failure_rate)?;
        dict.set_item(intern!(py, "slow_call_rate"), m.slow_call_rate)?;
        dict.set_item(intern!(py, "buffered_calls"), m.buffered_calls)?;
        dict.set_item(intern!(py, "failed_calls"), m.failed_calls)?;
        dict.set_item(intern!(py, "slow_calls"), m.slow_calls)?;
        dict.set_item(intern!(py, "slow_failed_calls"), m.slow_failed_calls)?;
        dict.set_item(intern!(py, "not_permitted_calls"), m.not_permitted_calls)?;
        dict.set_item(intern!(py, "transitions"), m.transitions)?;
        Ok(dict)
    }

    /// Back to a fresh CLOSED state (empty window); counted as a transition if not CLOSED.
    fn reset(&self) {
        self.inner.reset()
    }

    /// Moves to CLOSED by hand, with a fresh window.
    fn transition_to_closed(&self) {
        self.inner.transition_to(State::Closed)
    }

    /// Moves to OPEN by hand; the wait starts now.
    fn transition_to_open(&self) {
        self.inner.transition_to(State::Open)
    }

    /// Moves to HALF_OPEN by hand, with fresh trial permits.
    fn transition_to_half_open(&self) {
        self.inner.transition_to(State::HalfOpen)
    }

    /// Moves to DISABLED: every call is allowed and nothing is recorded, until another
    /// manual transition.
    fn transition_to_disabled(&self) {
        self.inner.transition_to(State::Disabled)
    }

    /// Moves to FORCED_OPEN: every call is refused, until another manual transition.
    fn transition_to_forced_open(&self) {
        self.inner.transition_to(State::ForcedOpen)
    }

    fn __repr__(&self) -> String {
        let c = self.inner.config();
        format!(
            "CircuitBreaker(state={:?}, window_type={:?}, window_size={}, \
             failure_rate_threshold={:?}, slow_call_rate_threshold={:?})",
            self.inner.state().as_str(),
            c.window_type.as_str(),
            c.window_size,
            c.failure_rate_threshold,
            c.slow_call_rate_threshold,
        )
    }
}

fn release(limit: &Limit) -> PyResult<()> {
    limit
        .release()
        .map_err(|err| PyRuntimeError::new_err(err.to_string()))
}

/// Envoy-style concurrency limits for a bulkhead: connections, pending requests, requests and
/// retries in flight (Envoy's `max_connections`, `max_pending_requests`, `max_requests`,
/// `max_retries`, with its defaults).
///
/// Each limit is a lock-free counter: `try_acquire_*` takes a slot only while fewer than the
/// maximum are held (never exceeding it, even under concurrency) and otherwise counts an
/// overflow; `release_*` gives one back and raises RuntimeError when none is held (the counter
/// never goes negative). `stats()` reports Envoy's statistics: `upstream_cx_overflow`,
/// `upstream_rq_pending_overflow` (pending-request and request overflows together, as Envoy
/// counts them), `upstream_rq_retry_overflow`, the `remaining_*` and `*_open` gauges, plus the
/// active counts and the separate request and pending overflows.
#[pyclass(module = "dmsc_fast._native", name = "ConcurrencyLimits", frozen)]
pub struct PyConcurrencyLimits {
    inner: ConcurrencyLimits,
}

#[pymethods]
impl PyConcurrencyLimits {
    #[new]
    #[pyo3(signature = (max_connections=1024, max_pending_requests=1024, max_requests=1024, max_retries=3))]
    fn new(
        max_connections: i64,
        max_pending_requests: i64,
        max_requests: i64,
        max_retries: i64,
    ) -> PyResult<Self> {
        let inner = ConcurrencyLimits::new(
            non_negative("max_connections", max_connections)?,
            non_negative("max_pending_requests", max_pending_requests)?,
            non_negative("max_requests", max_requests)?,
            non_negative("max_retries", max_retries)?,
        )
        .map_err(value_error)?;
        Ok(Self { inner })
    }

    /// Takes a connection slot; False (and an overflow) when `max_connections` are open.
    fn try_acquire_connection(&self) -> bool {
        self.inner.connections().try_acquire()
    }

    /// Gives back a connection slot; RuntimeError if none is held.
    fn release_connection(&self) -> PyResult<()> {
        release(self.inner.connections())
    }

    /// Takes a pending-request slot; False (and an overflow) when `max_pending_requests` wait.
    fn try_acquire_pending(&self) -> bool {
        self.inner.pending_requests().try_acquire()
    }

    /// Gives back a pending-request slot; RuntimeError if none is held.
    fn release_pending(&self) -> PyResult<()> {
        release(self.inner.pending_requests())
    }

    /// Takes a request slot; False (and an overflow) when `max_requests` are in flight.
    fn try_acquire_request(&self) -> bool {
        self.inner.requests().try_acquire()
    }

    /// Gives back a request slot; RuntimeError if none is held.
    fn release_request(&self) -> PyResult<()> {
        release(self.inner.requests())
    }

    /// Takes a retry slot; False (and an overflow) when `max_retries` are in flight.
    fn try_acquire_retry(&self) -> bool {
        self.inner.retries().try_acquire()
    }

    /// Gives back a retry slot; RuntimeError if none is held.
    fn release_retry(&self) -> PyResult<()> {
        release(self.inner.retries())
    }

    /// Connections held now.
    #[getter]
    fn connections(&self) -> u64 {
        self.inner.connections().active()
    }

    /// Pending requests held now.
    #[getter]
    fn pending_requests(&self) -> u64 {
        self.inner.pending_requests().active()
    }

    /// Requests held now.
    #[getter]
    fn requests(&self) -> u64 {
        self.inner.requests().active()
    }

    /// Retries held now.
    #[getter]
    fn retries(&self) -> u64 {
        self.inner.retries().active()
    }

    /// The connection limit.
    #[getter]
    fn max_connections(&self) -> u64 {
        self.inner.connections().max()
    }

    /// The pending-request limit.
    #[getter]
    fn max_pending_requests(&self) -> u64 {
        self.inner.pending_requests().max()
    }

    /// The request limit.
    #[getter]
    fn max_requests(&self) -> u64 {
        self.inner.requests().max()
    }

    /// The retry limit.
    #[getter]
    fn max_retries(&self) -> u64 {
        self.inner.retries().max()
    }

    /// Usage, remaining capacity, open flags and overflow counters, named as Envoy names them.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let limits = &self.inner;
        let dict = PyDict::new(py);
        let entries: [(&str, &Limit, &str, &str, &str); 4] = [
            (
                "cx_active",
                limits.connections(),
                "remaining_cx",
                "cx_open",
                "upstream_cx_overflow",
            ),
            (
                "rq_pending_active",
                limits.pending_requests(),
                "remaining_pending",
                "rq_pending_open",
                "pending_overflow",
            ),
            (
                "rq_active",
                limits.requests(),
                "remaining_rq",
                "rq_open",
                "rq_overflow",
            ),
            (
                "rq_retry_active",
                limits.retries(),
                "remaining_retries",
                "rq_retry_open",
                "upstream_rq_retry_overflow",
            ),
        ];
        for (active, limit, remaining, open, overflow) in entries {
            dict.set_item(active, limit.active())?;
            dict.set_item(remaining, limit.remaining())?;
            dict.set_item(open, u64::from(limit.is_open()))?;
            dict.set_item(overflow, limit.overflows())?;
        }
        dict.set_item(
            "upstream_rq_pending_overflow",
            limits.upstream_rq_pending_overflow(),
        )?;
        Ok(dict)
    }

    fn __repr__(&self) -> String {
        format!(
            "ConcurrencyLimits(max_connections={}, max_pending_requests={}, max_requests={}, \
             max_retries={})",
            self.inner.connections().max(),
            self.inner.pending_requests().max(),
            self.inner.requests().max(),
            self.inner.retries().max(),
        )
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyCircuitBreaker>()?;
    m.add_class::<PyConcurrencyLimits>()?;
    Ok(())
}
