//! Peak-EWMA: latency-aware power of two choices (Finagle, Linkerd), with a
//! penalty for failures.
//!
//! Each host has a latency estimate `e`. Between samples it decays toward
//! zero, `e(t) = e(s) * exp(-(t - s) / decay)` (Finagle's `load()` observes a
//! zero latency for this), so a host that looked slow is tried again. A sample
//! `x` at time `t` replaces the estimate when it is at least the current value
//! (peak sensitivity) and otherwise pulls it toward `x`:
//! `e' = e(t) * w + x * (1 - w)` with `w = exp(-(t - s) / decay)`, so the
//! longer since the last sample, the more the new one counts. A pick draws two
//! different hosts and takes the lower cost `e(t) * (active + 1)`.
//!
//! Linkerd records a failure's latency like any other, so a host failing in
//! a millisecond looks like the fastest host and draws traffic. Here a failure
//! counts as `max(latency, failure_penalty * slowest)`, where `slowest` is the
//! slowest recent success over all hosts (it starts at `default_rtt` and decays
//! like an estimate). Penalising relative to successes keeps penalties from
//! compounding, and a `failure_penalty` above 1 makes a failing host strictly
//! costlier than any healthy one. `failure_penalty = 0` is Linkerd's behaviour.
//!
//! For picks not to read the clock, each estimate is stored as its *level*
//! `ln e(t) + (t - origin) / decay`, which does not change between samples:
//! `e(t) = exp(level - (t - origin) / decay)`, and the time term cancels when
//! two hosts are compared. A pick is two atomic loads and at most one `ln`.

use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

use super::active::{ActiveRequests, CountsRequests};
use super::rng::AtomicRng;
use super::{check_host, require_hosts, HostOutOfRange, Pick};
use crate::clock::{Clock, Nanos};
use crate::error::{require_non_negative, require_positive, InvalidArgument};

/// Estimates never go below a nanosecond, so that a host's cost still grows with its load.
const MIN_ESTIMATE: f64 = 1e-9;

/// Shortest decay accepted: levels grow by `elapsed / decay`, and must keep precision for years.
const MIN_DECAY_SECONDS: f64 = 1e-3;

/// An `f64` in an `AtomicU64`.
#[derive(Debug)]
struct AtomicF64(AtomicU64);

impl AtomicF64 {
    fn new(value: f64) -> Self {
        Self(AtomicU64::new(value.to_bits()))
    }

    #[inline]
    fn load(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::Acquire))
    }

    fn store(&self, value: f64) {
        self.0.store(value.to_bits(), Ordering::Release);
    }

    fn fetch_max(&self, value: f64) {
        // A failed update means the stored value is already at least `value`.
        let _ = self
            .0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |bits| {
                (value > f64::from_bits(bits)).then_some(value.to_bits())
            });
    }
}

/// The estimate as of the last sample, kept by writers.
#[derive(Debug, Clone, Copy)]
struct Sample {
    estimate: f64,
    at: Nanos,
}

#[derive(Debug)]
struct HostEstimate {
    /// `ln estimate + (t - origin) / decay`, read by picks without locking.
    level: AtomicF64,
    /// Serialises samples of this host.
    last: Mutex<Sample>,
}

/// Peak-EWMA latency cost with power of two choices over `n` hosts.
///
/// See the module documentation for the estimator. Thread-safe: picks are
/// lock-free; recording a sample locks only that host.
#[derive(Debug)]
pub struct PeakEwma {
    hosts: Box<[HostEstimate]>,
    active: ActiveRequests,
    rng: AtomicRng,
    clock: Clock,
    origin: Nanos,
    decay_nanos: f64,
    failure_penalty: f64,
    /// Level of the slowest recent success (`default_rtt` at the start).
    slowest: AtomicF64,
}

impl PeakEwma {
    /// Peak-EWMA over `n` hosts.
    ///
    /// `decay` (seconds, at least 0.001) is the time constant of the
    /// estimates; `default_rtt` (seconds, > 0) is every host's estimate before
    /// its first sample; `failure_penalty` (>= 0) scales the slowest recent
    /// success into the latency a failure counts as.
    pub fn new(
        n: usize,
        decay: f64,
        default_rtt: f64,
        failure_penalty: f64,
        clock: Clock,
        seed: Option<u64>,
    ) -> Result<Self, InvalidArgument> {
        let n = require_hosts("n", n)?;
        let decay = require_positive("decay", decay)?;
        if decay < MIN_DECAY_SECONDS {
            return Err(InvalidArgument::new(
                "decay",
                format!("must be at least {MIN_DECAY_SECONDS} seconds, got {decay}"),
            ));
        }
        let default_rtt = require_positive("default_rtt", default_rtt)?;
        let failure_penalty = require_non_negative("failure_penalty", failure_penalty)?;
        let origin = clock.now();
        let initial = default_rtt.max(MIN_ESTIMATE);
        let hosts = (0..n)
            .map(|_| HostEstimate {
                level: AtomicF64::new(initial.ln()),
                last: Mutex::new(Sample {
                    estimate: initial,
                    at: origin,
                }),
            })
            .collect();
        Ok(Self {
            hosts,
            active: ActiveRequests::new(n),
            rng: AtomicRng::new(seed),
            clock,
            origin,
            decay_nanos: decay * 1e9,
            failure_penalty,
            slowest: AtomicF64::new(initial.ln()),
        })
    }

    /// `(t - origin) / decay`: how many decay periods have passed at `now`.
    #[inline]
    fn periods(&self, now: Nanos) -> f64 {
        now.saturating_sub(self.origin) as f64 / self.decay_nanos
    }

    /// Records a response of `host` that took `latency` seconds.
    ///
    /// A failure counts as `max(latency, failure_penalty * slowest recent success)`.
    /// Refuses a NaN, infinite or negative latency.
    pub fn record(&self, host: usize, latency: f64, success: bool) -> Result<(), RecordError> {
        let host = check_host(host, self.hosts.len())?;
        let latency = require_non_negative("latency", latency)?;
        let entry = &self.hosts[host];
        let mut last = entry.last.lock();
        // Read under the lock so that one host's samples are in time order.
        let now = self.clock.now().max(last.at);
        let periods = self.periods(now);
        let sample = if success {
            latency
        } else {
            let slowest = (self.slowest.load() - periods).exp();
            latency.max(self.failure_penalty * slowest)
        };
        let weight = (-((now - last.at) as f64) / self.decay_nanos).exp();
        let current = last.estimate * weight;
        let estimate = if sample >= current {
            sample
        } else {
            current * weight + sample * (1.0 - weight)
        }
        .max(MIN_ESTIMATE);
        *last = Sample { estimate, at: now };
        entry.level.store(estimate.ln() + periods);
        drop(last);
        if success {
            self.slowest
                .fetch_max(sample.max(MIN_ESTIMATE).ln() + periods);
        }
        Ok(())
    }

    /// The latency estimate of `host` now, in seconds.
    pub fn estimate(&self, host: usize) -> Result<f64, HostOutOfRange> {
        let host = check_host(host, self.hosts.len())?;
        let now = self.clock.now();
        Ok((self.hosts[host].level.load() - self.periods(now)).exp())
    }

    /// The cost of `host` now: `estimate * (active + 1)`.
    pub fn cost(&self, host: usize) -> Result<f64, HostOutOfRange> {
        let estimate = self.estimate(host)?;
        Ok(estimate * (self.active.load(host) + 1) as f64)
    }

    /// Whether host `a` costs less than host `b` (ties go to `a`).
    #[inline]
    fn cheaper(&self, a: usize, b: usize) -> bool {
        let level_gap = self.hosts[a].level.load() - self.hosts[b].level.load();
        let (load_a, load_b) = (self.active.load(a), self.active.load(b));
        if load_a == load_b {
            level_gap <= 0.0
        } else {
            // e_a * (load_a + 1) <= e_b * (load_b + 1), in logarithms.
            let load_ratio = (load_b as f64 + 1.0) / (load_a as f64 + 1.0);
            level_gap <= load_ratio.ln()
        }
    }
}

impl Pick for PeakEwma {
    #[inline]
    fn pick(&self) -> usize {
        let hosts = self.hosts.len();
        if hosts == 1 {
            return 0;
        }
        // Two different hosts, uniformly.
        let a = self.rng.index(hosts);
        let b = self.rng.index(hosts - 1);
        let b = if b >= a { b + 1 } else { b };
        if self.cheaper(a, b) {
            a
        } else {
            b
        }
    }

    fn hosts(&self) -> usize {
        self.hosts.len()
    }
}

impl CountsRequests for PeakEwma {
    #[inline]
    fn active_requests(&self) -> &ActiveRequests {
        &self.active
    }
}

/// Why [`PeakEwma::record`] refused a sample.
#[derive(Debug, Clone, PartialEq)]
pub enum RecordError {
    /// The host index is out of range.
    Host(HostOutOfRange),
    /// The latency is NaN, infinite or negative.
    Latency(InvalidArgument),
}

impl From<HostOutOfRange> for RecordError {
    fn from(err: HostOutOfRange) -> Self {
        Self::Host(err)
    }
}

impl From<InvalidArgument> for RecordError {
    fn from(err: InvalidArgument) -> Self {
        Self::Latency(err)
    }
}

impl std::fmt::Display for RecordError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Host(err) => err.fmt(f),
            Self::Latency(err) => err.fmt(f),
        }
    }
}

impl std::error::Error for RecordError {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    const MS: Nanos = 1_000_000;

    fn ewma(n: usize, penalty: f64, clock: &ManualClock) -> PeakEwma {
        PeakEwma::new(
            n,
            10.0,
            0.03,
            penalty,
            Clock::Manual(clock.clone()),
            Some(9),
        )
        .unwrap()
    }

    /// Host 0 fails in 1 ms, host 1 succeeds in 20 ms; returns host 0's share of the last half.
    fn fast_failure_share(penalty: f64) -> f64 {
        let clock = ManualClock::new(0);
        let lb = ewma(2, penalty, &clock);
        let mut to_zero = 0;
        for i in 0..4000 {
            let host = lb.pick_and_start();
            let latency = if host == 0 { MS } else { 20 * MS };
            clock.advance(latency);
            lb.finish(host).unwrap();
            lb.record(host, latency as f64 / 1e9, host != 0).unwrap();
            if i >= 2000 && host == 0 {
                to_zero += 1;
            }
        }
        f64::from(to_zero) / 2000.0
    }

    #[test]
    fn a_fast_failing_host_is_avoided() {
        let share = fast_failure_share(2.0);
        assert!(share < 0.02, "fast-failing host got {share}");
    }

    #[test]
    fn without_penalty_the_fast_failing_host_attracts_traffic() {
        let share = fast_failure_share(0.0);
        assert!(share > 0.9, "fast-failing host got only {share}");
    }

    #[test]
    fn peak_replaces_and_lower_samples_decay_toward_it() {
        let clock = ManualClock::new(0);
        let lb = ewma(1, 2.0, &clock);
        lb.record(0, 0.5, true).unwrap();
        assert!((lb.estimate(0).unwrap() - 0.5).abs() < 1e-12);
        // Idle for one decay period: the estimate falls by e.
        clock.advance(10_000 * MS);
        let idle = lb.estimate(0).unwrap();
        assert!((idle - 0.5 / std::f64::consts::E).abs() < 1e-9, "{idle}");
        // A lower sample after that period: e' = e(t) w + x (1 - w), w = 1/e.
        lb.record(0, 0.01, true).unwrap();
        let w = (-1.0f64).exp();
        let expected = idle * w + 0.01 * (1.0 - w);
        assert!((lb.estimate(0).unwrap() - expected).abs() < 1e-9);
    }

    #[test]
    fn cost_grows_with_active_requests() {
        let clock = ManualClock::new(0);
        let lb = ewma(2, 2.0, &clock);
        lb.start(0).unwrap();
        lb.start(0).unwrap();
        assert!((lb.cost(0).unwrap() - 0.09).abs() < 1e-12);
        // Equal estimates, host 0 loaded: host 1 always wins.
        assert!((0..100).all(|_| lb.pick() == 1));
    }

    #[test]
    fn failure_counts_as_penalised_slowest_success() {
        let clock = ManualClock::new(0);
        let lb = ewma(2, 3.0, &clock);
        lb.record(1, 0.2, true).unwrap();
        lb.record(0, 0.001, false).unwrap();
        assert!((lb.estimate(0).unwrap() - 0.6).abs() < 1e-9);
    }

    #[test]
    fn refuses_bad_arguments() {
        let make = |decay, rtt, penalty| {
            PeakEwma::new(2, decay, rtt, penalty, Clock::Monotonic, None)
                .unwrap_err()
                .argument
        };
        assert_eq!(make(f64::NAN, 0.03, 1.0), "decay");
        assert_eq!(make(-1.0, 0.03, 1.0), "decay");
        assert_eq!(make(1e-6, 0.03, 1.0), "decay");
        assert_eq!(make(10.0, 0.0, 1.0), "default_rtt");
        assert_eq!(make(10.0, 0.03, -1.0), "failure_penalty");
        let lb = PeakEwma::new(2, 10.0, 0.03, 2.0, Clock::Monotonic, None).unwrap();
        assert!(matches!(
            lb.record(0, f64::NAN, true),
            Err(RecordError::Latency(_))
        ));
        assert!(matches!(lb.record(2, 0.1, true), Err(RecordError::Host(_))));
    }

    #[test]
    fn picks_two_different_hosts() {
        let clock = ManualClock::new(0);
        let lb = ewma(2, 2.0, &clock);
        // Host 0 is far costlier: with distinct draws it is never chosen.
        lb.record(0, 5.0, true).unwrap();
        assert!((0..1000).all(|_| lb.pick() == 1));
    }
}
