//! Thread slots: small integers that a live thread owns exclusively.
//!
//! A thread holding slot `i` is the only writer of cell `i` in every
//! [`Striped`](super::striped) cell set, so it can update that cell with a
//! plain load and store instead of a locked read-modify-write. The slot is
//! returned when the thread exits; the next owner continues from the
//! value its predecessor left (the release/acquire pair on the bitmap makes
//! those writes visible). Threads that find every slot taken use the shared
//! cell, which takes atomic read-modify-writes.

use std::cell::Cell;
use std::sync::atomic::{AtomicU32, Ordering};

/// Number of thread-owned slots (cells `0..OWNED_SLOTS`); one more cell is shared.
pub const OWNED_SLOTS: usize = 7;

const ALL_TAKEN: u32 = (1 << OWNED_SLOTS) - 1;

/// Bit `i` set: slot `i` belongs to a live thread.
static TAKEN: AtomicU32 = AtomicU32::new(0);

/// The calling thread's slot, released when the thread exits.
struct SlotGuard {
    slot: Cell<Option<usize>>,
}

impl SlotGuard {
    fn current(&self) -> Option<usize> {
        match self.slot.get() {
            Some(slot) => Some(slot),
            None => {
                // A thread that found no free slot retries: slots free up as threads exit.
                let slot = try_acquire();
                self.slot.set(slot);
                slot
            }
        }
    }
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.get() {
            TAKEN.fetch_and(!(1 << slot), Ordering::Release);
        }
    }
}

fn try_acquire() -> Option<usize> {
    let mut taken = TAKEN.load(Ordering::Relaxed);
    loop {
        if taken & ALL_TAKEN == ALL_TAKEN {
            return None;
        }
        let slot = (!taken).trailing_zeros();
        match TAKEN.compare_exchange_weak(
            taken,
            taken | (1 << slot),
            Ordering::Acquire,
            Ordering::Relaxed,
        ) {
            Ok(_) => return Some(slot as usize),
            Err(now) => taken = now,
        }
    }
}

thread_local! {
    static SLOT: SlotGuard = const { SlotGuard { slot: Cell::new(None) } };
}

/// The slot the calling thread owns, or `None` when it must use the shared cell
/// (all slots taken, or the thread is tearing down its thread-locals).
#[inline]
pub fn current() -> Option<usize> {
    SLOT.try_with(SlotGuard::current).ok().flatten()
}

/// Serialises the tests that hold many slots at once, so that one such test
/// cannot starve another of slots.
#[cfg(test)]
pub(crate) fn exclusive_for_test() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Barrier};

    #[test]
    fn a_thread_keeps_its_slot_and_live_threads_never_share_one() {
        let _serial = exclusive_for_test();
        let first = current();
        assert_eq!(first, current());
        let threads = 12;
        let barrier = Arc::new(Barrier::new(threads));
        let slots: Vec<Option<usize>> = (0..threads)
            .map(|_| {
                let barrier = barrier.clone();
                std::thread::spawn(move || {
                    let slot = current();
                    // Keep every thread alive until all have picked a slot.
                    barrier.wait();
                    slot
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|handle| handle.join().unwrap())
            .collect();
        let mut owned: Vec<usize> = slots.iter().flatten().copied().collect();
        owned.extend(first);
        let before = owned.len();
        owned.sort_unstable();
        owned.dedup();
        assert_eq!(owned.len(), before, "two live threads shared a slot");
        assert!(owned.iter().all(|&slot| slot < OWNED_SLOTS));
    }

    #[test]
    fn slots_of_exited_threads_are_reused() {
        let _serial = exclusive_for_test();
        for _ in 0..3 * OWNED_SLOTS {
            let slot = std::thread::spawn(current).join().unwrap();
            assert!(slot.is_some(), "slots leak when threads exit");
        }
    }
}
