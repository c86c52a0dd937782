//! Token bucket: a capacity of tokens refilled continuously at a fixed rate.

use crate::clock::{Clock, Nanos};
use crate::error::{require_non_negative, require_positive, InvalidArgument};

use super::schedule::Schedule;
use super::{require_rate, MAX_SPAN_NANOS};

/// A thread-safe, lock-free token bucket.
///
/// It holds up to `capacity` tokens (fractions allowed) and gains
/// `refill_per_second` tokens per second. Over any interval of `t` seconds it
/// admits at most `capacity + refill_per_second * t` tokens.
///
/// The token count is stored as time (see the module on virtual scheduling),
/// so the whole state is one atomic timestamp. An acquisition of more than
/// `capacity` tokens can never succeed: [`TokenBucket::try_acquire`] returns
/// `false` for it and [`TokenBucket::time_until_available`] returns `None`.
#[derive(Debug)]
pub struct TokenBucket {
    schedule: Schedule,
    capacity: f64,
    refill_per_second: f64,
    nanos_per_token: f64,
    clock: Clock,
}

impl TokenBucket {
    /// A bucket holding `initial` tokens (full when `None`).
    ///
    /// Refuses NaN, infinite, zero or negative `capacity` and
    /// `refill_per_second`, a refill above one token per nanosecond, an
    /// `initial` outside `[0, capacity]`, and a bucket that would take more
    /// than 146 years to refill.
    pub fn new(
        capacity: f64,
        refill_per_second: f64,
        initial: Option<f64>,
        clock: Clock,
    ) -> Result<Self, InvalidArgument> {
        require_positive("capacity", capacity)?;
        require_rate("refill_per_second", refill_per_second)?;
        let initial = match initial {
            None => capacity,
            Some(tokens) => {
                require_non_negative("initial", tokens)?;
                if tokens > capacity {
                    return Err(InvalidArgument::new(
                        "initial",
                        format!("must be at most capacity ({capacity}), got {tokens}"),
                    ));
                }
                tokens
            }
        };
        let nanos_per_token = 1e9 / refill_per_second;
        let tolerance = (capacity * nanos_per_token).ceil();
        if tolerance > MAX_SPAN_NANOS as f64 {
            return Err(InvalidArgument::new(
                "capacity",
                format!(
                    "capacity / refill_per_second must be under 146 years, \
                     got {capacity} / {refill_per_second}"
                ),
            ));
        }
        let tolerance = tolerance as Nanos;
        let stored = ((initial * nanos_per_token).ceil() as Nanos).min(tolerance);
        let schedule = Schedule::new(clock.now() + (tolerance - stored), tolerance);
        Ok(Self {
            schedule,
            capacity,
            refill_per_second,
            nanos_per_token,
            clock,
        })
    }

    /// The most tokens the bucket holds.
    pub fn capacity(&self) -> f64 {
        self.capacity
    }

    /// Tokens added per second.
    pub fn refill_per_second(&self) -> f64 {
        self.refill_per_second
    }

    /// Takes `n` tokens if the bucket holds them; `false` leaves the bucket unchanged.
    ///
    /// `n` must be finite and greater than 0; `n > capacity` always returns `false`.
    #[inline]
    pub fn try_acquire(&self, n: f64) -> Result<bool, InvalidArgument> {
        Ok(match self.cost(n)? {
            Some(cost) => self.schedule.try_admit(self.clock.now(), cost),
            None => false,
        })
    }

    /// Tokens in the bucket now.
    pub fn available(&self) -> f64 {
        let owed = self.schedule.backlog(self.clock.now());
        let spare = self.schedule.tolerance().saturating_sub(owed);
        // Rounding the capacity up to whole nanoseconds may exceed it by a hair.
        (spare as f64 / self.nanos_per_token).min(self.capacity)
    }

    /// Nanoseconds until `n` tokens are available (0 if they are now), `None` if `n > capacity`.
    pub fn time_until_available(&self, n: f64) -> Result<Option<Nanos>, InvalidArgument> {
        Ok(self
            .cost(n)?
            .map(|cost| self.schedule.wait(self.clock.now(), cost)))
    }

    /// Refill time of `n` tokens in whole nanoseconds, rounded up; `None` above capacity.
    #[inline]
    fn cost(&self, n: f64) -> Result<Option<Nanos>, InvalidArgument> {
        require_positive("n", n)?;
        if n > self.capacity {
            return Ok(None);
        }
        // n <= capacity, so the cost never exceeds the tolerance.
        Ok(Some((n * self.nanos_per_token).ceil() as Nanos))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    const SECOND: Nanos = 1_000_000_000;

    fn manual_bucket(capacity: f64, rate: f64, initial: Option<f64>) -> (TokenBucket, ManualClock) {
        let clock = ManualClock::new(0);
        let bucket = TokenBucket::new(capacity, rate, initial, Clock::Manual(clock.clone()));
        (bucket.unwrap(), clock)
    }

    #[test]
    fn starts_full_and_drains() {
        let (bucket, _) = manual_bucket(10.0, 1.0, None);
        assert_eq!(bucket.available(), 10.0);
        assert_eq!(bucket.try_acquire(3.0), Ok(true));
        assert_eq!(bucket.available(), 7.0);
        assert_eq!(bucket.try_acquire(7.0), Ok(true));
        assert_eq!(bucket.try_acquire(0.5), Ok(false));
        assert_eq!(bucket.available(), 0.0);
    }

    #[test]
    fn refills_at_the_rate_up_to_capacity() {
        let (bucket, clock) = manual_bucket(10.0, 4.0, Some(0.0));
        assert_eq!(bucket.try_acquire(1.0), Ok(false));
        assert_eq!(bucket.time_until_available(1.0), Ok(Some(SECOND / 4)));
        clock.advance(SECOND / 2);
        assert_eq!(bucket.available(), 2.0);
        assert_eq!(bucket.try_acquire(2.0), Ok(true));
        assert_eq!(bucket.try_acquire(0.1), Ok(false));
        clock.advance(100 * SECOND);
        assert_eq!(bucket.available(), 10.0);
        assert_eq!(bucket.time_until_available(10.0), Ok(Some(0)));
    }

    #[test]
    fn a_full_bucket_admits_exactly_its_capacity_with_awkward_rates() {
        let (bucket, _) = manual_bucket(10.0, 3.0, None);
        assert_eq!(bucket.try_acquire(10.0), Ok(true));
        let (bucket, _) = manual_bucket(7.3, 0.7, Some(2.9));
        assert_eq!(bucket.try_acquire(2.9), Ok(true));
        assert_eq!(bucket.try_acquire(1e-6), Ok(false));
    }

    #[test]
    fn more_than_capacity_is_never_available() {
        let (bucket, clock) = manual_bucket(5.0, 1.0, None);
        clock.advance(1_000 * SECOND);
        assert_eq!(bucket.try_acquire(5.5), Ok(false));
        assert_eq!(bucket.time_until_available(5.5), Ok(None));
        assert_eq!(bucket.available(), 5.0);
    }

    #[test]
    fn refuses_bad_arguments_by_name() {
        let clock = Clock::Monotonic;
        let err = |c, r, i| {
            TokenBucket::new(c, r, i, clock.clone())
                .unwrap_err()
                .argument
        };
        assert_eq!(err(0.0, 1.0, None), "capacity");
        assert_eq!(err(f64::NAN, 1.0, None), "capacity");
        assert_eq!(err(f64::INFINITY, 1.0, None), "capacity");
        assert_eq!(err(1.0, -1.0, None), "refill_per_second");
        assert_eq!(err(1.0, f64::NAN, None), "refill_per_second");
        assert_eq!(err(1.0, 1.0, Some(2.0)), "initial");
        assert_eq!(err(1.0, 1.0, Some(-0.5)), "initial");
        assert_eq!(err(1e12, 1e-3, None), "capacity");
        let (bucket, _) = manual_bucket(1.0, 1.0, None);
        for n in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert_eq!(bucket.try_acquire(n).unwrap_err().argument, "n");
            assert_eq!(bucket.time_until_available(n).unwrap_err().argument, "n");
        }
    }

    #[test]
    fn concurrent_acquirers_share_exactly_the_capacity() {
        let (bucket, _) = manual_bucket(10_000.0, 1.0, None);
        let bucket = Arc::new(bucket);
        let admitted = Arc::new(AtomicU64::new(0));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (bucket, admitted) = (bucket.clone(), admitted.clone());
                std::thread::spawn(move || {
                    for _ in 0..5_000 {
                        if bucket.try_acquire(1.0).unwrap() {
                            admitted.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        assert_eq!(admitted.load(Ordering::Relaxed), 10_000);
    }
}
