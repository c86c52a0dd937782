//! The service registry: instances by service, their health, and discovery.
//!
//! Reads dominate (every discovery), writes are rare (registration, health
//! flips), so each service keeps an immutable snapshot of its healthy
//! instances with the load balancer's tables prebuilt; discovery clones an
//! `Arc` of it and picks without taking any write lock. Writes only mark the
//! snapshot stale and the next discovery rebuilds it once, so registering or
//! checking many instances in a row costs no rebuild per instance.

pub mod balance;
pub mod checker;
pub mod dns;
pub mod endpoint;
pub mod health;
pub mod instance;
pub mod pool;
mod sync;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Mutex, RwLock};

pub use balance::{Algorithm, Balancer};
pub use dns::{parse_service_name, ServiceName};
pub use endpoint::Endpoint;
pub use health::{
    probe, Health, HealthCheckConfig, InitialHealth, StatusRange, Streak, DEFAULT_EXPECTED_STATUSES,
};
pub use instance::{Attachment, InFlight, Instance, LATENCY_EWMA_WEIGHT};
pub use pool::{HealthySet, Pool};

use crate::breaker::{CircuitBreaker, CircuitBreakerConfig};
use crate::clock::{Clock, Nanos};
use crate::InvalidArgument;

/// The instances of a service, in registration order and by address.
#[derive(Debug, Default)]
struct Members {
    list: Vec<Arc<Instance>>,
    by_address: HashMap<(String, u16), Arc<Instance>>,
}

#[derive(Debug, Default)]
struct Service {
    members: RwLock<Members>,
    healthy: RwLock<Arc<HealthySet>>,
    /// Set by every change of membership or health; the next read rebuilds `healthy`.
    stale: AtomicBool,
    rebuilding: Mutex<()>,
}

impl Service {
    fn mark_stale(&self) {
        self.stale.store(true, Ordering::Release);
    }

    /// Rebuilds the healthy set if anything changed since it was built.
    #[inline]
    fn refresh(&self, algorithm: impl FnOnce() -> Algorithm) {
        if self.stale.load(Ordering::Acquire) {
            self.rebuild(algorithm);
        }
    }

    #[cold]
    fn rebuild(&self, algorithm: impl FnOnce() -> Algorithm) {
        // One rebuild at a time; a reader that waited finds the flag cleared and the set its
        // own earlier write asked for already built.
        let _rebuilding = self.rebuilding.lock();
        if self.stale.swap(false, Ordering::AcqRel) {
            let algorithm = algorithm();
            let set = HealthySet::build(&self.members.read().list, algorithm);
            *self.healthy.write() = Arc::new(set);
        }
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
    membership: AtomicU64,
    health_checks: AtomicU64,
    pub(crate) wake: checker::Wake,
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

    /// The health check settings in force.
    pub fn health_config(&self) -> HealthCheckConfig {
        self.config.read().health.clone()
    }

    /// The clock breakers and request latencies read.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    fn algorithm(&self) -> Algorithm {
        self.config.read().algorithm
    }

    /// Replaces the configuration atomically; registrations, health and in-flight counts are
    /// kept. Balancers are rebuilt when the algorithm changes; breakers start afresh when
    /// their settings change.
    pub fn reconfigure(&self, config: RegistryConfig) -> Result<(), InvalidArgument> {
        config.validate()?;
        let previous = std::mem::replace(&mut *self.config.write(), config.clone());
        let services: Vec<Arc<Service>> = self.services.read().values().cloned().collect();
        if previous.breaker != config.breaker {
            // Breakers are created on an instance's first recorded call, from the new settings.
            for service in &services {
                for instance in &service.members.read().list {
                    *instance.breaker.write() = None;
                }
            }
        }
        if previous.algorithm != config.algorithm {
            services.iter().for_each(|s| s.mark_stale());
        }
        self.bump();
        self.wake.poke();
        Ok(())
    }

    /// Increases on every change; watchers compare it to see whether anything moved.
    pub fn revision(&self) -> u64 {
        self.revision.load(Ordering::Acquire)
    }

    fn bump(&self) {
        self.revision.fetch_add(1, Ordering::AcqRel);
    }

    /// Increases whenever an instance is added, replaced or removed.
    pub(crate) fn membership(&self) -> u64 {
        self.membership.load(Ordering::Acquire)
    }

    /// Health check outcomes recorded since the registry was created.
    pub fn health_checks(&self) -> u64 {
        self.health_checks.load(Ordering::Relaxed)
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
        self.register_attached(endpoint, Some(health), None)
    }

    /// Adds `endpoint` (validated), or updates the instance at its address, keeping
    /// `attachment` with it.
    ///
    /// A new instance starts with `health` (`None`: [`Health::Unknown`], first checked as soon
    /// as the checker runs); an updated one keeps its requests in flight, latency history,
    /// breaker and check streak, and its health unless `health` is given. An instance with a
    /// known health is first checked at a random point of its first interval, so instances
    /// registered together are not probed together.
    pub fn register_attached(
        &self,
        endpoint: Endpoint,
        health: Option<Health>,
        attachment: Option<Attachment>,
    ) -> Result<Registered, InvalidArgument> {
        endpoint.validate()?;
        let interval = self.health_config().interval;
        let service = self
            .services
            .write()
            .entry(endpoint.name.clone())
            .or_default()
            .clone();
        let outcome = {
            let mut members = service.members.write();
            let key = (endpoint.host.clone(), endpoint.port);
            let first_check = match health {
                None => 0,
                Some(_) => checker::now().saturating_add(
                    u64::try_from(interval.mul_f64(fastrand::f64()).as_nanos())
                        .unwrap_or(Nanos::MAX),
                ),
            };
            let outcome = match members.by_address.get(&key).cloned() {
                Some(previous) => {
                    let next_check = match (health, previous.next_check()) {
                        (Some(_), _) | (None, instance::QUEUED) => first_check,
                        (None, scheduled) => scheduled,
                    };
                    let instance = Arc::new(Instance::succeed(
                        &previous, endpoint, health, attachment, next_check,
                    ));
                    previous.retire();
                    if let Some(slot) = members.list.iter_mut().find(|i| Arc::ptr_eq(i, &previous))
                    {
                        *slot = Arc::clone(&instance);
                    }
                    members.by_address.insert(key, instance);
                    Registered::Updated
                }
                None => {
                    let health = health.unwrap_or(Health::Unknown);
                    let instance =
                        Arc::new(Instance::new(endpoint, health, attachment, first_check));
                    members.list.push(Arc::clone(&instance));
                    members.by_address.insert(key, instance);
                    Registered::Added
                }
            };
            service.mark_stale();
            outcome
        };
        self.membership.fetch_add(1, Ordering::AcqRel);
        self.bump();
        self.wake.poke();
        Ok(outcome)
    }

    /// Removes the instance of `service` at `host:port`; false when there was none.
    pub fn deregister(&self, service: &str, host: &str, port: u16) -> bool {
        let Some(entry) = self.service(service) else {
            return false;
        };
        let removed = {
            let mut members = entry.members.write();
            let removed = members.by_address.remove(&(host.to_owned(), port));
            if let Some(instance) = &removed {
                instance.retire();
                members.list.retain(|i| !Arc::ptr_eq(i, instance));
                entry.mark_stale();
            }
            removed.is_some()
        };
        if removed {
            self.membership.fetch_add(1, Ordering::AcqRel);
            self.bump();
        }
        removed
    }

    /// The instance of `service` at `host:port`.
    pub fn instance(&self, service: &str, host: &str, port: u16) -> Option<Arc<Instance>> {
        let entry = self.service(service)?;
        let members = entry.members.read();
        members.by_address.get(&(host.to_owned(), port)).cloned()
    }

    /// Runs `f` on the healthy instances of `service` (`None` for unknown services), without
    /// cloning anything on the way: discovery's hot path.
    #[inline]
    fn with_healthy<R>(&self, service: &str, f: impl FnOnce(&Arc<HealthySet>) -> R) -> Option<R> {
        let services = self.services.read();
        let entry = services.get(service)?;
        entry.refresh(|| self.algorithm());
        let set = entry.healthy.read();
        Some(f(&set))
    }

    /// The healthy instances of `service` with their balancer (`None` for unknown services).
    pub fn healthy(&self, service: &str) -> Option<Arc<HealthySet>> {
        self.with_healthy(service, Arc::clone)
    }

    /// Number of healthy instances of `service`.
    pub fn healthy_count(&self, service: &str) -> usize {
        self.with_healthy(service, |set| set.all.instances.len())
            .unwrap_or(0)
    }

    /// Picks a healthy instance of `service` (of `version`, when given) with the configured
    /// algorithm, skipping instances whose breaker is open.
    pub fn discover(
        &self,
        service: &str,
        version: Option<&str>,
        hash_key: Option<&[u8]>,
    ) -> Option<Arc<Instance>> {
        self.discover_with(service, version, hash_key, Arc::clone)
    }

    /// Picks as [`Registry::discover`] does and returns what `f` makes of the instance.
    #[inline]
    pub fn discover_with<R>(
        &self,
        service: &str,
        version: Option<&str>,
        hash_key: Option<&[u8]>,
        f: impl FnOnce(&Arc<Instance>) -> R,
    ) -> Option<R> {
        self.with_healthy(service, |set| {
            let pool = match version {
                Some(version) => set.version(version)?,
                None => &set.all,
            };
            pool.pick(hash_key).map(f)
        })
        .flatten()
    }

    /// Whether `service` has at least one registered instance.
    pub fn has_service(&self, service: &str) -> bool {
        self.service(service)
            .is_some_and(|s| !s.members.read().list.is_empty())
    }

    /// Every instance of `service`, healthy or not, in registration order.
    pub fn instances(&self, service: &str) -> Vec<Arc<Instance>> {
        self.service(service)
            .map(|s| s.members.read().list.clone())
            .unwrap_or_default()
    }

    /// Every instance of every service.
    pub fn all_instances(&self) -> Vec<Arc<Instance>> {
        let services: Vec<Arc<Service>> = self.services.read().values().cloned().collect();
        services
            .iter()
            .flat_map(|s| s.members.read().list.clone())
            .collect()
    }

    /// Names of all services with at least one instance, sorted.
    pub fn service_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .services
            .read()
            .iter()
            .filter(|(_, s)| !s.members.read().list.is_empty())
            .map(|(name, _)| name.clone())
            .collect();
        names.sort();
        names
    }

    /// Marks the service of a registered `instance` for a rebuild and publishes the change.
    fn health_changed(&self, instance: &Instance) {
        if !instance.is_registered() {
            return;
        }
        if let Some(service) = self.service(&instance.endpoint.name) {
            service.mark_stale();
        }
        self.bump();
    }

    /// Records a health check outcome for `instance`; discovery follows when health flips.
    pub fn record_check(&self, instance: &Instance, passed: bool) -> Health {
        self.health_checks.fetch_add(1, Ordering::Relaxed);
        let config = self.health_config();
        let mut streak = instance.streak.lock();
        let current = instance.health();
        let next = streak.record(passed, current, &config);
        if next != current {
            instance.set_health(next);
            drop(streak);
            self.health_changed(instance);
        }
        next
    }

    /// Sets the health of the instance of `service` at `host:port` (passive health checking:
    /// a caller that saw it fail or recover), starting a new check streak. False when there
    /// is no such instance.
    pub fn set_health(&self, service: &str, host: &str, port: u16, health: Health) -> bool {
        let Some(instance) = self.instance(service, host, port) else {
            return false;
        };
        let mut streak = instance.streak.lock();
        *streak = Streak::default();
        if instance.set_health(health) != health {
            drop(streak);
            self.health_changed(&instance);
        }
        true
    }

    /// Records one request's outcome on `instance`: its latency EWMA, and its circuit breaker
    /// when circuit breaking is on (created on the instance's first call).
    pub fn record_outcome(&self, instance: &Instance, success: bool, latency: Nanos) {
        instance.observe_latency(latency);
        let existing = instance.breaker.read().clone();
        let breaker = match existing {
            Some(breaker) => breaker,
            None => {
                let mut slot = instance.breaker.write();
                // Read under the instance's lock: `reconfigure` clears breakers after it
                // stores new settings, so a breaker is never built from replaced settings.
                let Some(config) = self.config.read().breaker.clone() else {
                    return;
                };
                match slot.as_ref() {
                    Some(breaker) => Arc::clone(breaker),
                    None => {
                        // The configuration was validated when it was set.
                        let Ok(breaker) = CircuitBreaker::new(config, self.clock.clone()) else {
                            return;
                        };
                        slot.insert(Arc::new(breaker)).clone()
                    }
                }
            }
        };
        breaker.record(success, latency);
    }

    /// Takes a load report from the sidecar of the instance of `service` at `host:port`: its
    /// requests in flight (added to those counted here) and, when given, its latency EWMA.
    /// False when there is no such instance.
    pub fn report_load(
        &self,
        service: &str,
        host: &str,
        port: u16,
        active_requests: u64,
        latency_ewma: Option<Duration>,
    ) -> bool {
        self.instance(service, host, port)
            .map(|i| i.set_reported_load(active_requests, latency_ewma))
            .is_some()
    }

    /// Probes every instance now, in parallel with the configured number of workers, and
    /// records the outcomes. Returns the number of instances probed.
    pub fn check_all(&self) -> usize {
        checker::sweep(self)
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

    #[test]
    fn instances_are_found_by_address_for_health_and_load_reports() {
        let registry = Registry::default();
        registry
            .register(endpoint("a", 1), Health::Healthy)
            .unwrap();
        assert!(registry.instance("a", "127.0.0.1", 1).is_some());
        assert!(registry.instance("a", "127.0.0.1", 2).is_none());
        assert!(registry.set_health("a", "127.0.0.1", 1, Health::Unhealthy));
        assert_eq!(registry.healthy_count("a"), 0);
        assert!(!registry.set_health("b", "127.0.0.1", 1, Health::Healthy));
        assert!(registry.report_load("a", "127.0.0.1", 1, 3, None));
        assert_eq!(registry.instances("a")[0].active_requests(), 3);
        assert!(!registry.report_load("a", "127.0.0.1", 9, 3, None));
    }

    #[test]
    fn breakers_start_with_the_first_call_and_restart_on_new_settings() {
        let breaker = CircuitBreakerConfig {
            minimum_number_of_calls: 2,
            window_size: 2,
            ..CircuitBreakerConfig::default()
        };
        let config = RegistryConfig {
            breaker: Some(breaker.clone()),
            ..RegistryConfig::default()
        };
        let registry = Registry::new(config.clone(), Clock::Monotonic).unwrap();
        registry
            .register(endpoint("a", 1), Health::Healthy)
            .unwrap();
        let instance = registry.instances("a").remove(0);
        assert!(instance.breaker().is_none());
        registry.record_outcome(&instance, false, 10);
        registry.record_outcome(&instance, false, 10);
        assert!(registry.discover("a", None, None).is_none());
        let looser = CircuitBreakerConfig {
            failure_rate_threshold: 1.0,
            ..breaker
        };
        registry
            .reconfigure(RegistryConfig {
                breaker: Some(looser),
                ..config
            })
            .unwrap();
        assert!(instance.breaker().is_none());
        assert!(registry.discover("a", None, None).is_some());
    }

    #[test]
    fn replaced_and_removed_instances_no_longer_move_the_registry() {
        let registry = Registry::default();
        registry
            .register(endpoint("a", 1), Health::Healthy)
            .unwrap();
        let old = registry.instances("a").remove(0);
        registry
            .register(endpoint("a", 1), Health::Healthy)
            .unwrap();
        assert!(!old.is_registered());
        let revision = registry.revision();
        registry.record_check(&old, false);
        registry.record_check(&old, false);
        assert_eq!(registry.revision(), revision);
        assert_eq!(registry.healthy_count("a"), 1);
        assert_eq!(registry.health_checks(), 2);
    }

    #[test]
    fn discovery_sees_each_write_at_once() {
        let registry = Registry::default();
        for port in 1..=50 {
            registry
                .register(endpoint("a", port), Health::Healthy)
                .unwrap();
            assert_eq!(registry.healthy_count("a"), usize::from(port));
        }
        registry.deregister("a", "127.0.0.1", 7);
        assert_eq!(registry.healthy_count("a"), 49);
        assert_eq!(registry.all_instances().len(), 49);
    }
}
