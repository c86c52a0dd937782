//! Rate limits keyed by service, instance, client IP or header value.

use std::collections::HashMap;
use std::time::Duration;

use dmsc_core::clock::Clock;
use dmsc_core::hash::xxhash64;
use dmsc_core::ratelimit::{SlidingWindowLimiter, TokenBucket};
use dmsc_core::InvalidArgument;
use parking_lot::Mutex;

use crate::config::{self, RateLimitAlgorithm};
use crate::error::ConfigError;

/// Most shards of the key map (each a mutex, so keys rarely contend).
const SHARDS: usize = 16;
/// A refused request may be retried no sooner than this.
const MIN_RETRY_AFTER: Duration = Duration::from_millis(1);

/// A request refused by a rate limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimited {
    /// When a retry may succeed (for `Retry-After`, rounded up to whole seconds there).
    pub retry_after: Duration,
}

/// The limiter of one key.
#[derive(Debug)]
enum Limiter {
    Bucket(TokenBucket),
    Window(SlidingWindowLimiter),
}

impl Limiter {
    #[inline]
    fn check(&self) -> Result<(), RateLimited> {
        let admitted = match self {
            Limiter::Bucket(bucket) => bucket.try_acquire(1.0),
            Limiter::Window(window) => window.try_acquire(1),
        };
        if matches!(admitted, Ok(true)) {
            return Ok(());
        }
        let wait = match self {
            Limiter::Bucket(bucket) => bucket.time_until_available(1.0),
            Limiter::Window(window) => window.retry_after(1),
        };
        let nanos = match wait {
            Ok(Some(nanos)) => nanos,
            // One request always fits a limit of at least one; be safe anyway.
            _ => 1_000_000_000,
        };
        Err(RateLimited {
            retry_after: Duration::from_nanos(nanos).max(MIN_RETRY_AFTER),
        })
    }
}

/// How to build a key's limiter.
#[derive(Debug, Clone)]
struct Spec {
    algorithm: RateLimitAlgorithm,
    requests: u64,
    per_seconds: f64,
    capacity: f64,
    clock: Clock,
}

impl Spec {
    fn build(&self) -> Result<Limiter, InvalidArgument> {
        Ok(match self.algorithm {
            RateLimitAlgorithm::TokenBucket => Limiter::Bucket(TokenBucket::new(
                self.capacity,
                self.requests as f64 / self.per_seconds,
                None,
                self.clock.clone(),
            )?),
            RateLimitAlgorithm::SlidingWindow => Limiter::Window(SlidingWindowLimiter::new(
                self.requests,
                self.per_seconds,
                self.clock.clone(),
            )?),
        })
    }
}

/// One shard of the key map; `touched` orders entries by last use.
#[derive(Debug, Default)]
struct Shard {
    entries: HashMap<Box<[u8]>, (Limiter, u64)>,
    tick: u64,
}

impl Shard {
    /// Forgets the least recently used eighth of the shard (at least one key).
    fn evict(&mut self) {
        let mut ages: Vec<u64> = self.entries.values().map(|(_, touched)| *touched).collect();
        if ages.is_empty() {
            return;
        }
        let cut = (ages.len() / 8).min(ages.len() - 1);
        let (_, &mut newest_evicted, _) = ages.select_nth_unstable(cut);
        // Ties are impossible: every touch takes a fresh tick, so `cut + 1` keys go.
        self.entries
            .retain(|_, (_, touched)| *touched > newest_evicted);
    }
}

/// One configured limit: a limiter per key (dmsc-core's TokenBucket or
/// SlidingWindowLimiter), at most `max_keys` keys, least recently used forgotten.
#[derive(Debug)]
pub struct KeyedRateLimiter {
    /// What the key is.
    pub key: config::RateLimitKey,
    spec: Spec,
    /// The budget of the empty key (`service`), outside the map: no allocation per call.
    service: Limiter,
    shards: Box<[Mutex<Shard>]>,
    per_shard: usize,
}

impl KeyedRateLimiter {
    /// Builds the limiter; `path` names the config field for errors.
    pub fn new(config: &config::RateLimit, path: &str) -> Result<Self, ConfigError> {
        Self::with_clock(config, path, Clock::Monotonic)
    }

    /// Builds the limiter reading time from `clock` (tests drive a manual clock).
    pub fn with_clock(
        config: &config::RateLimit,
        path: &str,
        clock: Clock,
    ) -> Result<Self, ConfigError> {
        config::validate::rate_limit(config, path)?;
        let spec = Spec {
            algorithm: config.algorithm,
            requests: config.requests,
            per_seconds: config.per_seconds,
            capacity: config.burst.unwrap_or(config.requests) as f64,
            clock,
        };
        let service = spec.build().map_err(|err| {
            let name = match err.argument {
                "capacity" if config.burst.is_some() => "burst",
                "window" | "refill_per_second" => "per_seconds",
                _ => "requests",
            };
            ConfigError::new(format!("{path}.{name}"), err.reason)
        })?;
        // Fewer shards than keys would make the per-shard bound exceed max_keys.
        let shard_count = SHARDS.min(config.max_keys);
        Ok(Self {
            key: config.key.clone(),
            spec,
            service,
            shards: (0..shard_count)
                .map(|_| Mutex::new(Shard::default()))
                .collect(),
            per_shard: config.max_keys / shard_count,
        })
    }

    /// Takes one request from the budget of `key` (empty key for `service`).
    pub fn check(&self, key: &[u8]) -> Result<(), RateLimited> {
        if key.is_empty() {
            return self.service.check();
        }
        let index = (xxhash64(key, 0) % self.shards.len() as u64) as usize;
        let mut shard = self.shards[index].lock();
        shard.tick += 1;
        let tick = shard.tick;
        if let Some((limiter, touched)) = shard.entries.get_mut(key) {
            *touched = tick;
            return limiter.check();
        }
        if shard.entries.len() >= self.per_shard {
            shard.evict();
        }
        // Validated in `new`: building cannot fail; admit rather than refuse on the impossible.
        let Ok(limiter) = self.spec.build() else {
            return Ok(());
        };
        let verdict = limiter.check();
        shard.entries.insert(key.into(), (limiter, tick));
        verdict
    }

    /// Keys tracked now (at most `max_keys`).
    pub fn tracked_keys(&self) -> usize {
        self.shards.iter().map(|s| s.lock().entries.len()).sum()
    }
}
