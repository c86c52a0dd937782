//! Monotonic counters.

use super::striped::StripedU64;

/// A count that only goes up (requests served, bytes sent, errors).
///
/// Lock-free: an increment from a thread that owns a slot is a relaxed load
/// and store on its own cell (see [`super::striped`]); 64 bytes per counter.
#[derive(Debug, Default)]
pub struct Counter {
    sum: StripedU64,
}

impl Counter {
    /// A counter at zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one.
    #[inline]
    pub fn inc(&self) {
        self.sum.add(1);
    }

    /// Adds `n` (the count wraps after 2^64).
    #[inline]
    pub fn inc_by(&self, n: u64) {
        self.sum.add(n);
    }

    /// The count of every increment that completed before this call.
    pub fn get(&self) -> u64 {
        self.sum.get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn counts_increments_from_several_threads() {
        let counter = Arc::new(Counter::new());
        counter.inc_by(5);
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let counter = counter.clone();
                std::thread::spawn(move || (0..1000).for_each(|_| counter.inc()))
            })
            .collect();
        for handle in handles {
            handle.join().unwrap();
        }
        assert_eq!(counter.get(), 4005);
    }
}
