//! Counters and histograms of listeners and clusters (dmsc-core metrics: one
//! relaxed atomic add per event), rendered in the Prometheus text format.

use std::fmt::Write;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use dmsc_core::metrics::text::{write_float, write_header};
use dmsc_core::metrics::{Counter, Histogram, HistogramSpec};

/// A gauge that moves by whole units (connections, requests in flight).
#[derive(Debug, Default)]
pub struct Level(AtomicI64);

impl Level {
    /// Up one.
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    /// Down one.
    pub fn dec(&self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
    /// Current value.
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Statistics of one listener (the downstream side).
#[derive(Debug)]
pub struct ListenerStats {
    /// Connections accepted.
    pub cx_total: Counter,
    /// Connections open.
    pub cx_active: Level,
    /// Connections closed at once because the listener was at `max_connections`.
    pub cx_overflow: Counter,
    /// TCP sessions whose bytes moved with splice(2).
    pub tcp_splice_sessions: Counter,
    /// TCP sessions that fell back to a user-space copy (splice refused the sockets).
    pub tcp_copy_sessions: Counter,
    /// Requests received (whole heads).
    pub rq_total: Counter,
    /// Requests in flight.
    pub rq_active: Level,
    /// Responses sent by class: index 0 = 1xx ... 4 = 5xx.
    pub rq_by_class: [Counter; 5],
    /// Requests refused as malformed (400 + close).
    pub rq_malformed: Counter,
    /// Connections closed by the header timeout.
    pub header_timeouts: Counter,
    /// Keep-alive connections closed idle.
    pub idle_timeouts: Counter,
    /// Requests that matched no route (404).
    pub no_route: Counter,
    /// Requests delayed by fault injection.
    pub fault_delays: Counter,
    /// Requests aborted by fault injection.
    pub fault_aborts: Counter,
    /// Requests refused by a rate limit (429).
    pub rate_limited: Counter,
    /// Requests answered 504 because their propagated deadline had passed.
    pub deadline_exceeded: Counter,
    /// Bytes received from / sent to clients (TCP listeners: the whole stream).
    pub bytes_in: Counter,
    /// Bytes sent to clients.
    pub bytes_out: Counter,
    /// Time from request head to the end of the response, seconds.
    pub rq_time: Histogram,
}

/// Statistics of one cluster (the upstream side).
#[derive(Debug)]
pub struct ClusterStats {
    /// Tries sent upstream (retries included).
    pub rq_total: Counter,
    /// Requests in flight.
    pub rq_active: Level,
    /// Upstream responses by class: index 0 = 1xx ... 4 = 5xx.
    pub rq_by_class: [Counter; 5],
    /// Retries sent.
    pub rq_retry: Counter,
    /// Retries refused by the retry budget or the max_retries threshold.
    pub rq_retry_overflow: Counter,
    /// Tries that timed out (per-try or route timeout).
    pub rq_timeout: Counter,
    /// Tries whose connection was reset before a whole response.
    pub rq_reset: Counter,
    /// Requests refused by the cluster thresholds (max_requests / max_pending).
    pub rq_pending_overflow: Counter,
    /// Requests refused by the bulkhead.
    pub bulkhead_rejected: Counter,
    /// Requests refused because every host's breaker was open or no host was healthy.
    pub no_healthy_host: Counter,
    /// Requests answered by the route's fallback.
    pub fallback: Counter,
    /// Requests copied to this cluster as a mirror.
    pub mirror_total: Counter,
    /// Connections opened.
    pub cx_total: Counter,
    /// Connections open.
    pub cx_active: Level,
    /// Connect failures (refused, timeout).
    pub cx_connect_fail: Counter,
    /// Pooled connections reused.
    pub cx_reused: Counter,
    /// Hosts ejected by outlier detection (events).
    pub outlier_ejections: Counter,
    /// Upstream response time (to the end of the response), seconds.
    pub rq_time: Histogram,
}

/// Prometheus `le` bounds of the latency histograms, seconds (moved up to the
/// nearest fine-bucket boundary by the histogram, so each printed count is exact).
const LATENCY_BOUNDS: [f64; 18] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0, 60.0,
];

fn latency_spec() -> &'static HistogramSpec {
    static SPEC: OnceLock<HistogramSpec> = OnceLock::new();
    SPEC.get_or_init(|| {
        // 10 us .. 60 s within 1%: ~1,500 fine buckets (12 KiB) per histogram.
        HistogramSpec::new(1e-5, 60.0, 0.01, Some(&LATENCY_BOUNDS))
            .unwrap_or_else(|err| unreachable!("constant latency histogram spec: {err}"))
    })
}

fn latency_histogram() -> Histogram {
    Histogram::new(latency_spec().clone())
}

/// Index into `rq_by_class` of a status code; None outside 100..=599.
fn class_index(status: u16) -> Option<usize> {
    match status {
        100..=599 => Some(usize::from(status / 100 - 1)),
        _ => None,
    }
}

const CODE_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

fn counters<const N: usize>() -> [Counter; N] {
    std::array::from_fn(|_| Counter::new())
}

impl ListenerStats {
    /// All zero.
    pub fn new() -> Self {
        Self {
            cx_total: Counter::new(),
            cx_active: Level::default(),
            cx_overflow: Counter::new(),
            tcp_splice_sessions: Counter::new(),
            tcp_copy_sessions: Counter::new(),
            rq_total: Counter::new(),
            rq_active: Level::default(),
            rq_by_class: counters(),
            rq_malformed: Counter::new(),
            header_timeouts: Counter::new(),
            idle_timeouts: Counter::new(),
            no_route: Counter::new(),
            fault_delays: Counter::new(),
            fault_aborts: Counter::new(),
            rate_limited: Counter::new(),
            deadline_exceeded: Counter::new(),
            bytes_in: Counter::new(),
            bytes_out: Counter::new(),
            rq_time: latency_histogram(),
        }
    }
    /// Counts a response sent with `status`.
    pub fn record_status(&self, status: u16) {
        if let Some(class) = class_index(status) {
            self.rq_by_class[class].inc();
        }
    }
}

impl ClusterStats {
    /// All zero.
    pub fn new() -> Self {
        Self {
            rq_total: Counter::new(),
            rq_active: Level::default(),
            rq_by_class: counters(),
            rq_retry: Counter::new(),
            rq_retry_overflow: Counter::new(),
            rq_timeout: Counter::new(),
            rq_reset: Counter::new(),
            rq_pending_overflow: Counter::new(),
            bulkhead_rejected: Counter::new(),
            no_healthy_host: Counter::new(),
            fallback: Counter::new(),
            mirror_total: Counter::new(),
            cx_total: Counter::new(),
            cx_active: Level::default(),
            cx_connect_fail: Counter::new(),
            cx_reused: Counter::new(),
            outlier_ejections: Counter::new(),
            rq_time: latency_histogram(),
        }
    }
    /// Counts an upstream response with `status` that took `elapsed`.
    pub fn record_response(&self, status: u16, elapsed: Duration) {
        if let Some(class) = class_index(status) {
            self.rq_by_class[class].inc();
        }
        // Only NaN or negative values are refused; a Duration is neither.
        let _ = self.rq_time.observe(elapsed.as_secs_f64());
    }
}

impl Default for ListenerStats {
    fn default() -> Self {
        Self::new()
    }
}

impl Default for ClusterStats {
    fn default() -> Self {
        Self::new()
    }
}

/// How one metric family reads its value from a stats struct.
enum Read<S> {
    Counter(fn(&S) -> &Counter),
    Gauge(fn(&S) -> i64),
    /// One sample per extra label value.
    Labelled(&'static str, &'static [&'static str], fn(&S, usize) -> u64),
    Histogram(fn(&S) -> &Histogram),
}

/// One metric family: name, help, and how to read it.
struct Family<S: 'static> {
    name: &'static str,
    help: &'static str,
    read: Read<S>,
}

const fn counter<S>(name: &'static str, help: &'static str, f: fn(&S) -> &Counter) -> Family<S> {
    Family {
        name,
        help,
        read: Read::Counter(f),
    }
}

const fn gauge<S>(name: &'static str, help: &'static str, f: fn(&S) -> i64) -> Family<S> {
    Family {
        name,
        help,
        read: Read::Gauge(f),
    }
}

const LISTENER_FAMILIES: &[Family<ListenerStats>] = &[
    counter(
        "dmsc_listener_connections_total",
        "Downstream connections accepted.",
        |s| &s.cx_total,
    ),
    gauge(
        "dmsc_listener_connections_active",
        "Downstream connections open.",
        |s| s.cx_active.get(),
    ),
    counter(
        "dmsc_listener_connections_overflow_total",
        "Downstream connections closed at once because the listener was at max_connections.",
        |s| &s.cx_overflow,
    ),
    Family {
        name: "dmsc_listener_tcp_sessions_total",
        help: "TCP sessions by how their bytes moved (splice or user-space copy).",
        read: Read::Labelled("mode", &["splice", "copy"], |s, i| {
            if i == 0 {
                s.tcp_splice_sessions.get()
            } else {
                s.tcp_copy_sessions.get()
            }
        }),
    },
    counter("dmsc_listener_requests_total", "Requests received.", |s| {
        &s.rq_total
    }),
    gauge(
        "dmsc_listener_requests_active",
        "Requests in flight.",
        |s| s.rq_active.get(),
    ),
    Family {
        name: "dmsc_listener_responses_total",
        help: "Responses sent downstream by status class.",
        read: Read::Labelled("code_class", &CODE_CLASSES, |s, i| s.rq_by_class[i].get()),
    },
    counter(
        "dmsc_listener_requests_malformed_total",
        "Requests refused as malformed (400 and close).",
        |s| &s.rq_malformed,
    ),
    counter(
        "dmsc_listener_header_timeouts_total",
        "Connections closed because a request head did not arrive in time.",
        |s| &s.header_timeouts,
    ),
    counter(
        "dmsc_listener_idle_timeouts_total",
        "Keep-alive connections closed idle.",
        |s| &s.idle_timeouts,
    ),
    counter(
        "dmsc_listener_no_route_total",
        "Requests that matched no route.",
        |s| &s.no_route,
    ),
    counter(
        "dmsc_listener_fault_delays_total",
        "Requests delayed by fault injection.",
        |s| &s.fault_delays,
    ),
    counter(
        "dmsc_listener_fault_aborts_total",
        "Requests aborted by fault injection.",
        |s| &s.fault_aborts,
    ),
    counter(
        "dmsc_listener_rate_limited_total",
        "Requests refused by a rate limit.",
        |s| &s.rate_limited,
    ),
    counter(
        "dmsc_listener_deadline_exceeded_total",
        "Requests answered 504 because their propagated deadline had passed.",
        |s| &s.deadline_exceeded,
    ),
    counter(
        "dmsc_listener_received_bytes_total",
        "Bytes received from clients.",
        |s| &s.bytes_in,
    ),
    counter(
        "dmsc_listener_sent_bytes_total",
        "Bytes sent to clients.",
        |s| &s.bytes_out,
    ),
    Family {
        name: "dmsc_listener_request_duration_seconds",
        help: "Time from a request head to the end of its response.",
        read: Read::Histogram(|s| &s.rq_time),
    },
];

const CLUSTER_FAMILIES: &[Family<ClusterStats>] = &[
    counter(
        "dmsc_cluster_upstream_requests_total",
        "Tries sent upstream, retries included.",
        |s| &s.rq_total,
    ),
    gauge(
        "dmsc_cluster_upstream_requests_active",
        "Upstream requests in flight.",
        |s| s.rq_active.get(),
    ),
    Family {
        name: "dmsc_cluster_upstream_responses_total",
        help: "Upstream responses by status class.",
        read: Read::Labelled("code_class", &CODE_CLASSES, |s, i| s.rq_by_class[i].get()),
    },
    counter(
        "dmsc_cluster_upstream_retries_total",
        "Retries sent.",
        |s| &s.rq_retry,
    ),
    counter(
        "dmsc_cluster_upstream_retry_overflow_total",
        "Retries refused by the retry budget or the max_retries threshold.",
        |s| &s.rq_retry_overflow,
    ),
    counter(
        "dmsc_cluster_upstream_timeouts_total",
        "Tries that timed out.",
        |s| &s.rq_timeout,
    ),
    counter(
        "dmsc_cluster_upstream_resets_total",
        "Tries whose connection closed before a whole response.",
        |s| &s.rq_reset,
    ),
    counter(
        "dmsc_cluster_upstream_pending_overflow_total",
        "Requests refused by the cluster's max_requests / max_pending_requests thresholds.",
        |s| &s.rq_pending_overflow,
    ),
    counter(
        "dmsc_cluster_bulkhead_rejected_total",
        "Requests refused by the bulkhead.",
        |s| &s.bulkhead_rejected,
    ),
    counter(
        "dmsc_cluster_no_healthy_host_total",
        "Requests refused because no host was healthy or every breaker was open.",
        |s| &s.no_healthy_host,
    ),
    counter(
        "dmsc_cluster_fallback_total",
        "Requests answered by the route's fallback.",
        |s| &s.fallback,
    ),
    counter(
        "dmsc_cluster_mirror_requests_total",
        "Requests copied to this cluster.",
        |s| &s.mirror_total,
    ),
    counter(
        "dmsc_cluster_upstream_connections_total",
        "Upstream connections opened.",
        |s| &s.cx_total,
    ),
    gauge(
        "dmsc_cluster_upstream_connections_active",
        "Upstream connections open.",
        |s| s.cx_active.get(),
    ),
    counter(
        "dmsc_cluster_upstream_connect_failures_total",
        "Upstream connect failures (refused, timed out).",
        |s| &s.cx_connect_fail,
    ),
    counter(
        "dmsc_cluster_upstream_connections_reused_total",
        "Requests sent on a pooled upstream connection.",
        |s| &s.cx_reused,
    ),
    counter(
        "dmsc_cluster_outlier_ejections_total",
        "Hosts ejected by outlier detection.",
        |s| &s.outlier_ejections,
    ),
    Family {
        name: "dmsc_cluster_upstream_request_duration_seconds",
        help: "Upstream response time, to the end of the response.",
        read: Read::Histogram(|s| &s.rq_time),
    },
];

/// Appends `value` as a quoted Prometheus label value.
fn write_label_value(out: &mut String, value: &str) {
    out.push('"');
    for ch in value.chars() {
        match ch {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' => out.push_str("\\\""),
            _ => out.push(ch),
        }
    }
    out.push('"');
}

/// Appends `name{label="owner"` (no closing brace).
fn open_sample(out: &mut String, name: &str, suffix: &str, label: &str, owner: &str) {
    out.push_str(name);
    out.push_str(suffix);
    out.push('{');
    out.push_str(label);
    out.push('=');
    write_label_value(out, owner);
}

fn render_families<S>(
    families: &[Family<S>],
    label: &str,
    owners: &[(&str, &S)],
    out: &mut String,
) {
    if owners.is_empty() {
        return;
    }
    for family in families {
        let kind = match family.read {
            Read::Counter(_) | Read::Labelled(..) => "counter",
            Read::Gauge(_) => "gauge",
            Read::Histogram(_) => "histogram",
        };
        write_header(out, family.name, family.help, kind);
        for &(owner, stats) in owners {
            match &family.read {
                Read::Counter(f) => {
                    open_sample(out, family.name, "", label, owner);
                    let _ = writeln!(out, "}} {}", f(stats).get());
                }
                Read::Gauge(f) => {
                    open_sample(out, family.name, "", label, owner);
                    let _ = writeln!(out, "}} {}", f(stats));
                }
                Read::Labelled(extra, values, f) => {
                    for (i, value) in values.iter().enumerate() {
                        open_sample(out, family.name, "", label, owner);
                        let _ = writeln!(out, ",{extra}=\"{value}\"}} {}", f(stats, i));
                    }
                }
                Read::Histogram(f) => render_histogram(out, family.name, label, owner, f(stats)),
            }
        }
    }
}

fn render_histogram(out: &mut String, name: &str, label: &str, owner: &str, histogram: &Histogram) {
    // One snapshot, so the buckets, the sum and the count agree with each other.
    let snapshot = histogram.snapshot();
    for (le, count) in snapshot.exposition_buckets() {
        open_sample(out, name, "_bucket", label, owner);
        out.push_str(",le=\"");
        write_float(out, le);
        let _ = writeln!(out, "\"}} {count}");
    }
    open_sample(out, name, "_bucket", label, owner);
    let _ = writeln!(out, ",le=\"+Inf\"}} {}", snapshot.count());
    open_sample(out, name, "_sum", label, owner);
    out.push_str("} ");
    write_float(out, snapshot.sum());
    out.push('\n');
    open_sample(out, name, "_count", label, owner);
    let _ = writeln!(out, "}} {}", snapshot.count());
}

/// Appends one unlabelled gauge (`name value`).
pub fn write_gauge(out: &mut String, name: &str, help: &str, value: u64) {
    write_header(out, name, help, "gauge");
    let _ = writeln!(out, "{name} {value}");
}

/// Appends a gauge family with one sample per cluster (`name{cluster="..."} value`);
/// nothing at all without clusters.
pub fn write_cluster_gauge(out: &mut String, name: &str, help: &str, values: &[(&str, usize)]) {
    if values.is_empty() {
        return;
    }
    write_header(out, name, help, "gauge");
    for (cluster, value) in values {
        open_sample(out, name, "", "cluster", cluster);
        let _ = writeln!(out, "}} {value}");
    }
}

/// Appends the Prometheus text exposition of these listeners and clusters to `out`
/// (`dmsc_listener_*{listener="..."}`, `dmsc_cluster_*{cluster="..."}`).
pub fn render_prometheus(
    listeners: &[(&str, &ListenerStats)],
    clusters: &[(&str, &ClusterStats)],
    out: &mut String,
) {
    render_families(LISTENER_FAMILIES, "listener", listeners, out);
    render_families(CLUSTER_FAMILIES, "cluster", clusters, out);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_count_by_class_and_odd_codes_are_ignored() {
        let stats = ListenerStats::new();
        for status in [100, 200, 204, 302, 404, 499, 500, 503, 599, 0, 99, 600, 999] {
            stats.record_status(status);
        }
        let counts: Vec<u64> = stats.rq_by_class.iter().map(Counter::get).collect();
        assert_eq!(counts, [1, 2, 1, 2, 3]);
    }

    #[test]
    fn cluster_responses_feed_the_histogram() {
        let stats = ClusterStats::new();
        stats.record_response(200, Duration::from_micros(500));
        stats.record_response(503, Duration::from_secs(2));
        stats.record_response(200, Duration::from_secs(3600));
        assert_eq!(stats.rq_by_class[1].get(), 2);
        assert_eq!(stats.rq_by_class[4].get(), 1);
        assert_eq!(stats.rq_time.count(), 3);
        assert!((stats.rq_time.sum() - 3602.0005).abs() < 1e-9);
    }

    #[test]
    fn latency_bounds_cover_ten_microseconds_to_a_minute() {
        let bounds = latency_spec().exposition_bounds();
        assert_eq!(bounds.len(), LATENCY_BOUNDS.len());
        for (exposed, wanted) in bounds.iter().zip(LATENCY_BOUNDS) {
            // Moved up to a fine boundary by at most twice the relative error.
            assert!(
                *exposed >= wanted && *exposed <= wanted * 1.02,
                "{exposed} for {wanted}"
            );
        }
    }

    fn sample<'a>(text: &'a str, line_start: &str) -> Option<&'a str> {
        text.lines()
            .find_map(|line| line.strip_prefix(line_start)?.strip_prefix(' '))
    }

    #[test]
    fn exposition_has_each_family_once_with_escaped_labels() {
        let web = ListenerStats::new();
        web.rq_total.inc_by(7);
        web.cx_active.inc();
        web.record_status(201);
        web.rq_time.observe(0.003).unwrap();
        let odd = ListenerStats::new();
        let api = ClusterStats::new();
        api.rq_retry.inc();
        api.record_response(500, Duration::from_millis(20));
        let mut out = String::new();
        render_prometheus(
            &[("web", &web), ("a\"b\\c\nd", &odd)],
            &[("api", &api)],
            &mut out,
        );
        for family in LISTENER_FAMILIES
            .iter()
            .map(|f| f.name)
            .chain(CLUSTER_FAMILIES.iter().map(|f| f.name))
        {
            let help = format!("# HELP {family} ");
            let kind = format!("# TYPE {family} ");
            assert_eq!(out.matches(&help).count(), 1, "{family}");
            assert_eq!(
                out.lines().filter(|l| l.starts_with(&kind)).count(),
                1,
                "{family}"
            );
        }
        assert_eq!(
            sample(&out, "dmsc_listener_requests_total{listener=\"web\"}"),
            Some("7")
        );
        assert_eq!(
            sample(&out, "dmsc_listener_connections_active{listener=\"web\"}"),
            Some("1")
        );
        assert_eq!(
            sample(
                &out,
                "dmsc_listener_responses_total{listener=\"web\",code_class=\"2xx\"}"
            ),
            Some("1")
        );
        assert_eq!(
            sample(
                &out,
                "dmsc_listener_requests_total{listener=\"a\\\"b\\\\c\\nd\"}"
            ),
            Some("0")
        );
        assert_eq!(
            sample(&out, "dmsc_cluster_upstream_retries_total{cluster=\"api\"}"),
            Some("1")
        );
        assert_eq!(
            sample(
                &out,
                "dmsc_cluster_upstream_responses_total{cluster=\"api\",code_class=\"5xx\"}"
            ),
            Some("1")
        );
        assert_eq!(
            sample(
                &out,
                "dmsc_cluster_upstream_request_duration_seconds_count{cluster=\"api\"}"
            ),
            Some("1")
        );
        assert_eq!(
            sample(
                &out,
                "dmsc_cluster_upstream_request_duration_seconds_bucket{cluster=\"api\",le=\"+Inf\"}"
            ),
            Some("1")
        );
        assert_eq!(
            sample(
                &out,
                "dmsc_listener_request_duration_seconds_bucket{listener=\"web\",le=\"1.0\"}"
            ),
            Some("1")
        );
        // Buckets are cumulative.
        let mut last = 0;
        for line in out.lines().filter(|l| {
            l.starts_with("dmsc_listener_request_duration_seconds_bucket{listener=\"web\"")
        }) {
            let count: u64 = line
                .rsplit(' ')
                .next()
                .and_then(|v| v.parse().ok())
                .unwrap();
            assert!(count >= last, "{line}");
            last = count;
        }
        assert_eq!(last, 1);
    }

    #[test]
    fn nothing_is_written_without_owners() {
        let mut out = String::new();
        render_prometheus(&[], &[], &mut out);
        assert!(out.is_empty());
    }
}
