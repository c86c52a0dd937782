//! Sliding window log: an exact sliding window that remembers each admission.

use std::collections::VecDeque;

use parking_lot::Mutex;

use crate::clock::{Clock, Nanos};
use crate::error::InvalidArgument;

use super::{require_nonzero, require_window};

/// A thread-safe limiter admitting at most `limit` requests in any sliding window of length `window`.
///
/// It keeps a log of admissions (time and count) still inside the window,
/// so it is exact where [`SlidingWindowLimiter`](super::SlidingWindowLimiter)
/// estimates, at the cost of memory that grows with the admissions in a
/// window (one entry per admission, at most `limit`) and a mutex around the
/// log. An admission at `t` counts against every window containing `t`,
/// that is until `t + window`.
#[derive(Debug)]
pub struct SlidingLogLimiter {
    log: Mutex<Log>,
    limit: u64,
    window: Nanos,
    clock: Clock,
}

#[derive(Debug, Default)]
struct Log {
    /// Admissions in time order: (time, count).
    entries: VecDeque<(Nanos, u64)>,
    /// Sum of the counts in `entries`.
    total: u64,
}

impl Log {
    /// Drops the admissions that no longer count at `now`.
    fn expire(&mut self, now: Nanos, window: Nanos) {
        while let Some(&(at, count)) = self.entries.front() {
            if at + window > now {
                break;
            }
            self.entries.pop_front();
            self.total -= count;
        }
    }
}

impl SlidingLogLimiter {
    /// A limiter of `limit` requests per sliding `window_seconds`.
    ///
    /// Refuses a `limit` of 0 and a NaN, infinite, non-positive or
    /// sub-nanosecond `window`.
    pub fn new(limit: u64, window_seconds: f64, clock: Clock) -> Result<Self, InvalidArgument> {
        Ok(Self {
            log: Mutex::new(Log::default()),
            limit: require_nonzero("limit", limit)?,
            window: require_window("window", window_seconds)?,
            clock,
        })
    }

    /// Requests admitted per window.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Length of the window in nanoseconds.
    pub fn window(&self) -> Nanos {
        self.window
    }

    /// Admits `n` requests at once or none; `n > limit` is always refused.
    ///
    /// `n` must be at least 1.
    pub fn try_acquire(&self, n: u64) -> Result<bool, InvalidArgument> {
        require_nonzero("n", n)?;
        if n > self.limit {
            return Ok(false);
        }
        let mut log = self.log.lock();
        // Reading the clock under the lock keeps the log in time order.
        let now = self.clock.now();
        log.expire(now, self.window);
        if log.total + n > self.limit {
            return Ok(false);
        }
        log.total += n;
        match log.entries.back_mut() {
            Some((at, count)) if *at == now => *count += n,
            _ => log.entries.push_back((now, n)),
        }
        Ok(true)
    }

    /// Requests admitted in the sliding window ending now.
    pub fn count(&self) -> u64 {
        let mut log = self.log.lock();
        log.expire(self.clock.now(), self.window);
        log.total
    }

    /// Nanoseconds until `n` requests would be admitted if nothing else were (0 if now).
    ///
    /// `None` when `n > limit`: such a request is never admitted.
    pub fn retry_after(&self, n: u64) -> Result<Option<Nanos>, InvalidArgument> {
        require_nonzero("n", n)?;
        if n > self.limit {
            return Ok(None);
        }
        let mut log = self.log.lock();
        let now = self.clock.now();
        log.expire(now, self.window);
        let excess = (log.total + n).saturating_sub(self.limit);
        if excess == 0 {
            return Ok(Some(0));
        }
        // Room appears when the oldest admissions covering the excess expire;
        // n <= limit guarantees that expiring the whole log is enough.
        let mut freed = 0;
        let expiry = log.entries.iter().find_map(|&(at, count)| {
            freed += count;
            (freed >= excess).then(|| at + self.window - now)
        });
        Ok(Some(expiry.unwrap_or(0)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use std::sync::Arc;

    const MS: Nanos = 1_000_000;

    fn limiter(limit: u64, window_ms: u64) -> (SlidingLogLimiter, ManualClock) {
        let clock = ManualClock::new(0);
        let window = window_ms as f64 / 1e3;
        let limiter = SlidingLogLimiter::new(limit, window, Clock::Manual(clock.clone()));
        (limiter.unwrap(), clock)
    }

    #[test]
    fn each_admission_expires_exactly_one_window_later() {
        let (limiter, clock) = limiter(3, 100);
        assert_eq!(limiter.try_acquire(2), Ok(true));
        clock.advance(40 * MS);
        assert_eq!(limiter.try_acquire(1), Ok(true));
        assert_eq!(limiter.try_acquire(1), Ok(false));
        assert_eq!(limiter.count(), 3);
        assert_eq!(limiter.retry_after(1), Ok(Some(60 * MS)));
        assert_eq!(limiter.retry_after(3), Ok(Some(100 * MS)));
        clock.advance(60 * MS - 1);
        assert_eq!(limiter.try_acquire(1), Ok(false));
        clock.advance(1);
        assert_eq!(limiter.count(), 1);
        assert_eq!(limiter.try_acquire(2), Ok(true));
        assert_eq!(limiter.retry_after(4), Ok(None));
    }

    #[test]
    fn refuses_bad_arguments_by_name() {
        let err = |limit, window| {
            SlidingLogLimiter::new(limit, window, Clock::Monotonic)
                .unwrap_err()
                .argument
        };
        assert_eq!(err(0, 1.0), "limit");
        assert_eq!(err(1, -1.0), "window");
        assert_eq!(err(1, f64::NAN), "window");
        let (limiter, _) = limiter(1, 1);
        assert_eq!(limiter.try_acquire(0).unwrap_err().argument, "n");
    }

    #[test]
    fn concurrent_acquirers_share_exactly_the_limit() {
        let (limiter, _) = limiter(1_000, 1_000);
        let limiter = Arc::new(limiter);
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let limiter = limiter.clone();
                std::thread::spawn(move || {
                    (0..1_000)
                        .filter(|_| limiter.try_acquire(1).unwrap())
                        .count()
                })
            })
            .collect();
        let total: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(total, 1_000);
    }
}
