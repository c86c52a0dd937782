//! Mirroring: bringing a service's instances in line with a list kept elsewhere (a
//! controller's registry), keeping the live state of every address that stays.

use std::collections::HashSet;

use super::{Endpoint, Health, Registry};
use crate::InvalidArgument;

impl Registry {
    /// Makes the instances of `service` exactly `wanted` (each endpoint with its health), as
    /// a mirror of a registry kept elsewhere does. Addresses that stay keep their requests in
    /// flight, latency history, breaker and attachment; unchanged ones are not touched at all.
    /// Every endpoint is validated first (and must be of `service`), so a refused list
    /// changes nothing. Returns whether anything changed.
    pub fn sync_service(
        &self,
        service: &str,
        wanted: &[(Endpoint, Health)],
    ) -> Result<bool, InvalidArgument> {
        for (endpoint, _) in wanted {
            endpoint.validate()?;
            if endpoint.name != service {
                return Err(InvalidArgument::new(
                    "name",
                    format!("{:?} is not an instance of {service:?}", endpoint.name),
                ));
            }
        }
        let mut changed = false;
        let mut keep: HashSet<(&str, u16)> = HashSet::with_capacity(wanted.len());
        for (endpoint, health) in wanted {
            keep.insert((endpoint.host.as_str(), endpoint.port));
            match self.instance(service, &endpoint.host, endpoint.port) {
                Some(current) if current.endpoint == *endpoint => {
                    if current.health() != *health {
                        self.set_health(service, &endpoint.host, endpoint.port, *health);
                        changed = true;
                    }
                }
                current => {
                    let attachment = current.and_then(|i| i.attachment().cloned());
                    self.register_attached(endpoint.clone(), Some(*health), attachment)?;
                    changed = true;
                }
            }
        }
        for instance in self.instances(service) {
            let address = (instance.endpoint.host.as_str(), instance.endpoint.port);
            if !keep.contains(&address) {
                changed |= self.deregister(service, address.0, address.1);
            }
        }
        Ok(changed)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::registry::{Attachment, RegistryConfig};

    fn endpoint(port: u16) -> Endpoint {
        Endpoint {
            name: "a".into(),
            host: "127.0.0.1".into(),
            port,
            ..Endpoint::default()
        }
    }

    #[test]
    fn adds_updates_and_removes_to_match() {
        let registry = Registry::default();
        let wanted = [
            (endpoint(1), Health::Healthy),
            (endpoint(2), Health::Healthy),
        ];
        assert_eq!(registry.sync_service("a", &wanted), Ok(true));
        assert_eq!(registry.healthy_count("a"), 2);
        let revision = registry.revision();
        assert_eq!(registry.sync_service("a", &wanted), Ok(false));
        assert_eq!(registry.revision(), revision);
        let mut moved = endpoint(2);
        moved.version = "v2".into();
        let next = [(moved, Health::Unhealthy), (endpoint(3), Health::Healthy)];
        assert_eq!(registry.sync_service("a", &next), Ok(true));
        let ports: Vec<u16> = registry
            .instances("a")
            .iter()
            .map(|i| i.endpoint.port)
            .collect();
        assert_eq!(ports, [2, 3]);
        assert_eq!(registry.instances("a")[0].endpoint.version, "v2");
        assert_eq!(registry.healthy_count("a"), 1);
        assert_eq!(registry.sync_service("a", &[]), Ok(true));
        assert!(!registry.has_service("a"));
    }

    #[test]
    fn kept_addresses_keep_their_live_state() {
        let config = RegistryConfig {
            breaker: Some(crate::breaker::CircuitBreakerConfig::default()),
            ..RegistryConfig::default()
        };
        let registry = Registry::new(config, crate::clock::Clock::Monotonic).unwrap();
        let tag: Attachment = Arc::new(7u32);
        registry
            .register_attached(endpoint(1), Some(Health::Healthy), Some(tag))
            .unwrap();
        let call = registry.discover("a", None, None).unwrap().begin_request();
        registry.record_outcome(call.instance(), true, 4_000_000);
        let mut relabelled = endpoint(1);
        relabelled.zone = "eu-1".into();
        registry
            .sync_service("a", &[(relabelled, Health::Healthy)])
            .unwrap();
        let now = registry.instance("a", "127.0.0.1", 1).unwrap();
        assert_eq!(now.endpoint.zone, "eu-1");
        assert_eq!(now.active_requests(), 1);
        assert_eq!(now.latency_ewma(), Some(Duration::from_millis(4)));
        assert!(now.breaker().is_some());
        assert!(now.attachment().is_some());
        drop(call);
        assert_eq!(now.active_requests(), 0);
    }

    #[test]
    fn a_bad_list_changes_nothing() {
        let registry = Registry::default();
        registry
            .sync_service("a", &[(endpoint(1), Health::Healthy)])
            .unwrap();
        let mut other = endpoint(2);
        other.name = "b".into();
        let bad = [(endpoint(3), Health::Healthy), (other, Health::Healthy)];
        assert_eq!(
            registry.sync_service("a", &bad).unwrap_err().argument,
            "name"
        );
        assert_eq!(
            registry
                .sync_service("a", &[(endpoint(0), Health::Healthy)])
                .unwrap_err()
                .argument,
            "port"
        );
        assert_eq!(registry.instances("a").len(), 1);
        assert_eq!(registry.instances("a")[0].endpoint.port, 1);
    }
}
