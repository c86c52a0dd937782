//! Resilience policies applied around upstream calls: retries with backoff
//! and a budget, rate limits, bulkheads.

mod bulkhead;
mod ratelimit;
mod retry;

pub use bulkhead::{Bulkhead, BulkheadPermit, BulkheadRejected};
pub use ratelimit::{KeyedRateLimiter, RateLimited};
pub use retry::{AttemptOutcome, Backoff, RetryBudget, RetryPolicy, RetryToken};
