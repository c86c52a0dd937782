//! Pick latency of every picker, at 1000 hosts where the host count matters.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use dmsc_core::clock::Clock;
use dmsc_core::pick::{
    CountsRequests, LeastRequest, PeakEwma, Pick, RandomPicker, RoundRobin, WeightedRoundRobin,
};

const HOSTS: usize = 1000;

/// Weights 1..=10 repeated: a schedule period of 5500, precomputed as a table.
fn small_weights() -> Vec<u32> {
    (0..HOSTS).map(|i| (i % 10) as u32 + 1).collect()
}

/// Weights up to 1000: a period of about 500k, scheduled with the EDF heap.
fn large_weights() -> Vec<u32> {
    (0..HOSTS).map(|i| (i * 7 % 1000) as u32 + 1).collect()
}

fn bench_pick(c: &mut Criterion, name: &str, picker: &dyn Pick) {
    c.bench_function(name, |b| b.iter(|| black_box(picker.pick())));
}

fn pickers(c: &mut Criterion) {
    let rr = RoundRobin::new(HOSTS, Some(1)).unwrap();
    bench_pick(c, "round robin pick (1000 hosts)", &rr);

    let wrr = WeightedRoundRobin::new(&small_weights(), Some(1)).unwrap();
    bench_pick(c, "WRR pick, table (1000 hosts)", &wrr);
    let wrr = WeightedRoundRobin::new(&large_weights(), Some(1)).unwrap();
    bench_pick(c, "WRR pick, EDF heap (1000 hosts)", &wrr);

    let random = RandomPicker::weighted(&small_weights(), Some(1)).unwrap();
    bench_pick(c, "weighted random pick (1000 hosts)", &random);

    let p2c = LeastRequest::new(HOSTS, 2, None, 1.0, Some(1)).unwrap();
    (0..HOSTS).step_by(3).for_each(|h| {
        p2c.start(h).unwrap();
    });
    bench_pick(c, "P2C pick (1000 hosts)", &p2c);

    let weighted = LeastRequest::new(HOSTS, 2, Some(&small_weights()), 1.0, Some(1)).unwrap();
    bench_pick(c, "weighted least request pick (1000 hosts)", &weighted);

    let ewma = PeakEwma::new(HOSTS, 10.0, 0.03, 2.0, Clock::Monotonic, Some(1)).unwrap();
    (0..HOSTS).for_each(|h| ewma.record(h, 0.001 * (h % 50) as f64, true).unwrap());
    (0..HOSTS).step_by(3).for_each(|h| {
        ewma.start(h).unwrap();
    });
    bench_pick(c, "EWMA pick (1000 hosts)", &ewma);
    c.bench_function("EWMA record (1000 hosts)", |b| {
        let mut host = 0;
        b.iter(|| {
            host = (host + 1) % HOSTS;
            ewma.record(host, 0.02, true).unwrap();
        })
    });
}

criterion_group!(benches, pickers);
criterion_main!(benches);
