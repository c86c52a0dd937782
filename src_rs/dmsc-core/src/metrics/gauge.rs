//! Gauges: values that go up and down.

use std::sync::atomic::{AtomicU64, Ordering};

use super::striped::add_f64;
use crate::InvalidArgument;

/// A value that can be set, raised and lowered (in-flight requests, queue depth).
///
/// The `f64` lives as bits in one `AtomicU64`: `set` is a store, `add` a
/// compare-and-swap loop. NaN is refused so that a gauge always holds a number.
#[derive(Debug, Default)]
pub struct Gauge {
    bits: AtomicU64,
}

impl Gauge {
    /// A gauge at zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the value to `x`.
    #[inline]
    pub fn set(&self, x: f64) -> Result<(), InvalidArgument> {
        self.bits.store(not_nan(x)?.to_bits(), Ordering::Relaxed);
        Ok(())
    }

    /// Adds `x` (negative to lower the value).
    #[inline]
    pub fn add(&self, x: f64) -> Result<(), InvalidArgument> {
        add_f64(&self.bits, not_nan(x)?);
        Ok(())
    }

    /// The current value.
    pub fn get(&self) -> f64 {
        f64::from_bits(self.bits.load(Ordering::Relaxed))
    }
}

#[inline]
fn not_nan(x: f64) -> Result<f64, InvalidArgument> {
    if x.is_nan() {
        Err(InvalidArgument::new("x", "must be a number, got NaN"))
    } else {
        Ok(x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn set_add_and_subtract() {
        let gauge = Gauge::new();
        assert_eq!(gauge.get(), 0.0);
        gauge.set(2.5).unwrap();
        gauge.add(1.25).unwrap();
        gauge.add(-0.75).unwrap();
        assert_eq!(gauge.get(), 3.0);
        gauge.set(f64::INFINITY).unwrap();
        assert_eq!(gauge.get(), f64::INFINITY);
    }

    #[test]
    fn nan_is_refused_and_leaves_the_value() {
        let gauge = Gauge::new();
        gauge.set(1.0).unwrap();
        assert_eq!(gauge.set(f64::NAN).unwrap_err().argument, "x");
        assert_eq!(gauge.add(f64::NAN).unwrap_err().argument, "x");
        assert_eq!(gauge.get(), 1.0);
    }

    #[test]
    fn concurrent_adds_are_not_lost() {
        let gauge = Arc::new(Gauge::new());
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let gauge = gauge.clone();
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        gauge.add(1.0).unwrap();
                        gauge.add(-0.5).unwrap();
                    }
                })
            })
            .collect();
        for handle in handles {
            handle.join().unwrap();
        }
        assert_eq!(gauge.get(), 2000.0);
    }
}
