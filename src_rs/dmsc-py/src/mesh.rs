//! The in-process mesh: `Mesh`, `MeshSettings` and `MeshCall`, thin wrappers over
//! `dmsc_core::mesh`. The public, typed API is `dmsc.Mesh` (python/dmsc/mesh.py).
//!
//! Each registered instance keeps the Python endpoint object it was registered with (as the
//! core instance's attachment), so discovery returns that object: no Python object is built
//! per call.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use dmsc_core::clock::Nanos;
use dmsc_core::mesh::{self, LifecycleError, MeshSettings};
use dmsc_core::registry::{
    Algorithm, Attachment, Endpoint, Health, InFlight, InitialHealth, Instance, Registered,
    StatusRange,
};
use dmsc_core::InvalidArgument;
use pyo3::exceptions::{PyRuntimeError, PyTypeError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyMapping, PyString, PyTuple};

use crate::clock::{clock_arg, PyManualClock};
use crate::errors::value_error;

fn invalid(argument: &'static str, reason: impl Into<String>) -> PyErr {
    value_error(InvalidArgument::new(argument, reason))
}

/// A duration given in float seconds.
fn seconds(argument: &'static str, value: f64) -> PyResult<Duration> {
    if !(value.is_finite() && value >= 0.0) {
        return Err(invalid(
            argument,
            format!("must be a finite number of seconds of at least 0, got {value}"),
        ));
    }
    Duration::try_from_secs_f64(value).map_err(|_| invalid(argument, "is too long"))
}

/// An integer setting stored as `u32` (the core checks the lower bounds).
fn count(argument: &'static str, value: i64) -> PyResult<u32> {
    u32::try_from(value).map_err(|_| {
        invalid(
            argument,
            format!("must be an integer between 0 and {}, got {value}", u32::MAX),
        )
    })
}

/// A TCP port number.
fn port(value: i64) -> PyResult<u16> {
    u16::try_from(value)
        .ok()
        .filter(|&p| p != 0)
        .ok_or_else(|| invalid("port", format!("must be between 1 and 65535, got {value}")))
}

/// Status ranges as `u16` pairs (the core checks the bounds and order).
fn status_ranges(ranges: &[(i64, i64)]) -> PyResult<Vec<StatusRange>> {
    let code = |value: i64| {
        u16::try_from(value).map_err(|_| {
            invalid(
                "health_check_expected_statuses",
                format!("status codes must be between 100 and 600, got {value}"),
            )
        })
    };
    ranges
        .iter()
        .map(|&(start, end)| Ok((code(start)?, code(end)?)))
        .collect()
}

/// Status ranges as Python prints a tuple of pairs: `((200, 300),)`.
fn ranges_repr(ranges: &[StatusRange]) -> String {
    let items: Vec<String> = ranges.iter().map(|r| format!("{r:?}")).collect();
    match items.as_slice() {
        [one] => format!("({one},)"),
        _ => format!("({})", items.join(", ")),
    }
}

fn initial_health(name: &str) -> PyResult<InitialHealth> {
    InitialHealth::from_name(name).ok_or_else(|| {
        invalid(
            "initial_health",
            format!("must be one of check, unknown, healthy, unhealthy; got {name:?}"),
        )
    })
}

/// The bytes a hash key stands for: a `str`'s UTF-8 encoding or a `bytes` object's content.
#[inline]
fn key_bytes<'a>(key: Option<&'a Bound<'_, PyAny>>) -> PyResult<Option<&'a [u8]>> {
    let Some(key) = key else {
        return Ok(None);
    };
    if let Ok(text) = key.cast::<PyString>() {
        return Ok(Some(text.to_str()?.as_bytes()));
    }
    if let Ok(bytes) = key.cast::<PyBytes>() {
        return Ok(Some(bytes.as_bytes()));
    }
    Err(PyTypeError::new_err(format!(
        "key must be str or bytes, not {}",
        key.get_type().name()?
    )))
}

/// Every setting of a mesh, validated by the core (a ValueError names the first bad field).
///
/// Durations are float seconds; `load_balancing` is one of "round_robin", "least_requests",
/// "weighted", "consistent_hash", "random", "maglev"; `initial_health` one of "check",
/// "unknown", "healthy", "unhealthy". Omitted fields take the core's defaults.
#[pyclass(module = "dmsc_fast._native", name = "MeshSettings", frozen)]
pub struct PyMeshSettings {
    inner: MeshSettings,
}

#[pymethods]
impl PyMeshSettings {
    #[new]
    #[pyo3(signature = (
        *,
        enable_mtls=None,
        enable_circuit_breaker=None,
        enable_tracing=None,
        enable_metrics=None,
        circuit_breaker_failure_rate=None,
        circuit_breaker_timeout=None,
        circuit_breaker_minimum_calls=None,
        circuit_breaker_window=None,
        load_balancing=None,
        health_check_interval=None,
        health_check_timeout=None,
        healthy_threshold=None,
        unhealthy_threshold=None,
        health_check_jitter=None,
        health_check_workers=None,
        health_check_expected_statuses=None,
        initial_health=None,
        domain=None,
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        enable_mtls: Option<bool>,
        enable_circuit_breaker: Option<bool>,
        enable_tracing: Option<bool>,
        enable_metrics: Option<bool>,
        circuit_breaker_failure_rate: Option<f64>,
        circuit_breaker_timeout: Option<f64>,
        circuit_breaker_minimum_calls: Option<i64>,
        circuit_breaker_window: Option<i64>,
        load_balancing: Option<&str>,
        health_check_interval: Option<f64>,
        health_check_timeout: Option<f64>,
        healthy_threshold: Option<i64>,
        unhealthy_threshold: Option<i64>,
        health_check_jitter: Option<f64>,
        health_check_workers: Option<i64>,
        health_check_expected_statuses: Option<Vec<(i64, i64)>>,
        initial_health: Option<&str>,
        domain: Option<String>,
    ) -> PyResult<Self> {
        let mut s = MeshSettings::default();
        s.enable_mtls = enable_mtls.unwrap_or(s.enable_mtls);
        s.enable_circuit_breaker = enable_circuit_breaker.unwrap_or(s.enable_circuit_breaker);
        s.enable_tracing = enable_tracing.unwrap_or(s.enable_tracing);
        s.enable_metrics = enable_metrics.unwrap_or(s.enable_metrics);
        if let Some(rate) = circuit_breaker_failure_rate {
            s.breaker_failure_rate = rate;
        }
        if let Some(timeout) = circuit_breaker_timeout {
            s.breaker_timeout = seconds("circuit_breaker_timeout", timeout)?;
        }
        if let Some(calls) = circuit_breaker_minimum_calls {
            s.breaker_minimum_calls = count("circuit_breaker_minimum_calls", calls)?;
        }
        if let Some(window) = circuit_breaker_window {
            s.breaker_window = count("circuit_breaker_window", window)?;
        }
        if let Some(name) = load_balancing {
            s.algorithm = Algorithm::from_name(name).ok_or_else(|| {
                let names: Vec<&str> = Algorithm::ALL.iter().map(|a| a.name()).collect();
                invalid(
                    "load_balancing",
                    format!("must be one of {}; got {name:?}", names.join(", ")),
                )
            })?;
        }
        if let Some(interval) = health_check_interval {
            s.health.interval = seconds("health_check_interval", interval)?;
        }
        if let Some(timeout) = health_check_timeout {
            s.health.timeout = seconds("health_check_timeout", timeout)?;
        }
        if let Some(threshold) = healthy_threshold {
            s.health.healthy_threshold = count("healthy_threshold", threshold)?;
        }
        if let Some(threshold) = unhealthy_threshold {
            s.health.unhealthy_threshold = count("unhealthy_threshold", threshold)?;
        }
        if let Some(jitter) = health_check_jitter {
            s.health.jitter = jitter;
        }
        if let Some(workers) = health_check_workers {
            s.health.workers = count("health_check_workers", workers)?;
        }
        if let Some(ranges) = health_check_expected_statuses {
            s.health.expected_statuses = status_ranges(&ranges)?.into();
        }
        if let Some(name) = initial_health {
            s.initial_health = self::initial_health(name)?;
        }
        if let Some(domain) = domain {
            s.domain = domain;
        }
        s.validate().map_err(value_error)?;
        Ok(Self { inner: s })
    }

    /// Whether mesh members must use mutual TLS.
    #[getter]
    fn enable_mtls(&self) -> bool {
        self.inner.enable_mtls
    }

    /// Whether discovery skips instances whose circuit breaker is open.
    #[getter]
    fn enable_circuit_breaker(&self) -> bool {
        self.inner.enable_circuit_breaker
    }

    /// Whether `trace_context` produces W3C trace contexts.
    #[getter]
    fn enable_tracing(&self) -> bool {
        self.inner.enable_tracing
    }

    /// Whether recorded requests are counted.
    #[getter]
    fn enable_metrics(&self) -> bool {
        self.inner.enable_metrics
    }

    /// Failure rate in (0, 1] at which an instance's breaker opens.
    #[getter]
    fn circuit_breaker_failure_rate(&self) -> f64 {
        self.inner.breaker_failure_rate
    }

    /// Seconds an open breaker waits before letting trial calls through.
    #[getter]
    fn circuit_breaker_timeout(&self) -> f64 {
        self.inner.breaker_timeout.as_secs_f64()
    }

    /// Calls an instance must have seen before its failure rate counts.
    #[getter]
    fn circuit_breaker_minimum_calls(&self) -> u32 {
        self.inner.breaker_minimum_calls
    }

    /// Number of most recent calls the failure rate is computed over.
    #[getter]
    fn circuit_breaker_window(&self) -> u32 {
        self.inner.breaker_window
    }

    /// The balancing algorithm of discovery.
    #[getter]
    fn load_balancing(&self) -> &'static str {
        self.inner.algorithm.name()
    }

    /// Mean seconds between two health checks of an instance.
    #[getter]
    fn health_check_interval(&self) -> f64 {
        self.inner.health.interval.as_secs_f64()
    }

    /// Seconds allowed for one health check.
    #[getter]
    fn health_check_timeout(&self) -> f64 {
        self.inner.health.timeout.as_secs_f64()
    }

    /// Consecutive passes that make an unhealthy instance healthy.
    #[getter]
    fn healthy_threshold(&self) -> u32 {
        self.inner.health.healthy_threshold
    }

    /// Consecutive failures that make a healthy instance unhealthy.
    #[getter]
    fn unhealthy_threshold(&self) -> u32 {
        self.inner.health.unhealthy_threshold
    }

    /// Fraction by which each wait between two checks varies around the interval.
    #[getter]
    fn health_check_jitter(&self) -> f64 {
        self.inner.health.jitter
    }

    /// Threads probing in parallel.
    #[getter]
    fn health_check_workers(&self) -> u32 {
        self.inner.health.workers
    }

    /// Statuses an HTTP health check passes on, as half-open `(start, end)` ranges.
    #[getter]
    fn health_check_expected_statuses<'py>(
        &self,
        py: Python<'py>,
    ) -> PyResult<Bound<'py, PyTuple>> {
        PyTuple::new(py, self.inner.health.expected_statuses.iter())
    }

    /// Health of newly registered instances.
    #[getter]
    fn initial_health(&self) -> &'static str {
        self.inner.initial_health.name()
    }

    /// DNS domain of service names.
    #[getter]
    fn domain(&self) -> &str {
        &self.inner.domain
    }

    fn __repr__(&self) -> String {
        let s = &self.inner;
        let flag = |on: bool| if on { "True" } else { "False" };
        format!(
            "MeshSettings(enable_mtls={}, enable_circuit_breaker={}, enable_tracing={}, \
             enable_metrics={}, circuit_breaker_failure_rate={:?}, circuit_breaker_timeout={:?}, \
             circuit_breaker_minimum_calls={}, circuit_breaker_window={}, load_balancing={:?}, \
             health_check_interval={:?}, health_check_timeout={:?}, healthy_threshold={}, \
             unhealthy_threshold={}, health_check_jitter={:?}, health_check_workers={}, \
             health_check_expected_statuses={}, initial_health={:?}, domain={:?})",
            flag(s.enable_mtls),
            flag(s.enable_circuit_breaker),
            flag(s.enable_tracing),
            flag(s.enable_metrics),
            s.breaker_failure_rate,
            s.breaker_timeout.as_secs_f64(),
            s.breaker_minimum_calls,
            s.breaker_window,
            s.algorithm.name(),
            s.health.interval.as_secs_f64(),
            s.health.timeout.as_secs_f64(),
            s.health.healthy_threshold,
            s.health.unhealthy_threshold,
            s.health.jitter,
            s.health.workers,
            ranges_repr(&s.health.expected_statuses),
            s.initial_health.name(),
            s.domain,
        )
    }
}

/// The Python object kept with `instance` (None if it was registered without one).
#[inline]
fn endpoint_of(py: Python<'_>, instance: &Instance) -> Py<PyAny> {
    instance
        .attachment()
        .and_then(|a| a.downcast_ref::<Py<PyAny>>())
        .map_or_else(|| py.None(), |object| object.clone_ref(py))
}

/// A string attribute of an endpoint object.
fn text_attr(endpoint: &Bound<'_, PyAny>, name: &'static str) -> PyResult<String> {
    endpoint
        .getattr(name)?
        .extract::<String>()
        .map_err(|_| invalid(name, "must be a string"))
}

/// An integer attribute of an endpoint object.
fn int_attr(endpoint: &Bound<'_, PyAny>, name: &'static str) -> PyResult<i64> {
    let value = endpoint.getattr(name)?;
    if value.is_instance_of::<pyo3::types::PyBool>() {
        return Err(invalid(name, "must be an integer, not a bool"));
    }
    value
        .extract::<i64>()
        .map_err(|_| invalid(name, "must be an integer"))
}

/// Reads the fields of a `ServiceEndpoint`-like object into a core endpoint.
fn endpoint_from(object: &Bound<'_, PyAny>) -> PyResult<Endpoint> {
    let mut endpoint = Endpoint {
        name: text_attr(object, "name")?,
        host: text_attr(object, "host")?,
        port: port(int_attr(object, "port")?)?,
        version: text_attr(object, "version")?,
        health_check_url: text_attr(object, "health_check_url")?,
        zone: text_attr(object, "zone")?,
        cluster: text_attr(object, "cluster")?,
        labels: Vec::new(),
        weight: 1,
    };
    let weight = int_attr(object, "weight")?;
    endpoint.weight = u32::try_from(weight)
        .map_err(|_| invalid("weight", format!("must be between 1 and {}", u32::MAX)))?;
    let labels = object.getattr(intern!(object.py(), "labels"))?;
    let labels = labels
        .cast::<PyMapping>()
        .map_err(|_| invalid("labels", "must be a mapping of str to str"))?;
    for item in labels.items()?.iter() {
        let (key, value): (String, String) = item
            .extract()
            .map_err(|_| invalid("labels", "must be a mapping of str to str"))?;
        endpoint.set_label(&key, &value).map_err(value_error)?;
    }
    Ok(endpoint)
}

fn health_name(py: Python<'_>, health: Health) -> Bound<'_, PyString> {
    match health {
        Health::Healthy => intern!(py, "healthy"),
        Health::Unhealthy => intern!(py, "unhealthy"),
        Health::Unknown => intern!(py, "unknown"),
    }
    .clone()
}

/// A registry of service instances with active health checks, load balancing, per-instance
/// circuit breakers and request counters (the C API's `DMSCServiceMesh`). Thread-safe.
///
/// Instances are registered from endpoint objects (`dmsc.ServiceEndpoint` or anything with
/// its attributes); discovery returns the very object registered.
#[pyclass(module = "dmsc_fast._native", name = "Mesh", frozen)]
pub struct PyMesh {
    inner: Arc<mesh::Mesh>,
}

impl PyMesh {
    fn instance(
        &self,
        name: &str,
        host: &str,
        port_number: i64,
    ) -> PyResult<Option<Arc<Instance>>> {
        let port = port(port_number)?;
        Ok(self.inner.registry().instance(name, host, port))
    }
}

#[pymethods]
impl PyMesh {
    #[new]
    #[pyo3(signature = (settings=None, *, clock=None))]
    fn new(
        settings: Option<&Bound<'_, PyMeshSettings>>,
        clock: Option<&Bound<'_, PyManualClock>>,
    ) -> PyResult<Self> {
        let settings = settings.map_or_else(MeshSettings::default, |s| s.get().inner.clone());
        let inner = mesh::Mesh::with_clock(settings, clock_arg(clock)).map_err(value_error)?;
        Ok(Self {
            inner: Arc::new(inner),
        })
    }

    /// Starts the background health checker; RuntimeError if it already runs.
    fn start(&self) -> PyResult<()> {
        self.inner.start().map_err(|err| match err {
            LifecycleError::AlreadyRunning | LifecycleError::Spawn(_) => {
                PyRuntimeError::new_err(err.to_string())
            }
        })
    }

    /// Stops the health checker (waits at most one probe timeout); registrations stay.
    fn stop(&self, py: Python<'_>) {
        py.detach(|| self.inner.stop())
    }

    /// Whether the health checker runs.
    #[getter]
    fn is_running(&self) -> bool {
        self.inner.is_running()
    }

    /// Registers `endpoint` (or updates the instance at its address); returns "added" or
    /// "updated". `initial_health` overrides the configured one; with "check" the instance
    /// is probed before this returns (the GIL is released meanwhile).
    #[pyo3(signature = (endpoint, initial_health=None))]
    fn register(
        &self,
        py: Python<'_>,
        endpoint: &Bound<'_, PyAny>,
        initial_health: Option<&str>,
    ) -> PyResult<&'static str> {
        let core_endpoint = endpoint_from(endpoint)?;
        let initial = match initial_health {
            Some(name) => self::initial_health(name)?,
            None => self.inner.settings().initial_health,
        };
        let attachment: Attachment = Arc::new(endpoint.clone().unbind());
        let register = || {
            self.inner
                .register_attached(core_endpoint, initial, Some(attachment))
        };
        let outcome = if initial == InitialHealth::Check {
            py.detach(register)
        } else {
            register()
        };
        match outcome.map_err(value_error)? {
            Registered::Added => Ok("added"),
            Registered::Updated => Ok("updated"),
        }
    }

    /// Removes the instance of `name` at `host:port`; False when there was none.
    fn deregister(&self, name: &str, host: &str, port: i64) -> PyResult<bool> {
        Ok(self.inner.deregister(name, host, self::port(port)?))
    }

    /// The endpoint of a healthy instance of `name` (of `version`, when given) whose breaker
    /// lets a call through, chosen by the configured algorithm (`key`, str or bytes, steers
    /// the consistent-hash ones); None when there is none. No request is left in flight.
    #[pyo3(signature = (name, version=None, key=None))]
    fn discover(
        &self,
        py: Python<'_>,
        name: &str,
        version: Option<&str>,
        key: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Option<Py<PyAny>>> {
        let key = key_bytes(key)?;
        Ok(self
            .inner
            .pick_with(name, version, key, |instance| endpoint_of(py, instance)))
    }

    /// Discovers as `discover` does and starts a request on the instance: it counts as in
    /// flight until the returned call is finished (or dropped). None when there is none.
    #[pyo3(signature = (name, version=None, key=None))]
    fn begin(
        &self,
        py: Python<'_>,
        name: &str,
        version: Option<&str>,
        key: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Option<PyMeshCall>> {
        let key = key_bytes(key)?;
        Ok(self.inner.discover(name, version, key).map(|in_flight| {
            let endpoint = endpoint_of(py, in_flight.instance());
            PyMeshCall {
                mesh: Arc::clone(&self.inner),
                started: self.inner.now(),
                endpoint,
                in_flight: Mutex::new(Some(in_flight)),
            }
        }))
    }

    /// Records one request's outcome on the instance of `name` at `host:port` (`latency` in
    /// seconds): counters, latency EWMA and circuit breaker. False when there is no such
    /// instance (the outcome is dropped).
    fn record(
        &self,
        name: &str,
        host: &str,
        port: i64,
        success: bool,
        latency: f64,
    ) -> PyResult<bool> {
        let latency = seconds("latency", latency)?;
        let Some(instance) = self.instance(name, host, port)? else {
            return Ok(false);
        };
        self.inner.record(&instance, success, latency);
        Ok(true)
    }

    /// Number of healthy instances of `name`.
    fn healthy_count(&self, name: &str) -> usize {
        self.inner.healthy_count(name)
    }

    /// Names of the services with at least one instance, sorted.
    fn services(&self) -> Vec<String> {
        self.inner.registry().service_names()
    }

    /// Every instance of `name` in registration order, as `(endpoint, health,
    /// active_requests, latency_ewma)` with the EWMA in seconds (None before any sample).
    fn instances<'py>(&self, py: Python<'py>, name: &str) -> PyResult<Vec<Bound<'py, PyTuple>>> {
        self.inner
            .registry()
            .instances(name)
            .iter()
            .map(|instance| {
                let latency = instance.latency_ewma().map(|d| d.as_secs_f64());
                (
                    endpoint_of(py, instance),
                    health_name(py, instance.health()),
                    instance.active_requests(),
                    latency,
                )
                    .into_pyobject(py)
            })
            .collect()
    }

    /// The endpoints of every healthy instance a DNS name (`<service>.service.<domain>` or
    /// `<version>.<service>.service.<domain>`) designates, shuffled; an empty list for a known
    /// service without one; None for unknown services and names outside the domain.
    fn resolve(&self, py: Python<'_>, dns_name: &str) -> Option<Vec<Py<PyAny>>> {
        self.inner
            .resolve_all(dns_name)
            .map(|all| all.iter().map(|i| endpoint_of(py, i)).collect())
    }

    /// Sets the health of the instance of `name` at `host:port` by hand; False if none.
    fn set_health(&self, name: &str, host: &str, port: i64, healthy: bool) -> PyResult<bool> {
        Ok(self
            .inner
            .set_health(name, host, self::port(port)?, healthy))
    }

    /// Takes a sidecar's load report for the instance of `name` at `host:port`: its requests
    /// in flight (added to those counted here) and, when given, its latency EWMA in seconds.
    /// False when there is no such instance.
    #[pyo3(signature = (name, host, port, active_requests, latency_ewma=None))]
    fn report_load(
        &self,
        name: &str,
        host: &str,
        port: i64,
        active_requests: i64,
        latency_ewma: Option<f64>,
    ) -> PyResult<bool> {
        let active = u64::try_from(active_requests).map_err(|_| {
            invalid(
                "active_requests",
                format!("must be at least 0, got {active_requests}"),
            )
        })?;
        let latency = latency_ewma
            .map(|s| seconds("latency_ewma", s))
            .transpose()?;
        Ok(self
            .inner
            .report_load(name, host, self::port(port)?, active, latency))
    }

    /// Probes every instance now, in parallel (GIL released), and records the outcomes;
    /// returns the number of instances probed.
    fn check_all(&self, py: Python<'_>) -> usize {
        py.detach(|| self.inner.check_all())
    }

    /// The W3C `traceparent` for an outgoing call: a child of `incoming` when given, else a
    /// new sampled trace; None when tracing is off. ValueError for a malformed `incoming`.
    #[pyo3(signature = (incoming=None))]
    fn trace_context(&self, incoming: Option<&str>) -> PyResult<Option<String>> {
        self.inner
            .outgoing_trace(incoming)
            .map(|context| context.map(|c| c.to_string()))
            .map_err(|err| invalid("incoming", err.to_string()))
    }

    /// Replaces every setting at once; registrations, health and counters are kept.
    fn reload(&self, settings: &Bound<'_, PyMeshSettings>) -> PyResult<()> {
        self.inner
            .reconfigure(settings.get().inner.clone())
            .map_err(value_error)
    }

    /// The settings in force.
    #[getter]
    fn settings(&self) -> PyMeshSettings {
        PyMeshSettings {
            inner: self.inner.settings(),
        }
    }

    /// Increases on every change of registrations, health or settings.
    #[getter]
    fn revision(&self) -> u64 {
        self.inner.revision()
    }

    /// Requests recorded (when metrics are on).
    #[getter]
    fn total_requests(&self) -> u64 {
        self.inner.total_requests()
    }

    /// Failed requests recorded (when metrics are on).
    #[getter]
    fn failed_requests(&self) -> u64 {
        self.inner.failed_requests()
    }

    /// Health check outcomes recorded by the checker and `check_all`.
    #[getter]
    fn health_checks(&self) -> u64 {
        self.inner.health_checks()
    }
}

/// A request started by `Mesh.begin`: in flight on its instance until `finish`.
#[pyclass(module = "dmsc_fast._native", name = "MeshCall", frozen)]
pub struct PyMeshCall {
    mesh: Arc<mesh::Mesh>,
    started: Nanos,
    endpoint: Py<PyAny>,
    in_flight: Mutex<Option<InFlight>>,
}

#[pymethods]
impl PyMeshCall {
    /// The endpoint the request goes to.
    #[getter]
    fn endpoint(&self, py: Python<'_>) -> Py<PyAny> {
        self.endpoint.clone_ref(py)
    }

    /// Whether the request is still in flight.
    #[getter]
    fn active(&self) -> bool {
        self.in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
    }

    /// Ends the request and records its outcome; the latency is the time since `begin` on
    /// the mesh's clock unless given (seconds). False if it was already finished.
    #[pyo3(signature = (success, latency=None))]
    fn finish(&self, success: bool, latency: Option<f64>) -> PyResult<bool> {
        let latency = match latency {
            Some(s) => seconds("latency", s)?,
            None => Duration::from_nanos(self.mesh.now().saturating_sub(self.started)),
        };
        let taken = self
            .in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let Some(in_flight) = taken else {
            return Ok(false);
        };
        self.mesh.record(in_flight.instance(), success, latency);
        Ok(true)
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyMeshSettings>()?;
    m.add_class::<PyMesh>()?;
    m.add_class::<PyMeshCall>()?;
    Ok(())
}
