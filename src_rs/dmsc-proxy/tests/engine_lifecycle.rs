//! The engine's lifecycle on real loopback sockets: start, reload, endpoints,
//! drain, shutdown and metrics.

mod engine_util;

use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use dmsc_proxy::cluster::EndpointSpec;
use dmsc_proxy::Engine;
use engine_util::*;
use serde_json::json;

#[test]
fn starts_on_a_free_port_and_serves() {
    let upstream = echo_upstream();
    let engine = start(&tcp_document(&[upstream]));
    let listeners = engine.listeners();
    assert_eq!(listeners.len(), 1);
    assert_eq!(listeners[0].0, "l4");
    assert_ne!(listeners[0].1.port(), 0);
    let mut client = connect(listeners[0].1);
    assert_eq!(round_trip(&mut client, b"hello").unwrap(), b"hello");
    assert_eq!(engine.generation(), 1);
}

#[test]
fn a_busy_address_is_a_config_error_on_the_listener() {
    let busy = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut document = tcp_document(&[echo_upstream()]);
    document["listeners"][0]["listen"] = json!(busy.local_addr().unwrap().to_string());
    let err = Engine::start(config(&document)).unwrap_err();
    assert_eq!(err.path, "listeners[0].listen");
    assert!(err.message.contains("cannot listen"), "{err}");
}

#[test]
fn validate_checks_without_binding() {
    let busy = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut document = tcp_document(&[echo_upstream()]);
    document["listeners"][0]["listen"] = json!(busy.local_addr().unwrap().to_string());
    // The address is taken, but validation binds nothing, so it passes.
    Engine::validate(&config(&document)).unwrap();
    let mut bad = tcp_document(&[echo_upstream()]);
    bad["listeners"][0]["cluster"] = json!("nope");
    let parsed = dmsc_proxy::Config::from_json(&bad.to_string());
    let err = match parsed {
        Ok(parsed) => Engine::validate(&parsed).unwrap_err(),
        Err(err) => err,
    };
    assert!(err.path.starts_with("listeners[0]"), "{err}");
}

fn two_cluster_document(a: SocketAddr, b: SocketAddr) -> serde_json::Value {
    json!({
        "listeners": [
            {"name": "to_a", "listen": "127.0.0.1:0", "protocol": "tcp", "cluster": "a"},
            {"name": "to_b", "listen": "127.0.0.1:0", "protocol": "tcp", "cluster": "b"}
        ],
        "clusters": [
            {"name": "a", "lb": "round_robin", "endpoints": [a.to_string()]},
            {"name": "b", "lb": "round_robin", "endpoints": [b.to_string()]}
        ]
    })
}

#[test]
fn reload_keeps_unchanged_clusters_and_listeners() {
    let (a, b) = (echo_upstream(), echo_upstream());
    let document = two_cluster_document(a, b);
    let engine = start(&document);
    let before = engine.snapshot();
    let to_a = address_of(&engine, "to_a");
    // A session across the reload keeps working.
    let mut session = connect(to_a);
    assert_eq!(round_trip(&mut session, b"before").unwrap(), b"before");

    let mut next = document.clone();
    next["clusters"][1]["lb"] = json!("random");
    next["listeners"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "extra", "listen": "127.0.0.1:0", "protocol": "tcp", "cluster": "a"}));
    engine.reload(config(&next)).unwrap();

    let after = engine.snapshot();
    assert_eq!(after.generation, 2);
    assert_eq!(engine.generation(), 2);
    assert!(Arc::ptr_eq(
        before.cluster("a").unwrap(),
        after.cluster("a").unwrap()
    ));
    assert!(!Arc::ptr_eq(
        before.cluster("b").unwrap(),
        after.cluster("b").unwrap()
    ));
    assert!(Arc::ptr_eq(
        &before.listener("to_a").unwrap().stats,
        &after.listener("to_a").unwrap().stats
    ));
    assert_eq!(address_of(&engine, "to_a"), to_a);
    assert_eq!(engine.listeners().len(), 3);
    assert_eq!(round_trip(&mut session, b"after").unwrap(), b"after");
    for name in ["to_a", "to_b", "extra"] {
        let mut client = connect(address_of(&engine, name));
        assert_eq!(
            round_trip(&mut client, name.as_bytes()).unwrap(),
            name.as_bytes()
        );
    }
}

#[test]
fn a_refused_reload_changes_nothing() {
    let (a, b) = (echo_upstream(), echo_upstream());
    let document = two_cluster_document(a, b);
    let engine = start(&document);
    let before = engine.snapshot();
    let listeners = engine.listeners();

    // A port taken by someone else: the bind fails after validation passed.
    let busy = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut next = document.clone();
    next["listeners"].as_array_mut().unwrap().push(
        json!({"name": "new", "listen": busy.local_addr().unwrap().to_string(),
                     "protocol": "tcp", "cluster": "a"}),
    );
    next["clusters"][0]["lb"] = json!("random");
    let err = engine.reload(config(&next)).unwrap_err();
    assert_eq!(err.path, "listeners[2].listen");

    assert_eq!(engine.generation(), 1);
    assert!(Arc::ptr_eq(&before, &engine.snapshot()));
    assert_eq!(engine.listeners(), listeners);
    let mut client = connect(address_of(&engine, "to_a"));
    assert_eq!(round_trip(&mut client, b"still").unwrap(), b"still");
}

#[test]
fn workers_cannot_change_on_reload() {
    let engine = start(&tcp_document(&[echo_upstream()]));
    let mut next = tcp_document(&[echo_upstream()]);
    next["workers"] = json!(2);
    let err = engine.reload(config(&next)).unwrap_err();
    assert_eq!(err.path, "workers");
    assert_eq!(engine.generation(), 1);
}

#[test]
fn a_moved_listener_is_rebound_and_its_old_socket_closed() {
    let engine = start(&tcp_document(&[echo_upstream()]));
    let old = address_of(&engine, "l4");
    let free = dead_address();
    let mut next = tcp_document(&[echo_upstream()]);
    next["listeners"][0]["listen"] = json!(free.to_string());
    engine.reload(config(&next)).unwrap();
    assert_eq!(address_of(&engine, "l4"), free);
    let mut client = connect(free);
    assert_eq!(round_trip(&mut client, b"moved").unwrap(), b"moved");
    assert!(
        TcpStream::connect(old).is_err(),
        "the old socket is closed when reload returns"
    );

    // Another name on the same address takes the socket over instead of binding twice.
    next["listeners"][0]["name"] = json!("renamed");
    engine.reload(config(&next)).unwrap();
    assert_eq!(engine.listeners(), vec![("renamed".to_owned(), free)]);
    let mut client = connect(free);
    assert_eq!(round_trip(&mut client, b"renamed").unwrap(), b"renamed");
}

#[test]
fn set_endpoints_feeds_discovered_clusters_and_survives_reloads() {
    let live = echo_upstream();
    let document = json!({
        "listeners": [
            {"name": "l4", "listen": "127.0.0.1:0", "protocol": "tcp", "cluster": "svc"}
        ],
        "clusters": [{"name": "svc", "service": "echo", "lb": "round_robin"}]
    });
    let engine = start(&document);
    let spec = EndpointSpec {
        address: live,
        weight: 3,
        healthy: true,
    };
    engine
        .set_endpoints("svc", std::slice::from_ref(&spec))
        .unwrap();
    let hosts = engine.snapshot().cluster("svc").unwrap().hosts();
    assert_eq!(hosts.len(), 1);
    assert_eq!(hosts[0].address, live);
    assert_eq!(hosts[0].weight(), 3);
    let mut client = connect(address_of(&engine, "l4"));
    assert_eq!(round_trip(&mut client, b"found").unwrap(), b"found");

    // Rebuilt by a reload (its lb changed), the cluster keeps what discovery said.
    let mut next = document.clone();
    next["clusters"][0]["lb"] = json!("least_request");
    engine.reload(config(&next)).unwrap();
    let hosts = engine.snapshot().cluster("svc").unwrap().hosts();
    assert_eq!(
        hosts.iter().map(|h| h.address).collect::<Vec<_>>(),
        vec![live]
    );
    let mut client = connect(address_of(&engine, "l4"));
    assert_eq!(round_trip(&mut client, b"kept").unwrap(), b"kept");

    // Another service: discovery starts over.
    next["clusters"][0]["service"] = json!("other");
    engine.reload(config(&next)).unwrap();
    assert!(engine.snapshot().cluster("svc").unwrap().hosts().is_empty());

    let err = engine
        .set_endpoints("nope", std::slice::from_ref(&spec))
        .unwrap_err();
    assert_eq!(err.path, "cluster");
    let zero = EndpointSpec { weight: 0, ..spec };
    let err = engine.set_endpoints("svc", &[zero]).unwrap_err();
    assert_eq!(err.path, "endpoints[0].weight");
    assert!(engine.snapshot().cluster("svc").unwrap().hosts().is_empty());
}

#[test]
fn drain_waits_for_a_session_in_flight() {
    let engine = Arc::new(start(&tcp_document(&[echo_upstream()])));
    let address = address_of(&engine, "l4");
    let mut session = connect(address);
    assert_eq!(round_trip(&mut session, b"one").unwrap(), b"one");
    assert!(eventually(|| inflight(&engine) == 1));

    let draining = {
        let engine = engine.clone();
        thread::spawn(move || engine.drain(Duration::from_secs(60)))
    };
    assert!(eventually(|| engine.is_draining()));
    assert!(engine.listeners().is_empty());
    // The session in flight goes on while the drain waits for it.
    assert_eq!(round_trip(&mut session, b"two").unwrap(), b"two");
    assert!(!draining.is_finished());
    drop(session);
    assert!(draining.join().unwrap(), "drain saw every session finish");
    assert!(
        TcpStream::connect(address).is_err(),
        "listener closed by the drain"
    );
    assert!(engine
        .reload(config(&tcp_document(&[echo_upstream()])))
        .is_err());
}

#[test]
fn drain_gives_up_after_its_timeout() {
    let engine = start(&tcp_document(&[echo_upstream()]));
    let mut session = connect(address_of(&engine, "l4"));
    assert_eq!(round_trip(&mut session, b"x").unwrap(), b"x");
    assert!(eventually(|| inflight(&engine) == 1));
    assert!(!engine.drain(Duration::from_millis(50)));
    assert_eq!(inflight(&engine), 1);
    engine.shutdown();
    // Shutdown closed the session.
    let mut rest = Vec::new();
    let _ = session.read_to_end(&mut rest);
    assert!(rest.is_empty());
    engine.shutdown();
}

#[test]
fn several_workers_serve_in_parallel() {
    let mut document = tcp_document(&[echo_upstream(), echo_upstream()]);
    document["workers"] = json!(2);
    let engine = start(&document);
    let address = address_of(&engine, "l4");
    let clients: Vec<_> = (0..8)
        .map(|i| {
            thread::spawn(move || {
                let mut client = connect(address);
                let message = format!("client {i}").repeat(1000);
                round_trip(&mut client, message.as_bytes()).unwrap() == message.as_bytes()
            })
        })
        .collect();
    for client in clients {
        assert!(client.join().unwrap());
    }
}

#[test]
fn max_connections_closes_the_extra_ones() {
    let mut document = tcp_document(&[echo_upstream()]);
    document["listeners"][0]["limits"] = json!({"max_connections": 1});
    let engine = start(&document);
    let address = address_of(&engine, "l4");
    let mut first = connect(address);
    assert_eq!(round_trip(&mut first, b"1").unwrap(), b"1");
    let mut second = connect(address);
    assert!(round_trip(&mut second, b"2").is_err());
    let text = engine.prometheus();
    assert_eq!(
        sample(
            &text,
            "dmsc_listener_connections_overflow_total{listener=\"l4\"}"
        ),
        Some(1.0)
    );
    assert_eq!(round_trip(&mut first, b"3").unwrap(), b"3");
}

#[test]
fn prometheus_has_every_family_and_the_session_counts() {
    let engine = start(&tcp_document(&[echo_upstream()]));
    let mut client = connect(address_of(&engine, "l4"));
    assert_eq!(round_trip(&mut client, b"12345").unwrap(), b"12345");
    drop(client);
    assert!(eventually(|| inflight(&engine) == 0));
    let text = engine.prometheus();
    for family in [
        "dmsc_listener_connections_total counter",
        "dmsc_listener_requests_total counter",
        "dmsc_listener_responses_total counter",
        "dmsc_listener_request_duration_seconds histogram",
        "dmsc_cluster_upstream_requests_total counter",
        "dmsc_cluster_upstream_retries_total counter",
        "dmsc_cluster_upstream_timeouts_total counter",
        "dmsc_cluster_upstream_request_duration_seconds histogram",
        "dmsc_cluster_hosts gauge",
        "dmsc_proxy_config_generation gauge",
    ] {
        assert_eq!(
            text.matches(&format!("# TYPE {family}\n")).count(),
            1,
            "{family}"
        );
    }
    assert_eq!(
        sample(&text, "dmsc_listener_connections_total{listener=\"l4\"}"),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, "dmsc_listener_received_bytes_total{listener=\"l4\"}"),
        Some(5.0)
    );
    assert_eq!(
        sample(&text, "dmsc_listener_sent_bytes_total{listener=\"l4\"}"),
        Some(5.0)
    );
    assert_eq!(
        sample(
            &text,
            "dmsc_listener_tcp_sessions_total{listener=\"l4\",mode=\"splice\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text,
            "dmsc_cluster_upstream_requests_total{cluster=\"echo\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text,
            "dmsc_cluster_upstream_connections_total{cluster=\"echo\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, "dmsc_cluster_hosts{cluster=\"echo\"}"),
        Some(1.0)
    );
    assert_eq!(sample(&text, "dmsc_proxy_config_generation"), Some(1.0));
    let described = engine.describe();
    assert_eq!(described["generation"], 1);
    assert_eq!(described["listeners"][0]["name"], "l4");
    assert_eq!(described["clusters"][0]["name"], "echo");
}
