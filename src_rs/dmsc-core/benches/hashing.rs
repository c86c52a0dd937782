//! Lookup and build costs of the consistent-hash structures.
//!
//! Budgets: ring lookup with 1000 hosts <= 50 ns, Maglev pick <= 10 ns,
//! Maglev table build for 1000 hosts at 65537 entries < 5 ms.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use dmsc_core::hash::{
    KetamaRing, Maglev, RingHash, DEFAULT_MAX_RING_SIZE, DEFAULT_MIN_RING_SIZE, DEFAULT_TABLE_SIZE,
};

const HOSTS: usize = 1000;

fn hosts(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("10.{}.{}.{}:8080", i / 65536, (i / 256) % 256, i % 256))
        .collect()
}

/// A fixed pseudo-random stream of 64-bit hashes, so lookups do not hit one cache line.
fn hash_stream(len: usize) -> Vec<u64> {
    let mut rng = fastrand::Rng::with_seed(42);
    (0..len).map(|_| rng.u64(..)).collect()
}

fn keys(len: usize) -> Vec<String> {
    (0..len).map(|i| format!("session-{i:08}")).collect()
}

fn ring_hash(c: &mut Criterion) {
    let ring = RingHash::new(
        &hosts(HOSTS),
        None,
        DEFAULT_MIN_RING_SIZE,
        DEFAULT_MAX_RING_SIZE,
    )
    .expect("valid hosts");
    let hashes = hash_stream(4096);
    let mut i = 0;
    c.bench_function("ring_hash pick_hash 1000 hosts", |b| {
        b.iter(|| {
            i = (i + 1) & 4095;
            black_box(ring.pick_hash(black_box(hashes[i])))
        })
    });
    let keys = keys(4096);
    c.bench_function("ring_hash get (xxHash64 + pick) 1000 hosts", |b| {
        b.iter(|| {
            i = (i + 1) & 4095;
            black_box(ring.get(black_box(keys[i].as_bytes())))
        })
    });
    // A weighted ring sized like Envoy's for skewed weights (tens of thousands of entries).
    let weights: Vec<i64> = (0..HOSTS as i64).map(|w| w % 10 + 1).collect();
    let big = RingHash::new(&hosts(HOSTS), Some(&weights), 65536, DEFAULT_MAX_RING_SIZE)
        .expect("valid hosts");
    c.bench_function("ring_hash pick_hash 1000 weighted hosts, large ring", |b| {
        b.iter(|| {
            i = (i + 1) & 4095;
            black_box(big.pick_hash(black_box(hashes[i])))
        })
    });
}

fn maglev(c: &mut Criterion) {
    let table = Maglev::new(&hosts(HOSTS), None, DEFAULT_TABLE_SIZE).expect("valid hosts");
    let hashes = hash_stream(4096);
    let mut i = 0;
    c.bench_function("maglev pick_hash 1000 hosts", |b| {
        b.iter(|| {
            i = (i + 1) & 4095;
            black_box(table.pick_hash(black_box(hashes[i])))
        })
    });
    let keys = keys(4096);
    c.bench_function("maglev get (xxHash64 + pick) 1000 hosts", |b| {
        b.iter(|| {
            i = (i + 1) & 4095;
            black_box(table.get(black_box(keys[i].as_bytes())))
        })
    });
    let names = hosts(HOSTS);
    let mut group = c.benchmark_group("maglev build");
    group.sample_size(20);
    group.bench_function("1000 hosts, 65537 entries", |b| {
        b.iter(|| Maglev::new(black_box(&names), None, DEFAULT_TABLE_SIZE).expect("valid hosts"))
    });
    group.finish();
}

fn ketama(c: &mut Criterion) {
    let nodes: Vec<(String, i64)> = hosts(100).into_iter().map(|h| (h, 1)).collect();
    let ring = KetamaRing::new(&nodes).expect("valid nodes");
    let keys = keys(4096);
    let mut i = 0;
    c.bench_function("ketama get (MD5 + pick) 100 nodes", |b| {
        b.iter(|| {
            i = (i + 1) & 4095;
            black_box(ring.get(black_box(keys[i].as_bytes())))
        })
    });
    let batch: Vec<&[u8]> = keys[..1000].iter().map(|k| k.as_bytes()).collect();
    let mut group = c.benchmark_group("ketama get_many");
    group.throughput(criterion::Throughput::Elements(batch.len() as u64));
    group.bench_function("1000 keys, 100 nodes", |b| {
        b.iter(|| black_box(ring.get_many(black_box(&batch))))
    });
    group.finish();
    let hashes: Vec<u32> = hash_stream(4096).into_iter().map(|h| h as u32).collect();
    c.bench_function("ketama pick_hash 100 nodes", |b| {
        b.iter(|| {
            i = (i + 1) & 4095;
            black_box(ring.pick_hash(black_box(hashes[i])))
        })
    });
}

criterion_group!(benches, ring_hash, maglev, ketama);
criterion_main!(benches);
