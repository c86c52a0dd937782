//! Conversion of core errors to Python exceptions.

use dmsc_core::InvalidArgument;
use pyo3::exceptions::PyValueError;
use pyo3::PyErr;

/// Turns a core `InvalidArgument` into a `ValueError` whose message starts with the argument name.
pub fn value_error(err: InvalidArgument) -> PyErr {
    PyValueError::new_err(err.to_string())
}
