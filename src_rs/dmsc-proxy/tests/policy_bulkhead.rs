//! The bulkhead: slots, a bounded queue and its timeout.

use std::sync::Arc;

use dmsc_proxy::config;
use dmsc_proxy::policy::{Bulkhead, BulkheadRejected};

fn bulkhead(max_concurrent: usize, max_queue: usize, queue_timeout_ms: u64) -> Arc<Bulkhead> {
    Arc::new(Bulkhead::new(&config::Bulkhead {
        max_concurrent,
        max_queue,
        queue_timeout_ms,
    }))
}

#[tokio::test]
async fn free_slots_are_taken_at_once_and_a_full_queue_refuses() {
    let b = bulkhead(2, 0, 10_000);
    let first = b.acquire().await.unwrap();
    let _second = b.acquire().await.unwrap();
    assert_eq!(b.active(), 2);
    assert_eq!(b.acquire().await.unwrap_err(), BulkheadRejected::QueueFull);
    drop(first);
    assert_eq!(b.active(), 1);
    assert!(b.acquire().await.is_ok());
}

#[tokio::test]
async fn a_queued_request_times_out_without_a_slot() {
    let b = bulkhead(1, 1, 20);
    let _held = b.acquire().await.unwrap();
    assert_eq!(
        b.acquire().await.unwrap_err(),
        BulkheadRejected::QueueTimeout
    );
    assert_eq!(b.queued(), 0);
}

#[tokio::test]
async fn a_released_slot_goes_to_the_queue() {
    let b = bulkhead(1, 1, 60_000);
    let held = b.acquire().await.unwrap();
    let waiter = tokio::spawn({
        let b = Arc::clone(&b);
        async move { b.acquire().await.map(drop) }
    });
    while b.queued() == 0 {
        tokio::task::yield_now().await;
    }
    // The queue holds one: a third request is refused outright.
    assert_eq!(b.acquire().await.unwrap_err(), BulkheadRejected::QueueFull);
    drop(held);
    assert_eq!(waiter.await.unwrap(), Ok(()));
    assert_eq!((b.active(), b.queued()), (0, 0));
}

#[tokio::test]
async fn a_cancelled_wait_leaves_the_queue() {
    let b = bulkhead(1, 1, 60_000);
    let _held = b.acquire().await.unwrap();
    let waiter = tokio::spawn({
        let b = Arc::clone(&b);
        async move { b.acquire().await.map(drop) }
    });
    while b.queued() == 0 {
        tokio::task::yield_now().await;
    }
    waiter.abort();
    let _ = waiter.await;
    assert_eq!(b.queued(), 0);
}
