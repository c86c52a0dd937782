//! Metrics: `Counter`, `Gauge`, `Histogram`, their labelled families and `Registry`.
//!
//! Each Python object holds an `Arc` of the core metric, so a metric made by a
//! `Registry` and the registry's exposition share one set of atomics. Families
//! keep their Python child objects in a dict keyed by the label-values tuple:
//! `labels()` returns the same object for the same values.

use std::sync::Arc;

use dmsc_core::metrics::{self, Family, HistogramSpec, Metric, DEFAULT_EXPOSITION_BOUNDS};
use dmsc_core::InvalidArgument;
use numpy::{PyArray1, PyArrayMethods};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString, PyTuple};

use crate::errors::value_error;

/// Checks an optional standalone metric name ("" means unnamed).
fn optional_name(name: &str) -> PyResult<()> {
    if name.is_empty() {
        Ok(())
    } else {
        metrics::text::check_metric_name(name).map_err(value_error)
    }
}

/// A count that only goes up. Lock-free; `inc` from many threads is exact.
#[pyclass(module = "dmsc_fast._native", name = "Counter", frozen)]
pub struct PyCounter {
    inner: Arc<metrics::Counter>,
    name: String,
    help: String,
}

#[pymethods]
impl PyCounter {
    #[new]
    #[pyo3(signature = (name="", help=""))]
    fn new(name: &str, help: &str) -> PyResult<Self> {
        optional_name(name)?;
        Ok(Self {
            inner: Arc::default(),
            name: name.to_owned(),
            help: help.to_owned(),
        })
    }

    /// Adds `n` (at least 0) to the count.
    #[pyo3(signature = (n=1))]
    fn inc(&self, n: i64) -> PyResult<()> {
        if n < 0 {
            return Err(value_error(InvalidArgument::new(
                "n",
                format!("a counter only goes up: must be at least 0, got {n}"),
            )));
        }
        self.inner.inc_by(n as u64);
        Ok(())
    }

    /// The current count.
    #[getter]
    fn value(&self) -> u64 {
        self.inner.get()
    }

    /// The metric name ("" when unnamed).
    #[getter]
    fn name(&self) -> &str {
        &self.name
    }

    /// The help text.
    #[getter]
    fn help(&self) -> &str {
        &self.help
    }

    fn __repr__(&self) -> String {
        format!("Counter(name={:?}, value={})", self.name, self.inner.get())
    }
}

/// A value that goes up and down. Lock-free; NaN is refused.
#[pyclass(module = "dmsc_fast._native", name = "Gauge", frozen)]
pub struct PyGauge {
    inner: Arc<metrics::Gauge>,
    name: String,
    help: String,
}

#[pymethods]
impl PyGauge {
    #[new]
    #[pyo3(signature = (name="", help=""))]
    fn new(name: &str, help: &str) -> PyResult<Self> {
        optional_name(name)?;
        Ok(Self {
            inner: Arc::default(),
            name: name.to_owned(),
            help: help.to_owned(),
        })
    }

    /// Sets the value to `x`.
    fn set(&self, x: f64) -> PyResult<()> {
        self.inner.set(x).map_err(value_error)
    }

    /// Adds `x` to the value.
    #[pyo3(signature = (x=1.0))]
    fn inc(&self, x: f64) -> PyResult<()> {
        self.inner.add(x).map_err(value_error)
    }

    /// Subtracts `x` from the value.
    #[pyo3(signature = (x=1.0))]
    fn dec(&self, x: f64) -> PyResult<()> {
        self.inner.add(-x).map_err(value_error)
    }

    /// The current value.
    #[getter]
    fn value(&self) -> f64 {
        self.inner.get()
    }

    /// The metric name ("" when unnamed).
    #[getter]
    fn name(&self) -> &str {
        &self.name
    }

    /// The help text.
    #[getter]
    fn help(&self) -> &str {
        &self.help
    }

    fn __repr__(&self) -> String {
        format!("Gauge(name={:?}, value={:?})", self.name, self.inner.get())
    }
}

fn histogram_spec(
    min_value: f64,
    max_value: f64,
    relative_error: f64,
    buckets: Option<Vec<f64>>,
) -> PyResult<HistogramSpec> {
    HistogramSpec::new(min_value, max_value, relative_error, buckets.as_deref())
        .map_err(value_error)
}

/// A lock-free histogram of non-negative values with percentiles.
///
/// Log-linear buckets over `[min_value, max_value]` keep every percentile
/// within `relative_error` of the exact one. Percentiles use numpy's
/// `method="inverted_cdf"` rank: the value of rank `ceil(n * p / 100)`.
/// Values below `min_value` (zero included) count in the first bucket, values
/// above the last bucket in an overflow bucket whose percentile is
/// `max_value`; NaN, infinities and negative values raise ValueError.
/// `buckets` are the `le` bounds of the Prometheus exposition, moved up to the
/// nearest fine-bucket boundary so that their counts are exact.
#[pyclass(module = "dmsc_fast._native", name = "Histogram", frozen)]
pub struct PyHistogram {
    inner: Arc<metrics::Histogram>,
    name: String,
    help: String,
}

impl PyHistogram {
    fn wrap(inner: Arc<metrics::Histogram>, name: &str, help: &str) -> Self {
        Self {
            inner,
            name: name.to_owned(),
            help: help.to_owned(),
        }
    }
}

#[pymethods]
impl PyHistogram {
    #[new]
    #[pyo3(signature = (
        min_value=1e-6,
        max_value=3600.0,
        relative_error=0.005,
        *,
        name="",
        help="",
        buckets=None,
    ))]
    fn new(
        min_value: f64,
        max_value: f64,
        relative_error: f64,
        name: &str,
        help: &str,
        buckets: Option<Vec<f64>>,
    ) -> PyResult<Self> {
        optional_name(name)?;
        let spec = histogram_spec(min_value, max_value, relative_error, buckets)?;
        Ok(Self::wrap(
            Arc::new(metrics::Histogram::new(spec)),
            name,
            help,
        ))
    }

    /// Records `x` (a finite number of at least 0).
    fn observe(&self, x: f64) -> PyResult<()> {
        self.inner.observe(x).map_err(value_error)
    }

    /// Records every value of `values` (a sequence or numpy array), or none if one is refused.
    fn observe_many(&self, values: &Bound<'_, PyAny>) -> PyResult<()> {
        let recorded = match values.cast::<PyArray1<f64>>() {
            Ok(array) => self.inner.observe_many(array.readonly().as_slice()?),
            Err(_) => self.inner.observe_many(&values.extract::<Vec<f64>>()?),
        };
        recorded.map_err(value_error)
    }

    /// Number of observations.
    #[getter]
    fn count(&self) -> u64 {
        self.inner.count()
    }

    /// Sum of the observations.
    #[getter]
    fn sum(&self) -> f64 {
        self.inner.sum()
    }

    /// The `p`-th percentile, `p` in [0, 100]; NaN when empty.
    fn percentile(&self, p: f64) -> PyResult<f64> {
        self.inner.percentile(p).map_err(value_error)
    }

    /// Several percentiles (a sequence or numpy array) from one snapshot, as a numpy array.
    fn percentiles<'py>(
        &self,
        py: Python<'py>,
        ps: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyArray1<f64>>> {
        let values = match ps.cast::<PyArray1<f64>>() {
            Ok(array) => self.inner.percentiles(array.readonly().as_slice()?),
            Err(_) => self.inner.percentiles(&ps.extract::<Vec<f64>>()?),
        };
        Ok(PyArray1::from_vec(py, values.map_err(value_error)?))
    }

    /// `(upper_bounds, counts)` as numpy arrays (float64, uint64): every fine
    /// bucket, then the overflow bucket with upper bound +inf.
    fn snapshot<'py>(
        &self,
        py: Python<'py>,
    ) -> (Bound<'py, PyArray1<f64>>, Bound<'py, PyArray1<u64>>) {
        let snapshot = self.inner.snapshot();
        (
            PyArray1::from_vec(py, snapshot.upper_bounds()),
            PyArray1::from_slice(py, snapshot.counts()),
        )
    }

    /// Lower end of the fine buckets.
    #[getter]
    fn min_value(&self) -> f64 {
        self.inner.spec().layout().min_value()
    }

    /// Upper end of the fine buckets.
    #[getter]
    fn max_value(&self) -> f64 {
        self.inner.spec().layout().max_value()
    }

    /// The relative error bound of percentiles (at most the one asked for).
    #[getter]
    fn relative_error(&self) -> f64 {
        self.inner.spec().layout().relative_error()
    }

    /// The `le` bounds of the exposition (without +Inf).
    #[getter]
    fn buckets(&self) -> Vec<f64> {
        self.inner.spec().exposition_bounds()
    }

    /// The metric name ("" when unnamed).
    #[getter]
    fn name(&self) -> &str {
        &self.name
    }

    /// The help text.
    #[getter]
    fn help(&self) -> &str {
        &self.help
    }

    fn __repr__(&self) -> String {
        format!(
            "Histogram(name={:?}, count={}, sum={:?})",
            self.name,
            self.inner.count(),
            self.inner.sum()
        )
    }
}

/// The label values of `values`, borrowed from the Python strings (TypeError for non-str).
fn label_values<'a>(values: &'a Bound<'_, PyTuple>) -> PyResult<Vec<&'a str>> {
    (0..values.len())
        .map(|index| values.get_borrowed_item(index)?.extract::<&str>())
        .collect()
}

/// The Python child for the label values in `values`.
///
/// Children are cached in a dict keyed by the values tuple itself, so a hit
/// costs one dict lookup (str hashes are cached by Python) and no lock of
/// ours. A miss checks the values, takes the core child (made on first use)
/// and publishes the wrapper with `setdefault`, so racing threads agree on
/// one object.
fn child<'py, M, P>(
    core: &Family<M>,
    children: &Py<PyDict>,
    values: &Bound<'py, PyTuple>,
    wrap: impl FnOnce(Arc<M>) -> P,
) -> PyResult<Bound<'py, P>>
where
    P: pyo3::PyClass + Into<pyo3::PyClassInitializer<P>>,
{
    let py = values.py();
    let children = children.bind(py);
    if let Some(found) = children.get_item(values)? {
        return Ok(found.cast_into::<P>()?);
    }
    core.check_arity(values.len()).map_err(value_error)?;
    let made = core.labels(&label_values(values)?).map_err(value_error)?;
    let (_, winner) = children.set_default_with_result(values, Bound::new(py, wrap(made))?)?;
    Ok(winner.cast_into::<P>()?)
}

fn as_strs(names: &[String]) -> Vec<&str> {
    names.iter().map(String::as_str).collect()
}

/// Refuses a plain `str` where a sequence of label names is expected.
fn label_names_from(label_names: &Bound<'_, PyAny>) -> PyResult<Vec<String>> {
    if label_names.is_instance_of::<PyString>() {
        return Err(PyTypeError::new_err(
            "label_names: expected a sequence of str, got a str",
        ));
    }
    label_names.extract()
}

/// Counters by label values, like `prometheus_client.Counter(..., labelnames=...)`.
#[pyclass(module = "dmsc_fast._native", name = "CounterFamily", frozen)]
pub struct PyCounterFamily {
    core: Arc<Family<metrics::Counter>>,
    children: Py<PyDict>,
    name: String,
    help: String,
}

impl PyCounterFamily {
    fn wrap(py: Python<'_>, core: Arc<Family<metrics::Counter>>, name: &str, help: &str) -> Self {
        Self {
            core,
            children: PyDict::new(py).unbind(),
            name: name.to_owned(),
            help: help.to_owned(),
        }
    }
}

#[pymethods]
impl PyCounterFamily {
    #[new]
    #[pyo3(signature = (name, help, label_names))]
    fn new(name: &str, help: &str, label_names: &Bound<'_, PyAny>) -> PyResult<Self> {
        metrics::text::check_metric_name(name).map_err(value_error)?;
        let names = label_names_from(label_names)?;
        let core =
            Family::new(&as_strs(&names), &[], metrics::Counter::new).map_err(value_error)?;
        Ok(Self::wrap(label_names.py(), Arc::new(core), name, help))
    }

    /// The counter for these label values (one per label name, in order); the same object each time.
    #[pyo3(signature = (*values))]
    fn labels<'py>(&self, values: &Bound<'py, PyTuple>) -> PyResult<Bound<'py, PyCounter>> {
        child(&self.core, &self.children, values, |inner| PyCounter {
            inner,
            name: self.name.clone(),
            help: self.help.clone(),
        })
    }

    /// The metric name.
    #[getter]
    fn name(&self) -> &str {
        &self.name
    }

    /// The help text.
    #[getter]
    fn help(&self) -> &str {
        &self.help
    }

    /// The label names, in order.
    #[getter]
    fn label_names(&self) -> Vec<String> {
        self.core.label_names().to_vec()
    }
}

/// Gauges by label values.
#[pyclass(module = "dmsc_fast._native", name = "GaugeFamily", frozen)]
pub struct PyGaugeFamily {
    core: Arc<Family<metrics::Gauge>>,
    children: Py<PyDict>,
    name: String,
    help: String,
}

impl PyGaugeFamily {
    fn wrap(py: Python<'_>, core: Arc<Family<metrics::Gauge>>, name: &str, help: &str) -> Self {
        Self {
            core,
            children: PyDict::new(py).unbind(),
            name: name.to_owned(),
            help: help.to_owned(),
        }
    }
}

#[pymethods]
impl PyGaugeFamily {
    #[new]
    #[pyo3(signature = (name, help, label_names))]
    fn new(name: &str, help: &str, label_names: &Bound<'_, PyAny>) -> PyResult<Self> {
        metrics::text::check_metric_name(name).map_err(value_error)?;
        let names = label_names_from(label_names)?;
        let core = Family::new(&as_strs(&names), &[], metrics::Gauge::new).map_err(value_error)?;
        Ok(Self::wrap(label_names.py(), Arc::new(core), name, help))
    }

    /// The gauge for these label values (one per label name, in order); the same object each time.
    #[pyo3(signature = (*values))]
    fn labels<'py>(&self, values: &Bound<'py, PyTuple>) -> PyResult<Bound<'py, PyGauge>> {
        child(&self.core, &self.children, values, |inner| PyGauge {
            inner,
            name: self.name.clone(),
            help: self.help.clone(),
        })
    }

    /// The metric name.
    #[getter]
    fn name(&self) -> &str {
        &self.name
    }

    /// The help text.
    #[getter]
    fn help(&self) -> &str {
        &self.help
    }

    /// The label names, in order.
    #[getter]
    fn label_names(&self) -> Vec<String> {
        self.core.label_names().to_vec()
    }
}

/// Histograms by label values; every child has the family's bucket layout.
#[pyclass(module = "dmsc_fast._native", name = "HistogramFamily", frozen)]
pub struct PyHistogramFamily {
    core: Arc<Family<metrics::Histogram>>,
    children: Py<PyDict>,
    name: String,
    help: String,
}

impl PyHistogramFamily {
    fn wrap(py: Python<'_>, core: Arc<Family<metrics::Histogram>>, name: &str, help: &str) -> Self {
        Self {
            core,
            children: PyDict::new(py).unbind(),
            name: name.to_owned(),
            help: help.to_owned(),
        }
    }
}

#[pymethods]
impl PyHistogramFamily {
    #[new]
    #[pyo3(signature = (
        name,
        help,
        label_names,
        *,
        min_value=1e-6,
        max_value=3600.0,
        relative_error=0.005,
        buckets=None,
    ))]
    fn new(
        name: &str,
        help: &str,
        label_names: &Bound<'_, PyAny>,
        min_value: f64,
        max_value: f64,
        relative_error: f64,
        buckets: Option<Vec<f64>>,
    ) -> PyResult<Self> {
        metrics::text::check_metric_name(name).map_err(value_error)?;
        let names = label_names_from(label_names)?;
        let spec = histogram_spec(min_value, max_value, relative_error, buckets)?;
        let core =
            metrics::registry::histogram_family(&as_strs(&names), spec).map_err(value_error)?;
        Ok(Self::wrap(label_names.py(), Arc::new(core), name, help))
    }

    /// The histogram for these label values (one per label name, in order); the same object each time.
    #[pyo3(signature = (*values))]
    fn labels<'py>(&self, values: &Bound<'py, PyTuple>) -> PyResult<Bound<'py, PyHistogram>> {
        child(&self.core, &self.children, values, |inner| {
            PyHistogram::wrap(inner, &self.name, &self.help)
        })
    }

    /// The metric name.
    #[getter]
    fn name(&self) -> &str {
        &self.name
    }

    /// The help text.
    #[getter]
    fn help(&self) -> &str {
        &self.help
    }

    /// The label names, in order.
    #[getter]
    fn label_names(&self) -> Vec<String> {
        self.core.label_names().to_vec()
    }
}

/// Named metrics and their Prometheus text exposition (format 0.0.4).
#[pyclass(module = "dmsc_fast._native", name = "Registry", frozen)]
pub struct PyRegistry {
    core: metrics::Registry,
}

#[pymethods]
impl PyRegistry {
    #[new]
    fn new() -> Self {
        Self {
            core: metrics::Registry::new(),
        }
    }

    /// Registers and returns a new counter.
    #[pyo3(signature = (name, help=""))]
    fn counter(&self, name: &str, help: &str) -> PyResult<PyCounter> {
        let inner = self.core.counter(name, help).map_err(value_error)?;
        Ok(PyCounter {
            inner,
            name: name.to_owned(),
            help: help.to_owned(),
        })
    }

    /// Registers and returns a new gauge.
    #[pyo3(signature = (name, help=""))]
    fn gauge(&self, name: &str, help: &str) -> PyResult<PyGauge> {
        let inner = self.core.gauge(name, help).map_err(value_error)?;
        Ok(PyGauge {
            inner,
            name: name.to_owned(),
            help: help.to_owned(),
        })
    }

    /// Registers and returns a new histogram.
    #[pyo3(signature = (
        name,
        help="",
        *,
        min_value=1e-6,
        max_value=3600.0,
        relative_error=0.005,
        buckets=None,
    ))]
    fn histogram(
        &self,
        name: &str,
        help: &str,
        min_value: f64,
        max_value: f64,
        relative_error: f64,
        buckets: Option<Vec<f64>>,
    ) -> PyResult<PyHistogram> {
        metrics::text::check_metric_name(name).map_err(value_error)?;
        let spec = histogram_spec(min_value, max_value, relative_error, buckets)?;
        let inner = self.core.histogram(name, help, spec).map_err(value_error)?;
        Ok(PyHistogram::wrap(inner, name, help))
    }

    /// Registers and returns a new counter family.
    #[pyo3(signature = (name, help, label_names))]
    fn counter_family(
        &self,
        name: &str,
        help: &str,
        label_names: &Bound<'_, PyAny>,
    ) -> PyResult<PyCounterFamily> {
        let family = PyCounterFamily::new(name, help, label_names)?;
        self.core
            .register(name, help, Metric::CounterFamily(family.core.clone()))
            .map_err(value_error)?;
        Ok(family)
    }

    /// Registers and returns a new gauge family.
    #[pyo3(signature = (name, help, label_names))]
    fn gauge_family(
        &self,
        name: &str,
        help: &str,
        label_names: &Bound<'_, PyAny>,
    ) -> PyResult<PyGaugeFamily> {
        let family = PyGaugeFamily::new(name, help, label_names)?;
        self.core
            .register(name, help, Metric::GaugeFamily(family.core.clone()))
            .map_err(value_error)?;
        Ok(family)
    }

    /// Registers and returns a new histogram family.
    #[pyo3(signature = (
        name,
        help,
        label_names,
        *,
        min_value=1e-6,
        max_value=3600.0,
        relative_error=0.005,
        buckets=None,
    ))]
    #[allow(clippy::too_many_arguments)]
    fn histogram_family(
        &self,
        name: &str,
        help: &str,
        label_names: &Bound<'_, PyAny>,
        min_value: f64,
        max_value: f64,
        relative_error: f64,
        buckets: Option<Vec<f64>>,
    ) -> PyResult<PyHistogramFamily> {
        let family = PyHistogramFamily::new(
            name,
            help,
            label_names,
            min_value,
            max_value,
            relative_error,
            buckets,
        )?;
        self.core
            .register(name, help, Metric::HistogramFamily(family.core.clone()))
            .map_err(value_error)?;
        Ok(family)
    }

    /// Registers a metric made elsewhere (it must have a name); later updates show in the exposition.
    fn register(&self, metric: &Bound<'_, PyAny>) -> PyResult<()> {
        let (name, help, core) = if let Ok(counter) = metric.cast::<PyCounter>() {
            let counter = counter.get();
            (
                &counter.name,
                &counter.help,
                Metric::Counter(counter.inner.clone()),
            )
        } else if let Ok(gauge) = metric.cast::<PyGauge>() {
            let gauge = gauge.get();
            (&gauge.name, &gauge.help, Metric::Gauge(gauge.inner.clone()))
        } else if let Ok(histogram) = metric.cast::<PyHistogram>() {
            let histogram = histogram.get();
            (
                &histogram.name,
                &histogram.help,
                Metric::Histogram(histogram.inner.clone()),
            )
        } else if let Ok(family) = metric.cast::<PyCounterFamily>() {
            let family = family.get();
            (
                &family.name,
                &family.help,
                Metric::CounterFamily(family.core.clone()),
            )
        } else if let Ok(family) = metric.cast::<PyGaugeFamily>() {
            let family = family.get();
            (
                &family.name,
                &family.help,
                Metric::GaugeFamily(family.core.clone()),
            )
        } else if let Ok(family) = metric.cast::<PyHistogramFamily>() {
            let family = family.get();
            (
                &family.name,
                &family.help,
                Metric::HistogramFamily(family.core.clone()),
            )
        } else {
            return Err(PyTypeError::new_err(format!(
                "metric: expected a Counter, Gauge, Histogram or one of their families, got {}",
                metric.get_type().name()?
            )));
        };
        self.core.register(name, help, core).map_err(value_error)
    }

    /// Every registered metric in the Prometheus text format 0.0.4.
    fn exposition(&self, py: Python<'_>) -> String {
        py.detach(|| self.core.exposition())
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyCounter>()?;
    m.add_class::<PyGauge>()?;
    m.add_class::<PyHistogram>()?;
    m.add_class::<PyCounterFamily>()?;
    m.add_class::<PyGaugeFamily>()?;
    m.add_class::<PyHistogramFamily>()?;
    m.add_class::<PyRegistry>()?;
    m.add(
        "DEFAULT_BUCKETS",
        PyTuple::new(m.py(), DEFAULT_EXPOSITION_BOUNDS)?,
    )?;
    m.add("EXPOSITION_CONTENT_TYPE", metrics::text::CONTENT_TYPE)?;
    Ok(())
}
