//! A set of named metrics and their Prometheus text exposition.

use std::sync::Arc;

use parking_lot::RwLock;

use super::family::Family;
use super::histogram::{Histogram, HistogramSpec};
use super::text::{self, Labels, Value};
use super::{Counter, Gauge};
use crate::InvalidArgument;

/// A metric a [`Registry`] can expose.
#[derive(Clone)]
pub enum Metric {
    /// One counter.
    Counter(Arc<Counter>),
    /// One gauge.
    Gauge(Arc<Gauge>),
    /// One histogram.
    Histogram(Arc<Histogram>),
    /// Counters by label values.
    CounterFamily(Arc<Family<Counter>>),
    /// Gauges by label values.
    GaugeFamily(Arc<Family<Gauge>>),
    /// Histograms by label values.
    HistogramFamily(Arc<Family<Histogram>>),
}

struct Entry {
    name: String,
    help: String,
    metric: Metric,
}

/// Named metrics, exposed in registration order.
#[derive(Default)]
pub struct Registry {
    entries: RwLock<Vec<Entry>>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `metric` under `name` (a valid Prometheus metric name, not yet registered).
    pub fn register(&self, name: &str, help: &str, metric: Metric) -> Result<(), InvalidArgument> {
        text::check_metric_name(name)?;
        let mut entries = self.entries.write();
        if entries.iter().any(|entry| entry.name == name) {
            return Err(InvalidArgument::new(
                "name",
                format!("a metric named {name:?} is already registered"),
            ));
        }
        entries.push(Entry {
            name: name.to_owned(),
            help: help.to_owned(),
            metric,
        });
        Ok(())
    }

    /// Registers and returns a new counter.
    pub fn counter(&self, name: &str, help: &str) -> Result<Arc<Counter>, InvalidArgument> {
        let counter = Arc::new(Counter::new());
        self.register(name, help, Metric::Counter(counter.clone()))?;
        Ok(counter)
    }

    /// Registers and returns a new gauge.
    pub fn gauge(&self, name: &str, help: &str) -> Result<Arc<Gauge>, InvalidArgument> {
        let gauge = Arc::new(Gauge::new());
        self.register(name, help, Metric::Gauge(gauge.clone()))?;
        Ok(gauge)
    }

    /// Registers and returns a new histogram of shape `spec`.
    pub fn histogram(
        &self,
        name: &str,
        help: &str,
        spec: HistogramSpec,
    ) -> Result<Arc<Histogram>, InvalidArgument> {
        let histogram = Arc::new(Histogram::new(spec));
        self.register(name, help, Metric::Histogram(histogram.clone()))?;
        Ok(histogram)
    }

    /// Registers and returns a new counter family.
    pub fn counter_family(
        &self,
        name: &str,
        help: &str,
        label_names: &[&str],
    ) -> Result<Arc<Family<Counter>>, InvalidArgument> {
        let family = Arc::new(Family::new(label_names, &[], Counter::new)?);
        self.register(name, help, Metric::CounterFamily(family.clone()))?;
        Ok(family)
    }

    /// Registers and returns a new gauge family.
    pub fn gauge_family(
        &self,
        name: &str,
        help: &str,
        label_names: &[&str],
    ) -> Result<Arc<Family<Gauge>>, InvalidArgument> {
        let family = Arc::new(Family::new(label_names, &[], Gauge::new)?);
        self.register(name, help, Metric::GaugeFamily(family.clone()))?;
        Ok(family)
    }

    /// Registers and returns a new histogram family whose children have shape `spec`.
    pub fn histogram_family(
        &self,
        name: &str,
        help: &str,
        label_names: &[&str],
        spec: HistogramSpec,
    ) -> Result<Arc<Family<Histogram>>, InvalidArgument> {
        let family = Arc::new(histogram_family(label_names, spec)?);
        self.register(name, help, Metric::HistogramFamily(family.clone()))?;
        Ok(family)
    }

    /// Every metric in the Prometheus text format 0.0.4 ([`text::CONTENT_TYPE`]).
    pub fn exposition(&self) -> String {
        let mut out = String::new();
        for entry in self.entries.read().iter() {
            write_metric(&mut out, &entry.name, &entry.help, &entry.metric);
        }
        out
    }
}

/// A histogram family; `le` is reserved for the bucket label.
pub fn histogram_family(
    label_names: &[&str],
    spec: HistogramSpec,
) -> Result<Family<Histogram>, InvalidArgument> {
    Family::new(label_names, &["le"], move || Histogram::new(spec.clone()))
}

/// Appends the exposition of one metric.
pub fn write_metric(out: &mut String, name: &str, help: &str, metric: &Metric) {
    let unlabelled = Labels::default();
    match metric {
        Metric::Counter(counter) => {
            text::write_header(out, name, help, "counter");
            text::write_sample(out, name, unlabelled, None, Value::Int(counter.get()));
        }
        Metric::Gauge(gauge) => {
            text::write_header(out, name, help, "gauge");
            text::write_sample(out, name, unlabelled, None, Value::Float(gauge.get()));
        }
        Metric::Histogram(histogram) => {
            text::write_header(out, name, help, "histogram");
            write_histogram(out, name, unlabelled, histogram);
        }
        Metric::CounterFamily(family) => {
            text::write_header(out, name, help, "counter");
            family.for_each(|values, counter| {
                let labels = Labels {
                    names: family.label_names(),
                    values,
                };
                text::write_sample(out, name, labels, None, Value::Int(counter.get()));
            });
        }
        Metric::GaugeFamily(family) => {
            text::write_header(out, name, help, "gauge");
            family.for_each(|values, gauge| {
                let labels = Labels {
                    names: family.label_names(),
                    values,
                };
                text::write_sample(out, name, labels, None, Value::Float(gauge.get()));
            });
        }
        Metric::HistogramFamily(family) => {
            text::write_header(out, name, help, "histogram");
            family.for_each(|values, histogram| {
                let labels = Labels {
                    names: family.label_names(),
                    values,
                };
                write_histogram(out, name, labels, histogram);
            });
        }
    }
}

fn write_histogram(out: &mut String, name: &str, labels: Labels<'_>, histogram: &Histogram) {
    // One snapshot, so the +Inf bucket, _count and the other buckets agree.
    let snapshot = histogram.snapshot();
    let bucket = format!("{name}_bucket");
    for (le, cumulative) in snapshot.exposition_buckets() {
        text::write_sample(out, &bucket, labels, Some(le), Value::Int(cumulative));
    }
    let count = Value::Int(snapshot.count());
    text::write_sample(out, &bucket, labels, Some(f64::INFINITY), count);
    text::write_sample(
        out,
        &format!("{name}_sum"),
        labels,
        None,
        Value::Float(snapshot.sum()),
    );
    text::write_sample(out, &format!("{name}_count"), labels, None, count);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_lists_every_metric_in_order() {
        let registry = Registry::new();
        registry
            .counter("requests_total", "Requests.")
            .unwrap()
            .inc_by(3);
        registry
            .gauge("in_flight", "In flight.")
            .unwrap()
            .set(2.5)
            .unwrap();
        let spec = HistogramSpec::new(1e-3, 10.0, 0.01, Some(&[0.5, 1.0])).unwrap();
        let latency = registry
            .histogram("latency_seconds", "Latency.", spec.clone())
            .unwrap();
        latency.observe(0.25).unwrap();
        latency.observe(0.75).unwrap();
        latency.observe(20.0).unwrap();
        let codes = registry
            .counter_family("responses", "By code.", &["code"])
            .unwrap();
        codes.labels(&["200"]).unwrap().inc();
        let by_route = registry
            .histogram_family("route_seconds", "", &["route"], spec)
            .unwrap();
        by_route.labels(&["/a"]).unwrap().observe(1.0).unwrap();
        assert_eq!(
            registry.exposition(),
            "# HELP requests_total Requests.\n# TYPE requests_total counter\nrequests_total 3\n\
             # HELP in_flight In flight.\n# TYPE in_flight gauge\nin_flight 2.5\n\
             # HELP latency_seconds Latency.\n# TYPE latency_seconds histogram\n\
             latency_seconds_bucket{le=\"0.5\"} 1\nlatency_seconds_bucket{le=\"1.0\"} 2\n\
             latency_seconds_bucket{le=\"+Inf\"} 3\nlatency_seconds_sum 21.0\n\
             latency_seconds_count 3\n\
             # HELP responses By code.\n# TYPE responses counter\nresponses{code=\"200\"} 1\n\
             # HELP route_seconds \n# TYPE route_seconds histogram\n\
             route_seconds_bucket{route=\"/a\",le=\"0.5\"} 0\n\
             route_seconds_bucket{route=\"/a\",le=\"1.0\"} 1\n\
             route_seconds_bucket{route=\"/a\",le=\"+Inf\"} 1\n\
             route_seconds_sum{route=\"/a\"} 1.0\nroute_seconds_count{route=\"/a\"} 1\n"
        );
    }

    #[test]
    fn names_must_be_valid_and_unique() {
        let registry = Registry::new();
        registry.counter("a", "").unwrap();
        assert_eq!(registry.gauge("a", "").unwrap_err().argument, "name");
        assert_eq!(
            registry.counter("not valid", "").unwrap_err().argument,
            "name"
        );
        let spec = HistogramSpec::new(1.0, 2.0, 0.1, None).unwrap();
        let err = registry
            .histogram_family("h", "", &["le"], spec)
            .err()
            .unwrap();
        assert_eq!(err.argument, "label_names");
    }
}
