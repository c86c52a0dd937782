//! Random choice, uniform or proportional to integer weights.

use super::rng::AtomicRng;
use super::{all_equal, require_hosts, require_weights, Pick};
use crate::error::InvalidArgument;

/// Picks a host at random: uniformly, or with probability `weights[i] / sum(weights)`.
///
/// Lock-free (see the atomic wyrand generator); reproducible for a given seed
/// when used from one thread.
#[derive(Debug)]
pub struct RandomPicker {
    rng: AtomicRng,
    hosts: usize,
    /// Running sums of the weights, empty when the choice is uniform.
    cumulative: Box<[u64]>,
}

impl RandomPicker {
    /// Uniform choice among `n` hosts.
    pub fn new(n: usize, seed: Option<u64>) -> Result<Self, InvalidArgument> {
        Ok(Self {
            rng: AtomicRng::new(seed),
            hosts: require_hosts("n", n)?,
            cumulative: Box::new([]),
        })
    }

    /// Choice proportional to `weights`; refuses an empty list and zero weights.
    pub fn weighted(weights: &[u32], seed: Option<u64>) -> Result<Self, InvalidArgument> {
        let weights = require_weights(weights)?;
        let cumulative = if all_equal(weights) {
            Box::new([]) as Box<[u64]>
        } else {
            weights
                .iter()
                .scan(0u64, |sum, &w| {
                    *sum += u64::from(w);
                    Some(*sum)
                })
                .collect()
        };
        Ok(Self {
            rng: AtomicRng::new(seed),
            hosts: weights.len(),
            cumulative,
        })
    }
}

impl Pick for RandomPicker {
    #[inline]
    fn pick(&self) -> usize {
        match self.cumulative.last() {
            None => self.rng.index(self.hosts),
            Some(&total) => {
                let ticket = self.rng.below(total);
                self.cumulative.partition_point(|&sum| sum <= ticket)
            }
        }
    }

    fn hosts(&self) -> usize {
        self.hosts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weighted_choice_follows_the_weights() {
        let picker = RandomPicker::weighted(&[1, 3, 6], Some(11)).unwrap();
        let mut counts = [0u32; 3];
        (0..100_000).for_each(|_| counts[picker.pick()] += 1);
        // Expected 10k / 30k / 60k; 1500 is over 4 standard deviations.
        for (count, expected) in counts.iter().zip([10_000, 30_000, 60_000]) {
            assert!(count.abs_diff(expected) < 1500, "{counts:?}");
        }
    }

    #[test]
    fn uniform_choice_stays_in_range() {
        let picker = RandomPicker::new(7, Some(3)).unwrap();
        assert!((0..10_000).all(|_| picker.pick() < 7));
    }

    #[test]
    fn same_seed_same_choices() {
        let a = RandomPicker::new(100, Some(5)).unwrap();
        let b = RandomPicker::new(100, Some(5)).unwrap();
        assert!((0..100).all(|_| a.pick() == b.pick()));
    }
}
