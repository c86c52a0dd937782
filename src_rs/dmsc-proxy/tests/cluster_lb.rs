//! Load balancing of a cluster: every algorithm's distribution, panic mode,
//! `avoid`, host breakers, endpoint updates and hash keys.

mod cluster_support;

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use cluster_support::{addr, lease_on, port_of};
use dmsc_core::clock::{Clock, ManualClock};
use dmsc_proxy::cluster::{Cluster, EndpointSpec, Host, HostLease, Outcome, PickError};
use dmsc_proxy::config::{self, HashPolicy, HostBreaker, LbPolicy, StaticEndpoint};
use dmsc_proxy::http1::{BodyFraming, ConnectionInfo, FieldSpan, RequestHead, Version};

fn cluster_config(lb: LbPolicy, ports: &[(u16, u32)]) -> config::Cluster {
    config::Cluster {
        name: "backend".into(),
        lb,
        endpoints: ports
            .iter()
            .map(|&(port, weight)| StaticEndpoint::Weighted {
                address: addr(port).to_string(),
                weight,
            })
            .collect(),
        ..Default::default()
    }
}

fn cluster(lb: LbPolicy, ports: &[(u16, u32)]) -> Cluster {
    Cluster::new(&cluster_config(lb, ports), "clusters[0]", Clock::Monotonic)
        .expect("valid cluster")
}

fn equal(ports: &[u16]) -> Vec<(u16, u32)> {
    ports.iter().map(|&p| (p, 1)).collect()
}

/// Picks `n` times, releasing each lease at once, and counts picks per port.
fn counts(cluster: &Cluster, ports: &[u16], n: usize, hash: Option<u64>) -> Vec<usize> {
    let mut counts = vec![0; ports.len()];
    for _ in 0..n {
        let lease = cluster.pick(hash, &[]).expect("a host");
        let index = ports
            .iter()
            .position(|&p| p == port_of(&lease))
            .expect("known port");
        counts[index] += 1;
    }
    counts
}

#[test]
fn round_robin_cycles_through_every_host_in_order() {
    let ports = [9001, 9002, 9003];
    let c = cluster(LbPolicy::RoundRobin, &equal(&ports));
    let seq: Vec<u16> = (0..30)
        .map(|_| port_of(&c.pick(None, &[]).unwrap()))
        .collect();
    for window in seq.chunks(3) {
        let mut sorted = window.to_vec();
        sorted.sort_unstable();
        assert_eq!(sorted, ports, "{seq:?}");
    }
    assert!(seq.windows(4).all(|w| w[0] == w[3]), "{seq:?}");
}

#[test]
fn weighted_round_robin_is_exact_over_each_period() {
    let ports = [9001, 9002, 9003];
    let c = cluster(
        LbPolicy::WeightedRoundRobin,
        &[(9001, 1), (9002, 2), (9003, 3)],
    );
    assert_eq!(counts(&c, &ports, 600, None), vec![100, 200, 300]);
}

#[test]
fn random_follows_weights_when_they_differ() {
    let ports = [9001, 9002];
    let c = cluster(LbPolicy::Random, &[(9001, 1), (9002, 3)]);
    let got = counts(&c, &ports, 40_000, None);
    // Expected 10k / 30k; 1000 is over 10 standard deviations.
    assert!(got[0].abs_diff(10_000) < 1000, "{got:?}");
    let uniform = cluster(LbPolicy::Random, &equal(&ports));
    let got = counts(&uniform, &ports, 40_000, None);
    assert!(got[0].abs_diff(20_000) < 1000, "{got:?}");
}

#[test]
fn least_request_never_prefers_a_busy_host_over_idle_ones() {
    let ports = [9001, 9002, 9003, 9004];
    let c = cluster(LbPolicy::LeastRequest, &equal(&ports));
    let held: Vec<HostLease> = (0..5).map(|_| lease_on(&c, 9001)).collect();
    assert_eq!(c.hosts()[0].active_requests(), 5);
    // Two different hosts are compared: the busy one always loses.
    let got = counts(&c, &ports, 4000, None);
    assert_eq!(got[0], 0, "{got:?}");
    assert!(got[1..].iter().all(|&n| n > 1000), "{got:?}");
    drop(held);
    assert_eq!(c.hosts()[0].active_requests(), 0);
}

#[test]
fn least_request_over_two_hosts_scans_both() {
    let ports = [9001, 9002];
    let c = cluster(LbPolicy::LeastRequest, &equal(&ports));
    let _busy = lease_on(&c, 9002);
    assert_eq!(counts(&c, &ports, 500, None), vec![500, 0]);
}

#[test]
fn least_request_balances_leases_held_open() {
    let ports = [9001, 9002, 9003, 9004, 9005];
    let c = cluster(LbPolicy::LeastRequest, &equal(&ports));
    let held: Vec<HostLease> = (0..2000).map(|_| c.pick(None, &[]).unwrap()).collect();
    let loads: Vec<u64> = c.hosts().iter().map(|h| h.active_requests()).collect();
    let spread = loads.iter().max().unwrap() - loads.iter().min().unwrap();
    assert!(spread <= 10, "{loads:?}");
    drop(held);
}

#[test]
fn weighted_least_request_divides_load_by_weight() {
    let c = cluster(LbPolicy::LeastRequest, &[(9001, 1), (9002, 3)]);
    let held: Vec<HostLease> = (0..400).map(|_| c.pick(None, &[]).unwrap()).collect();
    let loads: Vec<u64> = c.hosts().iter().map(|h| h.active_requests()).collect();
    assert!(loads[1].abs_diff(300) <= 10, "{loads:?}");
    drop(held);
    // Idle hosts (each request done before the next) share traffic by weight.
    let ports = [9001, 9002];
    let got = counts(&c, &ports, 40_000, None);
    assert!(got[0].abs_diff(10_000) < 1000, "{got:?}");
}

#[test]
fn peak_ewma_prefers_the_faster_host() {
    let ports = [9001, 9002, 9003];
    let c = cluster(LbPolicy::PeakEwma, &equal(&ports));
    for _ in 0..5 {
        lease_on(&c, 9001).finish(Outcome::Status(200), Duration::from_millis(200));
        lease_on(&c, 9002).finish(Outcome::Status(200), Duration::from_millis(1));
        lease_on(&c, 9003).finish(Outcome::Status(200), Duration::from_millis(1));
    }
    let got = counts(&c, &ports, 3000, None);
    assert_eq!(got[0], 0, "{got:?}");
    let described = c.describe();
    let slow = described[0]["ewma_ms"].as_f64().unwrap();
    let fast = described[1]["ewma_ms"].as_f64().unwrap();
    assert!(slow > 100.0 && fast < 50.0, "{described}");
}

#[test]
fn peak_ewma_penalises_fast_failures() {
    let ports = [9001, 9002, 9003];
    let c = cluster(LbPolicy::PeakEwma, &equal(&ports));
    for _ in 0..5 {
        lease_on(&c, 9001).finish(Outcome::ConnectFailure, Duration::from_micros(10));
        lease_on(&c, 9002).finish(Outcome::Status(200), Duration::from_millis(5));
        lease_on(&c, 9003).finish(Outcome::Status(200), Duration::from_millis(5));
    }
    let got = counts(&c, &ports, 3000, None);
    assert_eq!(got[0], 0, "{got:?}");
}

fn key_map(c: &Cluster, keys: u64) -> Vec<u16> {
    (0..keys)
        .map(|k| {
            port_of(
                &c.pick(Some(dmsc_core::hash::xxhash64(&k.to_le_bytes(), 0)), &[])
                    .unwrap(),
            )
        })
        .collect()
}

fn hashing_is_consistent(lb: LbPolicy, max_moved: f64) {
    let ports = [9001, 9002, 9003, 9004, 9005];
    let c = cluster(lb, &equal(&ports));
    let before = key_map(&c, 2000);
    assert_eq!(before, key_map(&c, 2000), "same key, same host");
    for port in ports {
        assert!(before.contains(&port), "{port} owns no key");
    }
    let remaining: Vec<EndpointSpec> = ports[..4]
        .iter()
        .map(|&p| EndpointSpec {
            address: addr(p),
            weight: 1,
            healthy: true,
        })
        .collect();
    c.set_endpoints(&remaining);
    let after = key_map(&c, 2000);
    let stayed: Vec<usize> = (0..before.len()).filter(|&i| before[i] != 9005).collect();
    let moved = stayed.iter().filter(|&&i| before[i] != after[i]).count();
    let share = moved as f64 / stayed.len() as f64;
    assert!(
        share <= max_moved,
        "{lb:?}: {share} of keys moved between hosts that stayed"
    );
    assert!(!after.contains(&9005));
}

#[test]
fn ring_hash_is_consistent_when_a_host_leaves() {
    hashing_is_consistent(LbPolicy::RingHash, 0.25);
}

#[test]
fn maglev_is_consistent_when_a_host_leaves() {
    hashing_is_consistent(LbPolicy::Maglev, 0.05);
}

#[test]
fn hash_balancers_without_a_key_spread_at_random() {
    let ports = [9001, 9002, 9003];
    for lb in [LbPolicy::RingHash, LbPolicy::Maglev] {
        let got = counts(&cluster(lb, &equal(&ports)), &ports, 3000, None);
        assert!(got.iter().all(|&n| n > 600), "{lb:?} {got:?}");
    }
}

fn specs(hosts: &[(u16, bool)]) -> Vec<EndpointSpec> {
    hosts
        .iter()
        .map(|&(p, healthy)| EndpointSpec {
            address: addr(p),
            weight: 1,
            healthy,
        })
        .collect()
}

#[test]
fn unhealthy_hosts_are_not_picked_until_panic() {
    let ports = [9001, 9002, 9003, 9004];
    let mut config = cluster_config(LbPolicy::RoundRobin, &[]);
    config.healthy_panic_threshold = 50.0;
    let c = Cluster::new(&config, "clusters[0]", Clock::Monotonic).unwrap();
    assert_eq!(c.pick(None, &[]).unwrap_err(), PickError::NoHosts);
    // Two of four healthy: 50% is not below the threshold.
    c.set_endpoints(&specs(&[
        (9001, true),
        (9002, true),
        (9003, false),
        (9004, false),
    ]));
    assert_eq!(counts(&c, &ports, 400, None), vec![200, 200, 0, 0]);
    // One of four: panic, balance over all of them.
    c.set_endpoints(&specs(&[
        (9001, true),
        (9002, false),
        (9003, false),
        (9004, false),
    ]));
    assert_eq!(counts(&c, &ports, 400, None), vec![100, 100, 100, 100]);
    // Without a panic threshold, no healthy host means no pick.
    config.healthy_panic_threshold = 0.0;
    let plain = Cluster::new(&config, "clusters[0]", Clock::Monotonic).unwrap();
    plain.set_endpoints(&specs(&[(9001, false), (9002, false)]));
    assert_eq!(plain.pick(None, &[]).unwrap_err(), PickError::NoHealthyHost);
}

#[test]
fn avoided_hosts_are_skipped_while_another_is_available() {
    let ports = [9001, 9002, 9003];
    for lb in [
        LbPolicy::RoundRobin,
        LbPolicy::LeastRequest,
        LbPolicy::RingHash,
        LbPolicy::Maglev,
    ] {
        let c = cluster(lb, &equal(&ports));
        for i in 0..200u64 {
            let lease = c.pick(Some(i), &[addr(9001), addr(9002)]).unwrap();
            assert_eq!(port_of(&lease), 9003, "{lb:?}");
        }
        // Every host tried already: one of them is tried again.
        let all = [addr(9001), addr(9002), addr(9003)];
        assert!(c.pick(None, &all).is_ok());
    }
}

fn breaker_cluster(lb: LbPolicy, ports: &[u16], clock: &ManualClock) -> Cluster {
    let mut config = cluster_config(lb, &equal(ports));
    config.host_breaker = Some(HostBreaker {
        failure_rate: 0.5,
        window: 4,
        minimum_requests: 4,
        open_ms: 1000,
        half_open_requests: 1,
    });
    Cluster::new(&config, "clusters[0]", Clock::Manual(clock.clone())).unwrap()
}

#[test]
fn hosts_with_an_open_breaker_are_skipped() {
    let clock = ManualClock::new(0);
    let ports = [9001, 9002, 9003];
    let c = breaker_cluster(LbPolicy::RoundRobin, &ports, &clock);
    for _ in 0..4 {
        lease_on(&c, 9001).finish(Outcome::Status(503), Duration::from_millis(1));
    }
    assert_eq!(
        c.hosts()[0].breaker_state().map(|s| s.as_str()),
        Some("open")
    );
    let got = counts(&c, &ports, 300, None);
    assert_eq!(got[0], 0, "{got:?}");
    // After open_ms one trial goes through; a cancelled trial gives its slot back.
    clock.advance(1_000_000_000);
    let trial = lease_on(&c, 9001);
    assert!(c.pick(None, &[addr(9002), addr(9003)]).map(|l| port_of(&l)) != Ok(9001));
    drop(trial);
    let trial = lease_on(&c, 9001);
    trial.finish(Outcome::Status(200), Duration::from_millis(1));
    assert_eq!(
        c.hosts()[0].breaker_state().map(|s| s.as_str()),
        Some("closed")
    );
}

#[test]
fn every_breaker_open_means_no_healthy_host() {
    let clock = ManualClock::new(0);
    let ports = [9001, 9002];
    let c = breaker_cluster(LbPolicy::LeastRequest, &ports, &clock);
    for port in ports {
        for _ in 0..4 {
            lease_on(&c, port).finish(Outcome::Reset, Duration::from_millis(1));
        }
    }
    assert_eq!(c.pick(None, &[]).unwrap_err(), PickError::NoHealthyHost);
}

#[test]
fn set_endpoints_keeps_the_state_of_hosts_that_stay() {
    let c = cluster(LbPolicy::LeastRequest, &equal(&[9001, 9002]));
    let kept: Arc<Host> = Arc::clone(&c.hosts()[1]);
    let lease = lease_on(&c, 9002);
    c.set_endpoints(&[
        EndpointSpec {
            address: addr(9003),
            weight: 2,
            healthy: true,
        },
        EndpointSpec {
            address: addr(9002),
            weight: 5,
            healthy: false,
        },
        EndpointSpec {
            address: addr(9003),
            weight: 9,
            healthy: true,
        },
    ]);
    let hosts = c.hosts();
    let order: Vec<u16> = hosts.iter().map(|h| h.address.port()).collect();
    assert_eq!(order, vec![9003, 9002]);
    assert!(Arc::ptr_eq(&hosts[1], &kept));
    assert_eq!(
        (kept.weight(), kept.is_healthy(), kept.active_requests()),
        (5, false, 1)
    );
    assert_eq!(hosts[0].weight(), 2);
    lease.finish(Outcome::Status(200), Duration::from_millis(1));
    assert_eq!(kept.active_requests(), 0);
    let described = c.describe();
    let rows = described.as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[1]["address"], "127.0.0.1:9002");
    assert_eq!(rows[1]["healthy"], false);
    assert_eq!(rows[1]["weight"], 5);
    assert_eq!(rows[0]["ejected"], false);
    assert_eq!(rows[0]["breaker"], serde_json::Value::Null);
    assert_eq!(
        rows[0]["ewma_ms"],
        serde_json::Value::Null,
        "kept by peak_ewma only"
    );
}

#[test]
fn leases_release_the_host_once_whether_finished_or_dropped() {
    let c = cluster(LbPolicy::RoundRobin, &equal(&[9001]));
    let host = Arc::clone(&c.hosts()[0]);
    let outcomes = [
        Outcome::Status(503),
        Outcome::Timeout,
        Outcome::Reset,
        Outcome::ConnectFailure,
    ];
    let leases: Vec<HostLease> = (0..8).map(|_| c.pick(None, &[]).unwrap()).collect();
    assert_eq!(host.active_requests(), 8);
    for (i, lease) in leases.into_iter().enumerate() {
        if i % 2 == 0 {
            lease.finish(outcomes[i / 2], Duration::from_millis(3));
        } else {
            drop(lease);
        }
    }
    assert_eq!(host.active_requests(), 0);
    // Response counters are the caller's: finish does not count them twice.
    assert_eq!(c.stats.rq_by_class[4].get(), 0);
    assert_eq!(c.stats.rq_timeout.get(), 0);
}

#[test]
fn bad_cluster_configs_name_the_field() {
    let cases: Vec<(config::Cluster, &str)> = vec![
        (
            cluster_config(LbPolicy::RoundRobin, &[(9001, 0)]),
            "clusters[3].endpoints[0].weight",
        ),
        (
            config::Cluster {
                endpoints: vec![StaticEndpoint::Address("not an address".into())],
                ..Default::default()
            },
            "clusters[3].endpoints[0]",
        ),
        (
            cluster_config(LbPolicy::RoundRobin, &[(9001, 1), (9001, 2)]),
            "clusters[3].endpoints[1]",
        ),
        (
            config::Cluster {
                healthy_panic_threshold: 101.0,
                ..Default::default()
            },
            "clusters[3].healthy_panic_threshold",
        ),
        (
            config::Cluster {
                host_breaker: Some(HostBreaker {
                    failure_rate: 0.0,
                    ..Default::default()
                }),
                ..Default::default()
            },
            "clusters[3].host_breaker.failure_rate",
        ),
        (
            config::Cluster {
                circuit_breakers: config::Thresholds {
                    max_requests: 0,
                    ..Default::default()
                },
                ..Default::default()
            },
            "clusters[3].circuit_breakers.max_requests",
        ),
        (
            config::Cluster {
                outlier_detection: Some(config::OutlierDetection {
                    max_ejection_percent: 150,
                    ..Default::default()
                }),
                ..Default::default()
            },
            "clusters[3].outlier_detection.max_ejection_percent",
        ),
        (
            config::Cluster {
                bulkhead: Some(config::Bulkhead {
                    max_concurrent: 0,
                    ..Default::default()
                }),
                ..Default::default()
            },
            "clusters[3].bulkhead.max_concurrent",
        ),
    ];
    for (config, path) in cases {
        let err = Cluster::new(&config, "clusters[3]", Clock::Monotonic).unwrap_err();
        assert_eq!(err.path, path, "{err}");
    }
}

/// A request head with these header fields, spans computed as the parser would.
fn request(headers: &[(&str, &str)]) -> RequestHead {
    let mut raw = b"GET /x HTTP/1.1\r\n".to_vec();
    let mut fields = Vec::new();
    for (name, value) in headers {
        let name_start = raw.len();
        raw.extend_from_slice(name.as_bytes());
        let name_end = raw.len();
        raw.extend_from_slice(b": ");
        let value_start = raw.len();
        raw.extend_from_slice(value.as_bytes());
        fields.push(FieldSpan {
            name: name_start..name_end,
            value: value_start..raw.len(),
        });
        raw.extend_from_slice(b"\r\n");
    }
    raw.extend_from_slice(b"\r\n");
    RequestHead {
        raw,
        method: 0..3,
        target: 4..6,
        version: Version::Http11,
        fields,
        framing: BodyFraming::Empty,
        connection: ConnectionInfo::default(),
    }
}

#[test]
fn hash_key_takes_the_first_policy_that_yields() {
    let mut config = cluster_config(LbPolicy::RingHash, &equal(&[9001, 9002]));
    config.hash_policy = vec![
        HashPolicy::Header("x-user".into()),
        HashPolicy::Cookie("session".into()),
        HashPolicy::SourceIp(true),
    ];
    let c = Cluster::new(&config, "clusters[0]", Clock::Monotonic).unwrap();
    let client = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 9));
    let h = |value: &str| Some(dmsc_core::hash::xxhash64(value.as_bytes(), 0));
    let both = request(&[("X-User", "alice"), ("Cookie", "a=1; session=xyz")]);
    assert_eq!(c.hash_key(&both, client), h("alice"));
    let cookie = request(&[("cookie", "a=1"), ("Cookie", "b=2;  session=\"xyz\" ")]);
    assert_eq!(c.hash_key(&cookie, client), h("xyz"));
    let none = request(&[("accept", "*/*")]);
    assert_eq!(
        c.hash_key(&none, client),
        Some(dmsc_core::hash::xxhash64(&[127, 0, 0, 9], 0))
    );

    config.hash_policy = vec![HashPolicy::Header("x-user".into())];
    let c = Cluster::new(&config, "clusters[0]", Clock::Monotonic).unwrap();
    assert_eq!(c.hash_key(&none, client), None);
    config.hash_policy = Vec::new();
    let c = Cluster::new(&config, "clusters[0]", Clock::Monotonic).unwrap();
    assert_eq!(c.hash_key(&both, client), None);
    // Balancers that do not hash need no key.
    let mut rr = cluster_config(LbPolicy::RoundRobin, &equal(&[9001]));
    rr.hash_policy = vec![HashPolicy::Header("x-user".into())];
    let c = Cluster::new(&rr, "clusters[0]", Clock::Monotonic).unwrap();
    assert_eq!(c.hash_key(&both, client), None);
}
