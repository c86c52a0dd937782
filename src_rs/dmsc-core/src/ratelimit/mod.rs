//! Rate limiters: token bucket, GCRA and sliding window.
//!
//! Every limiter reads time from a [`Clock`](crate::clock::Clock) and keeps its
//! whole state in one `AtomicU64` updated with a compare-and-swap loop, so a
//! limiter is shared between threads without locks.
//!
//! * [`TokenBucket`] and [`Gcra`] are the same automaton seen from two sides:
//!   GCRA's virtual scheduling (one "theoretical arrival time") is the token
//!   bucket with its token count stored as a time. Both are built on
//!   [`schedule`]'s single-timestamp state; they differ in units (fractional
//!   tokens and capacity for the bucket, whole requests and a burst for GCRA).
//! * [`SlidingWindowLimiter`] is the sliding window *counter* (the previous
//!   fixed window's count weighted by its overlap with the sliding window, plus
//!   the current window's count), with both counts and the window packed in one
//!   word.
//! * [`SlidingLogLimiter`] is the exact sliding *log*: it remembers every
//!   admission still inside the window, behind a mutex.
//!
//! Time is kept in whole nanoseconds. Costs are rounded up to the next
//! nanosecond, so rounding can only make a limiter stricter, by at most one
//! nanosecond of refill per admission.

mod gcra;
mod schedule;
mod sliding_log;
mod sliding_window;
mod token_bucket;

pub use gcra::Gcra;
pub use sliding_log::SlidingLogLimiter;
pub use sliding_window::SlidingWindowLimiter;
pub use token_bucket::TokenBucket;

use crate::clock::Nanos;
use crate::error::{require_positive, InvalidArgument};

/// The highest rate a limiter accepts: one admission per nanosecond.
pub const MAX_RATE_PER_SECOND: f64 = 1e9;

/// The longest span of time a limiter keeps in its state (about 146 years).
///
/// Bounding it keeps every sum of a timestamp and a span far from `u64::MAX`.
pub const MAX_SPAN_NANOS: Nanos = 1 << 62;

/// Checks that a count passed as a signed integer (as Python hands it over) is at least 1.
pub fn require_count(argument: &'static str, value: i64) -> Result<u64, InvalidArgument> {
    match u64::try_from(value) {
        Ok(count) if count >= 1 => Ok(count),
        _ => Err(InvalidArgument::new(
            argument,
            format!("must be an integer of at least 1, got {value}"),
        )),
    }
}

/// Checks that a rate per second is finite, positive and at most [`MAX_RATE_PER_SECOND`].
fn require_rate(argument: &'static str, rate: f64) -> Result<f64, InvalidArgument> {
    require_positive(argument, rate)?;
    if rate > MAX_RATE_PER_SECOND {
        return Err(InvalidArgument::new(
            argument,
            format!("must be at most {MAX_RATE_PER_SECOND:e} per second, got {rate}"),
        ));
    }
    Ok(rate)
}

/// Converts a positive duration in seconds to whole nanoseconds, refusing spans the state cannot hold.
fn require_window(argument: &'static str, seconds: f64) -> Result<Nanos, InvalidArgument> {
    require_positive(argument, seconds)?;
    let nanos = (seconds * 1e9).round();
    if nanos < 1.0 {
        return Err(InvalidArgument::new(
            argument,
            format!("must be at least 1 nanosecond, got {seconds} s"),
        ));
    }
    if nanos > MAX_SPAN_NANOS as f64 {
        return Err(InvalidArgument::new(
            argument,
            format!("must be under 146 years, got {seconds} s"),
        ));
    }
    Ok(nanos as Nanos)
}

/// Refuses a count of 0 given to `try_acquire`-style methods.
fn require_nonzero(argument: &'static str, n: u64) -> Result<u64, InvalidArgument> {
    if n == 0 {
        Err(InvalidArgument::new(argument, "must be at least 1, got 0"))
    } else {
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_must_be_positive_integers() {
        assert_eq!(require_count("n", 3), Ok(3));
        for bad in [0, -1, i64::MIN] {
            let err = require_count("limit", bad).unwrap_err();
            assert_eq!(err.argument, "limit");
            assert!(err.reason.contains(&bad.to_string()));
        }
    }

    #[test]
    fn rates_are_bounded_by_one_per_nanosecond() {
        assert_eq!(require_rate("rate", 1e9), Ok(1e9));
        assert_eq!(require_rate("rate", 2e9).unwrap_err().argument, "rate");
        assert_eq!(require_rate("rate", f64::NAN).unwrap_err().argument, "rate");
    }

    #[test]
    fn windows_convert_to_nanoseconds_within_range() {
        assert_eq!(require_window("window", 1.5), Ok(1_500_000_000));
        assert_eq!(
            require_window("window", 1e-12).unwrap_err().argument,
            "window"
        );
        assert_eq!(
            require_window("window", 1e20).unwrap_err().argument,
            "window"
        );
        assert_eq!(
            require_window("window", -1.0).unwrap_err().argument,
            "window"
        );
    }
}
