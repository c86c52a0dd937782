//! Sliding window counter (Cloudflare-style): an approximate sliding window in one word.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::clock::{Clock, Nanos};
use crate::error::InvalidArgument;

use super::{require_nonzero, require_window};

/// The largest `limit`: both counts and a window tag share one 64-bit word.
pub const MAX_LIMIT: u64 = (1 << 24) - 1;

/// A thread-safe, lock-free sliding window counter admitting about `limit` requests per `window`.
///
/// Time is cut into fixed windows of length `window`, starting when the
/// limiter is created. The number of requests in the sliding window ending
/// now is estimated as the previous fixed window's count weighted by how much
/// of it the sliding window still overlaps, plus the current fixed window's
/// count: `previous * (window - elapsed) / window + current`. A request for `n`
/// is admitted when that estimate plus `n` is at most `limit` (computed in
/// exact integer arithmetic). This is the algorithm Cloudflare describes; it
/// assumes requests were spread evenly over the previous window. Any fixed
/// window admits at most `limit`, and any sliding window of length `window`
/// fewer than `2 * limit`. [`SlidingLogLimiter`](super::SlidingLogLimiter) is
/// the exact alternative.
///
/// The state packs the current window's count, the previous window's count
/// and the low bits of the window number into one `AtomicU64` (each count
/// takes as many bits as `limit` needs; the window tag keeps the rest, at
/// least 16 bits). After the limiter has been idle for a multiple of `2^tag`
/// windows, stale counts may be taken as recent for one window: that errs on
/// the side of refusing.
#[derive(Debug)]
pub struct SlidingWindowLimiter {
    state: AtomicU64,
    limit: u64,
    window: Nanos,
    origin: Nanos,
    count_bits: u32,
    count_mask: u64,
    tag_mask: u64,
    clock: Clock,
}

/// The decoded state as seen at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct View {
    window_index: u64,
    elapsed: Nanos,
    previous: u64,
    current: u64,
}

impl SlidingWindowLimiter {
    /// A limiter of `limit` requests per `window_seconds`.
    ///
    /// Refuses a `limit` of 0 or above [`MAX_LIMIT`], and a NaN, infinite,
    /// non-positive or sub-nanosecond `window`.
    pub fn new(limit: u64, window_seconds: f64, clock: Clock) -> Result<Self, InvalidArgument> {
        let limit = require_nonzero("limit", limit)?;
        if limit > MAX_LIMIT {
            return Err(InvalidArgument::new(
                "limit",
                format!("must be at most {MAX_LIMIT}, got {limit}"),
            ));
        }
        let window = require_window("window", window_seconds)?;
        let count_bits = u64::BITS - limit.leading_zeros();
        Ok(Self {
            state: AtomicU64::new(0),
            limit,
            window,
            origin: clock.now(),
            count_bits,
            count_mask: (1 << count_bits) - 1,
            tag_mask: u64::MAX >> (2 * count_bits),
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
    #[inline]
    pub fn try_acquire(&self, n: u64) -> Result<bool, InvalidArgument> {
        require_nonzero("n", n)?;
        if n > self.limit {
            return Ok(false);
        }
        // Acquire/Release pair each update with the clock read that produced
        // it, and reading the clock after loading the state makes `now` at
        // least as late as any window already stored: a stale `now` can never
        // roll the state back a window.
        let mut state = self.state.load(Ordering::Acquire);
        loop {
            let view = self.view(state, self.clock.now());
            if !self.fits(&view, n) {
                return Ok(false);
            }
            let next = self.encode(view.window_index, view.previous, view.current + n);
            match self
                .state
                .compare_exchange_weak(state, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return Ok(true),
                Err(current) => state = current,
            }
        }
    }

    /// The estimated number of requests in the sliding window ending now.
    pub fn estimated_count(&self) -> f64 {
        let view = self.view(self.state.load(Ordering::Acquire), self.clock.now());
        let weight = (self.window - view.elapsed) as f64 / self.window as f64;
        view.previous as f64 * weight + view.current as f64
    }

    /// Nanoseconds until `n` requests would be admitted if nothing else were (0 if now).
    ///
    /// `None` when `n > limit`: such a request is never admitted.
    pub fn retry_after(&self, n: u64) -> Result<Option<Nanos>, InvalidArgument> {
        require_nonzero("n", n)?;
        if n > self.limit {
            return Ok(None);
        }
        let view = self.view(self.state.load(Ordering::Acquire), self.clock.now());
        let window = self.window;
        if view.current + n <= self.limit {
            let at = self.earliest_elapsed(view.previous, self.limit - view.current - n);
            if at < window {
                return Ok(Some(at.saturating_sub(view.elapsed)));
            }
        }
        // Next window: the current count becomes the weighted previous one.
        let at = self.earliest_elapsed(view.current, self.limit - n);
        Ok(Some(window - view.elapsed + at))
    }

    /// The elapsed time into a window from which `previous` weighted leaves room for `spare` more.
    ///
    /// Solves `previous * (window - elapsed) <= spare * window` for the least `elapsed`.
    fn earliest_elapsed(&self, previous: u64, spare: u64) -> Nanos {
        if previous == 0 {
            return 0;
        }
        let window = u128::from(self.window);
        let room = u128::from(spare) * window / u128::from(previous);
        // room < window here unless the previous count already fits anywhere.
        window.saturating_sub(room) as Nanos
    }

    #[inline]
    fn fits(&self, view: &View, n: u64) -> bool {
        let window = u128::from(self.window);
        let weighted_previous = u128::from(view.previous) * u128::from(self.window - view.elapsed);
        weighted_previous + u128::from(view.current + n) * window <= u128::from(self.limit) * window
    }

    #[inline]
    fn view(&self, state: u64, now: Nanos) -> View {
        let offset = now.saturating_sub(self.origin);
        let window_index = offset / self.window;
        let stored_tag = state >> (2 * self.count_bits);
        let stored_current = state & self.count_mask;
        let stored_previous = (state >> self.count_bits) & self.count_mask;
        let (previous, current) = match window_index.wrapping_sub(stored_tag) & self.tag_mask {
            0 => (stored_previous, stored_current),
            1 => (stored_current, 0),
            _ => (0, 0),
        };
        View {
            window_index,
            elapsed: offset % self.window,
            previous,
            current,
        }
    }

    #[inline]
    fn encode(&self, window_index: u64, previous: u64, current: u64) -> u64 {
        ((window_index & self.tag_mask) << (2 * self.count_bits))
            | (previous << self.count_bits)
            | current
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use std::sync::Arc;

    const MS: Nanos = 1_000_000;

    fn limiter(limit: u64, window_ms: u64) -> (SlidingWindowLimiter, ManualClock) {
        let clock = ManualClock::new(7 * MS);
        let window = window_ms as f64 / 1e3;
        let limiter = SlidingWindowLimiter::new(limit, window, Clock::Manual(clock.clone()));
        (limiter.unwrap(), clock)
    }

    fn admitted(limiter: &SlidingWindowLimiter, attempts: u64) -> u64 {
        (0..attempts)
            .filter(|_| limiter.try_acquire(1).unwrap())
            .count() as u64
    }

    #[test]
    fn the_previous_window_counts_by_its_overlap() {
        let (limiter, clock) = limiter(10, 1_000);
        assert_eq!(admitted(&limiter, 15), 10);
        assert_eq!(limiter.retry_after(1), Ok(Some(1_000 * MS + 100 * MS)));
        clock.advance(1_250 * MS);
        // 10 * 0.75 + 0 = 7.5 leaves room for 2 more.
        assert_eq!(limiter.estimated_count(), 7.5);
        assert_eq!(admitted(&limiter, 5), 2);
        assert_eq!(limiter.retry_after(1), Ok(Some(50 * MS)));
        clock.advance(50 * MS - 1);
        assert_eq!(limiter.try_acquire(1), Ok(false));
        clock.advance(1);
        assert_eq!(limiter.try_acquire(1), Ok(true));
    }

    #[test]
    fn an_idle_gap_of_two_windows_forgets_everything() {
        let (limiter, clock) = limiter(3, 100);
        assert_eq!(admitted(&limiter, 3), 3);
        clock.advance(200 * MS);
        assert_eq!(limiter.estimated_count(), 0.0);
        assert_eq!(admitted(&limiter, 5), 3);
    }

    #[test]
    fn retry_after_waits_into_the_window_after_next_when_needed() {
        let (limiter, _) = limiter(1, 100);
        assert_eq!(limiter.try_acquire(1), Ok(true));
        assert_eq!(limiter.retry_after(1), Ok(Some(200 * MS)));
        assert_eq!(limiter.retry_after(2), Ok(None));
        assert_eq!(limiter.try_acquire(2), Ok(false));
    }

    #[test]
    fn the_largest_limit_still_fits_the_packed_state() {
        let (limiter, clock) = limiter(MAX_LIMIT, 10);
        assert_eq!(limiter.try_acquire(MAX_LIMIT), Ok(true));
        assert_eq!(limiter.try_acquire(1), Ok(false));
        clock.advance(15 * MS);
        assert_eq!(limiter.estimated_count(), MAX_LIMIT as f64 / 2.0);
        assert_eq!(limiter.try_acquire(MAX_LIMIT / 2), Ok(true));
        assert_eq!(limiter.try_acquire(1), Ok(false));
    }

    #[test]
    fn refuses_bad_arguments_by_name() {
        let err = |limit, window| {
            SlidingWindowLimiter::new(limit, window, Clock::Monotonic)
                .unwrap_err()
                .argument
        };
        assert_eq!(err(0, 1.0), "limit");
        assert_eq!(err(MAX_LIMIT + 1, 1.0), "limit");
        assert_eq!(err(1, 0.0), "window");
        assert_eq!(err(1, f64::NAN), "window");
        assert_eq!(err(1, f64::INFINITY), "window");
        let (limiter, _) = limiter(1, 1);
        assert_eq!(limiter.try_acquire(0).unwrap_err().argument, "n");
        assert_eq!(limiter.retry_after(0).unwrap_err().argument, "n");
    }

    #[test]
    fn concurrent_acquirers_share_exactly_the_limit() {
        let (limiter, _) = limiter(10_000, 1_000);
        let limiter = Arc::new(limiter);
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let limiter = limiter.clone();
                std::thread::spawn(move || admitted(&limiter, 5_000))
            })
            .collect();
        let total: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(total, 10_000);
    }
}
