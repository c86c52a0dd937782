//! GCRA: the generic cell rate algorithm (virtual scheduling form).

use crate::clock::{Clock, Nanos};
use crate::error::InvalidArgument;

use super::schedule::Schedule;
use super::{require_nonzero, require_rate, MAX_SPAN_NANOS};

/// A thread-safe, lock-free GCRA limiter admitting `rate` requests per second with bursts of `burst`.
///
/// The state is the theoretical arrival time (TAT) in one atomic word. With
/// the emission interval `T = ceil(1e9 / rate)` nanoseconds, a request for
/// `n` cells at `now` is admitted when
/// `max(TAT, now) + n * T - now <= burst * T`, and then becomes the new TAT.
/// (This is ITU-T I.371's virtual scheduling with a delay variation
/// tolerance of `(burst - 1) * T`.) From idle it admits `burst` requests at
/// once, then one every `T`; over any interval of `t` seconds it admits at most
/// `burst + rate * t` requests. Rounding `T` up keeps the rate at or below `rate`.
#[derive(Debug)]
pub struct Gcra {
    schedule: Schedule,
    rate: f64,
    burst: u64,
    emission_interval: Nanos,
    clock: Clock,
}

impl Gcra {
    /// A limiter of `rate` requests per second and bursts of up to `burst` requests.
    ///
    /// Refuses NaN, infinite, zero or negative `rate`, a rate above one per
    /// nanosecond, a `burst` of 0, and a burst that would take more than 146
    /// years to drain.
    pub fn new(rate: f64, burst: u64, clock: Clock) -> Result<Self, InvalidArgument> {
        require_rate("rate", rate)?;
        let burst = require_nonzero("burst", burst)?;
        let emission_interval = (1e9 / rate).ceil() as Nanos;
        let tolerance = burst
            .checked_mul(emission_interval)
            .filter(|&tolerance| tolerance <= MAX_SPAN_NANOS)
            .ok_or_else(|| {
                InvalidArgument::new(
                    "burst",
                    format!("burst / rate must be under 146 years, got {burst} / {rate}"),
                )
            })?;
        Ok(Self {
            schedule: Schedule::new(0, tolerance),
            rate,
            burst,
            emission_interval,
            clock,
        })
    }

    /// Requests admitted per second.
    pub fn rate(&self) -> f64 {
        self.rate
    }

    /// Requests admitted at once from idle.
    pub fn burst(&self) -> u64 {
        self.burst
    }

    /// Nanoseconds between two admissions at the sustained rate (`ceil(1e9 / rate)`).
    pub fn emission_interval(&self) -> Nanos {
        self.emission_interval
    }

    /// Admits `n` requests at once or none; `n > burst` is always refused.
    ///
    /// `n` must be at least 1.
    #[inline]
    pub fn try_acquire(&self, n: u64) -> Result<bool, InvalidArgument> {
        Ok(match self.cost(n)? {
            Some(cost) => self.schedule.try_admit(self.clock.now(), cost),
            None => false,
        })
    }

    /// Nanoseconds until `n` requests would be admitted (0 if now), `None` if `n > burst`.
    pub fn retry_after(&self, n: u64) -> Result<Option<Nanos>, InvalidArgument> {
        Ok(self
            .cost(n)?
            .map(|cost| self.schedule.wait(self.clock.now(), cost)))
    }

    #[inline]
    fn cost(&self, n: u64) -> Result<Option<Nanos>, InvalidArgument> {
        require_nonzero("n", n)?;
        // n <= burst, so n * T <= burst * T cannot overflow.
        Ok((n <= self.burst).then(|| n * self.emission_interval))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    const MS: Nanos = 1_000_000;

    fn gcra(rate: f64, burst: u64) -> (Gcra, ManualClock) {
        let clock = ManualClock::new(5 * MS);
        (
            Gcra::new(rate, burst, Clock::Manual(clock.clone())).unwrap(),
            clock,
        )
    }

    #[test]
    fn admits_a_burst_then_one_per_emission_interval() {
        let (gcra, clock) = gcra(100.0, 3);
        assert_eq!(gcra.emission_interval(), 10 * MS);
        for _ in 0..3 {
            assert_eq!(gcra.try_acquire(1), Ok(true));
        }
        assert_eq!(gcra.try_acquire(1), Ok(false));
        assert_eq!(gcra.retry_after(1), Ok(Some(10 * MS)));
        clock.advance(10 * MS - 1);
        assert_eq!(gcra.try_acquire(1), Ok(false));
        clock.advance(1);
        assert_eq!(gcra.try_acquire(1), Ok(true));
        assert_eq!(gcra.try_acquire(1), Ok(false));
    }

    #[test]
    fn multi_cell_requests_are_all_or_nothing() {
        let (gcra, clock) = gcra(10.0, 5);
        assert_eq!(gcra.try_acquire(4), Ok(true));
        assert_eq!(gcra.try_acquire(2), Ok(false));
        assert_eq!(gcra.retry_after(2), Ok(Some(100 * MS)));
        assert_eq!(gcra.try_acquire(1), Ok(true));
        clock.advance(200 * MS);
        assert_eq!(gcra.try_acquire(2), Ok(true));
        assert_eq!(gcra.try_acquire(6), Ok(false));
        assert_eq!(gcra.retry_after(6), Ok(None));
    }

    #[test]
    fn the_interval_is_rounded_up_so_the_rate_is_never_exceeded() {
        let (gcra, _) = gcra(3.0, 1);
        assert_eq!(gcra.emission_interval(), 333_333_334);
    }

    #[test]
    fn refuses_bad_arguments_by_name() {
        let err = |rate, burst| {
            Gcra::new(rate, burst, Clock::Monotonic)
                .unwrap_err()
                .argument
        };
        assert_eq!(err(0.0, 1), "rate");
        assert_eq!(err(-2.0, 1), "rate");
        assert_eq!(err(f64::NAN, 1), "rate");
        assert_eq!(err(f64::INFINITY, 1), "rate");
        assert_eq!(err(1.0, 0), "burst");
        assert_eq!(err(1e-9, u64::MAX), "burst");
        let (gcra, _) = gcra(1.0, 1);
        assert_eq!(gcra.try_acquire(0).unwrap_err().argument, "n");
        assert_eq!(gcra.retry_after(0).unwrap_err().argument, "n");
    }
}
