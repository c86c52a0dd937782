//! Keyed rate limits: token bucket and sliding window per key, bounded key map.

use std::time::Duration;

use dmsc_core::clock::{Clock, ManualClock};
use dmsc_proxy::config::{self, RateLimitAlgorithm, RateLimitKey};
use dmsc_proxy::policy::{KeyedRateLimiter, RateLimited};

const SECOND: u64 = 1_000_000_000;

fn limiter(config: &config::RateLimit, clock: &ManualClock) -> KeyedRateLimiter {
    KeyedRateLimiter::with_clock(config, "rate_limits[0]", Clock::Manual(clock.clone()))
        .expect("valid limit")
}

fn bucket(
    requests: u64,
    per_seconds: f64,
    burst: Option<u64>,
    max_keys: usize,
) -> config::RateLimit {
    config::RateLimit {
        algorithm: RateLimitAlgorithm::TokenBucket,
        requests,
        per_seconds,
        burst,
        key: RateLimitKey::ClientIp,
        max_keys,
    }
}

#[test]
fn token_bucket_refills_at_its_rate() {
    let clock = ManualClock::new(0);
    let limit = limiter(&bucket(2, 1.0, None, 100), &clock);
    assert_eq!(limit.key, RateLimitKey::ClientIp);
    assert!(limit.check(b"10.0.0.1").is_ok());
    assert!(limit.check(b"10.0.0.1").is_ok());
    let refused = limit.check(b"10.0.0.1").unwrap_err();
    assert_eq!(
        refused,
        RateLimited {
            retry_after: Duration::from_millis(500)
        }
    );
    // Keys are independent.
    assert!(limit.check(b"10.0.0.2").is_ok());
    clock.advance(SECOND / 2);
    assert!(limit.check(b"10.0.0.1").is_ok());
    assert!(limit.check(b"10.0.0.1").is_err());
}

#[test]
fn burst_sets_the_bucket_capacity() {
    let clock = ManualClock::new(0);
    let limit = limiter(&bucket(1, 1.0, Some(5), 100), &clock);
    assert_eq!((0..10).filter(|_| limit.check(b"").is_ok()).count(), 5);
    clock.advance(3 * SECOND);
    assert_eq!((0..10).filter(|_| limit.check(b"").is_ok()).count(), 3);
}

#[test]
fn the_service_key_has_one_budget() {
    let clock = ManualClock::new(0);
    let limit = limiter(&bucket(3, 60.0, None, 1), &clock);
    assert_eq!((0..10).filter(|_| limit.check(b"").is_ok()).count(), 3);
    let wait = limit.check(b"").unwrap_err().retry_after;
    assert_eq!(wait, Duration::from_secs(20));
    assert_eq!(limit.tracked_keys(), 0);
}

#[test]
fn retry_after_is_at_least_a_millisecond() {
    let clock = ManualClock::new(0);
    let limit = limiter(&bucket(1_000_000, 1.0, Some(1), 10), &clock);
    assert!(limit.check(b"k").is_ok());
    assert_eq!(
        limit.check(b"k").unwrap_err().retry_after,
        Duration::from_millis(1)
    );
}

#[test]
fn the_key_map_stays_bounded_and_keeps_recently_used_keys() {
    let clock = ManualClock::new(0);
    for max_keys in [1, 5, 32, 100] {
        let limit = limiter(&bucket(1, 1000.0, None, max_keys), &clock);
        assert!(limit.check(b"hot").is_ok());
        for i in 0..2000u32 {
            let _ = limit.check(&i.to_le_bytes());
            assert!(
                limit.tracked_keys() <= max_keys,
                "{max_keys}: {}",
                limit.tracked_keys()
            );
            // "hot" is used between every new key: an evicted "hot" would be admitted afresh.
            if max_keys >= 32 {
                assert!(
                    limit.check(b"hot").is_err(),
                    "hot key forgotten at {i} (max {max_keys})"
                );
            }
        }
    }
}

#[test]
fn sliding_window_counts_the_previous_window() {
    let clock = ManualClock::new(0);
    let config = config::RateLimit {
        algorithm: RateLimitAlgorithm::SlidingWindow,
        requests: 4,
        per_seconds: 1.0,
        burst: None,
        key: RateLimitKey::Header("x-api-key".into()),
        max_keys: 10,
    };
    let limit = limiter(&config, &clock);
    assert_eq!((0..10).filter(|_| limit.check(b"key-a").is_ok()).count(), 4);
    let wait = limit.check(b"key-a").unwrap_err().retry_after;
    assert!(
        wait > Duration::ZERO && wait <= Duration::from_secs(2),
        "{wait:?}"
    );
    // Half way into the next window half of the previous count still weighs.
    clock.advance(SECOND + SECOND / 2);
    assert_eq!((0..10).filter(|_| limit.check(b"key-a").is_ok()).count(), 2);
    clock.advance(2 * SECOND);
    assert_eq!((0..10).filter(|_| limit.check(b"key-a").is_ok()).count(), 4);
}

#[test]
fn bad_limits_name_the_field() {
    let cases = [
        (bucket(0, 1.0, None, 10), "route.rate_limits[2].requests"),
        (bucket(1, 0.0, None, 10), "route.rate_limits[2].per_seconds"),
        (
            bucket(1, f64::NAN, None, 10),
            "route.rate_limits[2].per_seconds",
        ),
        (bucket(1, 1.0, Some(0), 10), "route.rate_limits[2].burst"),
        (bucket(1, 1.0, None, 0), "route.rate_limits[2].max_keys"),
        (
            bucket(u64::MAX, 1e-9, None, 10),
            "route.rate_limits[2].per_seconds",
        ),
    ];
    for (config, path) in cases {
        let err = KeyedRateLimiter::new(&config, "route.rate_limits[2]").unwrap_err();
        assert_eq!(err.path, path, "{err}");
    }
}
