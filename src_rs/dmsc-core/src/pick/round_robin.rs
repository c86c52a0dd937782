//! Round robin over `n` hosts with one atomic counter.

use std::sync::atomic::{AtomicU64, Ordering};

use super::{require_hosts, Pick};
use crate::error::InvalidArgument;

/// Hosts `0..n` in turn, starting at `seed % n`.
///
/// Envoy starts each round robin balancer at a random index so that many
/// proxies do not all send their first request to host 0; pass a seed to fix
/// the start. Thread-safe and lock-free: concurrent picks each take the next
/// position of the cycle.
#[derive(Debug)]
pub struct RoundRobin {
    next: AtomicU64,
    hosts: u64,
}

impl RoundRobin {
    /// Round robin over `n` hosts; a random first host when `seed` is `None`.
    pub fn new(n: usize, seed: Option<u64>) -> Result<Self, InvalidArgument> {
        let n = require_hosts("n", n)? as u64;
        let start = seed.unwrap_or_else(|| fastrand::u64(..)) % n;
        Ok(Self {
            next: AtomicU64::new(start),
            hosts: n,
        })
    }
}

impl Pick for RoundRobin {
    #[inline]
    fn pick(&self) -> usize {
        // Wraps after 2^64 picks, which no process reaches.
        (self.next.fetch_add(1, Ordering::Relaxed) % self.hosts) as usize
    }

    fn hosts(&self) -> usize {
        self.hosts as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cycles_from_the_seeded_start() {
        let rr = RoundRobin::new(3, Some(4)).unwrap();
        let picks: Vec<usize> = (0..7).map(|_| rr.pick()).collect();
        assert_eq!(picks, vec![1, 2, 0, 1, 2, 0, 1]);
    }

    #[test]
    fn refuses_zero_hosts() {
        assert_eq!(RoundRobin::new(0, None).unwrap_err().argument, "n");
    }

    #[test]
    fn concurrent_picks_share_one_cycle() {
        let rr = RoundRobin::new(4, Some(0)).unwrap();
        let mut counts = [0usize; 4];
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|_| {
                    s.spawn(|| {
                        let mut local = [0usize; 4];
                        (0..1000).for_each(|_| local[rr.pick()] += 1);
                        local
                    })
                })
                .collect();
            for h in handles {
                let local = h.join().unwrap();
                (0..4).for_each(|i| counts[i] += local[i]);
            }
        });
        assert_eq!(counts, [1000; 4]);
    }
}
