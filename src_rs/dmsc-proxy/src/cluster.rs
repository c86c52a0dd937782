//! Upstream clusters: hosts, load balancing, hash policies, passive health
//! (outlier detection), per-host breakers and the cluster's concurrency limits.
//!
//! Host state (active requests, EWMA, breaker, ejection, idle connections)
//! lives on [`Host`] so it survives endpoint updates and config reloads: the
//! engine keeps a cluster's `Arc<Cluster>` across reloads when its config is
//! unchanged, and `set_endpoints` keeps the `Arc<Host>` of addresses that stay.
//!
//! Picking reads one immutable "pick set" (the hosts that are healthy and not
//! ejected, with the balancer built over them) under a read lock; the set is
//! rebuilt only when it changes: endpoints replaced, health flipped, a host
//! ejected or returned.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use dmsc_core::breaker::{CircuitBreaker, CircuitBreakerConfig, ConcurrencyLimits, State};
use dmsc_core::clock::{Clock, Nanos};
use dmsc_core::hash::xxhash64;
use parking_lot::{Mutex, RwLock};
use serde_json::json;

use crate::config::{self, HashPolicy, LbPolicy};
use crate::error::ConfigError;
use crate::http1::{Head, RequestHead};
use crate::policy::{Bulkhead, RetryBudget};
use crate::pool::Pool;
use crate::stats::ClusterStats;

mod balance;
mod outlier;
mod settings;

use balance::{PickSet, PICK_ATTEMPTS};
use outlier::HostOutlier;
use settings::{host_breaker_config, static_endpoints};

/// Peak EWMA: time constant of the latency estimates, seconds (Linkerd's default).
const EWMA_DECAY_SECONDS: f64 = 10.0;
/// Peak EWMA: estimate of a host before its first response, seconds.
const EWMA_DEFAULT_RTT: f64 = 0.03;
/// Peak EWMA: a failure counts as this many times the slowest recent success.
const EWMA_FAILURE_PENALTY: f64 = 2.0;
/// Estimates never reach zero, so cost still grows with load.
const EWMA_MIN_ESTIMATE: f64 = 1e-9;

/// An endpoint as the controller (or static config) gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointSpec {
    /// Address.
    pub address: SocketAddr,
    /// Relative weight, >= 1.
    pub weight: u32,
    /// Active health from the controller (false: not picked unless in panic mode).
    pub healthy: bool,
}

/// Peak-EWMA latency of one host, stored as a level that does not change
/// between samples: `ln(estimate) + (now - origin) / decay`. Comparing two
/// hosts' levels compares their decayed estimates without reading the clock.
#[derive(Debug)]
struct Ewma {
    level: AtomicU64,
    /// `(estimate seconds, sample time)` of the last sample; serialises writers.
    last: Mutex<(f64, Nanos)>,
}

impl Ewma {
    fn new(now: Nanos, periods: f64) -> Self {
        Self {
            level: AtomicU64::new((EWMA_DEFAULT_RTT.ln() + periods).to_bits()),
            last: Mutex::new((EWMA_DEFAULT_RTT, now)),
        }
    }

    #[inline]
    fn level(&self) -> f64 {
        f64::from_bits(self.level.load(Ordering::Relaxed))
    }
}

/// One upstream host and everything known about it.
#[derive(Debug)]
pub struct Host {
    /// Address.
    pub address: SocketAddr,
    /// Idle connections to it.
    pub pool: Pool,
    /// `ip:port`, the key consistent hashing places the host by.
    key: Box<str>,
    weight: AtomicU32,
    healthy: AtomicBool,
    active: AtomicU64,
    breaker: Option<CircuitBreaker>,
    outlier: HostOutlier,
    ewma: Ewma,
}

impl Host {
    fn new(spec: &EndpointSpec, shared: &Shared) -> Self {
        // The breaker config was validated when the cluster was built.
        let breaker = shared
            .host_breaker
            .as_ref()
            .and_then(|config| CircuitBreaker::new(config.clone(), shared.clock.clone()).ok());
        let now = shared.clock.now();
        Self {
            address: spec.address,
            pool: Pool::new(&shared.pool),
            key: spec.address.to_string().into_boxed_str(),
            weight: AtomicU32::new(spec.weight.max(1)),
            healthy: AtomicBool::new(spec.healthy),
            active: AtomicU64::new(0),
            breaker,
            outlier: HostOutlier::default(),
            ewma: Ewma::new(now, shared.periods(now)),
        }
    }

    /// Current weight.
    pub fn weight(&self) -> u32 {
        self.weight.load(Ordering::Relaxed)
    }
    /// Requests in flight to this host.
    pub fn active_requests(&self) -> u64 {
        self.active.load(Ordering::Relaxed)
    }
    /// Whether outlier detection has it ejected now.
    pub fn is_ejected(&self) -> bool {
        self.outlier.is_ejected()
    }
    /// Active health as last reported.
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }
    /// State of the host's circuit breaker (None: no per-host breaker configured).
    pub fn breaker_state(&self) -> Option<State> {
        self.breaker.as_ref().map(CircuitBreaker::state)
    }
    /// Times outlier detection ejected this host (decays while it stays healthy).
    pub fn times_ejected(&self) -> u32 {
        self.outlier.times_ejected()
    }

    /// Healthy and not ejected: a member of the normal pick set.
    fn is_available(&self) -> bool {
        self.is_healthy() && !self.is_ejected()
    }

    /// Asks the host breaker for a try and takes the lease; None when the breaker refuses.
    #[inline]
    fn try_lease(self: &Arc<Self>, shared: &Arc<Shared>) -> Option<HostLease> {
        let trial = match &self.breaker {
            Some(breaker) => {
                // A try admitted outside CLOSED holds a half-open permit to give back.
                let trial = breaker.state() != State::Closed;
                if !breaker.allow() {
                    return None;
                }
                trial
            }
            None => false,
        };
        self.active.fetch_add(1, Ordering::Relaxed);
        Some(HostLease {
            host: Arc::clone(self),
            shared: Arc::clone(shared),
            trial,
            done: false,
        })
    }

    fn release(&self) {
        // Never below zero, whatever the order of finish and drop.
        let _ = self
            .active
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
    }

    /// The decayed latency estimate now, seconds.
    fn ewma_estimate(&self, shared: &Shared, now: Nanos) -> f64 {
        (self.ewma.level() - shared.periods(now)).exp()
    }
}

/// How a request to a host ended, for passive health, breakers and EWMA.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A response with this status arrived.
    Status(u16),
    /// Could not connect.
    ConnectFailure,
    /// Reset or closed before a whole response.
    Reset,
    /// Timed out.
    Timeout,
}

impl Outcome {
    /// A response below 500; anything else (5xx, no response) is a failure.
    pub fn is_success(self) -> bool {
        matches!(self, Outcome::Status(status) if status < 500)
    }
    /// Envoy's gateway failures: 502, 503, 504, or no response at all.
    pub fn is_gateway_failure(self) -> bool {
        match self {
            Outcome::Status(status) => matches!(status, 502..=504),
            Outcome::ConnectFailure | Outcome::Reset | Outcome::Timeout => true,
        }
    }
}

/// Why no host could be picked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PickError {
    /// The cluster has no endpoints at all.
    NoHosts,
    /// Every host is unhealthy, ejected or has its breaker open (and no panic mode).
    NoHealthyHost,
}

/// A host picked for one try; dropping it (or calling `finish`) ends the request's
/// accounting on the host (active requests, breaker half-open slot).
pub struct HostLease {
    /// The host.
    pub host: Arc<Host>,
    shared: Arc<Shared>,
    /// The host breaker admitted this try outside CLOSED (a half-open permit is held).
    trial: bool,
    done: bool,
}

impl HostLease {
    /// Reports how the try ended (outlier detection, host breaker, EWMA) and ends the
    /// lease. Of the cluster stats it counts only `outlier_ejections`: response,
    /// timeout, reset and connect-failure counters belong to the caller, which also
    /// sees tries that never got a lease.
    pub fn finish(mut self, outcome: Outcome, latency: Duration) {
        self.done = true;
        let host = &self.host;
        let shared = &self.shared;
        host.release();
        let success = outcome.is_success();
        let nanos = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        if let Some(breaker) = &host.breaker {
            breaker.record(success, nanos);
        }
        // Only peak_ewma reads the estimate: other balancers skip the clock read and lock.
        if shared.lb == LbPolicy::PeakEwma {
            shared.record_ewma(host, latency.as_secs_f64(), success);
        }
        if let Some(detection) = &shared.outlier {
            if host
                .outlier
                .record(detection, success, outcome.is_gateway_failure())
            {
                shared.eject_for_errors(host);
            }
        }
    }
}

impl fmt::Debug for HostLease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HostLease")
            .field("host", &self.host.address)
            .field("trial", &self.trial)
            .finish_non_exhaustive()
    }
}

impl Drop for HostLease {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        // A cancelled try is not a host failure: release the counts only.
        self.host.release();
        if self.trial {
            if let Some(breaker) = &self.host.breaker {
                breaker.release();
            }
        }
    }
}

/// State shared by a cluster and the leases of its hosts.
struct Shared {
    set: RwLock<Arc<PickSet>>,
    /// Serialises rebuilds of the pick set (and the ejection decisions feeding them).
    rebuild: Mutex<()>,
    lb: LbPolicy,
    panic_threshold: f64,
    outlier: Option<config::OutlierDetection>,
    host_breaker: Option<CircuitBreakerConfig>,
    pool: config::PoolConfig,
    clock: Clock,
    origin: Nanos,
    /// EWMA level of the slowest recent success over all hosts (failure penalty base).
    slowest: AtomicU64,
    stats: Arc<ClusterStats>,
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("lb", &self.lb)
            .field("hosts", &self.set.read().all.len())
            .finish_non_exhaustive()
    }
}

impl Shared {
    /// Decay periods elapsed at `now` since the cluster's origin.
    #[inline]
    fn periods(&self, now: Nanos) -> f64 {
        now.saturating_sub(self.origin) as f64 / (EWMA_DECAY_SECONDS * 1e9)
    }

    /// Peak EWMA update (Finagle/Linkerd), failures counted as a penalised latency.
    fn record_ewma(&self, host: &Host, latency: f64, success: bool) {
        if !latency.is_finite() || latency < 0.0 {
            return;
        }
        let mut last = host.ewma.last.lock();
        let now = self.clock.now().max(last.1);
        let periods = self.periods(now);
        let sample = if success {
            latency
        } else {
            let slowest = (f64::from_bits(self.slowest.load(Ordering::Relaxed)) - periods).exp();
            latency.max(EWMA_FAILURE_PENALTY * slowest)
        };
        let weight = (-((now - last.1) as f64) / (EWMA_DECAY_SECONDS * 1e9)).exp();
        let current = last.0 * weight;
        let estimate = if sample >= current {
            sample
        } else {
            current * weight + sample * (1.0 - weight)
        }
        .max(EWMA_MIN_ESTIMATE);
        *last = (estimate, now);
        host.ewma
            .level
            .store((estimate.ln() + periods).to_bits(), Ordering::Relaxed);
        drop(last);
        if success {
            let level = sample.max(EWMA_MIN_ESTIMATE).ln() + periods;
            let _ = self
                .slowest
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                    (level > f64::from_bits(bits)).then_some(level.to_bits())
                });
        }
    }

    fn current(&self) -> Arc<PickSet> {
        Arc::clone(&self.set.read())
    }

    /// Ejects `host` after consecutive errors, if the limits allow.
    fn eject_for_errors(&self, host: &Arc<Host>) {
        let Some(detection) = &self.outlier else {
            return;
        };
        let _guard = self.rebuild.lock();
        let set = self.current();
        // A host removed by discovery meanwhile is no longer ours to eject.
        if !set.all.iter().any(|h| Arc::ptr_eq(h, host)) {
            return;
        }
        let now = self.clock.now();
        if outlier::may_eject(&set.all, host, detection) {
            host.outlier.eject(detection, now);
            self.stats.outlier_ejections.inc();
            self.install(Arc::clone(&set.all));
        }
    }

    /// Returns every host whose ejection ended; rebuilds when one did.
    fn return_due(&self, now: Nanos) {
        let _guard = self.rebuild.lock();
        let set = self.current();
        if set.next_return > now {
            return;
        }
        if return_hosts(&set.all, now) {
            self.install(Arc::clone(&set.all));
        }
    }

    /// Builds and publishes the pick set over `all`. Callers hold `rebuild`.
    fn install(&self, all: Arc<[Arc<Host>]>) {
        let set = PickSet::new(all, self.lb, self.panic_threshold);
        *self.set.write() = Arc::new(set);
    }

    /// Periodic outlier detection: returns, success-rate ejection, counters reset.
    fn tick(&self) {
        let now = self.clock.now();
        let _guard = self.rebuild.lock();
        let set = self.current();
        let mut changed = return_hosts(&set.all, now);
        if let Some(detection) = &self.outlier {
            for host in outlier::success_rate_outliers(&set.all, detection) {
                // Re-check each time: every ejection moves the limits.
                if outlier::may_eject(&set.all, &host, detection) {
                    host.outlier.eject(detection, now);
                    self.stats.outlier_ejections.inc();
                    changed = true;
                }
            }
            for host in set.all.iter() {
                host.outlier.end_interval(detection, now);
            }
        }
        if changed {
            self.install(Arc::clone(&set.all));
        }
    }
}

/// Ends every ejection that is due and closes expired idle connections; true when a
/// host came back (the pick set must be rebuilt).
fn return_hosts(hosts: &[Arc<Host>], now: Nanos) -> bool {
    let mut changed = false;
    for host in hosts {
        changed |= host.outlier.return_if_due(now);
        host.pool.evict_expired();
    }
    changed
}

/// A cluster.
#[derive(Debug)]
pub struct Cluster {
    /// Name.
    pub name: Arc<str>,
    /// The config it was built from (the engine compares it on reload).
    pub config: config::Cluster,
    /// Envoy-style thresholds: connections, pending, requests, retries.
    pub limits: ConcurrencyLimits,
    /// Bulkhead, if configured.
    pub bulkhead: Option<Bulkhead>,
    /// Retry budget.
    pub retry_budget: RetryBudget,
    /// Counters and histograms of this cluster.
    pub stats: Arc<ClusterStats>,
    shared: Arc<Shared>,
}

impl Cluster {
    /// Builds a cluster with its static endpoints; `path` (`clusters[2]`) for errors.
    pub fn new(config: &config::Cluster, path: &str, clock: Clock) -> Result<Self, ConfigError> {
        config::validate::cluster_settings(config, path)?;
        let thresholds = &config.circuit_breakers;
        let limits = ConcurrencyLimits::new(
            thresholds.max_connections,
            thresholds.max_pending_requests,
            thresholds.max_requests,
            thresholds.max_retries,
        )
        .map_err(|err| {
            ConfigError::new(
                format!("{path}.circuit_breakers.{}", err.argument),
                err.reason,
            )
        })?;
        let host_breaker = match &config.host_breaker {
            Some(breaker) => Some(host_breaker_config(breaker, path)?),
            None => None,
        };
        let specs = static_endpoints(config, path)?;
        let stats = Arc::new(ClusterStats::new());
        let origin = clock.now();
        let shared = Arc::new(Shared {
            set: RwLock::new(Arc::new(PickSet::empty())),
            rebuild: Mutex::new(()),
            lb: config.lb,
            panic_threshold: config.healthy_panic_threshold,
            outlier: config.outlier_detection.clone(),
            host_breaker,
            pool: config.pool.clone(),
            slowest: AtomicU64::new(EWMA_DEFAULT_RTT.ln().to_bits()),
            clock,
            origin,
            stats: Arc::clone(&stats),
        });
        let cluster = Self {
            name: Arc::from(config.name.as_str()),
            config: config.clone(),
            limits,
            bulkhead: config.bulkhead.as_ref().map(Bulkhead::new),
            retry_budget: RetryBudget::new(&config.retry_budget),
            stats,
            shared,
        };
        cluster.set_endpoints(&specs);
        Ok(cluster)
    }

    /// Replaces the endpoints (from discovery), keeping the state of hosts that stay.
    ///
    /// A repeated address keeps its first entry; a weight of 0 counts as 1.
    pub fn set_endpoints(&self, endpoints: &[EndpointSpec]) {
        let shared = &self.shared;
        let _guard = shared.rebuild.lock();
        let old = shared.current();
        let mut hosts: Vec<Arc<Host>> = Vec::with_capacity(endpoints.len());
        for spec in endpoints {
            if hosts.iter().any(|h| h.address == spec.address) {
                continue;
            }
            let host = match old.all.iter().find(|h| h.address == spec.address) {
                Some(host) => {
                    host.weight.store(spec.weight.max(1), Ordering::Relaxed);
                    host.healthy.store(spec.healthy, Ordering::Relaxed);
                    Arc::clone(host)
                }
                None => Arc::new(Host::new(spec, shared)),
            };
            hosts.push(host);
        }
        for host in old.all.iter() {
            if !hosts.iter().any(|h| Arc::ptr_eq(h, host)) {
                host.pool.clear();
            }
        }
        // Outlier detection never leaves the cluster without a host: if discovery
        // removed every host that was not ejected, the first one due back returns now.
        if hosts.iter().all(|h| h.is_ejected()) {
            if let Some(first) = hosts.iter().min_by_key(|h| h.outlier.ejected_until()) {
                first.outlier.return_now(shared.clock.now());
            }
        }
        shared.install(Arc::from(hosts));
    }

    /// Every host, in endpoint order.
    pub fn hosts(&self) -> Vec<Arc<Host>> {
        self.shared.current().all.to_vec()
    }

    /// The consistent-hash key of a request from the hash policies (None: no policy
    /// yielded a value, or the LB does not hash).
    pub fn hash_key(&self, request: &RequestHead, client: IpAddr) -> Option<u64> {
        if !matches!(self.shared.lb, LbPolicy::RingHash | LbPolicy::Maglev) {
            return None;
        }
        self.config
            .hash_policy
            .iter()
            .find_map(|policy| match policy {
                HashPolicy::Header(name) => request.header(name).map(|value| xxhash64(value, 0)),
                HashPolicy::Cookie(name) => request
                    .cookie(name)
                    .map(|value| xxhash64(value.as_bytes(), 0)),
                HashPolicy::SourceIp(true) => Some(match client {
                    IpAddr::V4(ip) => xxhash64(&ip.octets(), 0),
                    IpAddr::V6(ip) => xxhash64(&ip.octets(), 0),
                }),
                HashPolicy::SourceIp(false) => None,
            })
    }

    /// Picks a host for a try. `avoid` are hosts already tried for this request
    /// (retries go elsewhere when another host is available).
    pub fn pick(&self, hash: Option<u64>, avoid: &[SocketAddr]) -> Result<HostLease, PickError> {
        let shared = &self.shared;
        let mut set = shared.set.read();
        if set.next_return != Nanos::MAX {
            // Lazy return of ejected hosts whose time is up (tick() may be late).
            let now = shared.clock.now();
            if now >= set.next_return {
                drop(set);
                shared.return_due(now);
                set = shared.set.read();
            }
        }
        let hosts = &set.chosen;
        if hosts.is_empty() {
            return Err(if set.all.is_empty() {
                PickError::NoHosts
            } else {
                PickError::NoHealthyHost
            });
        }
        let avoided = |host: &Host| !avoid.is_empty() && avoid.contains(&host.address);
        for attempt in 0..PICK_ATTEMPTS {
            let host = &hosts[set.choose(hash, attempt)];
            if avoided(host) {
                continue;
            }
            if let Some(lease) = host.try_lease(shared) {
                return Ok(lease);
            }
        }
        // The balancer kept landing on refused or avoided hosts: take any that will do,
        // preferring hosts not yet tried.
        let n = hosts.len();
        let start = fastrand::usize(..n);
        for prefer_untried in [true, false] {
            for k in 0..n {
                let host = &hosts[(start + k) % n];
                if avoided(host) == prefer_untried {
                    continue;
                }
                if let Some(lease) = host.try_lease(shared) {
                    return Ok(lease);
                }
            }
        }
        Err(PickError::NoHealthyHost)
    }

    /// Runs the periodic part of outlier detection (success-rate ejection, un-ejection);
    /// the engine calls it every `interval_ms`.
    pub fn tick(&self) {
        self.shared.tick();
    }

    /// JSON of the cluster's hosts and their state, for the admin API: one object per
    /// host with `address`, `weight`, `healthy`, `ejected`, `times_ejected`,
    /// `active_requests`, `breaker` (state, or null without a host breaker),
    /// `idle_connections` and `ewma_ms` (peak_ewma clusters; null otherwise).
    pub fn describe(&self) -> serde_json::Value {
        let shared = &self.shared;
        let now = shared.clock.now();
        let hosts: Vec<serde_json::Value> = shared
            .current()
            .all
            .iter()
            .map(|host| {
                json!({
                    "address": host.address.to_string(),
                    "weight": host.weight(),
                    "healthy": host.is_healthy(),
                    "ejected": host.is_ejected(),
                    "times_ejected": host.times_ejected(),
                    "active_requests": host.active_requests(),
                    "breaker": host.breaker_state().map(State::as_str),
                    "idle_connections": host.pool.idle(),
                    "ewma_ms": (shared.lb == LbPolicy::PeakEwma)
                        .then(|| host.ewma_estimate(shared, now) * 1e3),
                })
            })
            .collect();
        serde_json::Value::Array(hosts)
    }
}
