//! Virtual scheduling: the single-timestamp state behind the token bucket and GCRA.
//!
//! The state is the theoretical arrival time (TAT): the instant at which the
//! limiter would be back to full capacity if nothing else were admitted. An
//! admission that costs `cost` nanoseconds of refill moves the TAT to
//! `max(TAT, now) + cost`, and is refused when that lands more than
//! `tolerance` (the capacity, expressed as time) ahead of `now`. Over any
//! interval `[t1, t2]` the admitted costs therefore sum to at most
//! `tolerance + (t2 - t1)`.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::clock::Nanos;

/// A lock-free theoretical-arrival-time automaton.
#[derive(Debug)]
pub(crate) struct Schedule {
    tat: AtomicU64,
    tolerance: Nanos,
}

impl Schedule {
    /// A schedule whose TAT starts at `tat`; admissions may run `tolerance` ahead of now.
    pub(crate) fn new(tat: Nanos, tolerance: Nanos) -> Self {
        Self {
            tat: AtomicU64::new(tat),
            tolerance,
        }
    }

    /// The capacity of the schedule, in nanoseconds of refill.
    #[inline]
    pub(crate) fn tolerance(&self) -> Nanos {
        self.tolerance
    }

    /// Admits an admission costing `cost` nanoseconds at `now`, or refuses it without change.
    #[inline]
    pub(crate) fn try_admit(&self, now: Nanos, cost: Nanos) -> bool {
        // The TAT is the only shared datum, so relaxed ordering is enough: every
        // update is a read-modify-write of this one word.
        let mut tat = self.tat.load(Ordering::Relaxed);
        loop {
            // A `now` read before another thread's later `now` only makes this
            // check stricter, never looser.
            let new_tat = tat.max(now) + cost;
            if new_tat - now > self.tolerance {
                return false;
            }
            match self
                .tat
                .compare_exchange_weak(tat, new_tat, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return true,
                Err(current) => tat = current,
            }
        }
    }

    /// Nanoseconds from `now` until an admission costing `cost` would succeed (0 if it would now).
    #[inline]
    pub(crate) fn wait(&self, now: Nanos, cost: Nanos) -> Nanos {
        let tat = self.tat.load(Ordering::Relaxed);
        (tat.max(now) + cost - now).saturating_sub(self.tolerance)
    }

    /// How far the TAT is ahead of `now`: the refill time still owed.
    #[inline]
    pub(crate) fn backlog(&self, now: Nanos) -> Nanos {
        self.tat.load(Ordering::Relaxed).saturating_sub(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admits_up_to_the_tolerance_then_refills_with_time() {
        let schedule = Schedule::new(0, 30);
        assert!(schedule.try_admit(100, 10));
        assert!(schedule.try_admit(100, 20));
        assert!(!schedule.try_admit(100, 1));
        assert_eq!(schedule.backlog(100), 30);
        assert_eq!(schedule.wait(100, 10), 10);
        assert!(!schedule.try_admit(109, 10));
        assert!(schedule.try_admit(110, 10));
    }

    #[test]
    fn idle_time_beyond_the_tolerance_is_not_banked() {
        let schedule = Schedule::new(0, 30);
        assert_eq!(schedule.backlog(1_000), 0);
        assert!(schedule.try_admit(1_000, 30));
        assert!(!schedule.try_admit(1_000, 1));
    }
}
