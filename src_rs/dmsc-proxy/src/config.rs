//! The sidecar's configuration document (JSON; the Python layer turns YAML into it).
//!
//! Field names and defaults follow Envoy's where Envoy has the concept, so a
//! user reading Envoy's docs finds the same knob here. Every struct refuses
//! unknown fields; [`Config::from_json`] parses and [`Config::validate`]
//! checks cross-references and ranges, both answering a [`ConfigError`] that
//! names the field.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};

use crate::error::ConfigError;

pub(crate) mod validate;

pub(crate) use validate::compile_regex;

/// The whole document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Worker threads of the data plane (default 1: one core, like `haproxy nbthread 1`).
    pub workers: usize,
    /// Listeners, each HTTP or TCP.
    pub listeners: Vec<Listener>,
    /// Upstream clusters, referenced by name from routes and TCP listeners.
    pub clusters: Vec<Cluster>,
    /// Add `Via`, `X-Forwarded-For`, `X-Request-Id` and a W3C `traceparent` child span.
    pub tracing: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            workers: 1,
            listeners: Vec::new(),
            clusters: Vec::new(),
            tracing: true,
        }
    }
}

/// What a listener speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// HTTP/1.1 with routing.
    #[default]
    Http,
    /// Bytes moved both ways to one cluster (L4).
    Tcp,
}

/// One listening socket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Listener {
    /// Unique name (metrics label).
    pub name: String,
    /// `HOST:PORT` to bind; port 0 picks a free port.
    pub listen: String,
    /// `http` (default) or `tcp`.
    pub protocol: Protocol,
    /// HTTP: virtual hosts, matched on the Host header in order (`*` matches any).
    pub virtual_hosts: Vec<VirtualHost>,
    /// TCP: the cluster connections go to.
    pub cluster: Option<String>,
    /// Limits and timeouts of the downstream side.
    pub limits: DownstreamLimits,
}

/// Downstream (client side) limits of a listener.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DownstreamLimits {
    /// Longest request line in bytes; longer gets 400 and a closed connection.
    pub max_request_line_bytes: usize,
    /// Most bytes of a request or response head (start line + headers).
    pub max_header_bytes: usize,
    /// Most header fields in one head.
    pub max_headers: usize,
    /// Time allowed to receive a whole request head, from its first byte (slowloris).
    pub header_timeout_ms: u64,
    /// Idle keep-alive connection lifetime between requests.
    pub idle_timeout_ms: u64,
    /// Most concurrent downstream connections (0: no limit).
    pub max_connections: usize,
    /// Request bodies up to this size are kept so a retry can replay them.
    pub retry_buffer_bytes: usize,
    /// Buffer whole upstream responses up to this size before answering (0: stream).
    pub response_buffer_bytes: usize,
}

impl Default for DownstreamLimits {
    fn default() -> Self {
        Self {
            max_request_line_bytes: 8192,
            max_header_bytes: 65536,
            max_headers: 100,
            header_timeout_ms: 10_000,
            idle_timeout_ms: 60_000,
            max_connections: 0,
            retry_buffer_bytes: 65536,
            response_buffer_bytes: 0,
        }
    }
}

/// A set of routes for some Host names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct VirtualHost {
    /// Name (metrics label).
    pub name: String,
    /// Host names, without port: exact, `*.suffix`, `prefix.*` or `*`.
    pub domains: Vec<String>,
    /// Routes in order; the first match wins.
    pub routes: Vec<Route>,
}

/// One route: a match and what to do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Route {
    /// Name (metrics label; defaults to `<vhost>/<index>`).
    pub name: Option<String>,
    /// What requests this route takes (empty: all).
    #[serde(rename = "match")]
    pub matcher: RouteMatch,
    /// One upstream cluster (shorthand for `clusters: [{name, weight: 1}]`).
    pub cluster: Option<String>,
    /// Weighted split between clusters (canary, blue-green).
    pub clusters: Vec<WeightedCluster>,
    /// Answer directly, without an upstream.
    pub direct_response: Option<DirectResponse>,
    /// Copy a fraction of requests to a shadow cluster, ignoring its answers.
    pub mirror: Option<Mirror>,
    /// Edits of the request sent upstream.
    pub request_headers: HeaderRewrite,
    /// Edits of the response sent downstream.
    pub response_headers: HeaderRewrite,
    /// Rewrite the path prefix matched by `match.path.prefix` to this.
    pub prefix_rewrite: Option<String>,
    /// Rewrite the Host header sent upstream.
    pub host_rewrite: Option<String>,
    /// Injected faults (testing resilience).
    pub fault: Option<Fault>,
    /// Whole-request timeout covering every retry (0: none). Default 15 s as in Envoy.
    pub timeout_ms: Option<u64>,
    /// Retry policy (default: retry once on connect failure).
    pub retry: Option<RetryPolicy>,
    /// Rate limits checked before the request goes upstream.
    pub rate_limits: Vec<RateLimit>,
    /// What to answer when the cluster cannot serve (breaker open, no healthy host,
    /// bulkhead full, all retries failed).
    pub fallback: Option<Fallback>,
}

/// Request match; every given condition must hold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct RouteMatch {
    /// Path condition (on the path without the query).
    pub path: Option<PathMatch>,
    /// Methods, any of (empty: any method).
    pub methods: Vec<String>,
    /// Header conditions.
    pub headers: Vec<ValueMatch>,
    /// Cookie conditions (from the Cookie header).
    pub cookies: Vec<ValueMatch>,
    /// Query parameter conditions (percent-decoded values).
    pub query: Vec<ValueMatch>,
}

/// Exactly one of the three.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct PathMatch {
    /// Equal to.
    pub exact: Option<String>,
    /// Starts with.
    pub prefix: Option<String>,
    /// Whole path matches this regular expression (RE2 syntax of the `regex` crate).
    pub regex: Option<String>,
    /// Compare case-insensitively (exact and prefix).
    pub ignore_case: bool,
}

/// A named value condition: at most one of `exact`, `prefix`, `regex`, `present`.
/// `invert` negates the result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct ValueMatch {
    /// Header, cookie or query parameter name (headers: case-insensitive).
    pub name: String,
    /// Equal to.
    pub exact: Option<String>,
    /// Starts with.
    pub prefix: Option<String>,
    /// Whole value matches.
    pub regex: Option<String>,
    /// Present (true) or absent (false).
    pub present: Option<bool>,
    /// Negate.
    pub invert: bool,
}

/// One cluster of a weighted split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WeightedCluster {
    /// Cluster name.
    pub name: String,
    /// Relative weight (default 1; 0 takes no traffic: blue-green switch by config).
    pub weight: u32,
}

impl Default for WeightedCluster {
    fn default() -> Self {
        Self {
            name: String::new(),
            weight: 1,
        }
    }
}

/// A response made by the proxy itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DirectResponse {
    /// Status code, 200..=599 (default 200).
    pub status: u16,
    /// Body.
    pub body: String,
    /// Extra response headers.
    pub headers: BTreeMap<String, String>,
}

impl Default for DirectResponse {
    fn default() -> Self {
        Self {
            status: 200,
            body: String::new(),
            headers: BTreeMap::new(),
        }
    }
}

/// Request mirroring.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Mirror {
    /// Shadow cluster.
    pub cluster: String,
    /// Fraction of requests copied, 0.0..=1.0 (default 1.0: every request, as in Envoy).
    pub fraction: f64,
}

impl Default for Mirror {
    fn default() -> Self {
        Self {
            cluster: String::new(),
            fraction: 1.0,
        }
    }
}

/// Header edits. Names are case-insensitive; `set` replaces, `add` appends,
/// `remove` drops every field of that name. Applied remove, then set, then add.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct HeaderRewrite {
    /// Replace (or add) these fields.
    pub set: BTreeMap<String, String>,
    /// Append these fields.
    pub add: BTreeMap<String, String>,
    /// Drop these fields.
    pub remove: Vec<String>,
}

/// Fault injection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Fault {
    /// Delay some requests before they go upstream.
    pub delay: Option<FaultDelay>,
    /// Answer some requests with an error instead of sending them upstream.
    pub abort: Option<FaultAbort>,
}

/// Injected delay.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FaultDelay {
    /// How long.
    pub delay_ms: u64,
    /// Percentage of requests, 0..=100 (default 100).
    pub percent: f64,
}

impl Default for FaultDelay {
    fn default() -> Self {
        Self {
            delay_ms: 0,
            percent: 100.0,
        }
    }
}

/// Injected abort.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FaultAbort {
    /// Status code answered, 200..=599 (default 503).
    pub status: u16,
    /// Percentage of requests, 0..=100 (default 100).
    pub percent: f64,
}

impl Default for FaultAbort {
    fn default() -> Self {
        Self {
            status: 503,
            percent: 100.0,
        }
    }
}

/// Retry policy of a route (Envoy's `retry_policy`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryPolicy {
    /// Conditions: `5xx`, `gateway-error` (502/503/504), `connect-failure`, `reset`,
    /// `retriable-status-codes`.
    pub retry_on: Vec<String>,
    /// Extra status codes for `retriable-status-codes`.
    pub retriable_status_codes: Vec<u16>,
    /// Most retries after the first try.
    pub num_retries: u32,
    /// Timeout of each try (0: only the route timeout).
    pub per_try_timeout_ms: u64,
    /// Backoff between tries.
    pub backoff: Backoff,
    /// Also retry non-idempotent methods (POST, PATCH) on 5xx and reset. Connect
    /// failures are always safe to retry.
    pub retry_non_idempotent: bool,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            retry_on: vec!["connect-failure".to_owned()],
            retriable_status_codes: Vec::new(),
            num_retries: 1,
            per_try_timeout_ms: 0,
            backoff: Backoff::default(),
            retry_non_idempotent: false,
        }
    }
}

/// How long to wait before retry `n`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum BackoffStrategy {
    /// Always `base_ms`.
    Fixed,
    /// `min(max_ms, base_ms * 2^(n-1))`.
    Exponential,
    /// Uniform in `[0, min(max_ms, base_ms * 2^(n-1))]` (AWS "full jitter"; Envoy's default).
    #[default]
    FullJitter,
}

/// Backoff settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "BackoffSpec")]
pub struct Backoff {
    /// Strategy.
    pub strategy: BackoffStrategy,
    /// Base interval.
    pub base_ms: u64,
    /// Cap (default 10x base).
    pub max_ms: u64,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            strategy: BackoffStrategy::FullJitter,
            base_ms: 25,
            max_ms: 250,
        }
    }
}

/// Backoff as written: `max_ms` left out means ten times `base_ms`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct BackoffSpec {
    strategy: BackoffStrategy,
    base_ms: u64,
    max_ms: Option<u64>,
}

impl Default for BackoffSpec {
    fn default() -> Self {
        let d = Backoff::default();
        Self {
            strategy: d.strategy,
            base_ms: d.base_ms,
            max_ms: None,
        }
    }
}

impl From<BackoffSpec> for Backoff {
    fn from(spec: BackoffSpec) -> Self {
        let max_ms = spec
            .max_ms
            .unwrap_or_else(|| spec.base_ms.saturating_mul(10));
        Self {
            strategy: spec.strategy,
            base_ms: spec.base_ms,
            max_ms,
        }
    }
}

/// Rate limit algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum RateLimitAlgorithm {
    /// Token bucket: `requests` per `per_seconds` with bursts up to `burst`.
    #[default]
    TokenBucket,
    /// Sliding window counter: at most `requests` in any `per_seconds` window.
    SlidingWindow,
}

/// What a rate limit counts by.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum RateLimitKey {
    /// One budget for the whole route (the service).
    #[default]
    Service,
    /// One budget per upstream instance (checked after the host is picked).
    Instance,
    /// One budget per client IP address.
    ClientIp,
    /// One budget per value of this request header (e.g. an API key).
    Header(String),
}

/// A rate limit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimit {
    /// Algorithm.
    pub algorithm: RateLimitAlgorithm,
    /// Requests allowed per `per_seconds`.
    pub requests: u64,
    /// Window or refill period.
    pub per_seconds: f64,
    /// Token bucket capacity (default `requests`).
    pub burst: Option<u64>,
    /// Counting key.
    pub key: RateLimitKey,
    /// Most distinct keys tracked; the least recently used are forgotten.
    pub max_keys: usize,
}

impl Default for RateLimit {
    fn default() -> Self {
        Self {
            algorithm: RateLimitAlgorithm::TokenBucket,
            requests: 100,
            per_seconds: 1.0,
            burst: None,
            key: RateLimitKey::Service,
            max_keys: 10_000,
        }
    }
}

/// What a route answers when its cluster cannot serve.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Fallback {
    /// Send the request to this cluster instead.
    pub cluster: Option<String>,
    /// Or answer this.
    pub response: Option<DirectResponse>,
}

/// Load balancing algorithm of a cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum LbPolicy {
    /// Power of two choices by active requests (weighted when weights differ).
    #[default]
    LeastRequest,
    /// Round robin.
    RoundRobin,
    /// Weighted round robin (EDF).
    WeightedRoundRobin,
    /// Uniform random (weighted when weights differ).
    Random,
    /// Consistent hashing on a ring (Ketama-style, Envoy's ring hash).
    RingHash,
    /// Maglev consistent hashing.
    Maglev,
    /// Peak EWMA of latency (Linkerd / Finagle).
    PeakEwma,
}

/// One source of the consistent-hash key; the first that yields a value wins.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HashPolicy {
    /// A request header's value.
    Header(String),
    /// A cookie's value.
    Cookie(String),
    /// The client's IP address.
    SourceIp(bool),
}

/// An endpoint given statically: `"HOST:PORT"` or `{address: "HOST:PORT", weight: 3}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum StaticEndpoint {
    /// `HOST:PORT`.
    Address(String),
    /// With a weight.
    Weighted {
        /// `HOST:PORT`.
        address: String,
        /// Relative weight (default 1).
        weight: u32,
    },
}

impl StaticEndpoint {
    /// The `HOST:PORT` text.
    pub fn address(&self) -> &str {
        match self {
            Self::Address(address) | Self::Weighted { address, .. } => address,
        }
    }

    /// The weight (1 when not given).
    pub fn weight(&self) -> u32 {
        match self {
            Self::Address(_) => 1,
            Self::Weighted { weight, .. } => *weight,
        }
    }
}

/// The map form of [`StaticEndpoint`], strict about its fields (an untagged
/// derive would ignore a misspelt `weight`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WeightedEndpointSpec {
    address: String,
    #[serde(default = "one")]
    weight: u32,
}

fn one() -> u32 {
    1
}

impl<'de> Deserialize<'de> for StaticEndpoint {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct EndpointVisitor;

        impl<'de> Visitor<'de> for EndpointVisitor {
            type Value = StaticEndpoint;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("\"HOST:PORT\" or {address: \"HOST:PORT\", weight: N}")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(StaticEndpoint::Address(v.to_owned()))
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                let spec =
                    WeightedEndpointSpec::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(StaticEndpoint::Weighted {
                    address: spec.address,
                    weight: spec.weight,
                })
            }
        }

        deserializer.deserialize_any(EndpointVisitor)
    }
}

/// Connection pool of each upstream host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PoolConfig {
    /// Idle connections kept per host.
    pub max_idle_per_host: usize,
    /// Idle connections are closed after this long.
    pub idle_timeout_ms: u64,
    /// Requests sent on one connection before it is retired (0: no limit).
    pub max_requests_per_connection: u64,
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            max_idle_per_host: 64,
            idle_timeout_ms: 60_000,
            max_requests_per_connection: 0,
        }
    }
}

/// Envoy's cluster circuit-breaker thresholds (concurrency limits of the cluster).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Thresholds {
    /// Upstream connections open at once.
    pub max_connections: u64,
    /// Requests waiting for a connection.
    pub max_pending_requests: u64,
    /// Requests in flight.
    pub max_requests: u64,
    /// Retries in flight.
    pub max_retries: u64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            max_pending_requests: 1024,
            max_requests: 1024,
            max_retries: 3,
        }
    }
}

/// Per-host failure-rate circuit breaker (dmsc-core's `CircuitBreaker`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HostBreaker {
    /// Failure rate that opens the breaker, 0 < x <= 1.
    pub failure_rate: f64,
    /// Outcomes in the sliding window.
    pub window: u32,
    /// Outcomes needed before the rate is judged.
    pub minimum_requests: u32,
    /// Time open before trial requests.
    pub open_ms: u64,
    /// Trial requests in half-open state.
    pub half_open_requests: u32,
}

impl Default for HostBreaker {
    fn default() -> Self {
        Self {
            failure_rate: 0.5,
            window: 100,
            minimum_requests: 20,
            open_ms: 5000,
            half_open_requests: 3,
        }
    }
}

/// Bulkhead: concurrency cap with a bounded wait queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Bulkhead {
    /// Requests in flight at once.
    pub max_concurrent: usize,
    /// Requests allowed to wait for a slot; more get 503.
    pub max_queue: usize,
    /// Longest wait in the queue before 503.
    pub queue_timeout_ms: u64,
}

impl Default for Bulkhead {
    fn default() -> Self {
        Self {
            max_concurrent: 100,
            max_queue: 100,
            queue_timeout_ms: 1000,
        }
    }
}

/// Passive health: Envoy's outlier detection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutlierDetection {
    /// Consecutive 5xx that eject a host (0: off).
    pub consecutive_5xx: u32,
    /// Consecutive gateway errors (502/503/504, connect failure, reset) that eject (0: off).
    pub consecutive_gateway_failure: u32,
    /// Success-rate evaluation interval.
    pub interval_ms: u64,
    /// Ejection time is this times the number of ejections of the host.
    pub base_ejection_time_ms: u64,
    /// Cap of the ejection time.
    pub max_ejection_time_ms: u64,
    /// Most hosts ejected at once, percent of the cluster (at least one host always stays).
    pub max_ejection_percent: u32,
    /// Success rate: hosts with at least this many requests in an interval are judged.
    pub success_rate_request_volume: u32,
    /// Success rate: judged only when this many hosts have enough volume (0: off).
    pub success_rate_minimum_hosts: u32,
    /// Success rate: eject below mean - stdev * factor / 1000.
    pub success_rate_stdev_factor: u32,
}

impl Default for OutlierDetection {
    fn default() -> Self {
        Self {
            consecutive_5xx: 5,
            consecutive_gateway_failure: 0,
            interval_ms: 10_000,
            base_ejection_time_ms: 30_000,
            max_ejection_time_ms: 300_000,
            max_ejection_percent: 10,
            success_rate_request_volume: 100,
            success_rate_minimum_hosts: 5,
            success_rate_stdev_factor: 1900,
        }
    }
}

/// Retry budget (Envoy's `retry_budget`, Linkerd's retry budget): retries in
/// flight may be at most `budget_percent` of active requests, but always at
/// least `min_retry_concurrency`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryBudget {
    /// Percent of active requests.
    pub budget_percent: f64,
    /// Floor.
    pub min_retry_concurrency: u32,
}

impl Default for RetryBudget {
    fn default() -> Self {
        Self {
            budget_percent: 20.0,
            min_retry_concurrency: 3,
        }
    }
}

/// An upstream cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Cluster {
    /// Unique name.
    pub name: String,
    /// Discover endpoints of this service from the controller (the Python layer
    /// watches and calls `set_endpoints`); empty: static endpoints only.
    pub service: Option<String>,
    /// With `service`: only instances of this version.
    pub version: Option<String>,
    /// Static endpoints.
    pub endpoints: Vec<StaticEndpoint>,
    /// Load balancing.
    pub lb: LbPolicy,
    /// Consistent-hash key sources (ring_hash, maglev).
    pub hash_policy: Vec<HashPolicy>,
    /// Upstream connect timeout.
    pub connect_timeout_ms: u64,
    /// Connection pooling.
    pub pool: PoolConfig,
    /// Cluster-wide concurrency thresholds.
    pub circuit_breakers: Thresholds,
    /// Per-host failure-rate breaker (None: off).
    pub host_breaker: Option<HostBreaker>,
    /// Bulkhead (None: off).
    pub bulkhead: Option<Bulkhead>,
    /// Outlier detection (None: off).
    pub outlier_detection: Option<OutlierDetection>,
    /// Below this percentage of available hosts, balance over all hosts (Envoy's panic mode).
    pub healthy_panic_threshold: f64,
    /// Retry budget.
    pub retry_budget: RetryBudget,
}

impl Default for Cluster {
    fn default() -> Self {
        Self {
            name: String::new(),
            service: None,
            version: None,
            endpoints: Vec::new(),
            lb: LbPolicy::default(),
            hash_policy: Vec::new(),
            connect_timeout_ms: 1000,
            pool: PoolConfig::default(),
            circuit_breakers: Thresholds::default(),
            host_breaker: None,
            bulkhead: None,
            outlier_detection: None,
            healthy_panic_threshold: 50.0,
            retry_budget: RetryBudget::default(),
        }
    }
}

impl Config {
    /// Parses a JSON document and validates it. Unknown fields and wrong types
    /// name their path (`clusters[1].lb: unknown variant ...`).
    pub fn from_json(text: &str) -> Result<Self, ConfigError> {
        // Serde would also read a struct from an array of its fields; the document is an object.
        if !text.trim_start().starts_with('{') {
            return Err(ConfigError::new("", "the document must be a JSON object"));
        }
        let mut de = serde_json::Deserializer::from_str(text);
        let config: Self = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let path = e.path().to_string();
            // The root prints as ".": an error about the document as a whole.
            let path = if path == "." { String::new() } else { path };
            ConfigError::new(path, e.into_inner().to_string())
        })?;
        de.end().map_err(|e| ConfigError::new("", e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    /// Checks ranges and cross-references (cluster names, regexes, weights, addresses).
    pub fn validate(&self) -> Result<(), ConfigError> {
        validate::config(self)
    }

    /// The document as JSON (what [`Config::from_json`] reads back), for the admin API.
    pub fn to_json(&self) -> String {
        // Plain data with string keys: serialization cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}
