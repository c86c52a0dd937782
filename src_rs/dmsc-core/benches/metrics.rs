//! Metrics hot paths: counter increment (with the designs it was chosen
//! over), gauge updates, histogram observe and percentiles, label lookup.

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use dmsc_core::metrics::{Counter, Family, Gauge, Histogram, HistogramSpec};

/// The alternative of one `fetch_add` on a single cell.
#[derive(Default)]
struct SingleCell(AtomicU64);

impl SingleCell {
    fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

/// The alternative of `fetch_add` on cache-line-padded shards picked per thread.
#[repr(align(128))]
#[derive(Default)]
struct Padded(AtomicU64);

#[derive(Default)]
struct PaddedShards([Padded; 4]);

fn thread_shard() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local!(static SHARD: usize = NEXT.fetch_add(1, Ordering::Relaxed));
    SHARD.with(|shard| *shard)
}

impl PaddedShards {
    fn inc(&self) {
        self.0[thread_shard() % 4].0.fetch_add(1, Ordering::Relaxed);
    }
}

/// Time per operation per thread when `threads` threads each do `iters` of `op` at once.
fn contended(threads: usize, iters: u64, op: impl Fn() + Send + Sync + 'static) -> Duration {
    let op = Arc::new(op);
    let barrier = Arc::new(Barrier::new(threads + 1));
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (op, barrier) = (op.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                for _ in 0..iters {
                    op();
                }
            })
        })
        .collect();
    barrier.wait();
    let start = Instant::now();
    for handle in handles {
        handle.join().unwrap();
    }
    start.elapsed()
}

fn counters(c: &mut Criterion) {
    let ours = Arc::new(Counter::new());
    let single = Arc::new(SingleCell::default());
    let padded = Arc::new(PaddedShards::default());
    c.bench_function("counter inc (striped, uncontended)", |b| {
        b.iter(|| black_box(&*ours).inc())
    });
    c.bench_function("counter inc (single fetch_add, uncontended)", |b| {
        b.iter(|| black_box(&*single).inc())
    });
    c.bench_function("counter inc (padded fetch_add shards, uncontended)", |b| {
        b.iter(|| black_box(&*padded).inc())
    });
    c.bench_function("counter inc (striped, 2 threads)", |b| {
        let counter = ours.clone();
        b.iter_custom(|iters| {
            let counter = counter.clone();
            contended(2, iters, move || black_box(&*counter).inc())
        })
    });
    c.bench_function("counter inc (single fetch_add, 2 threads)", |b| {
        let counter = single.clone();
        b.iter_custom(|iters| {
            let counter = counter.clone();
            contended(2, iters, move || black_box(&*counter).inc())
        })
    });
    c.bench_function("counter inc (padded fetch_add shards, 2 threads)", |b| {
        let counter = padded.clone();
        b.iter_custom(|iters| {
            let counter = counter.clone();
            contended(2, iters, move || black_box(&*counter).inc())
        })
    });
}

fn gauges(c: &mut Criterion) {
    let gauge = Gauge::new();
    c.bench_function("gauge set", |b| {
        b.iter(|| black_box(&gauge).set(black_box(3.5)))
    });
    c.bench_function("gauge add", |b| {
        b.iter(|| black_box(&gauge).add(black_box(1.0)))
    });
}

fn histograms(c: &mut Criterion) {
    let spec = HistogramSpec::new(1e-6, 3600.0, 0.005, None).unwrap();
    let histogram = Arc::new(Histogram::new(spec));
    let mut rng = fastrand::Rng::with_seed(1);
    let samples: Vec<f64> = (0..4096)
        .map(|_| (rng.f64() * 20.0 - 15.0).exp2())
        .collect();
    let mut next = 0;
    c.bench_function("histogram observe", |b| {
        b.iter(|| {
            next = (next + 1) & 4095;
            black_box(&*histogram).observe(samples[next])
        })
    });
    c.bench_function("histogram observe (2 threads)", |b| {
        let histogram = histogram.clone();
        b.iter_custom(|iters| {
            let histogram = histogram.clone();
            contended(2, iters, move || {
                black_box(&*histogram).observe(0.01).unwrap()
            })
        })
    });
    c.bench_function("histogram percentile p99 (4059 buckets)", |b| {
        b.iter(|| black_box(&*histogram).percentile(black_box(99.0)))
    });
}

fn families(c: &mut Criterion) {
    let family = Family::new(&["method", "code"], &[], Counter::new).unwrap();
    for code in ["200", "404", "500", "503"] {
        family.labels(&["GET", code]).unwrap();
    }
    c.bench_function("family labels (existing child) + inc", |b| {
        b.iter(|| family.labels(black_box(&["GET", "500"])).unwrap().inc())
    });
}

criterion_group!(benches, counters, gauges, histograms, families);
criterion_main!(benches);
