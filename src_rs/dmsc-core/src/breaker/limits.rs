//! Envoy-style concurrency limits ("circuit breaking thresholds") for bulkheads.
//!
//! Four independent limits, as in Envoy's `CircuitBreakers.Thresholds` with its defaults:
//! connections (1024), pending requests (1024), active requests (1024) and active retries (3).
//! Each is a lock-free counter: [`Limit::try_acquire`] increments it with a compare-and-swap loop
//! only while it is below the maximum, so it never exceeds the maximum even transiently, and
//! counts a refusal as an overflow. [`Limit::release`] never takes it below zero: releasing what
//! was not acquired is reported as an error.
//!
//! Overflow counters follow Envoy's statistics: `upstream_cx_overflow` for connections,
//! `upstream_rq_pending_overflow` for pending requests *and* for active requests (Envoy counts
//! both there; [`Limit::overflows`] keeps them apart), `upstream_rq_retry_overflow` for retries.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::InvalidArgument;

/// One of the four limited resources.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Resource {
    /// Upstream connections (`max_connections`).
    Connections,
    /// Requests queued while waiting for a connection (`max_pending_requests`).
    PendingRequests,
    /// Requests in flight (`max_requests`).
    Requests,
    /// Retries in flight (`max_retries`).
    Retries,
}

impl Resource {
    /// Singular name used in error messages: `"connection"`, `"pending request"`, ...
    pub fn noun(self) -> &'static str {
        match self {
            Resource::Connections => "connection",
            Resource::PendingRequests => "pending request",
            Resource::Requests => "request",
            Resource::Retries => "retry",
        }
    }
}

/// A release that had no matching acquire; the counter was left unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotHeld {
    /// The resource released once too often.
    pub resource: Resource,
}

impl fmt::Display for NotHeld {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "release of a {} that is not held", self.resource.noun())
    }
}

impl std::error::Error for NotHeld {}

/// A counter bounded by a maximum, with its overflow count. Cache-line aligned so that the four
/// limits of a [`ConcurrencyLimits`] do not contend with each other.
#[derive(Debug)]
#[repr(align(64))]
pub struct Limit {
    resource: Resource,
    max: u64,
    active: AtomicU64,
    overflows: AtomicU64,
}

impl Limit {
    fn new(resource: Resource, max: u64) -> Self {
        Self {
            resource,
            max,
            active: AtomicU64::new(0),
            overflows: AtomicU64::new(0),
        }
    }

    /// Takes one unit if fewer than the maximum are held; otherwise counts an overflow.
    #[inline]
    pub fn try_acquire(&self) -> bool {
        let mut current = self.active.load(Ordering::Relaxed);
        loop {
            if current >= self.max {
                self.overflows.fetch_add(1, Ordering::Relaxed);
                return false;
            }
            match self.active.compare_exchange_weak(
                current,
                current + 1,
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(actual) => current = actual,
            }
        }
    }

    /// Gives back one unit; refuses (and changes nothing) when none is held.
    #[inline]
    pub fn release(&self) -> Result<(), NotHeld> {
        let mut current = self.active.load(Ordering::Relaxed);
        loop {
            if current == 0 {
                return Err(NotHeld {
                    resource: self.resource,
                });
            }
            match self.active.compare_exchange_weak(
                current,
                current - 1,
                Ordering::Release,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Ok(()),
                Err(actual) => current = actual,
            }
        }
    }

    /// Units held now.
    #[inline]
    pub fn active(&self) -> u64 {
        self.active.load(Ordering::Relaxed)
    }

    /// The configured maximum.
    pub fn max(&self) -> u64 {
        self.max
    }

    /// Units still available (Envoy's `remaining_*` gauges).
    pub fn remaining(&self) -> u64 {
        self.max.saturating_sub(self.active())
    }

    /// Whether the limit is reached (Envoy's `*_open` gauges).
    pub fn is_open(&self) -> bool {
        self.active() >= self.max
    }

    /// Acquisitions refused because the limit was reached.
    pub fn overflows(&self) -> u64 {
        self.overflows.load(Ordering::Relaxed)
    }
}

/// The four concurrency limits of one upstream cluster (one routing priority).
#[derive(Debug)]
pub struct ConcurrencyLimits {
    connections: Limit,
    pending_requests: Limit,
    requests: Limit,
    retries: Limit,
}

impl Default for ConcurrencyLimits {
    /// Envoy's defaults: 1024 connections, pending requests and requests, 3 retries.
    fn default() -> Self {
        Self::new(1024, 1024, 1024, 3).expect("defaults are valid")
    }
}

impl ConcurrencyLimits {
    /// Limits with these maxima. Connections and requests need at least 1; pending requests and
    /// retries may be 0 (no queueing, no retries).
    pub fn new(
        max_connections: u64,
        max_pending_requests: u64,
        max_requests: u64,
        max_retries: u64,
    ) -> Result<Self, InvalidArgument> {
        for (argument, value) in [
            ("max_connections", max_connections),
            ("max_requests", max_requests),
        ] {
            if value == 0 {
                return Err(InvalidArgument::new(argument, "must be at least 1, got 0"));
            }
        }
        Ok(Self {
            connections: Limit::new(Resource::Connections, max_connections),
            pending_requests: Limit::new(Resource::PendingRequests, max_pending_requests),
            requests: Limit::new(Resource::Requests, max_requests),
            retries: Limit::new(Resource::Retries, max_retries),
        })
    }

    /// The limit of `resource`.
    #[inline]
    pub fn limit(&self, resource: Resource) -> &Limit {
        match resource {
            Resource::Connections => &self.connections,
            Resource::PendingRequests => &self.pending_requests,
            Resource::Requests => &self.requests,
            Resource::Retries => &self.retries,
        }
    }

    /// The connection limit.
    #[inline]
    pub fn connections(&self) -> &Limit {
        &self.connections
    }

    /// The pending-request limit.
    #[inline]
    pub fn pending_requests(&self) -> &Limit {
        &self.pending_requests
    }

    /// The active-request limit.
    #[inline]
    pub fn requests(&self) -> &Limit {
        &self.requests
    }

    /// The active-retry limit.
    #[inline]
    pub fn retries(&self) -> &Limit {
        &self.retries
    }

    /// Envoy's `upstream_rq_pending_overflow`: pending-request and request overflows together.
    pub fn upstream_rq_pending_overflow(&self) -> u64 {
        self.pending_requests.overflows() + self.requests.overflows()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acquire_stops_at_the_maximum_and_counts_overflows() {
        let limits = ConcurrencyLimits::new(2, 0, 1, 3).unwrap();
        let connections = limits.connections();
        assert!(connections.try_acquire());
        assert!(connections.try_acquire());
        assert!(!connections.try_acquire());
        assert_eq!((connections.active(), connections.overflows()), (2, 1));
        assert!(connections.is_open());
        connections.release().unwrap();
        assert_eq!(connections.remaining(), 1);
        assert!(!limits.pending_requests().try_acquire());
        assert!(limits.requests().try_acquire());
        assert!(!limits.requests().try_acquire());
        assert_eq!(limits.upstream_rq_pending_overflow(), 2);
    }

    #[test]
    fn release_without_acquire_is_refused() {
        let limits = ConcurrencyLimits::default();
        let err = limits.limit(Resource::Retries).release().unwrap_err();
        assert_eq!(err.resource, Resource::Retries);
        assert_eq!(err.to_string(), "release of a retry that is not held");
        assert_eq!(limits.retries().active(), 0);
    }

    #[test]
    fn zero_maxima_are_refused_where_meaningless() {
        assert_eq!(
            ConcurrencyLimits::new(0, 1, 1, 1).unwrap_err().argument,
            "max_connections"
        );
        assert_eq!(
            ConcurrencyLimits::new(1, 1, 0, 1).unwrap_err().argument,
            "max_requests"
        );
        assert!(ConcurrencyLimits::new(1, 0, 1, 0).is_ok());
    }

    #[test]
    fn concurrent_acquires_never_exceed_the_maximum() {
        use std::sync::atomic::AtomicU64;
        let limits = ConcurrencyLimits::new(1024, 1024, 5, 3).unwrap();
        let peak = AtomicU64::new(0);
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| {
                    for _ in 0..10_000 {
                        if limits.requests().try_acquire() {
                            peak.fetch_max(limits.requests().active(), Ordering::Relaxed);
                            limits.requests().release().unwrap();
                        }
                    }
                });
            }
        });
        assert!(peak.load(Ordering::Relaxed) <= 5);
        assert_eq!(limits.requests().active(), 0);
    }
}
