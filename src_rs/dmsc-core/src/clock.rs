//! Time sources for everything that reasons about time.
//!
//! Rate limiters, circuit breakers and latency-aware pickers take a
//! [`Clock`] so that tests can drive time by hand ([`ManualClock`]) while
//! production uses the monotonic clock.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

/// Nanoseconds since an arbitrary, fixed origin. Monotonic.
pub type Nanos = u64;

/// A shareable time source.
#[derive(Debug, Clone, Default)]
pub enum Clock {
    /// The process-wide monotonic clock.
    #[default]
    Monotonic,
    /// A clock that moves only when told to (tests, simulations).
    Manual(ManualClock),
}

impl Clock {
    /// Current time in nanoseconds since the clock's origin.
    #[inline]
    pub fn now(&self) -> Nanos {
        match self {
            Clock::Monotonic => monotonic_nanos(),
            Clock::Manual(manual) => manual.now(),
        }
    }
}

fn monotonic_nanos() -> Nanos {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    let origin = *ORIGIN.get_or_init(Instant::now);
    // Saturates after ~584 years of uptime.
    u64::try_from(origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// A clock advanced explicitly; clones share the same time.
#[derive(Debug, Clone, Default)]
pub struct ManualClock {
    nanos: Arc<AtomicU64>,
}

impl ManualClock {
    /// A manual clock starting at `start` nanoseconds.
    pub fn new(start: Nanos) -> Self {
        Self {
            nanos: Arc::new(AtomicU64::new(start)),
        }
    }

    /// Current time of this clock.
    #[inline]
    pub fn now(&self) -> Nanos {
        self.nanos.load(Ordering::Acquire)
    }

    /// Moves the clock forward by `delta` nanoseconds.
    pub fn advance(&self, delta: Nanos) {
        self.nanos.fetch_add(delta, Ordering::AcqRel);
    }

    /// Sets the clock to `nanos`; refuses to go backwards and returns the time in force.
    pub fn set(&self, nanos: Nanos) -> Nanos {
        self.nanos.fetch_max(nanos, Ordering::AcqRel).max(nanos)
    }
}

/// Converts seconds (as the public APIs spell durations) to nanoseconds.
#[inline]
pub fn seconds_to_nanos(seconds: f64) -> Nanos {
    (seconds * 1e9).round() as Nanos
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_is_shared_by_clones_and_never_goes_back() {
        let clock = ManualClock::new(10);
        let shared = Clock::Manual(clock.clone());
        clock.advance(5);
        assert_eq!(shared.now(), 15);
        assert_eq!(clock.set(3), 15);
        assert_eq!(clock.set(100), 100);
        assert_eq!(shared.now(), 100);
    }

    #[test]
    fn monotonic_clock_does_not_go_back() {
        let clock = Clock::Monotonic;
        let a = clock.now();
        let b = clock.now();
        assert!(b >= a);
    }
}
