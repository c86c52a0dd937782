//! Retry decisions, backoff and the retry budget.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::config::{self, BackoffStrategy};
use crate::error::ConfigError;

/// How one try ended, as far as retrying cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// A response head arrived with this status.
    Status(u16),
    /// No connection could be made (refused, unreachable, connect timeout).
    ConnectFailure,
    /// The connection was reset or closed before a whole response head arrived.
    Reset,
    /// The per-try timeout fired before the response head.
    Timeout,
}

/// Backoff between tries, compiled.
#[derive(Debug, Clone)]
pub struct Backoff {
    strategy: BackoffStrategy,
    base_us: u64,
    max_us: u64,
}

impl Backoff {
    /// Delay before retry number `retry` (1 for the first retry), given a uniform random `u64`.
    ///
    /// Fixed: the base. Exponential: `min(max, base * 2^(retry-1))`. Full jitter: uniform in
    /// `[0, that]`. Never overflows, whatever `retry`.
    pub fn delay(&self, retry: u32, random: u64) -> Duration {
        let cap = self.ceiling(retry);
        let micros = match self.strategy {
            BackoffStrategy::Fixed => self.base_us,
            BackoffStrategy::Exponential => cap,
            // Multiply-shift: uniform over 0..=cap without a division.
            BackoffStrategy::FullJitter => {
                ((u128::from(random) * (u128::from(cap) + 1)) >> 64) as u64
            }
        };
        Duration::from_micros(micros)
    }

    /// `min(max, base * 2^(retry - 1))` in microseconds.
    fn ceiling(&self, retry: u32) -> u64 {
        let doublings = retry.max(1) - 1;
        let grown = if doublings >= 64 {
            u64::MAX
        } else {
            self.base_us.saturating_mul(1u64 << doublings)
        };
        grown.min(self.max_us)
    }
}

/// A route's retry policy, compiled.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Most retries after the first try.
    pub num_retries: u32,
    /// Timeout of each try.
    pub per_try_timeout: Option<Duration>,
    /// Backoff.
    pub backoff: Backoff,
    on_5xx: bool,
    on_gateway_error: bool,
    on_connect_failure: bool,
    on_reset: bool,
    on_status: bool,
    status_codes: Box<[u16]>,
    non_idempotent: bool,
}

impl RetryPolicy {
    /// Compiles `config` (None: the default, one retry on connect failure).
    ///
    /// Error paths are relative to the route: `retry.retry_on[1]`, `retry.backoff.max_ms`.
    pub fn compile(config: Option<&config::RetryPolicy>) -> Result<Self, ConfigError> {
        let default = config::RetryPolicy::default();
        let config = config.unwrap_or(&default);
        config::validate::retry(config, "retry")?;
        let on = |condition: &str| config.retry_on.iter().any(|c| c == condition);
        let backoff = &config.backoff;
        Ok(Self {
            num_retries: config.num_retries,
            per_try_timeout: (config.per_try_timeout_ms > 0)
                .then(|| Duration::from_millis(config.per_try_timeout_ms)),
            backoff: Backoff {
                strategy: backoff.strategy,
                base_us: backoff.base_ms.saturating_mul(1000),
                max_us: backoff.max_ms.saturating_mul(1000),
            },
            on_5xx: on("5xx"),
            on_gateway_error: on("gateway-error"),
            on_connect_failure: on("connect-failure"),
            on_reset: on("reset"),
            on_status: on("retriable-status-codes"),
            status_codes: config.retriable_status_codes.clone().into_boxed_slice(),
            non_idempotent: config.retry_non_idempotent,
        })
    }

    /// Whether `outcome` of a try may be retried for a request of this idempotency
    /// (connect failures always; 5xx/reset/timeout only when idempotent or allowed).
    ///
    /// As in Envoy: `5xx` and `gateway-error` also cover connect failures, resets and
    /// per-try timeouts (a timeout is a 504); `reset` covers resets only.
    pub fn retriable(&self, outcome: AttemptOutcome, idempotent: bool) -> bool {
        let any_5xx = self.on_5xx || self.on_gateway_error;
        // The request never reached the upstream: safe to send again.
        if outcome == AttemptOutcome::ConnectFailure {
            return self.on_connect_failure || any_5xx;
        }
        if !(idempotent || self.non_idempotent) {
            return false;
        }
        match outcome {
            AttemptOutcome::ConnectFailure => true,
            AttemptOutcome::Reset => self.on_reset || any_5xx,
            AttemptOutcome::Timeout => any_5xx,
            AttemptOutcome::Status(status) => {
                (self.on_5xx && (500..=599).contains(&status))
                    || (self.on_gateway_error && (502..=504).contains(&status))
                    || (self.on_status && self.status_codes.contains(&status))
            }
        }
    }
}

/// Retries in flight may be at most a percentage of requests in flight, with a floor,
/// so retries can never multiply the load on a struggling cluster.
#[derive(Debug)]
pub struct RetryBudget {
    /// Permille of active requests (integer math on the hot path).
    permille: u64,
    min_concurrency: u64,
    active_requests: AtomicU64,
    active_retries: AtomicU64,
    exhausted: AtomicU64,
}

/// A retry admitted by the budget; dropping it ends the retry.
#[derive(Debug)]
pub struct RetryToken<'a> {
    budget: &'a RetryBudget,
}

impl RetryBudget {
    /// A budget from its config (percent clamped to 0..=100).
    pub fn new(config: &config::RetryBudget) -> Self {
        let percent = if config.budget_percent.is_finite() {
            config.budget_percent.clamp(0.0, 100.0)
        } else {
            0.0
        };
        Self {
            permille: (percent * 10.0).round() as u64,
            min_concurrency: u64::from(config.min_retry_concurrency),
            active_requests: AtomicU64::new(0),
            active_retries: AtomicU64::new(0),
            exhausted: AtomicU64::new(0),
        }
    }
    /// A request started (counts toward the base of the percentage).
    pub fn request_started(&self) {
        self.active_requests.fetch_add(1, Ordering::Relaxed);
    }
    /// A request ended.
    pub fn request_finished(&self) {
        let _ = self
            .active_requests
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
    }
    /// Retries allowed in flight now: `max(min_retry_concurrency, budget% of active requests)`.
    pub fn allowed(&self) -> u64 {
        let by_share = self
            .active_requests
            .load(Ordering::Relaxed)
            .saturating_mul(self.permille)
            / 1000;
        by_share.max(self.min_concurrency)
    }
    /// Retries in flight.
    pub fn active_retries(&self) -> u64 {
        self.active_retries.load(Ordering::Relaxed)
    }
    /// Admits one retry, or refuses when the budget is spent.
    pub fn try_retry(&self) -> Option<RetryToken<'_>> {
        let allowed = self.allowed();
        let admitted = self
            .active_retries
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| {
                (n < allowed).then_some(n + 1)
            })
            .is_ok();
        if admitted {
            Some(RetryToken { budget: self })
        } else {
            self.exhausted.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
    /// Retries refused so far.
    pub fn exhausted(&self) -> u64 {
        self.exhausted.load(Ordering::Relaxed)
    }
}

impl Drop for RetryToken<'_> {
    fn drop(&mut self) {
        let _ = self
            .budget
            .active_retries
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| n.checked_sub(1));
    }
}
