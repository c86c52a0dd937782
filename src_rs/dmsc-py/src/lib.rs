//! PyO3 bindings of `dmsc-core`, imported from Python as `dmsc_fast._native`.
//!
//! Each submodule binds one area of the core and adds its classes with a
//! `register` function; the public Python API is `dmsc_fast`, which
//! re-exports these names.

use pyo3::prelude::*;

mod breaker;
mod clock;
mod errors;
mod hashing;
mod limits;
mod mesh;
mod metrics;
mod pickers;
mod proxy;

/// The cargo profile this module was compiled with: "release" or "debug".
#[pyfunction]
fn build_profile() -> &'static str {
    if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    }
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_function(wrap_pyfunction!(build_profile, m)?)?;
    clock::register(m)?;
    hashing::register(m)?;
    pickers::register(m)?;
    metrics::register(m)?;
    limits::register(m)?;
    breaker::register(m)?;
    mesh::register(m)?;
    proxy::register(m)?;
    Ok(())
}
