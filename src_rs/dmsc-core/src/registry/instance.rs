//! One registered instance: its endpoint, health, load and circuit breaker.

use std::any::Any;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Mutex, RwLock};

use super::health::{Health, Streak};
use super::Endpoint;
use crate::breaker::CircuitBreaker;
use crate::clock::Nanos;

/// Opaque data a binding keeps with an instance (the Python layer keeps the endpoint object
/// it registered, so discovery hands back that object without building a new one).
pub type Attachment = Arc<dyn Any + Send + Sync>;

/// Weight of the newest sample in the latency EWMA.
pub const LATENCY_EWMA_WEIGHT: f64 = 0.2;

/// Bits of the latency EWMA before its first sample (a NaN pattern no sample produces).
const NO_SAMPLE: u64 = u64::MAX;

/// `next_check` of an instance waiting in the checker's queue: never due again until probed.
pub(crate) const QUEUED: Nanos = Nanos::MAX;

/// Load figures, shared by successive registrations of the same address so that requests in
/// flight and the latency history survive a metadata update.
#[derive(Debug)]
struct Load {
    active: AtomicU64,
    reported: AtomicU64,
    latency_ewma_bits: AtomicU64,
}

impl Default for Load {
    fn default() -> Self {
        Self {
            active: AtomicU64::new(0),
            reported: AtomicU64::new(0),
            latency_ewma_bits: AtomicU64::new(NO_SAMPLE),
        }
    }
}

/// One registered instance and its live state.
#[derive(Debug)]
pub struct Instance {
    /// What the instance registered.
    pub endpoint: Endpoint,
    health: AtomicU8,
    pub(crate) streak: Mutex<Streak>,
    load: Arc<Load>,
    pub(crate) breaker: RwLock<Option<Arc<CircuitBreaker>>>,
    next_check: AtomicU64,
    registered: AtomicBool,
    attachment: Option<Attachment>,
}

impl Instance {
    /// A fresh instance, first due for a health check at `next_check` (monotonic nanoseconds).
    pub(crate) fn new(
        endpoint: Endpoint,
        health: Health,
        attachment: Option<Attachment>,
        next_check: Nanos,
    ) -> Self {
        Self {
            endpoint,
            health: AtomicU8::new(health as u8),
            streak: Mutex::new(Streak::default()),
            load: Arc::default(),
            breaker: RwLock::new(None),
            next_check: AtomicU64::new(next_check),
            registered: AtomicBool::new(true),
            attachment,
        }
    }

    /// The instance replacing `previous` at the same address: it keeps the load, breaker and
    /// check streak of `previous`, and its health unless `health` says otherwise.
    pub(crate) fn succeed(
        previous: &Instance,
        endpoint: Endpoint,
        health: Option<Health>,
        attachment: Option<Attachment>,
        next_check: Nanos,
    ) -> Self {
        Self {
            endpoint,
            health: AtomicU8::new(health.unwrap_or_else(|| previous.health()) as u8),
            streak: Mutex::new(*previous.streak.lock()),
            load: Arc::clone(&previous.load),
            breaker: RwLock::new(previous.breaker()),
            next_check: AtomicU64::new(next_check),
            registered: AtomicBool::new(true),
            attachment,
        }
    }

    /// The data a binding attached at registration.
    #[inline]
    pub fn attachment(&self) -> Option<&Attachment> {
        self.attachment.as_ref()
    }

    /// The instance's circuit breaker, once circuit breaking has seen a call to it.
    pub fn breaker(&self) -> Option<Arc<CircuitBreaker>> {
        self.breaker.read().clone()
    }

    /// Whether the breaker lets a call through (always, without a breaker). In HALF_OPEN a
    /// `true` takes one trial permit, which the call's recorded outcome gives back.
    #[inline]
    pub fn allow(&self) -> bool {
        self.breaker.read().as_ref().is_none_or(|b| b.allow())
    }

    /// Current health.
    #[inline]
    pub fn health(&self) -> Health {
        Health::from_u8(self.health.load(Ordering::Acquire))
    }

    pub(crate) fn set_health(&self, health: Health) -> Health {
        Health::from_u8(self.health.swap(health as u8, Ordering::AcqRel))
    }

    /// Requests in flight on this instance: those started here and not yet finished, plus the
    /// last count its own sidecar reported (see [`super::Registry::report_load`]).
    #[inline]
    pub fn active_requests(&self) -> u64 {
        self.load.active.load(Ordering::Relaxed) + self.load.reported.load(Ordering::Relaxed)
    }

    /// Exponentially weighted moving average of the request latency (the newest sample
    /// weighs [`LATENCY_EWMA_WEIGHT`]); `None` before the first sample.
    pub fn latency_ewma(&self) -> Option<Duration> {
        let bits = self.load.latency_ewma_bits.load(Ordering::Relaxed);
        (bits != NO_SAMPLE).then(|| Duration::from_nanos(f64::from_bits(bits).round() as u64))
    }

    /// Folds one request latency into the EWMA.
    pub(crate) fn observe_latency(&self, latency: Nanos) {
        let sample = latency as f64;
        // The closure always returns Some, so the update cannot fail.
        let _ = self.load.latency_ewma_bits.fetch_update(
            Ordering::Relaxed,
            Ordering::Relaxed,
            |bits| {
                let next = if bits == NO_SAMPLE {
                    sample
                } else {
                    let old = f64::from_bits(bits);
                    old + LATENCY_EWMA_WEIGHT * (sample - old)
                };
                Some(next.to_bits())
            },
        );
    }

    /// Replaces the load figures with a report from the instance's sidecar.
    pub(crate) fn set_reported_load(&self, active_requests: u64, latency: Option<Duration>) {
        self.load.reported.store(active_requests, Ordering::Relaxed);
        if let Some(latency) = latency {
            let nanos = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX) as f64;
            self.load
                .latency_ewma_bits
                .store(nanos.to_bits(), Ordering::Relaxed);
        }
    }

    /// Counts a request as in flight on this instance until the returned guard is dropped.
    pub fn begin_request(self: &Arc<Self>) -> InFlight {
        self.load.active.fetch_add(1, Ordering::Relaxed);
        InFlight {
            instance: Arc::clone(self),
        }
    }

    /// Whether the instance is still in the registry (not deregistered nor replaced).
    #[inline]
    pub fn is_registered(&self) -> bool {
        self.registered.load(Ordering::Acquire)
    }

    pub(crate) fn retire(&self) {
        self.registered.store(false, Ordering::Release);
    }

    /// When the instance is next due for a health check (monotonic nanoseconds).
    #[inline]
    pub(crate) fn next_check(&self) -> Nanos {
        self.next_check.load(Ordering::Acquire)
    }

    /// Takes the instance for checking if it is still due at `at`; false if another taker won.
    #[inline]
    pub(crate) fn claim(&self, at: Nanos) -> bool {
        self.next_check
            .compare_exchange(at, QUEUED, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    }

    pub(crate) fn schedule_at(&self, at: Nanos) {
        self.next_check.store(at, Ordering::Release);
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
        self.instance.load.active.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instance() -> Arc<Instance> {
        let endpoint = Endpoint {
            name: "svc".into(),
            host: "127.0.0.1".into(),
            port: 1,
            ..Endpoint::default()
        };
        Arc::new(Instance::new(endpoint, Health::Healthy, None, 0))
    }

    #[test]
    fn latency_ewma_starts_at_the_first_sample_and_follows_later_ones() {
        let i = instance();
        assert_eq!(i.latency_ewma(), None);
        i.observe_latency(100);
        assert_eq!(i.latency_ewma(), Some(Duration::from_nanos(100)));
        i.observe_latency(200);
        assert_eq!(i.latency_ewma(), Some(Duration::from_nanos(120)));
    }

    #[test]
    fn reported_load_adds_to_local_requests() {
        let i = instance();
        let _call = i.begin_request();
        i.set_reported_load(5, Some(Duration::from_millis(3)));
        assert_eq!(i.active_requests(), 6);
        assert_eq!(i.latency_ewma(), Some(Duration::from_millis(3)));
    }

    #[test]
    fn a_successor_shares_load_and_keeps_health_unless_told() {
        let first = instance();
        let call = first.begin_request();
        let next = Instance::succeed(&first, first.endpoint.clone(), None, None, 0);
        assert_eq!(next.health(), Health::Healthy);
        assert_eq!(next.active_requests(), 1);
        drop(call);
        assert_eq!(next.active_requests(), 0);
        let down = Instance::succeed(
            &first,
            first.endpoint.clone(),
            Some(Health::Unhealthy),
            None,
            0,
        );
        assert_eq!(down.health(), Health::Unhealthy);
    }

    #[test]
    fn only_one_claim_of_a_due_check_wins() {
        let i = instance();
        assert!(i.claim(0));
        assert!(!i.claim(0));
        assert_eq!(i.next_check(), QUEUED);
        i.schedule_at(7);
        assert!(i.claim(7));
    }
}
