//! Shared pieces of the cluster tests: loopback addresses and leases on a chosen host.

#![allow(dead_code)]

use std::net::SocketAddr;

use dmsc_proxy::cluster::{Cluster, HostLease};

/// `127.0.0.1:port`.
pub fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// The port of the leased host.
pub fn port_of(lease: &HostLease) -> u16 {
    lease.host.address.port()
}

/// A lease on the host at `port` (every other host avoided).
pub fn lease_on(cluster: &Cluster, port: u16) -> HostLease {
    let others: Vec<SocketAddr> = cluster
        .hosts()
        .iter()
        .map(|h| h.address)
        .filter(|a| a.port() != port)
        .collect();
    let lease = cluster.pick(None, &others).expect("a host");
    assert_eq!(port_of(&lease), port);
    lease
}
