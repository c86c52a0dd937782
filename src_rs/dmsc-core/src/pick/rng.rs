//! A lock-free random number generator shared by the randomised pickers.
//!
//! It is wyrand (the generator behind `fastrand`) with its one-word state in
//! an `AtomicU64`: each draw advances the state with a single `fetch_add`, so
//! threads sharing a picker never wait on each other and never draw the same
//! value. With a fixed seed and one thread the sequence is reproducible.

use std::sync::atomic::{AtomicU64, Ordering};

const WY_INCREMENT: u64 = 0x2d35_8dcc_aa6c_78a5;
const WY_MIX: u64 = 0x8bb8_4b93_962e_acc9;

/// Wyrand over an atomic state word.
#[derive(Debug)]
pub(crate) struct AtomicRng {
    state: AtomicU64,
}

impl AtomicRng {
    /// A generator seeded with `seed`, or from `fastrand`'s thread-local entropy when `None`.
    pub(crate) fn new(seed: Option<u64>) -> Self {
        Self {
            state: AtomicU64::new(seed.unwrap_or_else(|| fastrand::u64(..))),
        }
    }

    /// The next 64 uniformly distributed bits.
    #[inline]
    pub(crate) fn next_u64(&self) -> u64 {
        let s = self
            .state
            .fetch_add(WY_INCREMENT, Ordering::Relaxed)
            .wrapping_add(WY_INCREMENT);
        let t = u128::from(s) * u128::from(s ^ WY_MIX);
        ((t >> 64) as u64) ^ (t as u64)
    }

    /// A number in `0..bound` (`bound > 0`).
    ///
    /// Multiply-shift reduction: its bias is below `bound / 2^64`, far under
    /// anything a load balancer could observe.
    #[inline]
    pub(crate) fn below(&self, bound: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(bound)) >> 64) as u64
    }

    /// An index in `0..len` (`len > 0`).
    #[inline]
    pub(crate) fn index(&self, len: usize) -> usize {
        self.below(len as u64) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_sequence() {
        let a = AtomicRng::new(Some(42));
        let b = AtomicRng::new(Some(42));
        for _ in 0..100 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
    }

    #[test]
    fn below_stays_in_range_and_covers_it() {
        let rng = AtomicRng::new(Some(7));
        let mut seen = [0u32; 5];
        for _ in 0..5000 {
            let v = rng.below(5);
            seen[v as usize] += 1;
        }
        // Each of five values expected 1000 times; 800 is > 6 standard deviations away.
        assert!(seen.iter().all(|&c| c > 800), "{seen:?}");
    }
}
