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

/// A Python metric object as a registry exposes it.
trait Exposed {
    /// Its name, its help text and the core metric it shares its atomics with.
    fn exposed(&self) -> (&str, &str, Metric);
}

/// The exposition of `metric` if it is a `T`.
fn exposed_as<'a, T>(metric: &'a Bound<'_, PyAny>) -> Option<(&'a str, &'a str, Metric)>
where
    T: Exposed + pyo3::PyClass<Frozen = pyo3::pyclass::boolean_struct::True> + Sync,
{
    Some(metric.cast::<T>().ok()?.get().exposed())
}

/// What every metric and family class shares: `#[pymethods]` with the class's
/// own `methods` plus the `name` getter (documented by `$name_doc`) and the
/// `help` getter, and the [`Exposed`] impl handing a registry `$variant` over
/// the `Arc` in field `$core`. (PyO3 takes one `#[pymethods]` block per class.)
macro_rules! named_methods {
    ($class:ident, $name_doc:literal, $variant:path, $core:ident, { $($methods:tt)* }) => {
        impl Exposed for $class {
            fn exposed(&self) -> (&str, &str, Metric) {
                (&self.name, &self.help, $variant(self.$core.clone()))
            }
        }

        #[pymethods]
        impl $class {
            $($methods)*

            #[doc = $name_doc]
            #[getter]
            fn name(&self) -> &str {
                &self.name
            }

            /// The help text.
            #[getter]
            fn help(&self) -> &str {
                &self.help
            }
        }
    };
}

/// Defines a standalone metric class `$class` (Python name `$name`) over an
/// `Arc<$metric>`, registered as `$variant`: the struct, `wrap`, and
/// `named_methods!` with the class's own `methods`.
macro_rules! metric_class {
    (
        $(#[doc = $doc:literal])*
        $class:ident($name:literal, $metric:ty, $variant:path) { $($methods:tt)* }
    ) => {
        $(#[doc = $doc])*
        #[pyclass(module = "dmsc_fast._native", name = $name, frozen)]
        pub struct $class {
            inner: Arc<$metric>,
            name: String,
            help: String,
        }

        impl $class {
            /// The Python object over `inner`, exposed as `name` with `help`.
            fn wrap(inner: Arc<$metric>, name: &str, help: &str) -> Self {
                Self {
                    inner,
                    name: name.to_owned(),
                    help: help.to_owned(),
                }
            }
        }

        named_methods!($class, "The metric name (\"\" when unnamed).", $variant, inner, {
            $($methods)*
        });
    };
}

metric_class! {
    /// A count that only goes up. Lock-free; `inc` from many threads is exact.
    PyCounter("Counter", metrics::Counter, Metric::Counter) {
        #[new]
        #[pyo3(signature = (name="", help=""))]
        fn new(name: &str, help: &str) -> PyResult<Self> {
            optional_name(name)?;
            Ok(Self::wrap(Arc::default(), name, help))
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

        fn __repr__(&self) -> String {
            format!("Counter(name={:?}, value={})", self.name, self.inner.get())
        }
    }
}

metric_class! {
    /// A value that goes up and down. Lock-free; NaN is refused.
    PyGauge("Gauge", metrics::Gauge, Metric::Gauge) {
        #[new]
        #[pyo3(signature = (name="", help=""))]
        fn new(name: &str, help: &str) -> PyResult<Self> {
            optional_name(name)?;
            Ok(Self::wrap(Arc::default(), name, help))
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

        fn __repr__(&self) -> String {
            format!("Gauge(name={:?}, value={:?})", self.name, self.inner.get())
        }
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

metric_class! {
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
    PyHistogram("Histogram", metrics::Histogram, Metric::Histogram) {
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

        fn __repr__(&self) -> String {
            format!(
                "Histogram(name={:?}, count={}, sum={:?})",
                self.name,
                self.inner.count(),
                self.inner.sum()
            )
        }
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

/// Refuses a plain `str` where a sequence of label names is expected.
fn label_names_from(label_names: &Bound<'_, PyAny>) -> PyResult<Vec<String>> {
    if label_names.is_instance_of::<PyString>() {
        return Err(PyTypeError::new_err(
            "label_names: expected a sequence of str, got a str",
        ));
    }
    label_names.extract()
}

/// Defines a family class `$class` (Python name `$name`) over a
/// `Family<$metric>`, registered as `$variant`, whose `labels()` returns `$child`
/// objects (documented by `$labels_doc`): the struct, `build`, and
/// `named_methods!` with the class's own `methods` (its constructor) plus
/// `labels` and the `label_names` getter. Without `methods`, the constructor
/// takes only the name, help and label names.
macro_rules! family_class {
    (
        $(#[doc = $doc:literal])*
        $class:ident($name:literal, $metric:ty, $variant:path) -> $child:ident,
        $labels_doc:literal
    ) => {
        family_class! {
            $(#[doc = $doc])*
            $class($name, $metric, $variant) -> $child,
            $labels_doc
            {
                #[new]
                #[pyo3(signature = (name, help, label_names))]
                fn new(name: &str, help: &str, label_names: &Bound<'_, PyAny>) -> PyResult<Self> {
                    Self::build(name, help, label_names, |names| {
                        Family::new(names, &[], <$metric>::new).map_err(value_error)
                    })
                }
            }
        }
    };
    (
        $(#[doc = $doc:literal])*
        $class:ident($name:literal, $metric:ty, $variant:path) -> $child:ident,
        $labels_doc:literal { $($methods:tt)* }
    ) => {
        $(#[doc = $doc])*
        #[pyclass(module = "dmsc_fast._native", name = $name, frozen)]
        pub struct $class {
            core: Arc<Family<$metric>>,
            children: Py<PyDict>,
            name: String,
            help: String,
        }

        impl $class {
            /// Checks `name` and `label_names`, then makes the core family with `make`.
            fn build(
                name: &str,
                help: &str,
                label_names: &Bound<'_, PyAny>,
                make: impl FnOnce(&[&str]) -> PyResult<Family<$metric>>,
            ) -> PyResult<Self> {
                metrics::text::check_metric_name(name).map_err(value_error)?;
                let names = label_names_from(label_names)?;
                let names: Vec<&str> = names.iter().map(String::as_str).collect();
                Ok(Self {
                    core: Arc::new(make(&names)?),
                    children: PyDict::new(label_names.py()).unbind(),
                    name: name.to_owned(),
                    help: help.to_owned(),
                })
            }
        }

        named_methods!($class, "The metric name.", $variant, core, {
            $($methods)*

            #[doc = $labels_doc]
            #[pyo3(signature = (*values))]
            fn labels<'py>(&self, values: &Bound<'py, PyTuple>) -> PyResult<Bound<'py, $child>> {
                child(&self.core, &self.children, values, |inner| {
                    $child::wrap(inner, &self.name, &self.help)
                })
            }

            /// The label names, in order.
            #[getter]
            fn label_names(&self) -> Vec<String> {
                self.core.label_names().to_vec()
            }
        });
    };
}

family_class! {
    /// Counters by label values, like `prometheus_client.Counter(..., labelnames=...)`.
    PyCounterFamily("CounterFamily", metrics::Counter, Metric::CounterFamily) -> PyCounter,
    "The counter for these label values (one per label name, in order); the same object each time."
}

family_class! {
    /// Gauges by label values.
    PyGaugeFamily("GaugeFamily", metrics::Gauge, Metric::GaugeFamily) -> PyGauge,
    "The gauge for these label values (one per label name, in order); the same object each time."
}

family_class! {
    /// Histograms by label values; every child has the family's bucket layout.
    PyHistogramFamily("HistogramFamily", metrics::Histogram, Metric::HistogramFamily) -> PyHistogram,
    "The histogram for these label values (one per label name, in order); the same object each time."
    {
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
            Self::build(name, help, label_names, |names| {
                let spec = histogram_spec(min_value, max_value, relative_error, buckets)?;
                metrics::registry::histogram_family(names, spec).map_err(value_error)
            })
        }
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
        Ok(PyCounter::wrap(inner, name, help))
    }

    /// Registers and returns a new gauge.
    #[pyo3(signature = (name, help=""))]
    fn gauge(&self, name: &str, help: &str) -> PyResult<PyGauge> {
        let inner = self.core.gauge(name, help).map_err(value_error)?;
        Ok(PyGauge::wrap(inner, name, help))
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
        self.add(PyCounterFamily::new(name, help, label_names)?)
    }

    /// Registers and returns a new gauge family.
    #[pyo3(signature = (name, help, label_names))]
    fn gauge_family(
        &self,
        name: &str,
        help: &str,
        label_names: &Bound<'_, PyAny>,
    ) -> PyResult<PyGaugeFamily> {
        self.add(PyGaugeFamily::new(name, help, label_names)?)
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
        self.add(PyHistogramFamily::new(
            name,
            help,
            label_names,
            min_value,
            max_value,
            relative_error,
            buckets,
        )?)
    }

    /// Registers a metric made elsewhere (it must have a name); later updates show in the exposition.
    fn register(&self, metric: &Bound<'_, PyAny>) -> PyResult<()> {
        let exposed = exposed_as::<PyCounter>(metric)
            .or_else(|| exposed_as::<PyGauge>(metric))
            .or_else(|| exposed_as::<PyHistogram>(metric))
            .or_else(|| exposed_as::<PyCounterFamily>(metric))
            .or_else(|| exposed_as::<PyGaugeFamily>(metric))
            .or_else(|| exposed_as::<PyHistogramFamily>(metric));
        let Some((name, help, core)) = exposed else {
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

impl PyRegistry {
    /// Registers `object`'s metric under its name and hands the object back.
    fn add<T: Exposed>(&self, object: T) -> PyResult<T> {
        let (name, help, core) = object.exposed();
        self.core.register(name, help, core).map_err(value_error)?;
        Ok(object)
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
