//! Random sequences of reloads: whatever listeners come and go (moved, renamed,
//! taken over, refused), the engine's bound listeners always match its live config.

mod engine_util;

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener, TcpStream};

use engine_util::*;
use serde_json::{json, Value};

const NAMES: [&str; 4] = ["a", "b", "c", "d"];

/// A random document: up to four TCP listeners, each on one of `ports` or port 0
/// (the same fixed port twice makes the document invalid, on purpose).
fn random_document(rng: &mut fastrand::Rng, ports: &[SocketAddr], upstream: SocketAddr) -> Value {
    let mut names = NAMES.to_vec();
    rng.shuffle(&mut names);
    names.truncate(rng.usize(0..=NAMES.len()));
    let listeners: Vec<Value> = names
        .iter()
        .map(|name| {
            let listen = match rng.usize(0..=ports.len()) {
                i if i < ports.len() => ports[i].to_string(),
                _ => "127.0.0.1:0".to_owned(),
            };
            json!({"name": name, "listen": listen, "protocol": "tcp", "cluster": "echo"})
        })
        .collect();
    json!({
        "listeners": listeners,
        "clusters": [{"name": "echo", "endpoints": [upstream.to_string()]}]
    })
}

fn listen_by_name(document: &Value) -> HashMap<String, String> {
    document["listeners"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|l| {
            Some((
                l["name"].as_str()?.to_owned(),
                l["listen"].as_str()?.to_owned(),
            ))
        })
        .collect()
}

#[test]
fn bound_listeners_always_match_the_live_config() {
    let upstream = echo_upstream();
    let ports: Vec<SocketAddr> = (0..3).map(|_| dead_address()).collect();
    let seed = fastrand::u64(..);
    let mut rng = fastrand::Rng::with_seed(seed);
    let engine = start(&json!({
        "listeners": [],
        "clusters": [{"name": "echo", "endpoints": [upstream.to_string()]}]
    }));
    let mut live = json!({"listeners": []});
    for round in 0..40 {
        let document = random_document(&mut rng, &ports, upstream);
        let before = engine.listeners();
        let generation = engine.generation();
        // Sometimes someone else holds a port the document wants.
        let squatter = rng
            .bool()
            .then(|| TcpListener::bind(ports[rng.usize(..ports.len())]).ok())
            .flatten();
        let parsed = dmsc_proxy::Config::from_json(&document.to_string());
        let result = parsed.and_then(|config| engine.reload(config));
        let context = format!("seed {seed} round {round}: {document}");
        match result {
            Err(err) => {
                assert!(err.path.starts_with("listeners["), "{context}: {err}");
                assert_eq!(engine.listeners(), before, "{context}");
                assert_eq!(engine.generation(), generation, "{context}");
            }
            Ok(()) => {
                assert_eq!(engine.generation(), generation + 1, "{context}");
                let now = engine.listeners();
                let wanted: Vec<&str> = document["listeners"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|l| l["name"].as_str().unwrap())
                    .collect();
                let names: Vec<&str> = now.iter().map(|(n, _)| n.as_str()).collect();
                assert_eq!(names, wanted, "{context}");
                let previous: HashMap<&str, SocketAddr> =
                    before.iter().map(|(n, a)| (n.as_str(), *a)).collect();
                let previous_listen: HashMap<String, String> = listen_by_name(&live);
                for (l, (name, address)) in
                    document["listeners"].as_array().unwrap().iter().zip(&now)
                {
                    let listen: SocketAddr = l["listen"].as_str().unwrap().parse().unwrap();
                    if listen.port() != 0 {
                        assert_eq!(*address, listen, "{context}");
                    } else if previous_listen.get(name.as_str())
                        == l["listen"].as_str().map(str::to_owned).as_ref()
                    {
                        // Same name, same `listen`: the very same socket stays.
                        assert_eq!(Some(address), previous.get(name.as_str()), "{context}");
                    }
                    let mut client = connect(*address);
                    assert_eq!(
                        round_trip(&mut client, name.as_bytes()).unwrap(),
                        name.as_bytes(),
                        "{context}"
                    );
                }
                // Fixed ports no listener uses any more are closed.
                for port in &ports {
                    if !now.iter().any(|(_, a)| a == port)
                        && squatter.as_ref().and_then(|s| s.local_addr().ok()) != Some(*port)
                    {
                        assert!(
                            TcpStream::connect(port).is_err(),
                            "{context}: {port} still open"
                        );
                    }
                }
                live = document.clone();
            }
        }
        drop(squatter);
    }
}
