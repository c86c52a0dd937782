//! Sums that many threads add to without contending on one atomic.
//!
//! A striped sum is one cache line of eight 64-bit cells: seven owned by
//! thread slots ([`super::slot`]) and one shared. The owner of a slot adds
//! with a relaxed load and store, no locked instruction; threads without a
//! slot use the shared cell with an atomic read-modify-write. A read sums the
//! eight cells, so it sees every completed add.
//!
//! Why this design (criterion, `benches/metrics.rs`, 2-core x86-64 VM): an
//! owned-cell add costs 0.5 ns uncontended and 3 ns per add with two writing
//! threads. One `fetch_add` cell costs 7 ns uncontended and 15-19 ns with two
//! writers (the line bounces between cores); `fetch_add` on per-thread
//! 128-byte-padded shards does not remove the 7 ns of the locked instruction
//! and takes 512 bytes or more per counter. One line of owned cells keeps a
//! counter at 64 bytes, which matters for labelled families with many children.

use std::sync::atomic::{AtomicU64, Ordering};

use super::slot::{self, OWNED_SLOTS};

const SHARED: usize = OWNED_SLOTS;

/// A wrapping `u64` sum striped over thread-owned cells.
#[derive(Debug, Default)]
#[repr(align(64))]
pub struct StripedU64 {
    cells: [AtomicU64; OWNED_SLOTS + 1],
}

impl StripedU64 {
    /// Adds `n` (wrapping on overflow).
    #[inline]
    pub fn add(&self, n: u64) {
        match slot::current() {
            Some(owned) => {
                // Only this thread writes this cell, so load + store loses no update.
                let cell = &self.cells[owned];
                cell.store(
                    cell.load(Ordering::Relaxed).wrapping_add(n),
                    Ordering::Relaxed,
                );
            }
            None => {
                self.cells[SHARED].fetch_add(n, Ordering::Relaxed);
            }
        }
    }

    /// The sum of every add that completed before this call.
    pub fn get(&self) -> u64 {
        self.cells.iter().fold(0u64, |sum, cell| {
            sum.wrapping_add(cell.load(Ordering::Relaxed))
        })
    }
}

/// An `f64` sum striped over thread-owned cells (each holds `f64` bits).
#[derive(Debug, Default)]
#[repr(align(64))]
pub struct StripedF64 {
    cells: [AtomicU64; OWNED_SLOTS + 1],
}

impl StripedF64 {
    /// Adds `x`.
    #[inline]
    pub fn add(&self, x: f64) {
        match slot::current() {
            Some(owned) => {
                let cell = &self.cells[owned];
                let sum = f64::from_bits(cell.load(Ordering::Relaxed)) + x;
                cell.store(sum.to_bits(), Ordering::Relaxed);
            }
            None => add_f64(&self.cells[SHARED], x),
        }
    }

    /// The sum of every add that completed before this call.
    pub fn get(&self) -> f64 {
        self.cells
            .iter()
            .map(|cell| f64::from_bits(cell.load(Ordering::Relaxed)))
            .sum()
    }
}

/// Adds `x` to the `f64` whose bits `cell` holds, with a compare-and-swap loop.
#[inline]
pub fn add_f64(cell: &AtomicU64, x: f64) {
    let mut bits = cell.load(Ordering::Relaxed);
    loop {
        let next = (f64::from_bits(bits) + x).to_bits();
        match cell.compare_exchange_weak(bits, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return,
            Err(now) => bits = now,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Barrier};

    #[test]
    fn one_cache_line_each() {
        assert_eq!(std::mem::size_of::<StripedU64>(), 64);
        assert_eq!(std::mem::size_of::<StripedF64>(), 64);
    }

    #[test]
    fn concurrent_adds_from_more_threads_than_slots_are_all_counted() {
        let _serial = slot::exclusive_for_test();
        let ints = Arc::new(StripedU64::default());
        let floats = Arc::new(StripedF64::default());
        let threads = 2 * OWNED_SLOTS + 1;
        let barrier = Arc::new(Barrier::new(threads));
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let (ints, floats, barrier) = (ints.clone(), floats.clone(), barrier.clone());
                std::thread::spawn(move || {
                    // All threads are alive at once, so some must use the shared cell.
                    barrier.wait();
                    for _ in 0..10_000 {
                        ints.add(3);
                        floats.add(0.5);
                    }
                })
            })
            .collect();
        for handle in handles {
            handle.join().unwrap();
        }
        assert_eq!(ints.get(), 3 * 10_000 * threads as u64);
        assert_eq!(floats.get(), 0.5 * 10_000.0 * threads as f64);
    }

    #[test]
    fn u64_sum_wraps() {
        let sum = StripedU64::default();
        sum.add(u64::MAX);
        sum.add(2);
        assert_eq!(sum.get(), 1);
    }

    #[test]
    fn cas_add_accumulates() {
        let cell = AtomicU64::new(1.5f64.to_bits());
        add_f64(&cell, 2.25);
        assert_eq!(f64::from_bits(cell.load(Ordering::Relaxed)), 3.75);
    }
}
