//! Configuration of a [`CircuitBreaker`](super::CircuitBreaker), validated once at construction.
//!
//! Rates are fractions in `(0, 1]` (resilience4j spells them as percentages; `0.5` here is its
//! `50`). Durations are [`Nanos`]; [`duration_from_seconds`] converts the float seconds of the
//! public APIs and refuses negative or non-finite values.

use std::fmt;
use std::str::FromStr;

use crate::clock::{seconds_to_nanos, Nanos};
use crate::error::require_non_negative;
use crate::InvalidArgument;

/// Largest accepted `window_size`: a count window stores one byte per call, a time window one
/// bucket per second, so this bounds the memory of one breaker to a few megabytes.
pub const MAX_WINDOW_SIZE: u64 = 1 << 20;

/// How the closed-state sliding window aggregates outcomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowType {
    /// The last `window_size` recorded calls (resilience4j `COUNT_BASED`).
    CountBased,
    /// The calls of the last `window_size` seconds, one bucket per whole second of the clock
    /// (resilience4j `TIME_BASED`).
    TimeBased,
}

impl WindowType {
    /// The spelling used by the public APIs: `"count"` or `"time"`.
    pub fn as_str(self) -> &'static str {
        match self {
            WindowType::CountBased => "count",
            WindowType::TimeBased => "time",
        }
    }
}

impl fmt::Display for WindowType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for WindowType {
    type Err = InvalidArgument;

    /// Accepts `"count"`/`"time"` and resilience4j's `COUNT_BASED`/`TIME_BASED` (any case).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.to_ascii_lowercase().as_str() {
            "count" | "count_based" => Ok(WindowType::CountBased),
            "time" | "time_based" => Ok(WindowType::TimeBased),
            _ => Err(InvalidArgument::new(
                "window_type",
                format!("must be \"count\" or \"time\", got {text:?}"),
            )),
        }
    }
}

/// Every setting of a circuit breaker; [`Default`] gives resilience4j's defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct CircuitBreakerConfig {
    /// Open when the failure rate of the window is at least this fraction, in `(0, 1]`.
    pub failure_rate_threshold: f64,
    /// Open when the share of slow calls is at least this fraction, in `(0, 1]`.
    pub slow_call_rate_threshold: f64,
    /// A call whose latency is strictly greater than this is slow.
    pub slow_call_duration_threshold: Nanos,
    /// Count- or time-based closed-state window.
    pub window_type: WindowType,
    /// Calls (count-based) or seconds (time-based) the closed-state window covers.
    pub window_size: u64,
    /// Rates are not evaluated before the window holds this many calls. A count-based window
    /// caps it at `window_size`; the half-open window caps it at the permitted calls.
    pub minimum_number_of_calls: u64,
    /// How long OPEN refuses calls before the next `allow` moves to HALF_OPEN.
    pub wait_duration_in_open_state: Nanos,
    /// Trial calls let through in HALF_OPEN; their outcomes decide OPEN or CLOSED.
    pub permitted_calls_in_half_open_state: u64,
    /// HALF_OPEN returns to OPEN when it lasts this long without a decision; 0 waits forever.
    pub max_wait_in_half_open_state: Nanos,
}

impl Default for CircuitBreakerConfig {
    fn default() -> Self {
        Self {
            failure_rate_threshold: 0.5,
            slow_call_rate_threshold: 1.0,
            slow_call_duration_threshold: seconds_to_nanos(60.0),
            window_type: WindowType::CountBased,
            window_size: 100,
            minimum_number_of_calls: 100,
            wait_duration_in_open_state: seconds_to_nanos(60.0),
            permitted_calls_in_half_open_state: 10,
            max_wait_in_half_open_state: 0,
        }
    }
}

impl CircuitBreakerConfig {
    /// Checks every field, naming the first bad one.
    pub fn validate(&self) -> Result<(), InvalidArgument> {
        require_rate("failure_rate_threshold", self.failure_rate_threshold)?;
        require_rate("slow_call_rate_threshold", self.slow_call_rate_threshold)?;
        require_count("window_size", self.window_size, MAX_WINDOW_SIZE)?;
        require_count(
            "minimum_number_of_calls",
            self.minimum_number_of_calls,
            u64::MAX,
        )?;
        require_count(
            "permitted_calls_in_half_open_state",
            self.permitted_calls_in_half_open_state,
            MAX_WINDOW_SIZE,
        )?;
        Ok(())
    }

    /// Calls a closed-state window must hold before its rates count.
    pub(crate) fn closed_minimum_calls(&self) -> u64 {
        match self.window_type {
            WindowType::CountBased => self.minimum_number_of_calls.min(self.window_size),
            WindowType::TimeBased => self.minimum_number_of_calls,
        }
    }

    /// Calls the half-open window must hold before its rates count.
    pub(crate) fn half_open_minimum_calls(&self) -> u64 {
        self.minimum_number_of_calls
            .min(self.permitted_calls_in_half_open_state)
    }
}

/// Converts a duration given in float seconds, refusing negative, NaN or infinite values.
pub fn duration_from_seconds(
    argument: &'static str,
    seconds: f64,
) -> Result<Nanos, InvalidArgument> {
    require_non_negative(argument, seconds).map(seconds_to_nanos)
}

fn require_rate(argument: &'static str, rate: f64) -> Result<(), InvalidArgument> {
    // Zero would open on any window, even one with no failure at all.
    if rate > 0.0 && rate <= 1.0 {
        Ok(())
    } else {
        Err(InvalidArgument::new(
            argument,
            format!("must be a fraction in (0, 1], got {rate}"),
        ))
    }
}

fn require_count(argument: &'static str, value: u64, max: u64) -> Result<(), InvalidArgument> {
    if (1..=max).contains(&value) {
        Ok(())
    } else {
        Err(InvalidArgument::new(
            argument,
            format!("must be an integer in [1, {max}], got {value}"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_match_resilience4j() {
        let config = CircuitBreakerConfig::default();
        config.validate().unwrap();
        assert_eq!(config.window_size, 100);
        assert_eq!(config.permitted_calls_in_half_open_state, 10);
        assert_eq!(config.wait_duration_in_open_state, 60_000_000_000);
    }

    #[test]
    fn bad_fields_are_named() {
        let cases: [(&str, CircuitBreakerConfig); 6] = [
            (
                "failure_rate_threshold",
                CircuitBreakerConfig {
                    failure_rate_threshold: f64::NAN,
                    ..Default::default()
                },
            ),
            (
                "failure_rate_threshold",
                CircuitBreakerConfig {
                    failure_rate_threshold: 0.0,
                    ..Default::default()
                },
            ),
            (
                "slow_call_rate_threshold",
                CircuitBreakerConfig {
                    slow_call_rate_threshold: 1.5,
                    ..Default::default()
                },
            ),
            (
                "window_size",
                CircuitBreakerConfig {
                    window_size: 0,
                    ..Default::default()
                },
            ),
            (
                "minimum_number_of_calls",
                CircuitBreakerConfig {
                    minimum_number_of_calls: 0,
                    ..Default::default()
                },
            ),
            (
                "permitted_calls_in_half_open_state",
                CircuitBreakerConfig {
                    permitted_calls_in_half_open_state: 0,
                    ..Default::default()
                },
            ),
        ];
        for (name, config) in cases {
            assert_eq!(config.validate().unwrap_err().argument, name);
        }
    }

    #[test]
    fn window_type_parses_both_spellings() {
        assert_eq!("count".parse::<WindowType>(), Ok(WindowType::CountBased));
        assert_eq!(
            "TIME_BASED".parse::<WindowType>(),
            Ok(WindowType::TimeBased)
        );
        assert_eq!(
            "hourly".parse::<WindowType>().unwrap_err().argument,
            "window_type"
        );
    }

    #[test]
    fn durations_refuse_negative_and_nan() {
        assert_eq!(duration_from_seconds("wait", 1.5), Ok(1_500_000_000));
        assert!(duration_from_seconds("wait", -1.0).is_err());
        assert!(duration_from_seconds("wait", f64::NAN).is_err());
    }

    #[test]
    fn minimum_calls_are_capped_like_resilience4j() {
        let config = CircuitBreakerConfig {
            window_size: 5,
            minimum_number_of_calls: 20,
            permitted_calls_in_half_open_state: 3,
            ..Default::default()
        };
        assert_eq!(config.closed_minimum_calls(), 5);
        assert_eq!(config.half_open_minimum_calls(), 3);
        let timed = CircuitBreakerConfig {
            window_type: WindowType::TimeBased,
            ..config
        };
        assert_eq!(timed.closed_minimum_calls(), 20);
    }
}
