//! Rate limiter hot paths: one uncontended `try_acquire` per iteration.
//!
//! Each limiter is measured on the monotonic clock (what production pays,
//! clock read included) and on a manual clock (the algorithm alone, with the
//! clock moved on every million calls so the limiter never runs dry). Every
//! measured call must be admitted, except in the `refused` cases, which
//! measure an exhausted limiter.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use dmsc_core::clock::{Clock, ManualClock, Nanos};
use dmsc_core::ratelimit::{Gcra, SlidingLogLimiter, SlidingWindowLimiter, TokenBucket};

const RATE: f64 = 1e9;
const BURST: u64 = 10_000_000;
const WINDOW_SECONDS: f64 = 1e-3;
const LIMIT: u64 = 16_000_000;
/// Calls between two moves of the manual clock; fewer than any limiter's capacity.
const CALLS_PER_TICK: u64 = 1_000_000;
/// How far the manual clock moves: enough to refill every limiter completely.
const TICK: Nanos = 1_000_000_000;

/// Benchmarks `acquire` on the monotonic clock and on a manual one; every call must be admitted.
fn bench_admitted<L>(
    c: &mut Criterion,
    name: &str,
    build: impl Fn(Clock) -> L,
    acquire: impl Fn(&L) -> bool,
) {
    let manual = ManualClock::new(0);
    for (clock_name, clock) in [
        ("monotonic", Clock::Monotonic),
        ("manual", Clock::Manual(manual.clone())),
    ] {
        let limiter = build(clock);
        c.bench_function(&format!("{name}/try_acquire/{clock_name}"), |b| {
            b.iter_custom(|iters| {
                let mut admitted = 0;
                let start = Instant::now();
                for call in 0..iters {
                    if call % CALLS_PER_TICK == 0 {
                        manual.advance(TICK);
                    }
                    admitted += u64::from(acquire(black_box(&limiter)));
                }
                let elapsed = start.elapsed();
                assert_eq!(admitted, iters, "{name} refused calls it should admit");
                elapsed
            })
        });
    }
}

fn token_bucket(c: &mut Criterion) {
    bench_admitted(
        c,
        "token_bucket",
        |clock| TokenBucket::new(RATE, RATE, None, clock).unwrap(),
        |bucket| bucket.try_acquire(black_box(1.0)).unwrap(),
    );
    let empty = TokenBucket::new(1.0, 1.0, Some(0.0), Clock::Monotonic).unwrap();
    c.bench_function("token_bucket/try_acquire/refused", |b| {
        b.iter(|| black_box(&empty).try_acquire(black_box(1.0)))
    });
}

fn gcra(c: &mut Criterion) {
    bench_admitted(
        c,
        "gcra",
        |clock| Gcra::new(RATE, BURST, clock).unwrap(),
        |gcra| gcra.try_acquire(black_box(1)).unwrap(),
    );
    let empty = Gcra::new(1.0, 1, Clock::Monotonic).unwrap();
    empty.try_acquire(1).unwrap();
    c.bench_function("gcra/try_acquire/refused", |b| {
        b.iter(|| black_box(&empty).try_acquire(black_box(1)))
    });
}

fn sliding_window(c: &mut Criterion) {
    bench_admitted(
        c,
        "sliding_window",
        |clock| SlidingWindowLimiter::new(LIMIT, WINDOW_SECONDS, clock).unwrap(),
        |limiter| limiter.try_acquire(black_box(1)).unwrap(),
    );
    let log = SlidingLogLimiter::new(1_000, 1.0, Clock::Monotonic).unwrap();
    c.bench_function("sliding_log/try_acquire/mostly_refused", |b| {
        b.iter(|| black_box(&log).try_acquire(black_box(1)))
    });
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
}

criterion_group! {
    name = benches;
    config = config();
    targets = token_bucket, gcra, sliding_window
}
criterion_main!(benches);
