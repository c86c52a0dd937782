//! Parsing of the configuration document: defaults, type errors with their
//! paths, and the JSON round trip of the admin API.

use dmsc_proxy::config::{BackoffStrategy, LbPolicy, Protocol, RateLimitKey, StaticEndpoint};
use dmsc_proxy::Config;

const FULL: &str = r#"{
  "workers": 2,
  "tracing": false,
  "listeners": [
    {"name": "out", "listen": "127.0.0.1:0",
     "virtual_hosts": [
       {"name": "api", "domains": ["api.example.com", "*.api.example.com"],
        "routes": [
          {"match": {"path": {"prefix": "/v2/"}, "headers": [{"name": "x-canary", "exact": "1"}]},
           "clusters": [{"name": "v1", "weight": 90}, {"name": "v2", "weight": 10}],
           "prefix_rewrite": "/",
           "retry": {"retry_on": ["5xx", "connect-failure"], "num_retries": 2,
                     "backoff": {"strategy": "exponential", "base_ms": 10}},
           "rate_limits": [{"requests": 5, "per_seconds": 1.5, "key": {"header": "x-api-key"}}],
           "mirror": {"cluster": "shadow", "fraction": 0.25},
           "fault": {"abort": {"status": 503, "percent": 1.5}},
           "fallback": {"response": {"status": 503, "body": "try later"}},
           "timeout_ms": 0},
          {"name": "static", "match": {"path": {"exact": "/ping"}},
           "direct_response": {"status": 200, "body": "pong", "headers": {"x-by": "dmsc"}}}
        ]}
     ]},
    {"name": "db", "listen": "[::1]:0", "protocol": "tcp", "cluster": "v1"}
  ],
  "clusters": [
    {"name": "v1", "endpoints": ["127.0.0.1:9001", {"address": "127.0.0.1:9002", "weight": 3}],
     "lb": "maglev", "hash_policy": [{"header": "x-user"}, {"source_ip": true}]},
    {"name": "v2", "service": "users", "version": "v2", "outlier_detection": {}},
    {"name": "shadow", "endpoints": [{"address": "127.0.0.1:9003"}], "host_breaker": {}, "bulkhead": {}}
  ]
}"#;

fn parse_err(json: &str) -> (String, String) {
    let err = Config::from_json(json).expect_err("document should be refused");
    (err.path, err.message)
}

#[test]
fn defaults_of_an_empty_document() {
    let c = Config::from_json("{}").expect("empty document is valid");
    assert_eq!(c.workers, 1);
    assert!(c.tracing);
    assert!(c.listeners.is_empty() && c.clusters.is_empty());
    assert_eq!(c, Config::default());
}

#[test]
fn cluster_defaults() {
    let c = Config::from_json(r#"{"clusters": [{"name": "a"}]}"#).expect("valid");
    let cl = &c.clusters[0];
    assert_eq!(cl.connect_timeout_ms, 1000);
    assert!((cl.healthy_panic_threshold - 50.0).abs() < f64::EPSILON);
    assert_eq!(cl.lb, LbPolicy::LeastRequest);
    assert!(cl.host_breaker.is_none() && cl.bulkhead.is_none() && cl.outlier_detection.is_none());
}

#[test]
fn full_document_parses() {
    let c = Config::from_json(FULL).expect("valid");
    assert_eq!(c.workers, 2);
    assert!(!c.tracing);
    assert_eq!(c.listeners[1].protocol, Protocol::Tcp);
    let route = &c.listeners[0].virtual_hosts[0].routes[0];
    assert_eq!(route.clusters.len(), 2);
    let retry = route.retry.as_ref().expect("retry given");
    assert_eq!(retry.backoff.strategy, BackoffStrategy::Exponential);
    assert_eq!(retry.backoff.base_ms, 10);
    // max_ms left out: ten times the base.
    assert_eq!(retry.backoff.max_ms, 100);
    assert_eq!(
        route.rate_limits[0].key,
        RateLimitKey::Header("x-api-key".into())
    );
    assert_eq!(route.timeout_ms, Some(0));
    let eps = &c.clusters[0].endpoints;
    assert_eq!(eps[0], StaticEndpoint::Address("127.0.0.1:9001".into()));
    assert_eq!((eps[1].address(), eps[1].weight()), ("127.0.0.1:9002", 3));
    assert_eq!(c.clusters[2].endpoints[0].weight(), 1);
}

#[test]
fn to_json_round_trips() {
    let c = Config::from_json(FULL).expect("valid");
    let again = Config::from_json(&c.to_json()).expect("own output is valid");
    assert_eq!(c, again);
    let empty = Config::default();
    assert_eq!(Config::from_json(&empty.to_json()).expect("valid"), empty);
}

#[test]
fn unspecified_sections_take_their_defaults() {
    let c = Config::from_json(
        r#"{"listeners": [{"name": "l", "listen": "127.0.0.1:0", "virtual_hosts": [{"domains": ["*"],
            "routes": [{"clusters": [{"name": "a"}], "mirror": {"cluster": "a"},
                        "fault": {"delay": {"delay_ms": 5}}}]}]}],
            "clusters": [{"name": "a"}]}"#,
    )
    .expect("valid");
    let l = &c.listeners[0];
    assert_eq!(l.limits.max_header_bytes, 65536);
    let r = &l.virtual_hosts[0].routes[0];
    assert_eq!(r.clusters[0].weight, 1);
    assert!((r.mirror.as_ref().expect("mirror").fraction - 1.0).abs() < f64::EPSILON);
    let delay = r
        .fault
        .as_ref()
        .and_then(|f| f.delay.as_ref())
        .expect("delay");
    assert!((delay.percent - 100.0).abs() < f64::EPSILON);
}

#[test]
fn unknown_field_names_its_path() {
    let (path, message) = parse_err(
        r#"{"listeners": [{"name": "l", "listen": "127.0.0.1:0", "virtual_hosts": [
            {"domains": ["*"], "routes": [{}, {"match": {"paht": {"exact": "/"}}}]}]}]}"#,
    );
    assert_eq!(path, "listeners[0].virtual_hosts[0].routes[1].match.paht");
    assert!(message.contains("unknown field `paht`"), "{message}");
}

#[test]
fn unknown_top_level_field() {
    let (path, message) = parse_err(r#"{"worker": 3}"#);
    assert_eq!(path, "worker");
    assert!(message.contains("unknown field"), "{message}");
}

#[test]
fn wrong_type_names_its_path() {
    let (path, message) =
        parse_err(r#"{"clusters": [{"name": "a"}, {"name": "b", "connect_timeout_ms": "soon"}]}"#);
    assert_eq!(path, "clusters[1].connect_timeout_ms");
    assert!(message.contains("invalid type"), "{message}");

    let (path, _) = parse_err(r#"{"workers": -1}"#);
    assert_eq!(path, "workers");
}

#[test]
fn unknown_variant_names_its_path() {
    let (path, message) = parse_err(r#"{"clusters": [{"name": "a", "lb": "fastest"}]}"#);
    assert_eq!(path, "clusters[0].lb");
    assert!(message.contains("unknown variant `fastest`"), "{message}");

    let (path, _) =
        parse_err(r#"{"listeners": [{"name": "l", "listen": "127.0.0.1:0", "protocol": "udp"}]}"#);
    assert_eq!(path, "listeners[0].protocol");
}

#[test]
fn endpoint_forms_are_strict() {
    let (path, message) = parse_err(
        r#"{"clusters": [{"name": "a", "endpoints": ["127.0.0.1:1", {"address": "127.0.0.1:2", "wieght": 2}]}]}"#,
    );
    assert_eq!(path, "clusters[0].endpoints[1].wieght");
    assert!(message.contains("unknown field"), "{message}");

    let (path, _) = parse_err(r#"{"clusters": [{"name": "a", "endpoints": [42]}]}"#);
    assert_eq!(path, "clusters[0].endpoints[0]");

    let (path, message) =
        parse_err(r#"{"clusters": [{"name": "a", "endpoints": [{"weight": 2}]}]}"#);
    assert_eq!(path, "clusters[0].endpoints[0]");
    assert!(message.contains("missing field `address`"), "{message}");
}

#[test]
fn backoff_is_strict_too() {
    let (path, _) = parse_err(
        r#"{"listeners": [{"name": "l", "listen": "127.0.0.1:0", "virtual_hosts": [{"domains": ["*"],
            "routes": [{"cluster": "a", "retry": {"backoff": {"base": 5}}}]}]}], "clusters": [{"name": "a"}]}"#,
    );
    assert_eq!(
        path,
        "listeners[0].virtual_hosts[0].routes[0].retry.backoff.base"
    );
}

#[test]
fn syntax_errors_are_reported() {
    let (_, message) = parse_err(r#"{"workers": 1"#);
    assert!(message.contains("EOF"), "{message}");
    let (path, _) = parse_err(r#"{"workers": 1} trailing"#);
    assert_eq!(path, "");
    let (path, message) = parse_err("[]");
    assert_eq!(path, "");
    assert!(message.contains("JSON object"), "{message}");
}

#[test]
fn random_documents_never_panic() {
    let mut rng = fastrand::Rng::with_seed(11);
    let alphabet: Vec<char> = r#"{}[]":,0123456789.-eE truefalsnl\"#.chars().collect();
    for _ in 0..20_000 {
        let len = rng.usize(0..60);
        let text: String = (0..len)
            .map(|_| alphabet[rng.usize(..alphabet.len())])
            .collect();
        let _ = Config::from_json(&text);
    }
    // Truncations of a real document: each is refused or accepted, never a panic.
    for cut in 0..FULL.len() {
        if let Some(prefix) = FULL.get(..cut) {
            assert!(Config::from_json(prefix).is_err());
        }
    }
}
