//! Bulkhead: a concurrency cap with a bounded, time-limited wait queue.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

use crate::config;

/// Why the bulkhead refused a request (for the 503's `x-dmsc-reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BulkheadRejected {
    /// The wait queue was full.
    QueueFull,
    /// Waited `queue_timeout_ms` without a free slot.
    QueueTimeout,
}

/// A slot held; dropping it frees the slot.
#[derive(Debug)]
pub struct BulkheadPermit {
    _permit: tokio::sync::OwnedSemaphorePermit,
}

/// The bulkhead of one cluster.
#[derive(Debug)]
pub struct Bulkhead {
    slots: Arc<Semaphore>,
    max_concurrent: usize,
    max_queue: usize,
    queue_timeout: Duration,
    queued: AtomicUsize,
}

/// A place in the queue, given back however the wait ends (even if the waiting future is dropped).
struct QueuePlace<'a>(&'a AtomicUsize);

impl Drop for QueuePlace<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Bulkhead {
    /// From config. A `queue_timeout_ms` of 0 means queued requests do not wait.
    pub fn new(config: &config::Bulkhead) -> Self {
        let max_concurrent = config.max_concurrent.min(Semaphore::MAX_PERMITS);
        Self {
            slots: Arc::new(Semaphore::new(max_concurrent)),
            max_concurrent,
            max_queue: config.max_queue,
            queue_timeout: Duration::from_millis(config.queue_timeout_ms),
            queued: AtomicUsize::new(0),
        }
    }
    /// Takes a slot, waiting in the queue if there is room in it.
    pub async fn acquire(&self) -> Result<BulkheadPermit, BulkheadRejected> {
        if let Ok(permit) = Arc::clone(&self.slots).try_acquire_owned() {
            return Ok(BulkheadPermit { _permit: permit });
        }
        let max_queue = self.max_queue;
        if self
            .queued
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < max_queue).then_some(n + 1)
            })
            .is_err()
        {
            return Err(BulkheadRejected::QueueFull);
        }
        let _place = QueuePlace(&self.queued);
        match tokio::time::timeout(self.queue_timeout, Arc::clone(&self.slots).acquire_owned())
            .await
        {
            Ok(Ok(permit)) => Ok(BulkheadPermit { _permit: permit }),
            // Elapsed, or the semaphore closed (never done): no slot came in time.
            Ok(Err(_)) | Err(_) => Err(BulkheadRejected::QueueTimeout),
        }
    }
    /// Requests holding a slot.
    pub fn active(&self) -> usize {
        self.max_concurrent
            .saturating_sub(self.slots.available_permits())
    }
    /// Requests waiting.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }
}
