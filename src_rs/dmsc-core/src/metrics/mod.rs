//! Lock-free metrics: counters, gauges, histograms with percentiles, labelled
//! families, and their Prometheus text exposition.
//!
//! Every update is a handful of atomic operations and never takes a lock:
//! counters and histogram sums are striped over thread-owned cells
//! ([`striped`]), gauges are one atomic `f64`, histograms count in log-linear
//! buckets ([`layout`]) with a bounded relative error on every percentile.
//! Label lookups in a [`Family`] share a reader lock; only a label
//! combination's first use takes it exclusively.

pub mod counter;
pub mod family;
pub mod gauge;
pub mod histogram;
pub mod layout;
pub mod registry;
pub mod slot;
pub mod striped;
pub mod text;

pub use counter::Counter;
pub use family::{label_hash, Family, LabelMap};
pub use gauge::Gauge;
pub use histogram::{Histogram, HistogramSnapshot, HistogramSpec, DEFAULT_EXPOSITION_BOUNDS};
pub use layout::BucketLayout;
pub use registry::{Metric, Registry};
