//! The sidecar's data plane: `ProxyEngine`, a thin wrapper over `dmsc_proxy::Engine`.
//!
//! The engine runs on its own threads and never calls back into Python; every
//! method here takes the JSON config or plain values, and the GIL is released
//! while the engine starts, reloads, drains or stops.

use std::net::SocketAddr;
use std::time::Duration;

use dmsc_proxy::cluster::EndpointSpec;
use dmsc_proxy::{Config, Engine};
use pyo3::create_exception;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;

create_exception!(
    dmsc_fast._native,
    ConfigError,
    PyValueError,
    "A configuration value was refused; the message is \"<path>: <reason>\" (the path names the field)."
);

fn config_error(err: &dmsc_proxy::ConfigError) -> PyErr {
    ConfigError::new_err(err.to_string())
}

/// Parses and validates a JSON config document (no sockets touched).
fn parse(config_json: &str) -> PyResult<Config> {
    Config::from_json(config_json).map_err(|err| config_error(&err))
}

/// One `(address, weight, healthy)` endpoint tuple; `i` names it in errors.
fn endpoint(i: usize, (address, weight, healthy): &(String, i64, bool)) -> PyResult<EndpointSpec> {
    let address: SocketAddr = address.parse().map_err(|_| {
        ConfigError::new_err(format!(
            "endpoints[{i}].address: must be IP:PORT (e.g. 127.0.0.1:8080), got {address:?}"
        ))
    })?;
    let weight = u32::try_from(*weight)
        .ok()
        .filter(|&w| w >= 1)
        .ok_or_else(|| {
            ConfigError::new_err(format!(
                "endpoints[{i}].weight: must be an integer from 1 to {}, got {weight}",
                u32::MAX
            ))
        })?;
    Ok(EndpointSpec {
        address,
        weight,
        healthy: *healthy,
    })
}

/// The HTTP/1.1 and TCP proxy engine of the sidecar, running on its own threads.
///
/// `ProxyEngine(config_json)` validates the config, binds every listener (port 0
/// picks a free port; see `listeners()`) and starts serving before it returns.
/// Bad config raises `ConfigError` (a `ValueError`) whose message is
/// `"<path>: <reason>"`; nothing is left running then.
#[pyclass(module = "dmsc_fast._native", name = "ProxyEngine", frozen)]
pub struct PyProxyEngine {
    engine: Engine,
}

#[pymethods]
impl PyProxyEngine {
    #[new]
    fn new(py: Python<'_>, config_json: &str) -> PyResult<Self> {
        let config = parse(config_json)?;
        let engine = py
            .detach(|| Engine::start(config))
            .map_err(|err| config_error(&err))?;
        Ok(Self { engine })
    }

    /// Checks a config as the constructor would, without binding or starting anything.
    #[staticmethod]
    fn validate(config_json: &str) -> PyResult<()> {
        let config = parse(config_json)?;
        Engine::validate(&config).map_err(|err| config_error(&err))
    }

    /// Swaps in a new config atomically; requests in flight finish on the old one.
    /// On `ConfigError` nothing changes.
    fn reload(&self, py: Python<'_>, config_json: &str) -> PyResult<()> {
        let config = parse(config_json)?;
        py.detach(|| self.engine.reload(config))
            .map_err(|err| config_error(&err))
    }

    /// Replaces the endpoints of `cluster` with `(address "IP:PORT", weight, healthy)` tuples.
    fn set_endpoints(&self, cluster: &str, endpoints: Vec<(String, i64, bool)>) -> PyResult<()> {
        let specs = endpoints
            .iter()
            .enumerate()
            .map(|(i, e)| endpoint(i, e))
            .collect::<PyResult<Vec<_>>>()?;
        self.engine
            .set_endpoints(cluster, &specs)
            .map_err(|err| config_error(&err))
    }

    /// Bound address of every listener, `{name: "IP:PORT"}` in config order
    /// (empty once draining or stopped).
    fn listeners<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let out = PyDict::new(py);
        for (name, address) in self.engine.listeners() {
            out.set_item(name, address.to_string())?;
        }
        Ok(out)
    }

    /// Prometheus text exposition of every listener and cluster.
    fn prometheus(&self) -> String {
        self.engine.prometheus()
    }

    /// JSON of the engine: generation, listeners, clusters and their hosts' state.
    fn describe(&self) -> String {
        self.engine.describe().to_string()
    }

    /// The live config as JSON (what the constructor and `reload` read).
    fn config_json(&self) -> String {
        self.engine.snapshot().config.to_json()
    }

    /// 1 at start, +1 per successful reload.
    #[getter]
    fn generation(&self) -> u64 {
        self.engine.generation()
    }

    /// True once `drain` or `shutdown` was called.
    #[getter]
    fn draining(&self) -> bool {
        self.engine.is_draining()
    }

    /// Stops accepting (listening sockets close), lets requests in flight finish and
    /// waits up to `timeout_s` seconds for them; True if all finished. The GIL is
    /// released while waiting.
    fn drain(&self, py: Python<'_>, timeout_s: f64) -> PyResult<bool> {
        if timeout_s.is_nan() || timeout_s < 0.0 {
            return Err(PyValueError::new_err(format!(
                "timeout_s: must be a number of seconds of at least 0, got {timeout_s}"
            )));
        }
        // Anything beyond a year is "wait for as long as it takes".
        let timeout = Duration::try_from_secs_f64(timeout_s.min(31_536_000.0))
            .map_err(|err| PyValueError::new_err(format!("timeout_s: {err}")))?;
        Ok(py.detach(|| self.engine.drain(timeout)))
    }

    /// Stops everything now: connections close, threads end. Safe to call twice.
    fn shutdown(&self, py: Python<'_>) {
        py.detach(|| self.engine.shutdown());
    }

    fn __repr__(&self) -> String {
        let listeners: Vec<String> = self
            .engine
            .listeners()
            .into_iter()
            .map(|(name, a)| format!("{name}={a}"))
            .collect();
        format!(
            "ProxyEngine(generation={}, listeners=[{}], draining={})",
            self.engine.generation(),
            listeners.join(", "),
            self.engine.is_draining()
        )
    }
}

/// Adds `ProxyEngine` and `ConfigError` to the module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyProxyEngine>()?;
    m.add("ConfigError", m.py().get_type::<ConfigError>())?;
    Ok(())
}
