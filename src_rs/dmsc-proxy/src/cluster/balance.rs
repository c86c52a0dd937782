//! Choosing a host: the pick set (hosts a pick may use) and the balancer of
//! each algorithm built over it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use dmsc_core::clock::Nanos;
use dmsc_core::hash::{Maglev, RingHash, DEFAULT_MIN_RING_SIZE, DEFAULT_TABLE_SIZE};
use dmsc_core::pick::{Pick, RandomPicker, WeightedRoundRobin};

use super::Host;
use crate::config::LbPolicy;

/// Picks tried by the balancer before scanning the set for a usable host.
pub(super) const PICK_ATTEMPTS: u32 = 3;
/// Largest ring a `ring_hash` cluster builds (Envoy allows 8M entries; a sidecar needs far fewer).
const MAX_RING_SIZE: u64 = 1 << 18;
/// Spreads the hash of a retried pick over the ring (golden-ratio increment).
const HASH_STEP: u64 = 0x9E37_79B9_7F4A_7C15;

/// How the balancer of a pick set chooses.
#[derive(Debug)]
enum Picker {
    RoundRobin(AtomicU64),
    Weighted(WeightedRoundRobin),
    Random(RandomPicker),
    /// Power of two choices; with `cumulative` (running sums of differing weights) the
    /// two choices are drawn in proportion to weight and compared by `active / weight`.
    LeastRequest {
        cumulative: Option<Box<[u64]>>,
    },
    Ring(RingHash),
    Maglev(Maglev),
    PeakEwma,
}

/// The hosts a pick chooses from, and the balancer built over them. Immutable.
#[derive(Debug)]
pub(super) struct PickSet {
    /// Every host, in endpoint order.
    pub(super) all: Arc<[Arc<Host>]>,
    /// Available hosts, or all of them in panic mode.
    pub(super) chosen: Box<[Arc<Host>]>,
    picker: Picker,
    /// Earliest end of an ejection among the hosts (`Nanos::MAX`: none ejected).
    pub(super) next_return: Nanos,
}

/// Whether any two weights differ.
fn weights_differ(hosts: &[Arc<Host>]) -> bool {
    hosts
        .windows(2)
        .any(|pair| pair[0].weight() != pair[1].weight())
}

/// The balancer of `lb` over `hosts`, with their weights as they are now.
fn build_picker(lb: LbPolicy, hosts: &[Arc<Host>]) -> Picker {
    if hosts.is_empty() {
        return Picker::RoundRobin(AtomicU64::new(0));
    }
    let weighted = weights_differ(hosts);
    let weights: Vec<u32> = hosts.iter().map(|h| h.weight().max(1)).collect();
    let wide: Vec<i64> = weights.iter().map(|&w| i64::from(w)).collect();
    let hash_weights = weighted.then_some(wide.as_slice());
    let keys: Vec<&str> = hosts.iter().map(|h| &*h.key).collect();
    let random = || match RandomPicker::weighted(&weights, None) {
        Ok(picker) => Picker::Random(picker),
        Err(_) => Picker::RoundRobin(AtomicU64::new(0)),
    };
    match lb {
        LbPolicy::RoundRobin => Picker::RoundRobin(AtomicU64::new(fastrand::u64(..))),
        LbPolicy::WeightedRoundRobin => match WeightedRoundRobin::new(&weights, None) {
            Ok(wrr) => Picker::Weighted(wrr),
            Err(_) => random(),
        },
        LbPolicy::Random => random(),
        LbPolicy::LeastRequest => Picker::LeastRequest {
            cumulative: weighted.then(|| {
                weights
                    .iter()
                    .scan(0u64, |sum, &w| {
                        *sum += u64::from(w);
                        Some(*sum)
                    })
                    .collect()
            }),
        },
        LbPolicy::PeakEwma => Picker::PeakEwma,
        LbPolicy::RingHash => {
            // Weights summing past u32::MAX are refused: fall back to an unweighted ring.
            match RingHash::new(&keys, hash_weights, DEFAULT_MIN_RING_SIZE, MAX_RING_SIZE)
                .or_else(|_| RingHash::new(&keys, None, DEFAULT_MIN_RING_SIZE, MAX_RING_SIZE))
            {
                Ok(ring) => Picker::Ring(ring),
                Err(_) => random(),
            }
        }
        LbPolicy::Maglev => match Maglev::new(&keys, hash_weights, DEFAULT_TABLE_SIZE)
            .or_else(|_| Maglev::new(&keys, None, DEFAULT_TABLE_SIZE))
        {
            Ok(table) => Picker::Maglev(table),
            Err(_) => random(),
        },
    }
}

impl PickSet {
    /// The set over `all`: the available hosts (healthy, not ejected), or every host
    /// when too few are available (Envoy's panic mode).
    pub(super) fn new(all: Arc<[Arc<Host>]>, lb: LbPolicy, panic_threshold: f64) -> Self {
        let available: Vec<Arc<Host>> = all.iter().filter(|h| h.is_available()).cloned().collect();
        let next_return = all
            .iter()
            .filter_map(|h| h.outlier.ejected_until())
            .min()
            .unwrap_or(Nanos::MAX);
        let total = all.len();
        let panic =
            total > 0 && (available.len() as f64) * 100.0 / (total as f64) < panic_threshold;
        let chosen: Box<[Arc<Host>]> = if panic {
            all.iter().cloned().collect()
        } else {
            available.into()
        };
        let picker = build_picker(lb, &chosen);
        Self {
            all,
            chosen,
            picker,
            next_return,
        }
    }

    /// A set without hosts.
    pub(super) fn empty() -> Self {
        Self {
            all: Arc::from(Vec::new()),
            chosen: Box::new([]),
            picker: Picker::RoundRobin(AtomicU64::new(0)),
            next_return: Nanos::MAX,
        }
    }

    /// The balancer's choice for try `attempt` of this pick (an index into `chosen`).
    #[inline]
    pub(super) fn choose(&self, hash: Option<u64>, attempt: u32) -> usize {
        let hosts = &self.chosen;
        let n = hosts.len();
        match &self.picker {
            Picker::RoundRobin(next) => (next.fetch_add(1, Ordering::Relaxed) % n as u64) as usize,
            Picker::Weighted(wrr) => wrr.pick() % n,
            Picker::Random(random) => random.pick() % n,
            Picker::LeastRequest { cumulative: None } => least_of(n, |a, b| {
                hosts[a].active_requests() < hosts[b].active_requests()
            }),
            Picker::LeastRequest {
                cumulative: Some(cumulative),
            } => {
                // Drawn by weight so that idle hosts share traffic by weight; the second
                // draw wins only with a strictly lower active / weight.
                let total = cumulative.last().copied().unwrap_or(1).max(1);
                let draw = || {
                    let ticket = fastrand::u64(..total);
                    cumulative.partition_point(|&sum| sum <= ticket).min(n - 1)
                };
                let (a, b) = (draw(), draw());
                let (ha, hb) = (&hosts[a], &hosts[b]);
                let load_a = u128::from(ha.active_requests()) * u128::from(hb.weight().max(1));
                let load_b = u128::from(hb.active_requests()) * u128::from(ha.weight().max(1));
                if load_b < load_a {
                    b
                } else {
                    a
                }
            }
            Picker::PeakEwma => least_of(n, |a, b| {
                // cost = estimate * (active + 1); the time terms of the levels cancel.
                let (ha, hb) = (&hosts[a], &hosts[b]);
                let load_a = ha.active_requests().saturating_add(1) as f64;
                let load_b = hb.active_requests().saturating_add(1) as f64;
                ha.ewma.level() - hb.ewma.level() < (load_b / load_a).ln()
            }),
            Picker::Ring(ring) => ring.pick_hash(hash_for(hash, attempt)) % n,
            Picker::Maglev(table) => table.pick_hash(hash_for(hash, attempt)) % n,
        }
    }
}

/// The request hash for try `attempt`: the key's hash first, then points spread
/// over the ring, so retries of a hashed request can land elsewhere.
#[inline]
fn hash_for(hash: Option<u64>, attempt: u32) -> u64 {
    match hash {
        Some(h) => h.wrapping_add(u64::from(attempt).wrapping_mul(HASH_STEP)),
        None => fastrand::u64(..),
    }
}

/// Power of two choices over `0..n` (`better(a, b)`: a is strictly better); a full scan
/// from a random start when there are at most two hosts.
#[inline]
fn least_of(n: usize, better: impl Fn(usize, usize) -> bool) -> usize {
    if n <= 2 {
        let start = fastrand::usize(..n);
        let mut best = start;
        for k in 1..n {
            let candidate = (start + k) % n;
            if better(candidate, best) {
                best = candidate;
            }
        }
        return best;
    }
    let a = fastrand::usize(..n);
    let mut b = fastrand::usize(..n - 1);
    if b >= a {
        b += 1;
    }
    if better(b, a) {
        b
    } else {
        a
    }
}
