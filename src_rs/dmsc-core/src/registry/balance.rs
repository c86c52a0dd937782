//! Discovery's load balancers, built once per healthy set.

use std::sync::Arc;

use crate::hash::{
    xxhash64, Maglev, RingHash, DEFAULT_MAX_RING_SIZE, DEFAULT_MIN_RING_SIZE, DEFAULT_TABLE_SIZE,
};
use crate::pick::{
    least_loaded_of_choices, AtomicRng, Pick, RandomPicker, RoundRobin, WeightedRoundRobin,
};

use super::Instance;

/// The balancing algorithms discovery offers (the C API's `LB_*` constants, in order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// Each healthy instance in turn.
    RoundRobin,
    /// Power of two choices over in-flight requests (kept on the instances, so they survive
    /// rebuilds of the healthy set).
    LeastRequests,
    /// Smooth weighted round robin (earliest deadline first) over instance weights.
    Weighted,
    /// Envoy's ring hash over `host:port` keys: the same key, the same instance.
    ConsistentHash,
    /// Uniformly random.
    Random,
    /// Envoy's Maglev table over `host:port` keys.
    Maglev,
}

impl Algorithm {
    /// All algorithms, in `LB_*` order.
    pub const ALL: [Algorithm; 6] = [
        Algorithm::RoundRobin,
        Algorithm::LeastRequests,
        Algorithm::Weighted,
        Algorithm::ConsistentHash,
        Algorithm::Random,
        Algorithm::Maglev,
    ];

    /// The algorithm with C constant `code`, if any.
    pub fn from_code(code: i32) -> Option<Self> {
        usize::try_from(code)
            .ok()
            .and_then(|i| Self::ALL.get(i).copied())
    }

    /// Lower-case name used by configuration files and the Python API.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::RoundRobin => "round_robin",
            Algorithm::LeastRequests => "least_requests",
            Algorithm::Weighted => "weighted",
            Algorithm::ConsistentHash => "consistent_hash",
            Algorithm::Random => "random",
            Algorithm::Maglev => "maglev",
        }
    }

    /// The algorithm called `name` (as [`Algorithm::name`] spells it).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.name() == name)
    }
}

/// A balancer over a fixed list of instances.
#[derive(Debug)]
pub struct Balancer(Strategy);

#[derive(Debug)]
enum Strategy {
    /// No healthy instance.
    Empty,
    /// Round robin.
    RoundRobin(RoundRobin),
    /// Power of two choices on the instances' in-flight requests.
    LeastRequests(AtomicRng),
    /// Earliest-deadline-first weighted round robin.
    Weighted(WeightedRoundRobin),
    /// Envoy ring hash.
    ConsistentHash(RingHash),
    /// Uniform random.
    Random(RandomPicker),
    /// Envoy Maglev.
    Maglev(Maglev),
}

fn host_keys(instances: &[Arc<Instance>]) -> Vec<String> {
    instances
        .iter()
        .map(|i| format!("{}:{}", i.endpoint.host, i.endpoint.port))
        .collect()
}

fn weights(instances: &[Arc<Instance>]) -> Vec<i64> {
    instances
        .iter()
        .map(|i| i64::from(i.endpoint.weight))
        .collect()
}

fn weights_u32(instances: &[Arc<Instance>]) -> Vec<u32> {
    instances.iter().map(|i| i.endpoint.weight).collect()
}

impl Balancer {
    /// Builds the balancer of `algorithm` over `instances` (addresses are unique per service).
    pub fn new(algorithm: Algorithm, instances: &[Arc<Instance>]) -> Self {
        if instances.is_empty() {
            return Balancer(Strategy::Empty);
        }
        let n = instances.len();
        // Instances are validated (weight >= 1, unique addresses), so construction cannot fail;
        // should it ever, round robin still serves every healthy instance.
        let built = match algorithm {
            Algorithm::RoundRobin => None,
            Algorithm::LeastRequests => Some(Strategy::LeastRequests(AtomicRng::new(None))),
            Algorithm::Random => RandomPicker::new(n, None).ok().map(Strategy::Random),
            Algorithm::Weighted => WeightedRoundRobin::new(&weights_u32(instances), None)
                .ok()
                .map(Strategy::Weighted),
            Algorithm::ConsistentHash => RingHash::new(
                &host_keys(instances),
                Some(&weights(instances)),
                DEFAULT_MIN_RING_SIZE,
                DEFAULT_MAX_RING_SIZE,
            )
            .ok()
            .map(Strategy::ConsistentHash),
            Algorithm::Maglev => Maglev::new(
                &host_keys(instances),
                Some(&weights(instances)),
                DEFAULT_TABLE_SIZE,
            )
            .ok()
            .map(Strategy::Maglev),
        };
        Balancer(
            built
                .or_else(|| RoundRobin::new(n, None).ok().map(Strategy::RoundRobin))
                .unwrap_or(Strategy::Empty),
        )
    }

    /// Index of the chosen instance in `instances` (the list the balancer was built over).
    ///
    /// Hash balancers use `hash_key` (xxHash64, as Envoy hashes request keys); without one
    /// they pick at random.
    pub fn pick(&self, instances: &[Arc<Instance>], hash_key: Option<&[u8]>) -> Option<usize> {
        let n = instances.len();
        if n == 0 {
            return None;
        }
        let hash = || hash_key.map_or_else(|| fastrand::u64(..), |key| xxhash64(key, 0));
        Some(match &self.0 {
            Strategy::Empty => return None,
            Strategy::RoundRobin(picker) => picker.pick(),
            Strategy::LeastRequests(rng) => {
                least_loaded_of_choices(rng, n, 2, |i| instances[i].active_requests())
            }
            Strategy::Weighted(picker) => picker.pick(),
            Strategy::ConsistentHash(ring) => ring.pick_hash(hash()),
            Strategy::Random(picker) => picker.pick(),
            Strategy::Maglev(table) => table.pick_hash(hash()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::{Endpoint, Health};

    fn instances(n: u16) -> Vec<Arc<Instance>> {
        (1..=n)
            .map(|port| {
                Arc::new(Instance::new(
                    Endpoint {
                        name: "svc".into(),
                        host: "127.0.0.1".into(),
                        port,
                        weight: u32::from(port),
                        ..Endpoint::default()
                    },
                    Health::Healthy,
                    None,
                    0,
                ))
            })
            .collect()
    }

    #[test]
    fn codes_and_names_round_trip() {
        for (code, algorithm) in Algorithm::ALL.iter().enumerate() {
            assert_eq!(Algorithm::from_code(code as i32), Some(*algorithm));
            assert_eq!(Algorithm::from_name(algorithm.name()), Some(*algorithm));
        }
        assert_eq!(Algorithm::from_code(6), None);
        assert_eq!(Algorithm::from_code(-1), None);
    }

    #[test]
    fn every_algorithm_picks_within_range() {
        let list = instances(5);
        for algorithm in Algorithm::ALL {
            let balancer = Balancer::new(algorithm, &list);
            for k in 0..100u32 {
                let at = balancer.pick(&list, Some(&k.to_le_bytes())).unwrap();
                assert!(at < list.len(), "{algorithm:?}");
            }
        }
        assert_eq!(Balancer::new(Algorithm::Maglev, &[]).pick(&[], None), None);
    }

    #[test]
    fn hash_balancers_are_sticky_per_key() {
        let list = instances(7);
        for algorithm in [Algorithm::ConsistentHash, Algorithm::Maglev] {
            let balancer = Balancer::new(algorithm, &list);
            let first = balancer.pick(&list, Some(b"session-42"));
            for _ in 0..10 {
                assert_eq!(balancer.pick(&list, Some(b"session-42")), first);
            }
        }
    }

    #[test]
    fn least_requests_avoids_the_busy_instance() {
        let list = instances(3);
        let _busy: Vec<_> = (0..10).map(|_| list[0].begin_request()).collect();
        let balancer = Balancer::new(Algorithm::LeastRequests, &list);
        let mut counts = [0u32; 3];
        for _ in 0..9000 {
            counts[balancer.pick(&list, None).unwrap()] += 1;
        }
        // Two draws with replacement: the busy instance wins only when drawn twice (1/9).
        assert!(counts[0].abs_diff(1000) < 250, "{counts:?}");
        assert!(counts[1..].iter().all(|&c| c > 3500), "{counts:?}");
    }

    #[test]
    fn weighted_follows_weights() {
        let list = instances(3); // weights 1, 2, 3
        let balancer = Balancer::new(Algorithm::Weighted, &list);
        let mut counts = [0usize; 3];
        for _ in 0..600 {
            counts[balancer.pick(&list, None).unwrap()] += 1;
        }
        assert_eq!(counts, [100, 200, 300]);
    }
}
