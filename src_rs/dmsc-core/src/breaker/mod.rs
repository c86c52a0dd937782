//! Circuit breaking: a resilience4j-style breaker and Envoy-style concurrency limits.
//!
//! * [`CircuitBreaker`] decides from recent outcomes (failure rate, slow-call rate over a count-
//!   or time-based sliding window) whether calls to an upstream may proceed, moving between
//!   CLOSED, OPEN and HALF_OPEN as resilience4j's `CircuitBreakerStateMachine` does.
//! * [`ConcurrencyLimits`] bounds connections, pending requests, requests and retries in flight,
//!   as Envoy's cluster circuit breakers do, for bulkheads.

pub mod config;
pub mod limits;
pub mod state_machine;
pub mod window;

pub use config::{duration_from_seconds, CircuitBreakerConfig, WindowType, MAX_WINDOW_SIZE};
pub use limits::{ConcurrencyLimits, Limit, NotHeld, Resource};
pub use state_machine::{BreakerMetrics, CircuitBreaker, State, Transition, EVENT_LOG_CAPACITY};
pub use window::{Counts, Outcome};
