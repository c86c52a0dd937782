//! The service registry: instances by service, their health, and discovery.
//!
//! Reads dominate (every discovery), writes are rare (registration, health
//! flips), so each service keeps an immutable snapshot of its healthy
//! instances with the load balancer's tables prebuilt; discovery clones an
//! `Arc` of it and picks without taking any write lock.

pub mod balance;
pub mod dns;
pub mod endpoint;
pub mod health;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

pub use balance::{Algorithm, Balancer};
pub use dns::{parse_service_name, ServiceName};
pub use endpoint::Endpoint;
pub use health::{probe, Health, HealthCheckConfig, Streak};

use crate::breaker::{CircuitBreaker, CircuitBreakerConfig};
use crate::clock::{Clock, Nanos};
use crate::InvalidArgument;

/// One registered instance and its live state.
#[derive(Debug)]
pub struct Instance {
    /// What the instance registered.
    pub endpoint: Endpoint,
    health: AtomicU8,
    streak: Mutex<Streak>,
    active_requests: AtomicU64,
    breaker: RwLock<Option<Arc<CircuitBreaker>>>,
}

impl Instance {
    fn new(endpoint: Endpoint, health: Health, breaker: Option<CircuitBreaker>) -> Self {
        Self {
            endpoint,
            health: AtomicU8::new(health as u8),
            streak: Mutex::new(Streak::default()),
            active_requests: AtomicU64::new(0),
            breaker: RwLock::new(breaker.map(Arc::new)),
        }
    }

    /// The instance's circuit breaker, when circuit breaking is on.
    pub fn breaker(&self) -> Option<Arc<CircuitBreaker>> {
        self.breaker.read().clone()
    }

    /// Whether the breaker lets a call through (always, without a breaker). In HALF_OPEN a
    /// `true` takes one trial permit, which the call's recorded outcome gives back.
    pub fn allow(&self) -> bool {
        self.breaker.read().as_ref().is_none_or(|b| b.allow())
    }

    /// Feeds one call's outcome to the breaker.
    pub fn record_outcome(&self, success: bool, latency: Nanos) {
        if let Some(breaker) = self.breaker.read().as_ref() {
            breaker.record(success, latency);
        }
    }

    /// Current health.
    pub fn health(&self) -> Health {
        Health::from_u8(self.health.load(Ordering::Acquire))
    }

    /// Requests started and not yet finished on this instance.
    pub fn active_requests(&self) -> u64 {
        self.active_requests.load(Ordering::Relaxed)
    }

    /// Counts a request as in flight on this instance until the returned guard is dropped.
    pub fn begin_request(self: &Arc<Self>) -> InFlight {
        self.active_requests.fetch_add(1, Ordering::Relaxed);
        InFlight {
            instance: Arc::clone(self),
        }
    }

    fn same_address(&self, host: &str, port: u16) -> bool {
        self.endpoint.host == host && self.endpoint.port == port
    }
}

/// A request in flight on an instance; dropping it ends the request.
#[derive(Debug)]
pub struct InFlight {
    instance: Arc<Instance>,
}

impl InFlight {
    /// The instance the request runs on.
    pub fn instance(&self) -> &Arc<Instance> {
        &self.instance
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.instance
            .active_requests
            .fetch_sub(1, Ordering::Relaxed);
    }
}

/// Instances with the balancer built over them.
#[derive(Debug)]
pub struct Pool {
    /// The instances, in registration order.
    pub instances: Vec<Arc<Instance>>,
    balancer: Balancer,
}

impl Pool {
    fn new(instances: Vec<Arc<Instance>>, algorithm: Algorithm) -> Self {
        let balancer = Balancer::new(algorithm, &instances);
        Self {
            instances,
            balancer,
        }
    }

    /// Picks one instance whose breaker lets the call through; `hash_key` steers the
    /// consistent-hash algorithms. When the balancer's choice is refused by its breaker, the
    /// following instances are tried in order, so a key keeps a stable fallback.
    pub fn pick(&self, hash_key: Option<&[u8]>) -> Option<&Arc<Instance>> {
        let first = self.balancer.pick(&self.instances, hash_key)?;
        let n = self.instances.len();
        (0..n)
            .map(|offset| &self.instances[(first + offset) % n])
            .find(|instance| instance.allow())
    }
}

/// The healthy instances of one service, as a whole and by version.
#[derive(Debug)]
pub struct HealthySet {
    /// Every healthy instance.
    pub all: Pool,
    versions: HashMap<String, Pool>,
}

impl HealthySet {
    fn build(all: &[Arc<Instance>], algorithm: Algorithm) -> Self {
        let healthy: Vec<Arc<Instance>> = all
            .iter()
            .filter(|i| i.health() == Health::Healthy)
            .cloned()
            .collect();
        let mut by_version: HashMap<String, Vec<Arc<Instance>>> = HashMap::new();
        for instance in &healthy {
            by_version
                .entry(instance.endpoint.version.clone())
                .or_default()
                .push(Arc::clone(instance));
        }
        Self {
            all: Pool::new(healthy, algorithm),
            versions: by_version
                .into_iter()
                .map(|(version, instances)| (version, Pool::new(instances, algorithm)))
                .collect(),
        }
    }

    /// The healthy instances running `version`.
    pub fn version(&self, version: &str) -> Option<&Pool> {
        self.versions.get(version)
    }
}

#[derive(Debug)]
struct Service {
    instances: RwLock<Vec<Arc<Instance>>>,
    healthy: RwLock<Arc<HealthySet>>,
}

impl Service {
    fn new(algorithm: Algorithm) -> Self {
        Self {
            instances: RwLock::new(Vec::new()),
            healthy: RwLock::new(Arc::new(HealthySet::build(&[], algorithm))),
        }
    }

    fn rebuild(&self, instances: &[Arc<Instance>], algorithm: Algorithm) {
        *self.healthy.write() = Arc::new(HealthySet::build(instances, algorithm));
    }
}

/// How the registry treats instances: balancing and health.
#[derive(Debug, Clone, PartialEq)]
pub struct RegistryConfig {
    /// Load-balancing algorithm used by [`Registry::discover`].
    pub algorithm: Algorithm,
    /// Active health check settings.
    pub health: HealthCheckConfig,
    /// Per-instance circuit breaker settings; `None` turns circuit breaking off.
    pub breaker: Option<CircuitBreakerConfig>,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        Self {
            algorithm: Algorithm::RoundRobin,
            health: HealthCheckConfig::default(),
            breaker: None,
        }
    }
}

impl RegistryConfig {
    /// Checks every field; the error names the first bad one.
    pub fn validate(&self) -> Result<(), InvalidArgument> {
        self.health.validate()?;
        self.breaker
            .as_ref()
            .map_or(Ok(()), CircuitBreakerConfig::validate)
    }
}

/// Services and their instances. Thread-safe; share it behind an `Arc`.
#[derive(Debug, Default)]
pub struct Registry {
    services: RwLock<HashMap<String, Arc<Service>>>,
    config: RwLock<RegistryConfig>,
    clock: Clock,
    revision: AtomicU64,
}

/// The result of a registration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registered {
    /// A new instance was added.
    Added,
    /// An instance at the same address was updated in place.
    Updated,
}

impl Registry {
    /// An empty registry with `config`; breakers read time from `clock`.
    pub fn new(config: RegistryConfig, clock: Clock) -> Result<Self, InvalidArgument> {
        config.validate()?;
        Ok(Self {
            config: RwLock::new(config),
            clock,
            ..Self::default()
        })
    }

    /// The configuration in force.
    pub fn config(&self) -> RegistryConfig {
        self.config.read().clone()
    }

    fn new_breaker(&self, config: Option<&CircuitBreakerConfig>) -> Option<CircuitBreaker> {
        // The configuration was validated when it was set, so construction cannot fail.
        config.and_then(|c| CircuitBreaker::new(c.clone(), self.clock.clone()).ok())
    }

    /// Replaces the configuration atomically; registrations, health and in-flight counts are
    /// kept. Balancers are rebuilt when the algorithm changes; breakers start afresh when
    /// their settings change.
    pub fn reconfigure(&self, config: RegistryConfig) -> Result<(), InvalidArgument> {
        config.validate()?;
        let previous = std::mem::replace(&mut *self.config.write(), config.clone());
        let services: Vec<Arc<Service>> = self.services.read().values().cloned().collect();
        if previous.breaker != config.breaker {
            for service in &services {
                for instance in service.instances.read().iter() {
                    let breaker = self.new_breaker(config.breaker.as_ref()).map(Arc::new);
                    *instance.breaker.write() = breaker;
                }
            }
        }
        if previous.algorithm != config.algorithm {
            for service in &services {
                service.rebuild(&service.instances.read(), config.algorithm);
            }
        }
        self.bump();
        Ok(())
    }

    /// Increases on every change; watchers compare it to see whether anything moved.
    pub fn revision(&self) -> u64 {
        self.revision.load(Ordering::Acquire)
    }

    fn bump(&self) {
        self.revision.fetch_add(1, Ordering::AcqRel);
    }

    fn service(&self, name: &str) -> Option<Arc<Service>> {
        self.services.read().get(name).cloned()
    }

    /// Adds `endpoint` (validated) with initial `health`, or updates the instance at its address.
    pub fn register(
        &self,
        endpoint: Endpoint,
        health: Health,
    ) -> Result<Registered, InvalidArgument> {
        endpoint.validate()?;
        let config = self.config();
        let algorithm = config.algorithm;
        let service = self
            .services
            .write()
            .entry(endpoint.name.clone())
            .or_insert_with(|| Arc::new(Service::new(algorithm)))
            .clone();
        let outcome = {
            let mut instances = service.instances.write();
            let breaker = self.new_breaker(config.breaker.as_ref());
            let instance = Arc::new(Instance::new(endpoint, health, breaker));
            let outcome = match instances
                .iter()
                .position(|i| i.same_address(&instance.endpoint.host, instance.endpoint.port))
            {
                Some(at) => {
                    instances[at] = instance;
                    Registered::Updated
                }
                None => {
                    instances.push(instance);
                    Registered::Added
                }
            };
            service.rebuild(&instances, algorithm);
            outcome
        };
        self.bump();
        Ok(outcome)
    }

    /// Removes the instance of `service` at `host:port`; false when there was none.
    pub fn deregister(&self, service: &str, host: &str, port: u16) -> bool {
        let Some(entry) = self.service(service) else {
            return false;
        };
        let removed = {
            let mut instances = entry.instances.write();
            let before = instances.len();
            instances.retain(|i| !i.same_address(host, port));
            let removed = instances.len() != before;
            if removed {
                entry.rebuild(&instances, self.config().algorithm);
            }
            removed
        };
        if removed {
            self.bump();
        }
        removed
    }

    /// The healthy instances of `service` with their balancer (empty for unknown services).
    pub fn healthy(&self, service: &str) -> Option<Arc<HealthySet>> {
        self.service(service).map(|s| s.healthy.read().clone())
    }

    /// Number of healthy instances of `service`.
    pub fn healthy_count(&self, service: &str) -> usize {
        self.healthy(service)
            .map_or(0, |set| set.all.instances.len())
    }

    /// Picks a healthy instance of `service` (of `version`, when given) with the configured
    /// algorithm, skipping instances whose breaker is open.
    pub fn discover(
        &self,
        service: &str,
        version: Option<&str>,
        hash_key: Option<&[u8]>,
    ) -> Option<Arc<Instance>> {
        let set = self.healthy(service)?;
        let pool = match version {
            Some(version) => set.version(version)?,
            None => &set.all,
        };
        pool.pick(hash_key).cloned()
    }

    /// Whether `service` has at least one registered instance.
    pub fn has_service(&self, service: &str) -> bool {
        self.service(service)
            .is_some_and(|s| !s.instances.read().is_empty())
    }

    /// Every instance of `service`, healthy or not.
    pub fn instances(&self, service: &str) -> Vec<Arc<Instance>> {
        self.service(service)
            .map(|s| s.instances.read().clone())
            .unwrap_or_default()
    }

    /// Names of all services with at least one instance, sorted.
    pub fn service_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .services
            .read()
            .iter()
            .filter(|(_, s)| !s.instances.read().is_empty())
            .map(|(name, _)| name.clone())
            .collect();
        names.sort();
        names
    }

    /// Records a health check outcome for `instance`; rebuilds discovery when health flips.
    pub fn record_check(&self, instance: &Instance, passed: bool) -> Health {
        let config = self.config.read().clone();
        let current = instance.health();
        let next = instance
            .streak
            .lock()
            .record(passed, current, &config.health);
        if next != current {
            instance.health.store(next as u8, Ordering::Release);
            if let Some(service) = self.service(&instance.endpoint.name) {
                service.rebuild(&service.instances.read(), config.algorithm);
            }
            self.bump();
        }
        next
    }

    /// Probes every instance once (sequentially) and records the outcomes.
    ///
    /// `should_stop` is polled between probes so a shutdown is not delayed by a long sweep.
    pub fn check_all(&self, should_stop: impl Fn() -> bool) {
        let timeout = self.config().health.timeout;
        for name in self.service_names() {
            for instance in self.instances(&name) {
                if should_stop() {
                    return;
                }
                let e = &instance.endpoint;
                let passed = probe(&e.host, e.port, &e.health_check_url, timeout);
                self.record_check(&instance, passed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(name: &str, port: u16) -> Endpoint {
        Endpoint {
            name: name.into(),
            host: "127.0.0.1".into(),
            port,
            ..Endpoint::default()
        }
    }

    #[test]
    fn only_healthy_instances_are_discovered() {
        let registry = Registry::default();
        registry
            .register(endpoint("a", 1), Health::Healthy)
            .unwrap();
        registry
            .register(endpoint("a", 2), Health::Unhealthy)
            .unwrap();
        assert_eq!(registry.healthy_count("a"), 1);
        for _ in 0..10 {
            assert_eq!(registry.discover("a", None, None).unwrap().endpoint.port, 1);
        }
        assert!(registry.discover("missing", None, None).is_none());
    }

    #[test]
    fn registering_the_same_address_updates_in_place() {
        let registry = Registry::default();
        let mut e = endpoint("a", 1);
        assert_eq!(
            registry.register(e.clone(), Health::Healthy),
            Ok(Registered::Added)
        );
        e.version = "v2".into();
        assert_eq!(
            registry.register(e, Health::Healthy),
            Ok(Registered::Updated)
        );
        assert_eq!(registry.instances("a").len(), 1);
        assert_eq!(registry.instances("a")[0].endpoint.version, "v2");
    }

    #[test]
    fn invalid_endpoints_leave_nothing_behind() {
        let registry = Registry::default();
        let before = registry.revision();
        assert_eq!(
            registry
                .register(endpoint("bad name", 1), Health::Healthy)
                .unwrap_err()
                .argument,
            "name"
        );
        assert!(registry.service_names().is_empty());
        assert_eq!(registry.revision(), before);
    }

    #[test]
    fn deregister_removes_and_reports() {
        let registry = Registry::default();
        registry
            .register(endpoint("a", 1), Health::Healthy)
            .unwrap();
        assert!(registry.deregister("a", "127.0.0.1", 1));
        assert!(!registry.deregister("a", "127.0.0.1", 1));
        assert_eq!(registry.healthy_count("a"), 0);
        assert!(registry.service_names().is_empty());
    }

    #[test]
    fn health_flips_change_discovery() {
        let registry = Registry::default();
        registry
            .register(endpoint("a", 1), Health::Unknown)
            .unwrap();
        assert_eq!(registry.healthy_count("a"), 0);
        let instance = registry.instances("a").remove(0);
        assert_eq!(registry.record_check(&instance, true), Health::Healthy);
        assert_eq!(registry.healthy_count("a"), 1);
        registry.record_check(&instance, false);
        assert_eq!(registry.record_check(&instance, false), Health::Unhealthy);
        assert_eq!(registry.healthy_count("a"), 0);
    }

    #[test]
    fn reconfigure_keeps_registrations() {
        let registry = Registry::default();
        registry
            .register(endpoint("a", 1), Health::Healthy)
            .unwrap();
        let config = RegistryConfig {
            algorithm: Algorithm::Maglev,
            ..RegistryConfig::default()
        };
        registry.reconfigure(config).unwrap();
        assert_eq!(registry.healthy_count("a"), 1);
        assert!(registry.discover("a", None, Some(b"k")).is_some());
    }

    #[test]
    fn in_flight_guards_count_active_requests() {
        let registry = Registry::default();
        registry
            .register(endpoint("a", 1), Health::Healthy)
            .unwrap();
        let instance = registry.discover("a", None, None).unwrap();
        let first = instance.begin_request();
        let second = instance.begin_request();
        assert_eq!(instance.active_requests(), 2);
        drop(first);
        drop(second);
        assert_eq!(instance.active_requests(), 0);
    }
}
