//! Healthy instances of a service with their balancers, as a whole and by version.

use std::collections::HashMap;
use std::sync::Arc;

use super::balance::{Algorithm, Balancer};
use super::health::Health;
use super::instance::Instance;

/// Instances with the balancer built over them.
#[derive(Debug)]
pub struct Pool {
    /// The instances, in registration order.
    pub instances: Vec<Arc<Instance>>,
    balancer: Balancer,
}

impl Pool {
    fn new(instances: Vec<Arc<Instance>>, algorithm: Algorithm) -> Self {
        let balancer = Balancer::new(algorithm, &instances);
        Self {
            instances,
            balancer,
        }
    }

    /// Picks one instance whose breaker lets the call through; `hash_key` steers the
    /// consistent-hash algorithms. When the balancer's choice is refused by its breaker, the
    /// following instances are tried in order, so a key keeps a stable fallback.
    pub fn pick(&self, hash_key: Option<&[u8]>) -> Option<&Arc<Instance>> {
        let first = self.balancer.pick(&self.instances, hash_key)?;
        let n = self.instances.len();
        (0..n)
            .map(|offset| &self.instances[(first + offset) % n])
            .find(|instance| instance.allow())
    }
}

/// The healthy instances of one service, as a whole and by version.
#[derive(Debug)]
pub struct HealthySet {
    /// Every healthy instance.
    pub all: Pool,
    versions: HashMap<String, Pool>,
}

impl HealthySet {
    /// Builds the pools of the healthy instances among `all`.
    pub(crate) fn build(all: &[Arc<Instance>], algorithm: Algorithm) -> Self {
        let healthy: Vec<Arc<Instance>> = all
            .iter()
            .filter(|i| i.health() == Health::Healthy)
            .cloned()
            .collect();
        let mut by_version: HashMap<String, Vec<Arc<Instance>>> = HashMap::new();
        for instance in &healthy {
            by_version
                .entry(instance.endpoint.version.clone())
                .or_default()
                .push(Arc::clone(instance));
        }
        Self {
            all: Pool::new(healthy, algorithm),
            versions: by_version
                .into_iter()
                .map(|(version, instances)| (version, Pool::new(instances, algorithm)))
                .collect(),
        }
    }

    /// The healthy instances running `version`.
    pub fn version(&self, version: &str) -> Option<&Pool> {
        self.versions.get(version)
    }
}

impl Default for HealthySet {
    /// No healthy instance.
    fn default() -> Self {
        HealthySet::build(&[], Algorithm::RoundRobin)
    }
}
