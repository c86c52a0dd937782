//! The in-process mesh: a registry, its health checker, request accounting and settings.
//!
//! This is what the C API's `DMSCServiceMesh` and the Python `dmsc.Mesh` wrap,
//! so native and Python programs get the same behaviour from the same code.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::{Mutex, RwLock};

use crate::breaker::{CircuitBreakerConfig, WindowType};
use crate::clock::{Clock, Nanos};
use crate::registry::{
    checker, parse_service_name, probe, Algorithm, Attachment, Endpoint, Health, HealthCheckConfig,
    InFlight, InitialHealth, Instance, Registered, Registry, RegistryConfig,
};
use crate::trace::{ParseError, TraceContext};
use crate::InvalidArgument;

/// Number of trial calls an instance's breaker lets through in HALF_OPEN.
const HALF_OPEN_TRIAL_CALLS: u64 = 5;

/// Every setting of a mesh.
#[derive(Debug, Clone, PartialEq)]
pub struct MeshSettings {
    /// Mutual TLS between mesh members (a policy that sidecars enforce).
    pub enable_mtls: bool,
    /// Per-instance circuit breaking in discovery.
    pub enable_circuit_breaker: bool,
    /// W3C trace context generation.
    pub enable_tracing: bool,
    /// Request counting.
    pub enable_metrics: bool,
    /// Failure rate in (0, 1] at which an instance's breaker opens.
    pub breaker_failure_rate: f64,
    /// Time an open breaker waits before letting trial calls through.
    pub breaker_timeout: Duration,
    /// Calls an instance must have seen before its failure rate counts.
    pub breaker_minimum_calls: u32,
    /// Number of most recent calls the failure rate is computed over.
    pub breaker_window: u32,
    /// Balancing algorithm of discovery.
    pub algorithm: Algorithm,
    /// Active health checking.
    pub health: HealthCheckConfig,
    /// Health of newly registered instances ([`InitialHealth::Check`]: probed once first).
    pub initial_health: InitialHealth,
    /// DNS domain of service names: `<service>.service.<domain>`.
    pub domain: String,
}

impl Default for MeshSettings {
    fn default() -> Self {
        Self {
            enable_mtls: false,
            enable_circuit_breaker: true,
            enable_tracing: true,
            enable_metrics: true,
            breaker_failure_rate: 0.5,
            breaker_timeout: Duration::from_secs(30),
            breaker_minimum_calls: 10,
            breaker_window: 100,
            algorithm: Algorithm::RoundRobin,
            health: HealthCheckConfig::default(),
            initial_health: InitialHealth::Check,
            domain: "dmsc".to_owned(),
        }
    }
}

impl MeshSettings {
    /// Checks every field; the error names the first bad one (as the Python API and
    /// configuration files spell it).
    pub fn validate(&self) -> Result<(), InvalidArgument> {
        if !(self.breaker_failure_rate > 0.0 && self.breaker_failure_rate <= 1.0) {
            return Err(InvalidArgument::new(
                "circuit_breaker_failure_rate",
                format!("must be in (0, 1], got {}", self.breaker_failure_rate),
            ));
        }
        if self.breaker_timeout < Duration::from_millis(1) {
            return Err(InvalidArgument::new(
                "circuit_breaker_timeout",
                "must be at least 1 ms",
            ));
        }
        if self.breaker_minimum_calls == 0 {
            return Err(InvalidArgument::new(
                "circuit_breaker_minimum_calls",
                "must be at least 1",
            ));
        }
        if self.breaker_window < self.breaker_minimum_calls {
            return Err(InvalidArgument::new(
                "circuit_breaker_window",
                "must be at least the minimum number of calls",
            ));
        }
        if !crate::registry::endpoint::is_dns_safe(&self.domain) {
            return Err(InvalidArgument::new("domain", "must be a DNS name"));
        }
        self.health.validate()?;
        self.registry_config().validate()
    }

    fn registry_config(&self) -> RegistryConfig {
        let breaker = self.enable_circuit_breaker.then(|| CircuitBreakerConfig {
            failure_rate_threshold: self.breaker_failure_rate,
            window_type: WindowType::CountBased,
            window_size: u64::from(self.breaker_window),
            minimum_number_of_calls: u64::from(self.breaker_minimum_calls),
            wait_duration_in_open_state: u64::try_from(self.breaker_timeout.as_nanos())
                .unwrap_or(u64::MAX),
            permitted_calls_in_half_open_state: HALF_OPEN_TRIAL_CALLS,
            ..CircuitBreakerConfig::default()
        });
        RegistryConfig {
            algorithm: self.algorithm,
            health: self.health.clone(),
            breaker,
        }
    }
}

/// Why a lifecycle call was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LifecycleError {
    /// `start` on a running mesh.
    AlreadyRunning,
    /// The health-check thread could not be started.
    Spawn(String),
}

impl std::fmt::Display for LifecycleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LifecycleError::AlreadyRunning => write!(f, "the mesh is already running"),
            LifecycleError::Spawn(why) => write!(f, "cannot start the health checker: {why}"),
        }
    }
}

impl std::error::Error for LifecycleError {}

/// A registry with health checking, balancing, breakers and request counters. Thread-safe.
#[derive(Debug)]
pub struct Mesh {
    registry: Arc<Registry>,
    settings: RwLock<MeshSettings>,
    staged: Mutex<Option<MeshSettings>>,
    checker: Mutex<Option<JoinHandle<()>>>,
    total_requests: AtomicU64,
    failed_requests: AtomicU64,
}

impl Mesh {
    /// A stopped mesh with `settings`.
    pub fn new(settings: MeshSettings) -> Result<Self, InvalidArgument> {
        Self::with_clock(settings, Clock::Monotonic)
    }

    /// A stopped mesh whose breakers and request latencies read time from `clock` (health
    /// checks always run on real time: they probe the real network).
    pub fn with_clock(settings: MeshSettings, clock: Clock) -> Result<Self, InvalidArgument> {
        settings.validate()?;
        Ok(Self {
            registry: Arc::new(Registry::new(settings.registry_config(), clock)?),
            settings: RwLock::new(settings),
            staged: Mutex::new(None),
            checker: Mutex::new(None),
            total_requests: AtomicU64::new(0),
            failed_requests: AtomicU64::new(0),
        })
    }

    /// The registry behind the mesh.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// The settings in force.
    pub fn settings(&self) -> MeshSettings {
        self.settings.read().clone()
    }

    /// Current time of the mesh's clock, for timing requests.
    #[inline]
    pub fn now(&self) -> Nanos {
        self.registry.clock().now()
    }

    /// Starts the background health checker: every instance is probed about once per
    /// interval (with jitter) by `health.workers` threads.
    pub fn start(&self) -> Result<(), LifecycleError> {
        let mut checker = self.checker.lock();
        if checker.is_some() {
            return Err(LifecycleError::AlreadyRunning);
        }
        self.registry.wake.reset();
        let registry = Arc::clone(&self.registry);
        let thread = std::thread::Builder::new()
            .name("dmsc-health".into())
            .spawn(move || checker::run(&registry))
            .map_err(|e| LifecycleError::Spawn(e.to_string()))?;
        *checker = Some(thread);
        Ok(())
    }

    /// Stops the health checker and waits for it (at most one probe timeout); registrations
    /// stay. Idempotent.
    pub fn stop(&self) {
        let Some(thread) = self.checker.lock().take() else {
            return;
        };
        self.registry.wake.request_stop();
        // The checker only returns; a panic inside it would already have been reported.
        let _ = thread.join();
    }

    /// Whether the health checker runs.
    pub fn is_running(&self) -> bool {
        self.checker.lock().is_some()
    }

    /// Registers `endpoint` with the configured initial health (by default it is checked
    /// once, so its health is known on return).
    ///
    /// With a health check URL the check is an HTTP GET expecting 2xx; without one it is a
    /// TCP connect.
    pub fn register(&self, endpoint: Endpoint) -> Result<Registered, InvalidArgument> {
        let initial = self.settings.read().initial_health;
        self.register_with(endpoint, initial)
    }

    /// Registers `endpoint` starting with `initial` health.
    pub fn register_with(
        &self,
        endpoint: Endpoint,
        initial: InitialHealth,
    ) -> Result<Registered, InvalidArgument> {
        self.register_attached(endpoint, initial, None)
    }

    /// Registers `endpoint` starting with `initial` health, keeping `attachment` with it
    /// (see [`Instance::attachment`]).
    pub fn register_attached(
        &self,
        endpoint: Endpoint,
        initial: InitialHealth,
        attachment: Option<Attachment>,
    ) -> Result<Registered, InvalidArgument> {
        endpoint.validate()?;
        let health = match initial {
            InitialHealth::Check => {
                let config = self.registry.health_config();
                let passed = probe(
                    &endpoint.host,
                    endpoint.port,
                    &endpoint.health_check_url,
                    config.timeout,
                    &config.expected_statuses,
                );
                Some(if passed {
                    Health::Healthy
                } else {
                    Health::Unhealthy
                })
            }
            InitialHealth::Unknown => None,
            InitialHealth::Healthy => Some(Health::Healthy),
            InitialHealth::Unhealthy => Some(Health::Unhealthy),
        };
        self.registry
            .register_attached(endpoint, health, attachment)
    }

    /// Removes the instance of `service` at `host:port`; false when there was none.
    pub fn deregister(&self, service: &str, host: &str, port: u16) -> bool {
        self.registry.deregister(service, host, port)
    }

    /// Number of healthy instances of `service`.
    pub fn healthy_count(&self, service: &str) -> usize {
        self.registry.healthy_count(service)
    }

    /// Picks a healthy instance whose breaker is not open (of `version`, when given) and
    /// counts a request in flight on it until the guard drops.
    pub fn discover(
        &self,
        service: &str,
        version: Option<&str>,
        hash_key: Option<&[u8]>,
    ) -> Option<InFlight> {
        self.pick(service, version, hash_key)
            .map(|instance| instance.begin_request())
    }

    /// Picks as [`Mesh::discover`] does, without counting a request in flight.
    #[inline]
    pub fn pick(
        &self,
        service: &str,
        version: Option<&str>,
        hash_key: Option<&[u8]>,
    ) -> Option<Arc<Instance>> {
        self.registry.discover(service, version, hash_key)
    }

    /// Picks as [`Mesh::pick`] does and returns what `f` makes of the instance.
    #[inline]
    pub fn pick_with<R>(
        &self,
        service: &str,
        version: Option<&str>,
        hash_key: Option<&[u8]>,
        f: impl FnOnce(&Arc<Instance>) -> R,
    ) -> Option<R> {
        self.registry.discover_with(service, version, hash_key, f)
    }

    /// Discovers by DNS-style name: `<service>.service.<domain>` or
    /// `<version>.<service>.service.<domain>`. `None` for names outside the mesh's domain
    /// and for services without a healthy instance.
    pub fn resolve(&self, dns_name: &str, hash_key: Option<&[u8]>) -> Option<InFlight> {
        let domain = self.settings.read().domain.clone();
        let name = parse_service_name(dns_name, &domain, |s| self.registry.has_service(s))?;
        self.discover(name.service, name.version, hash_key)
    }

    /// Every healthy instance a DNS-style name designates, shuffled (as a DNS answer lists
    /// them): `None` for names outside the mesh's domain and for unknown services, an empty
    /// list for a known service (or version) without a healthy instance.
    pub fn resolve_all(&self, dns_name: &str) -> Option<Vec<Arc<Instance>>> {
        let domain = self.settings.read().domain.clone();
        let name = parse_service_name(dns_name, &domain, |s| self.registry.has_service(s))?;
        if !self.registry.has_service(name.service) {
            return None;
        }
        let set = self.registry.healthy(name.service)?;
        let pool = match name.version {
            Some(version) => set.version(version),
            None => Some(&set.all),
        };
        let mut instances = pool.map(|p| p.instances.clone()).unwrap_or_default();
        fastrand::shuffle(&mut instances);
        Some(instances)
    }

    /// The `traceparent` for an outgoing call: a child of `incoming` when that is a valid
    /// trace context, otherwise a new root. `Ok(None)` when tracing is off; an invalid
    /// `incoming` is reported so the caller can log it, and a new root is not invented for it.
    pub fn outgoing_trace(
        &self,
        incoming: Option<&str>,
    ) -> Result<Option<TraceContext>, ParseError> {
        if !self.settings.read().enable_tracing {
            return Ok(None);
        }
        match incoming {
            Some(value) => TraceContext::parse(value).map(|parent| Some(parent.child())),
            None => Ok(Some(TraceContext::new_root())),
        }
    }

    /// Records the outcome of one request to `instance`: counters (when metrics are on), the
    /// instance's latency EWMA and its circuit breaker (when circuit breaking is on).
    pub fn record(&self, instance: &Instance, success: bool, latency: Duration) {
        self.registry.record_outcome(
            instance,
            success,
            u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX),
        );
        if self.settings.read().enable_metrics {
            self.total_requests.fetch_add(1, Ordering::Relaxed);
            if !success {
                self.failed_requests.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Requests recorded since the mesh was created.
    pub fn total_requests(&self) -> u64 {
        self.total_requests.load(Ordering::Relaxed)
    }

    /// Failed requests recorded since the mesh was created.
    pub fn failed_requests(&self) -> u64 {
        self.failed_requests.load(Ordering::Relaxed)
    }

    /// Increases on every change of registrations, health or settings.
    pub fn revision(&self) -> u64 {
        self.registry.revision()
    }

    /// Health check outcomes recorded since the mesh was created (registration-time checks
    /// not included).
    pub fn health_checks(&self) -> u64 {
        self.registry.health_checks()
    }

    /// Probes every instance now, in parallel, and records the outcomes (running or not).
    /// Returns the number of instances probed.
    pub fn check_all(&self) -> usize {
        self.registry.check_all()
    }

    /// Sets an instance's health by hand (passive health checking); false if there is none.
    pub fn set_health(&self, service: &str, host: &str, port: u16, healthy: bool) -> bool {
        let health = if healthy {
            Health::Healthy
        } else {
            Health::Unhealthy
        };
        self.registry.set_health(service, host, port, health)
    }

    /// Takes a sidecar's load report for an instance (see [`Registry::report_load`]).
    pub fn report_load(
        &self,
        service: &str,
        host: &str,
        port: u16,
        active_requests: u64,
        latency_ewma: Option<Duration>,
    ) -> bool {
        self.registry
            .report_load(service, host, port, active_requests, latency_ewma)
    }

    /// Stages a change of settings; nothing changes until [`Mesh::reload`].
    ///
    /// The change is validated against the staged settings at once, so a bad value is
    /// refused here and never reaches the live configuration.
    pub fn stage(&self, change: impl FnOnce(&mut MeshSettings)) -> Result<(), InvalidArgument> {
        let mut staged = self.staged.lock();
        let mut next = staged.clone().unwrap_or_else(|| self.settings());
        change(&mut next);
        next.validate()?;
        *staged = Some(next);
        Ok(())
    }

    /// Applies the staged settings atomically; registrations and counters are kept.
    /// Returns whether anything was staged.
    pub fn reload(&self) -> Result<bool, InvalidArgument> {
        let Some(next) = self.staged.lock().take() else {
            return Ok(false);
        };
        self.reconfigure(next)?;
        Ok(true)
    }

    /// Replaces every setting at once (validated first; a refused value changes nothing).
    /// Registrations, health and counters are kept; a running checker picks up the new
    /// health check settings at its next scan.
    pub fn reconfigure(&self, settings: MeshSettings) -> Result<(), InvalidArgument> {
        settings.validate()?;
        let mut live = self.settings.write();
        self.registry.reconfigure(settings.registry_config())?;
        *live = settings;
        Ok(())
    }
}

impl Drop for Mesh {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpListener;
    use std::sync::atomic::AtomicBool;

    /// A tiny HTTP server answering every request with `status` until `healthy` flips.
    fn health_server(healthy: Arc<AtomicBool>) -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let mut buf = [0u8; 1024];
                let _ = conn.read(&mut buf);
                let status = if healthy.load(Ordering::SeqCst) {
                    "200 OK"
                } else {
                    "503 No"
                };
                let _ = write!(conn, "HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n");
            }
        });
        port
    }

    fn endpoint(port: u16) -> Endpoint {
        Endpoint {
            name: "user-service".into(),
            host: "127.0.0.1".into(),
            port,
            health_check_url: "/health".into(),
            ..Endpoint::default()
        }
    }

    #[test]
    fn registration_checks_health_before_returning() {
        let healthy = Arc::new(AtomicBool::new(true));
        let mesh = Mesh::new(MeshSettings::default()).unwrap();
        mesh.register(endpoint(health_server(healthy))).unwrap();
        assert_eq!(mesh.healthy_count("user-service"), 1);
        let in_flight = mesh.discover("user-service", None, None).unwrap();
        assert_eq!(in_flight.instance().active_requests(), 1);
        drop(in_flight);
    }

    #[test]
    fn background_checks_remove_and_restore_instances() {
        let healthy = Arc::new(AtomicBool::new(true));
        let settings = MeshSettings {
            health: HealthCheckConfig {
                interval: Duration::from_millis(20),
                unhealthy_threshold: 1,
                ..HealthCheckConfig::default()
            },
            ..MeshSettings::default()
        };
        let mesh = Mesh::new(settings).unwrap();
        mesh.register(endpoint(health_server(Arc::clone(&healthy))))
            .unwrap();
        mesh.start().unwrap();
        assert_eq!(mesh.start(), Err(LifecycleError::AlreadyRunning));
        let wait_for = |count: usize| {
            for _ in 0..200 {
                if mesh.healthy_count("user-service") == count {
                    return true;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            false
        };
        healthy.store(false, Ordering::SeqCst);
        assert!(wait_for(0));
        healthy.store(true, Ordering::SeqCst);
        assert!(wait_for(1));
        mesh.stop();
        assert!(!mesh.is_running());
    }

    #[test]
    fn staged_settings_apply_only_on_reload() {
        let mesh = Mesh::new(MeshSettings::default()).unwrap();
        mesh.stage(|s| s.breaker_failure_rate = 0.3).unwrap();
        assert_eq!(mesh.settings().breaker_failure_rate, 0.5);
        assert_eq!(mesh.reload(), Ok(true));
        assert_eq!(mesh.settings().breaker_failure_rate, 0.3);
        assert_eq!(mesh.reload(), Ok(false));
        let err = mesh.stage(|s| s.breaker_failure_rate = 1.5).unwrap_err();
        assert_eq!(err.argument, "circuit_breaker_failure_rate");
        assert_eq!(mesh.settings().breaker_failure_rate, 0.3);
    }

    #[test]
    fn open_breakers_take_instances_out_of_discovery_until_the_timeout() {
        let healthy = Arc::new(AtomicBool::new(true));
        let port = health_server(Arc::clone(&healthy));
        let clock = crate::clock::ManualClock::new(0);
        let settings = MeshSettings {
            breaker_minimum_calls: 4,
            breaker_window: 4,
            breaker_timeout: Duration::from_secs(30),
            ..MeshSettings::default()
        };
        let mesh = Mesh::with_clock(settings, Clock::Manual(clock.clone())).unwrap();
        mesh.register(endpoint(port)).unwrap();
        for _ in 0..4 {
            let call = mesh.discover("user-service", None, None).unwrap();
            mesh.record(call.instance(), false, Duration::from_millis(1));
        }
        // Still healthy, but the breaker is open: discovery refuses it.
        assert_eq!(mesh.healthy_count("user-service"), 1);
        assert!(mesh.discover("user-service", None, None).is_none());
        clock.advance(31_000_000_000);
        let trial = mesh
            .discover("user-service", None, None)
            .expect("half-open trial");
        mesh.record(trial.instance(), true, Duration::from_millis(1));
        assert!(mesh.discover("user-service", None, None).is_some());
    }

    #[test]
    fn breaker_off_never_refuses() {
        let healthy = Arc::new(AtomicBool::new(true));
        let settings = MeshSettings {
            enable_circuit_breaker: false,
            ..MeshSettings::default()
        };
        let mesh = Mesh::new(settings).unwrap();
        mesh.register(endpoint(health_server(healthy))).unwrap();
        for _ in 0..200 {
            let call = mesh.discover("user-service", None, None).unwrap();
            mesh.record(call.instance(), false, Duration::from_millis(1));
        }
        assert!(mesh.discover("user-service", None, None).is_some());
    }

    #[test]
    fn versions_and_dns_names_select_instances() {
        let healthy = Arc::new(AtomicBool::new(true));
        let mesh = Mesh::new(MeshSettings::default()).unwrap();
        let v1 = health_server(Arc::clone(&healthy));
        let v2 = health_server(Arc::clone(&healthy));
        for (port, version) in [(v1, "v1"), (v2, "v2")] {
            let mut e = endpoint(port);
            e.version = version.into();
            mesh.register(e).unwrap();
        }
        for _ in 0..10 {
            let call = mesh.discover("user-service", Some("v2"), None).unwrap();
            assert_eq!(call.instance().endpoint.port, v2);
            let call = mesh.resolve("v1.user-service.service.dmsc.", None).unwrap();
            assert_eq!(call.instance().endpoint.port, v1);
        }
        assert!(mesh.resolve("user-service.service.dmsc", None).is_some());
        assert!(mesh.discover("user-service", Some("v3"), None).is_none());
        assert!(mesh
            .resolve("user-service.service.elsewhere", None)
            .is_none());
    }

    #[test]
    fn outgoing_traces_continue_or_start_traces() {
        let mesh = Mesh::new(MeshSettings::default()).unwrap();
        let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let child = mesh.outgoing_trace(Some(parent)).unwrap().unwrap();
        assert!(child
            .to_string()
            .starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
        assert!(mesh.outgoing_trace(None).unwrap().is_some());
        assert!(mesh.outgoing_trace(Some("garbage")).is_err());
        mesh.stage(|s| s.enable_tracing = false).unwrap();
        mesh.reload().unwrap();
        assert_eq!(mesh.outgoing_trace(None), Ok(None));
    }

    #[test]
    fn counters_follow_recorded_outcomes() {
        let healthy = Arc::new(AtomicBool::new(true));
        let mesh = Mesh::new(MeshSettings::default()).unwrap();
        mesh.register(endpoint(health_server(healthy))).unwrap();
        let in_flight = mesh.discover("user-service", None, None).unwrap();
        mesh.record(in_flight.instance(), true, Duration::from_millis(1));
        mesh.record(in_flight.instance(), false, Duration::from_millis(1));
        assert_eq!((mesh.total_requests(), mesh.failed_requests()), (2, 1));
    }

    /// A port with nothing listening on it (bound, then released).
    fn closed_port() -> u16 {
        TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    #[test]
    fn unknown_instances_wait_for_their_first_scheduled_check() {
        let healthy = Arc::new(AtomicBool::new(true));
        let settings = MeshSettings {
            initial_health: InitialHealth::Unknown,
            ..MeshSettings::default()
        };
        let mesh = Mesh::new(settings).unwrap();
        mesh.register(endpoint(health_server(healthy))).unwrap();
        assert_eq!(mesh.healthy_count("user-service"), 0);
        assert_eq!(
            mesh.registry().instances("user-service")[0].health(),
            Health::Unknown
        );
        mesh.start().unwrap();
        for _ in 0..200 {
            if mesh.healthy_count("user-service") == 1 {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        mesh.stop();
        assert_eq!(mesh.healthy_count("user-service"), 1);
        assert!(mesh.health_checks() >= 1);
    }

    #[test]
    fn explicit_initial_health_skips_the_probe_and_set_health_overrides_it() {
        let mesh = Mesh::new(MeshSettings::default()).unwrap();
        let port = closed_port();
        mesh.register_with(endpoint(port), InitialHealth::Healthy)
            .unwrap();
        assert_eq!(mesh.healthy_count("user-service"), 1);
        let before = mesh.revision();
        assert!(mesh.set_health("user-service", "127.0.0.1", port, false));
        assert!(mesh.revision() > before);
        assert_eq!(mesh.healthy_count("user-service"), 0);
        assert!(!mesh.set_health("user-service", "127.0.0.1", port + 1, true));
        // A sweep finds nothing listening.
        mesh.set_health("user-service", "127.0.0.1", port, true);
        assert_eq!(mesh.check_all(), 1);
        assert_eq!(mesh.healthy_count("user-service"), 1); // unhealthy_threshold is 2
        mesh.check_all();
        assert_eq!(mesh.healthy_count("user-service"), 0);
    }

    #[test]
    fn updates_keep_requests_in_flight_and_the_breaker() {
        let settings = MeshSettings {
            breaker_minimum_calls: 2,
            breaker_window: 2,
            ..MeshSettings::default()
        };
        let mesh = Mesh::new(settings).unwrap();
        let port = closed_port();
        mesh.register_with(endpoint(port), InitialHealth::Healthy)
            .unwrap();
        let call = mesh.discover("user-service", None, None).unwrap();
        for _ in 0..2 {
            mesh.record(call.instance(), false, Duration::from_millis(4));
        }
        let mut changed = endpoint(port);
        changed.zone = "eu-1".into();
        assert_eq!(
            mesh.register_with(changed, InitialHealth::Unknown),
            Ok(Registered::Updated)
        );
        let instance = mesh
            .registry()
            .instance("user-service", "127.0.0.1", port)
            .unwrap();
        assert_eq!(instance.endpoint.zone, "eu-1");
        assert_eq!(instance.health(), Health::Healthy);
        assert_eq!(instance.active_requests(), 1);
        assert_eq!(instance.latency_ewma(), Some(Duration::from_millis(4)));
        // Still open: re-registering does not wipe a failing instance's record.
        assert!(mesh.discover("user-service", None, None).is_none());
        drop(call);
        assert_eq!(instance.active_requests(), 0);
    }

    #[test]
    fn resolve_all_lists_every_healthy_instance_of_a_name() {
        let mesh = Mesh::new(MeshSettings::default()).unwrap();
        let ports: Vec<u16> = (0..6).map(|_| closed_port()).collect();
        for (n, &port) in ports.iter().enumerate() {
            let mut e = endpoint(port);
            e.version = if n < 4 { "v1" } else { "v2" }.into();
            let initial = if n == 5 {
                InitialHealth::Unhealthy
            } else {
                InitialHealth::Healthy
            };
            mesh.register_with(e, initial).unwrap();
        }
        let all = mesh.resolve_all("user-service.service.dmsc.").unwrap();
        let mut found: Vec<u16> = all.iter().map(|i| i.endpoint.port).collect();
        found.sort_unstable();
        let mut expected = ports[..5].to_vec();
        expected.sort_unstable();
        assert_eq!(found, expected);
        assert_eq!(
            mesh.resolve_all("v2.user-service.service.dmsc")
                .unwrap()
                .len(),
            1
        );
        assert_eq!(
            mesh.resolve_all("v9.user-service.service.dmsc")
                .map(|v| v.len()),
            Some(0)
        );
        assert!(mesh.resolve_all("other.service.dmsc").is_none());
        assert!(mesh.resolve_all("user-service.service.elsewhere").is_none());
        mesh.set_health("user-service", "127.0.0.1", ports[4], false);
        assert_eq!(
            mesh.resolve_all("v2.user-service.service.dmsc")
                .unwrap()
                .len(),
            0
        );
    }

    #[test]
    fn attachments_come_back_with_picked_instances() {
        let mesh = Mesh::new(MeshSettings::default()).unwrap();
        let tag: Attachment = Arc::new("tag".to_owned());
        mesh.register_attached(endpoint(closed_port()), InitialHealth::Healthy, Some(tag))
            .unwrap();
        let picked = mesh.pick("user-service", None, None).unwrap();
        let attached = picked.attachment().unwrap().downcast_ref::<String>();
        assert_eq!(attached.map(String::as_str), Some("tag"));
        assert_eq!(picked.active_requests(), 0);
    }

    #[test]
    fn reconfigure_applies_everything_or_nothing() {
        let mesh = Mesh::new(MeshSettings::default()).unwrap();
        let next = MeshSettings {
            algorithm: Algorithm::Maglev,
            domain: "mesh.local".into(),
            ..MeshSettings::default()
        };
        let before = mesh.revision();
        mesh.reconfigure(next.clone()).unwrap();
        assert_eq!(mesh.settings(), next);
        assert!(mesh.revision() > before);
        let bad = MeshSettings {
            health: HealthCheckConfig {
                workers: 0,
                ..HealthCheckConfig::default()
            },
            ..next.clone()
        };
        assert_eq!(
            mesh.reconfigure(bad).unwrap_err().argument,
            "health_check_workers"
        );
        assert_eq!(mesh.settings(), next);
    }
}
