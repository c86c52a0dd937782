//! The error every constructor returns for bad arguments.

use std::fmt;

/// A constructor or call was given an argument it cannot accept.
///
/// `argument` names the parameter so that callers (Python `ValueError`,
/// C `DMSC_ERR_INVALID_ARGUMENT`) can say exactly what was wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidArgument {
    /// Name of the offending argument, as the public API spells it.
    pub argument: &'static str,
    /// Why the value was refused.
    pub reason: String,
}

impl InvalidArgument {
    /// Builds an error for `argument` with a human-readable `reason`.
    pub fn new(argument: &'static str, reason: impl Into<String>) -> Self {
        Self {
            argument,
            reason: reason.into(),
        }
    }
}

impl fmt::Display for InvalidArgument {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.argument, self.reason)
    }
}

impl std::error::Error for InvalidArgument {}

/// Checks that `value` is finite and strictly positive.
pub fn require_positive(argument: &'static str, value: f64) -> Result<f64, InvalidArgument> {
    if value.is_finite() && value > 0.0 {
        Ok(value)
    } else {
        Err(InvalidArgument::new(
            argument,
            format!("must be a finite number greater than 0, got {value}"),
        ))
    }
}

/// Checks that `value` is finite and not negative.
pub fn require_non_negative(argument: &'static str, value: f64) -> Result<f64, InvalidArgument> {
    if value.is_finite() && value >= 0.0 {
        Ok(value)
    } else {
        Err(InvalidArgument::new(
            argument,
            format!("must be a finite number of at least 0, got {value}"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positive_refuses_nan_zero_and_negative() {
        for bad in [f64::NAN, 0.0, -1.0, f64::INFINITY] {
            let err = require_positive("rate", bad).unwrap_err();
            assert_eq!(err.argument, "rate");
        }
        assert_eq!(require_positive("rate", 2.5), Ok(2.5));
    }

    #[test]
    fn non_negative_accepts_zero() {
        assert_eq!(require_non_negative("x", 0.0), Ok(0.0));
        assert!(require_non_negative("x", -0.1).is_err());
        assert!(require_non_negative("x", f64::NAN).is_err());
    }
}
