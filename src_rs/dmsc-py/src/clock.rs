//! `ManualClock`: the injectable clock accepted by every time-aware class.

use dmsc_core::clock::{self, Clock};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

/// A clock that moves only when told to; pass it as `clock=` to make time deterministic in tests.
#[pyclass(module = "dmsc_fast._native", name = "ManualClock", frozen)]
pub struct PyManualClock {
    inner: clock::ManualClock,
}

fn seconds_arg(name: &str, seconds: f64) -> PyResult<clock::Nanos> {
    if seconds.is_finite() && seconds >= 0.0 {
        Ok(clock::seconds_to_nanos(seconds))
    } else {
        Err(PyValueError::new_err(format!(
            "{name}: must be a finite number of seconds of at least 0, got {seconds}"
        )))
    }
}

#[pymethods]
impl PyManualClock {
    #[new]
    #[pyo3(signature = (start=0.0))]
    fn new(start: f64) -> PyResult<Self> {
        Ok(Self {
            inner: clock::ManualClock::new(seconds_arg("start", start)?),
        })
    }

    /// Current time in seconds.
    fn now(&self) -> f64 {
        self.inner.now() as f64 / 1e9
    }

    /// Moves the clock forward by `seconds`.
    fn advance(&self, seconds: f64) -> PyResult<()> {
        self.inner.advance(seconds_arg("seconds", seconds)?);
        Ok(())
    }

    /// Sets the clock to `seconds` (it never goes backwards).
    fn set(&self, seconds: f64) -> PyResult<()> {
        self.inner.set(seconds_arg("seconds", seconds)?);
        Ok(())
    }
}

/// The core clock for an optional `clock=` argument: manual when given, monotonic otherwise.
pub fn clock_arg(clock: Option<&Bound<'_, PyManualClock>>) -> Clock {
    match clock {
        Some(manual) => Clock::Manual(manual.get().inner.clone()),
        None => Clock::Monotonic,
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyManualClock>()
}
