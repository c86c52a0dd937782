//! Circuit breaker and concurrency-limit hot paths.
//!
//! * `breaker/allow_closed`: permission check in CLOSED (one atomic load);
//! * `breaker/allow_record_closed`: a full call accounting in CLOSED, count window of 100;
//! * `breaker/allow_record_closed_time_window`: the same with a 60 s time window (monotonic clock);
//! * `breaker/allow_open`: a refused call in OPEN (lock + clock read);
//! * `limits/acquire_release`: one request slot taken and given back (two CAS).

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use dmsc_core::breaker::{
    CircuitBreaker, CircuitBreakerConfig, ConcurrencyLimits, State, WindowType,
};
use dmsc_core::clock::Clock;

fn breaker(window_type: WindowType) -> CircuitBreaker {
    let config = CircuitBreakerConfig {
        window_type,
        window_size: if window_type == WindowType::CountBased {
            100
        } else {
            60
        },
        ..Default::default()
    };
    CircuitBreaker::new(config, Clock::Monotonic).expect("valid config")
}

fn bench_breaker(c: &mut Criterion) {
    let mut group = c.benchmark_group("breaker");
    let closed = breaker(WindowType::CountBased);
    group.bench_function("allow_closed", |b| b.iter(|| black_box(closed.allow())));
    group.bench_function("allow_record_closed", |b| {
        b.iter(|| {
            if closed.allow() {
                closed.record(black_box(true), black_box(1_000));
            }
        })
    });
    let timed = breaker(WindowType::TimeBased);
    group.bench_function("allow_record_closed_time_window", |b| {
        b.iter(|| {
            if timed.allow() {
                timed.record(black_box(true), black_box(1_000));
            }
        })
    });
    let open = breaker(WindowType::CountBased);
    open.transition_to(State::Open);
    group.bench_function("allow_open", |b| b.iter(|| black_box(open.allow())));
    group.finish();
}

fn bench_limits(c: &mut Criterion) {
    let limits = ConcurrencyLimits::default();
    c.bench_function("limits/acquire_release", |b| {
        b.iter(|| {
            let requests = limits.requests();
            if black_box(requests.try_acquire()) {
                requests.release().expect("held");
            }
        })
    });
}

criterion_group!(benches, bench_breaker, bench_limits);
criterion_main!(benches);
