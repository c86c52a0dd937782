//! The in-process mesh: a registry, its health checker, request accounting and settings.
//!
//! This is what the C API's `DMSCServiceMesh` and the Python `dmsc.Mesh` wrap,
//! so native and Python programs get the same behaviour from the same code.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::{Condvar, Mutex, RwLock};

use crate::breaker::{CircuitBreakerConfig, WindowType};
use crate::clock::Clock;
use crate::registry::{
    parse_service_name, probe, Algorithm, Endpoint, Health, HealthCheckConfig, InFlight, Instance,
    Registered, Registry, RegistryConfig,
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
            domain: "dmsc".to_owned(),
        }
    }
}

impl MeshSettings {
    /// Checks every field; the error names the first bad one.
    pub fn validate(&self) -> Result<(), InvalidArgument> {
        if !(self.breaker_failure_rate > 0.0 && self.breaker_failure_rate <= 1.0) {
            return Err(InvalidArgument::new(
                "failure_rate",
                format!("must be in (0, 1], got {}", self.breaker_failure_rate),
            ));
        }
        if self.breaker_timeout.is_zero() {
            return Err(InvalidArgument::new("timeout_ms", "must be at least 1 ms"));
        }
        if self.breaker_minimum_calls == 0 {
            return Err(InvalidArgument::new("minimum_calls", "must be at least 1"));
        }
        if self.breaker_window < self.breaker_minimum_calls {
            return Err(InvalidArgument::new(
                "window",
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
            health: self.health,
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

#[derive(Debug, Default)]
struct StopSignal {
    stopped: Mutex<bool>,
    wake: Condvar,
}

#[derive(Debug)]
struct Checker {
    signal: Arc<StopSignal>,
    thread: JoinHandle<()>,
}

/// A registry with health checking, balancing, breakers and request counters. Thread-safe.
#[derive(Debug)]
pub struct Mesh {
    registry: Arc<Registry>,
    settings: RwLock<MeshSettings>,
    staged: Mutex<Option<MeshSettings>>,
    checker: Mutex<Option<Checker>>,
    total_requests: AtomicU64,
    failed_requests: AtomicU64,
}

impl Mesh {
    /// A stopped mesh with `settings`.
    pub fn new(settings: MeshSettings) -> Result<Self, InvalidArgument> {
        Self::with_clock(settings, Clock::Monotonic)
    }

    /// A stopped mesh whose breakers read time from `clock`.
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

    /// Starts the background health checker.
    pub fn start(&self) -> Result<(), LifecycleError> {
        let mut checker = self.checker.lock();
        if checker.is_some() {
            return Err(LifecycleError::AlreadyRunning);
        }
        let signal = Arc::new(StopSignal::default());
        let registry = Arc::clone(&self.registry);
        let thread_signal = Arc::clone(&signal);
        let thread = std::thread::Builder::new()
            .name("dmsc-health".into())
            .spawn(move || run_checker(&registry, &thread_signal))
            .map_err(|e| LifecycleError::Spawn(e.to_string()))?;
        *checker = Some(Checker { signal, thread });
        Ok(())
    }

    /// Stops the health checker and waits for it; registrations stay. Idempotent.
    pub fn stop(&self) {
        let Some(checker) = self.checker.lock().take() else {
            return;
        };
        *checker.signal.stopped.lock() = true;
        checker.signal.wake.notify_all();
        // The checker only returns; a panic inside it would already have been reported.
        let _ = checker.thread.join();
    }

    /// Whether the health checker runs.
    pub fn is_running(&self) -> bool {
        self.checker.lock().is_some()
    }

    /// Registers `endpoint` after checking it once, so its health is known on return.
    ///
    /// With a health check URL the check is an HTTP GET expecting 2xx; without one it is a
    /// TCP connect.
    pub fn register(&self, endpoint: Endpoint) -> Result<Registered, InvalidArgument> {
        endpoint.validate()?;
        let timeout = self.settings.read().health.timeout;
        let passed = probe(
            &endpoint.host,
            endpoint.port,
            &endpoint.health_check_url,
            timeout,
        );
        let health = if passed {
            Health::Healthy
        } else {
            Health::Unhealthy
        };
        self.registry.register(endpoint, health)
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
        self.registry
            .discover(service, version, hash_key)
            .map(|instance| instance.begin_request())
    }

    /// Discovers by DNS-style name: `<service>.service.<domain>` or
    /// `<version>.<service>.service.<domain>`. `None` for names outside the mesh's domain
    /// and for services without a healthy instance.
    pub fn resolve(&self, dns_name: &str, hash_key: Option<&[u8]>) -> Option<InFlight> {
        let domain = self.settings.read().domain.clone();
        let name = parse_service_name(dns_name, &domain, |s| self.registry.has_service(s))?;
        self.discover(name.service, name.version, hash_key)
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

    /// Records the outcome of one request to `instance`: counters (when metrics are on) and
    /// the instance's circuit breaker (when circuit breaking is on).
    pub fn record(&self, instance: &Instance, success: bool, latency: Duration) {
        instance.record_outcome(
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
        self.registry.reconfigure(next.registry_config())?;
        *self.settings.write() = next;
        Ok(true)
    }
}

impl Drop for Mesh {
    fn drop(&mut self) {
        self.stop();
    }
}

fn run_checker(registry: &Registry, signal: &StopSignal) {
    let stopped = || *signal.stopped.lock();
    while !stopped() {
        registry.check_all(stopped);
        let interval = registry.config().health.interval;
        let mut guard = signal.stopped.lock();
        if !*guard {
            signal.wake.wait_for(&mut guard, interval);
        }
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
        assert_eq!(err.argument, "failure_rate");
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
}
