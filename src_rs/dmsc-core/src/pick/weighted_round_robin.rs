//! Weighted round robin: Envoy's EDF schedule over fixed integer weights.

use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

use super::edf::IntegerEdf;
use super::{all_equal, require_weights, start_picks, Pick};
use crate::error::InvalidArgument;

/// Largest schedule period (sum of weights) stored as a lock-free table.
const MAX_TABLE_PERIOD: u64 = 1 << 16;

/// How picks are produced; all three give the same sequence for the same weights and seed.
#[derive(Debug)]
enum Schedule {
    /// Equal weights: plain round robin, as Envoy does without an EDF scheduler.
    Cycle { next: AtomicU64, hosts: u64 },
    /// A short period: the whole period precomputed, walked with an atomic counter.
    Table { order: Box<[u32]>, next: AtomicU64 },
    /// A long period: the EDF heap behind a mutex (`O(log n)` per pick).
    Heap(Mutex<IntegerEdf>),
}

/// Envoy's weighted round robin: earliest deadline first with deadline `1 / weight`.
///
/// Over any `sum(weights)` consecutive picks, host `i` is picked exactly
/// `weights[i]` times, spread as evenly as EDF spreads them (see
/// [`edf`](super::edf) for how this matches Envoy's `EdfScheduler`). The
/// schedule starts as if `seed % 2^32 % 429496729` picks had been made, as
/// Envoy's `createWithPicks(seed)`; at a random position when no seed is given. Thread-safe: lock-free when all
/// weights are equal or their sum is at most 65536, a short mutex otherwise.
#[derive(Debug)]
pub struct WeightedRoundRobin {
    schedule: Schedule,
    weights: Box<[u32]>,
}

impl WeightedRoundRobin {
    /// A schedule over `weights.len()` hosts; refuses an empty list and zero weights.
    pub fn new(weights: &[u32], seed: Option<u64>) -> Result<Self, InvalidArgument> {
        let weights = require_weights(weights)?;
        let picks = start_picks(seed.unwrap_or_else(|| fastrand::u64(..)));
        let hosts = weights.len() as u64;
        let period: u64 = weights.iter().map(|&w| u64::from(w)).sum();
        let schedule = if all_equal(weights) {
            Schedule::Cycle {
                next: AtomicU64::new(picks % hosts),
                hosts,
            }
        } else if period <= MAX_TABLE_PERIOD {
            let mut edf = IntegerEdf::with_picks(weights, 0);
            let order = (0..period).map(|_| edf.pick() as u32).collect();
            Schedule::Table {
                order,
                next: AtomicU64::new(picks % period),
            }
        } else {
            Schedule::Heap(Mutex::new(IntegerEdf::with_picks(weights, picks)))
        };
        Ok(Self {
            schedule,
            weights: weights.into(),
        })
    }

    /// The weights, by host index.
    pub fn weights(&self) -> &[u32] {
        &self.weights
    }
}

impl Pick for WeightedRoundRobin {
    #[inline]
    fn pick(&self) -> usize {
        match &self.schedule {
            Schedule::Cycle { next, hosts } => {
                (next.fetch_add(1, Ordering::Relaxed) % hosts) as usize
            }
            Schedule::Table { order, next } => {
                let position = next.fetch_add(1, Ordering::Relaxed) % order.len() as u64;
                order[position as usize] as usize
            }
            Schedule::Heap(edf) => edf.lock().pick(),
        }
    }

    fn hosts(&self) -> usize {
        self.weights.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(wrr: &WeightedRoundRobin, count: usize) -> Vec<usize> {
        (0..count).map(|_| wrr.pick()).collect()
    }

    #[test]
    fn table_and_heap_give_the_same_sequence() {
        let weights = [5, 1, 3, 3, 8];
        for seed in [0, 1, 7, 1234, u64::MAX] {
            let table = WeightedRoundRobin::new(&weights, Some(seed)).unwrap();
            assert!(matches!(table.schedule, Schedule::Table { .. }));
            let heap = WeightedRoundRobin {
                schedule: Schedule::Heap(Mutex::new(IntegerEdf::with_picks(
                    &weights,
                    start_picks(seed),
                ))),
                weights: weights.into(),
            };
            assert_eq!(run(&table, 100), run(&heap, 100), "seed {seed}");
        }
    }

    #[test]
    fn equal_weights_are_round_robin() {
        let wrr = WeightedRoundRobin::new(&[3, 3, 3], Some(4)).unwrap();
        assert_eq!(run(&wrr, 4), vec![1, 2, 0, 1]);
    }

    #[test]
    fn large_weights_use_the_heap_and_stay_exact() {
        let weights = [40_000, 30_000, 1];
        let wrr = WeightedRoundRobin::new(&weights, Some(99)).unwrap();
        assert!(matches!(wrr.schedule, Schedule::Heap(_)));
        let mut counts = [0u32; 3];
        run(&wrr, 70_001).iter().for_each(|&h| counts[h] += 1);
        assert_eq!(counts, weights);
    }

    #[test]
    fn refuses_empty_and_zero_weights() {
        assert_eq!(
            WeightedRoundRobin::new(&[], None).unwrap_err().argument,
            "weights"
        );
        assert_eq!(
            WeightedRoundRobin::new(&[2, 0], None).unwrap_err().argument,
            "weights"
        );
    }
}
