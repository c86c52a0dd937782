//! Sliding windows that aggregate call outcomes with subtract-on-evict, as resilience4j does.
//!
//! Both windows keep a running total, so a snapshot is O(1). The count window is a ring of the
//! last N outcomes (one byte each). The time window is a ring of N one-second buckets; moving it
//! forward costs one step per elapsed second, at most N, so its cost is O(1) amortised over
//! calls and elapsed time. Resetting either window is O(1).

use crate::clock::Nanos;

const NANOS_PER_SECOND: Nanos = 1_000_000_000;

/// The outcome of one call, as the breaker classifies it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Succeeded within the slow-call threshold.
    Success,
    /// Failed within the slow-call threshold.
    Failure,
    /// Succeeded but took longer than the slow-call threshold.
    SlowSuccess,
    /// Failed and took longer than the slow-call threshold.
    SlowFailure,
}

impl Outcome {
    /// Classifies a call from its result and whether it was slow.
    #[inline]
    pub fn of(success: bool, slow: bool) -> Self {
        match (success, slow) {
            (true, false) => Outcome::Success,
            (false, false) => Outcome::Failure,
            (true, true) => Outcome::SlowSuccess,
            (false, true) => Outcome::SlowFailure,
        }
    }

    #[inline]
    fn is_failure(self) -> bool {
        matches!(self, Outcome::Failure | Outcome::SlowFailure)
    }

    #[inline]
    fn is_slow(self) -> bool {
        matches!(self, Outcome::SlowSuccess | Outcome::SlowFailure)
    }
}

/// Aggregated outcomes of a window (or of one bucket of it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Calls recorded.
    pub calls: u64,
    /// Failed calls, slow or not.
    pub failed: u64,
    /// Slow calls, failed or not.
    pub slow: u64,
    /// Calls that were both slow and failed.
    pub slow_failed: u64,
}

impl Counts {
    #[inline]
    fn add(&mut self, outcome: Outcome) {
        self.calls += 1;
        self.failed += u64::from(outcome.is_failure());
        self.slow += u64::from(outcome.is_slow());
        self.slow_failed += u64::from(outcome == Outcome::SlowFailure);
    }

    #[inline]
    fn remove(&mut self, outcome: Outcome) {
        self.calls -= 1;
        self.failed -= u64::from(outcome.is_failure());
        self.slow -= u64::from(outcome.is_slow());
        self.slow_failed -= u64::from(outcome == Outcome::SlowFailure);
    }

    #[inline]
    fn subtract(&mut self, other: &Counts) {
        self.calls -= other.calls;
        self.failed -= other.failed;
        self.slow -= other.slow;
        self.slow_failed -= other.slow_failed;
    }

    /// Failed calls over recorded calls (0 when empty).
    pub fn failure_rate(&self) -> f64 {
        ratio(self.failed, self.calls)
    }

    /// Slow calls over recorded calls (0 when empty).
    pub fn slow_call_rate(&self) -> f64 {
        ratio(self.slow, self.calls)
    }
}

fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

/// The last `capacity` outcomes.
#[derive(Debug, Clone)]
pub struct CountWindow {
    outcomes: Box<[Outcome]>,
    next: usize,
    len: usize,
    total: Counts,
}

impl CountWindow {
    /// An empty window of `capacity` calls (at least 1).
    pub fn new(capacity: usize) -> Self {
        Self {
            outcomes: vec![Outcome::Success; capacity.max(1)].into_boxed_slice(),
            next: 0,
            len: 0,
            total: Counts::default(),
        }
    }

    /// Adds `outcome`, evicting the oldest one when full.
    #[inline]
    pub fn record(&mut self, outcome: Outcome) -> Counts {
        if self.len == self.outcomes.len() {
            self.total.remove(self.outcomes[self.next]);
        } else {
            self.len += 1;
        }
        self.outcomes[self.next] = outcome;
        self.next += 1;
        if self.next == self.outcomes.len() {
            self.next = 0;
        }
        self.total.add(outcome);
        self.total
    }

    /// Aggregate of the calls in the window.
    pub fn snapshot(&self) -> Counts {
        self.total
    }

    /// Forgets every call; stale slots are overwritten before they are read again.
    pub fn reset(&mut self) {
        self.next = 0;
        self.len = 0;
        self.total = Counts::default();
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    /// Reset generation the bucket was written in; other generations read as empty.
    generation: u64,
    second: u64,
    counts: Counts,
}

/// The calls of the last `seconds` whole seconds of the clock, one bucket per second.
#[derive(Debug, Clone)]
pub struct TimeWindow {
    buckets: Box<[Bucket]>,
    /// The second of the newest bucket; `None` right after a reset.
    head_second: Option<u64>,
    generation: u64,
    total: Counts,
}

impl TimeWindow {
    /// An empty window of `seconds` buckets (at least 1).
    pub fn new(seconds: usize) -> Self {
        Self {
            buckets: vec![Bucket::default(); seconds.max(1)].into_boxed_slice(),
            head_second: None,
            generation: 1,
            total: Counts::default(),
        }
    }

    /// Adds `outcome` at time `now`.
    #[inline]
    pub fn record(&mut self, outcome: Outcome, now: Nanos) -> Counts {
        let second = self.advance(now);
        let generation = self.generation;
        let bucket = self.bucket_mut(second);
        if bucket.generation != generation || bucket.second != second {
            *bucket = Bucket {
                generation,
                second,
                counts: Counts::default(),
            };
        }
        bucket.counts.add(outcome);
        self.total.add(outcome);
        self.total
    }

    /// Aggregate of the calls of the last `seconds` seconds as of `now`.
    pub fn snapshot(&mut self, now: Nanos) -> Counts {
        self.advance(now);
        self.total
    }

    /// Forgets every call in O(1) by starting a new bucket generation.
    pub fn reset(&mut self) {
        self.generation += 1;
        self.head_second = None;
        self.total = Counts::default();
    }

    fn bucket_mut(&mut self, second: u64) -> &mut Bucket {
        let len = self.buckets.len() as u64;
        &mut self.buckets[(second % len) as usize]
    }

    /// Moves the window so that its newest bucket is the second of `now`; evicts what fell out.
    fn advance(&mut self, now: Nanos) -> u64 {
        let current = now / NANOS_PER_SECOND;
        let size = self.buckets.len() as u64;
        let head = match self.head_second {
            // A clock that went backwards keeps the newer head.
            Some(head) if head >= current => return head,
            Some(head) => head,
            None => {
                self.head_second = Some(current);
                return current;
            }
        };
        if current - head >= size {
            // Everything fell out: drop it all at once instead of bucket by bucket.
            self.reset();
        } else {
            let generation = self.generation;
            for second in head + 1..=current {
                let Some(evicted) = second.checked_sub(size) else {
                    continue;
                };
                let bucket = self.bucket_mut(second);
                if bucket.generation == generation && bucket.second == evicted {
                    let counts = bucket.counts;
                    bucket.counts = Counts::default();
                    self.total.subtract(&counts);
                }
            }
        }
        self.head_second = Some(current);
        current
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Nanos = NANOS_PER_SECOND;

    #[test]
    fn count_window_evicts_the_oldest_outcome() {
        let mut window = CountWindow::new(3);
        window.record(Outcome::Failure);
        window.record(Outcome::SlowSuccess);
        let counts = window.record(Outcome::Success);
        assert_eq!(
            counts,
            Counts {
                calls: 3,
                failed: 1,
                slow: 1,
                slow_failed: 0
            }
        );
        let counts = window.record(Outcome::SlowFailure);
        assert_eq!(
            counts,
            Counts {
                calls: 3,
                failed: 1,
                slow: 2,
                slow_failed: 1
            }
        );
        window.reset();
        assert_eq!(window.snapshot(), Counts::default());
        assert_eq!(window.record(Outcome::Failure).calls, 1);
    }

    #[test]
    fn time_window_drops_buckets_older_than_its_size() {
        let mut window = TimeWindow::new(3);
        window.record(Outcome::Failure, 0);
        window.record(Outcome::Failure, S / 2);
        window.record(Outcome::Success, S);
        window.record(Outcome::Success, 2 * S);
        assert_eq!(window.snapshot(2 * S + 1).calls, 4);
        // Second 0 leaves the window when second 3 starts.
        let counts = window.snapshot(3 * S);
        assert_eq!((counts.calls, counts.failed), (2, 0));
        assert_eq!(window.snapshot(5 * S).calls, 0);
        window.record(Outcome::Failure, 5 * S);
        assert_eq!(window.snapshot(100 * S), Counts::default());
    }

    #[test]
    fn time_window_reset_ignores_buckets_of_the_same_second() {
        let mut window = TimeWindow::new(4);
        window.record(Outcome::Failure, 10 * S);
        window.reset();
        assert_eq!(window.record(Outcome::Success, 10 * S).failed, 0);
        window.reset();
        window.record(Outcome::Success, 11 * S);
        // The stale bucket of second 10 must not be subtracted when its slot is reused.
        assert_eq!(window.snapshot(14 * S).calls, 1);
        assert_eq!(window.snapshot(15 * S), Counts::default());
        assert_eq!(window.snapshot(20 * S), Counts::default());
    }

    #[test]
    fn time_window_matches_a_brute_force_sum() {
        let mut rng = fastrand::Rng::with_seed(7);
        let size = 5u64;
        let mut window = TimeWindow::new(size as usize);
        let mut log: Vec<(u64, Outcome)> = Vec::new();
        let mut now = 0;
        for _ in 0..2000 {
            now += rng.u64(0..S * 2);
            let outcome = Outcome::of(rng.bool(), rng.bool());
            let counts = window.record(outcome, now);
            log.push((now / S, outcome));
            let current = now / S;
            let mut expected = Counts::default();
            for &(second, past) in &log {
                if second + size > current {
                    expected.add(past);
                }
            }
            assert_eq!(counts, expected);
        }
    }
}
