//! Validation of the configuration: every refused value is reported at the
//! path the user wrote it, and the last good document stays untouched.

use dmsc_proxy::Config;
use serde_json::{json, Value};

/// A valid document exercising most sections.
fn base() -> Value {
    json!({
        "listeners": [
            {"name": "out", "listen": "127.0.0.1:15001", "virtual_hosts": [
                {"name": "web", "domains": ["www.example.com"], "routes": [
                    {"match": {"path": {"prefix": "/"}}, "cluster": "a"}
                ]},
                {"name": "api", "domains": ["api.example.com", "*"], "routes": [
                    {"match": {"path": {"exact": "/health"}}, "direct_response": {"status": 200, "body": "ok"}},
                    {"match": {"path": {"prefix": "/v1/"}}, "clusters": [{"name": "a", "weight": 1}, {"name": "b", "weight": 0}],
                     "prefix_rewrite": "/"},
                    {"match": {"path": {"regex": "/users/[0-9]+"}, "methods": ["GET"],
                               "headers": [{"name": "x-user", "present": true}],
                               "cookies": [{"name": "group", "exact": "beta"}],
                               "query": [{"name": "debug", "prefix": "1"}]},
                     "cluster": "a",
                     "retry": {"retry_on": ["5xx"], "num_retries": 2},
                     "rate_limits": [{"requests": 10, "per_seconds": 1.0}],
                     "fault": {"delay": {"delay_ms": 10, "percent": 5}, "abort": {"status": 503, "percent": 1}},
                     "mirror": {"cluster": "b", "fraction": 0.1},
                     "fallback": {"cluster": "b"},
                     "request_headers": {"set": {"x-a": "1"}, "add": {"x-b": "2"}, "remove": ["x-c"]},
                     "host_rewrite": "users.internal"}
                ]}
            ]},
            {"name": "db", "listen": "[::1]:15002", "protocol": "tcp", "cluster": "b"}
        ],
        "clusters": [
            {"name": "a", "endpoints": ["127.0.0.1:9001", {"address": "127.0.0.1:9002", "weight": 2}],
             "host_breaker": {}, "outlier_detection": {}, "bulkhead": {}},
            {"name": "b", "service": "users", "version": "v2", "lb": "ring_hash"}
        ]
    })
}

/// Sets the value at a JSON pointer (adding an object key or appending to an array).
fn set(doc: &mut Value, pointer: &str, value: Value) {
    let (parent, key) = pointer.rsplit_once('/').expect("pointer has a parent");
    let parent = doc
        .pointer_mut(parent)
        .unwrap_or_else(|| panic!("no parent for {pointer}"));
    match parent {
        Value::Object(map) => {
            map.insert(key.to_owned(), value);
        }
        Value::Array(items) => {
            let i: usize = key.parse().expect("array index");
            if i == items.len() {
                items.push(value);
            } else {
                items[i] = value;
            }
        }
        _ => panic!("parent of {pointer} is not a container"),
    }
}

fn remove(doc: &mut Value, pointer: &str) {
    let (parent, key) = pointer.rsplit_once('/').expect("pointer has a parent");
    if let Some(Value::Object(map)) = doc.pointer_mut(parent) {
        map.remove(key);
    }
}

fn load(doc: &Value) -> Result<Config, dmsc_proxy::ConfigError> {
    Config::from_json(&doc.to_string())
}

/// Applies edits to the base document and expects an error at `path` whose message contains `why`.
fn refused(edits: &[(&str, Value)], path: &str, why: &str) {
    let mut doc = base();
    for (pointer, value) in edits {
        if value.is_null() {
            remove(&mut doc, pointer);
        } else {
            set(&mut doc, pointer, value.clone());
        }
    }
    match load(&doc) {
        Ok(_) => panic!("{edits:?} was accepted; expected an error at {path}"),
        Err(e) => {
            assert_eq!(e.path, path, "{edits:?}: {e}");
            assert!(
                e.message.contains(why),
                "{edits:?}: message `{}` lacks `{why}`",
                e.message
            );
            assert_eq!(e.to_string(), format!("{path}: {}", e.message));
        }
    }
}

fn accepted(edits: &[(&str, Value)]) {
    let mut doc = base();
    for (pointer, value) in edits {
        set(&mut doc, pointer, value.clone());
    }
    if let Err(e) = load(&doc) {
        panic!("{edits:?} was refused: {e}");
    }
}

const R2: &str = "/listeners/0/virtual_hosts/1/routes/2";
const R2_PATH: &str = "listeners[0].virtual_hosts[1].routes[2]";

fn r2(rest: &str) -> String {
    format!("{R2}{rest}")
}

fn r2p(rest: &str) -> String {
    format!("{R2_PATH}{rest}")
}

#[test]
fn base_document_is_valid() {
    let c = load(&base()).expect("base is valid");
    c.validate().expect("validate agrees with from_json");
}

#[test]
fn top_level() {
    refused(&[("/workers", json!(0))], "workers", "1..=1024");
    refused(&[("/document", json!(1))], "document", "unknown field");
}

#[test]
fn listeners() {
    refused(
        &[("/listeners/0/name", json!(""))],
        "listeners[0].name",
        "empty",
    );
    refused(
        &[("/listeners/1/name", json!("out"))],
        "listeners[1].name",
        "duplicate listener name `out`",
    );
    refused(
        &[("/listeners/0/listen", json!("localhost:80"))],
        "listeners[0].listen",
        "IP:PORT",
    );
    refused(
        &[("/listeners/0/listen", json!("127.0.0.1"))],
        "listeners[0].listen",
        "IP:PORT",
    );
    refused(
        &[("/listeners/0/listen", json!("::1:80"))],
        "listeners[0].listen",
        "IP:PORT",
    );
    refused(
        &[("/listeners/1/listen", json!("127.0.0.1:15001"))],
        "listeners[1].listen",
        "already used",
    );
    accepted(&[
        ("/listeners/1/listen", json!("127.0.0.1:0")),
        ("/listeners/0/listen", json!("127.0.0.1:0")),
    ]);
    refused(
        &[("/listeners/0/virtual_hosts", json!([]))],
        "listeners[0].virtual_hosts",
        "at least one",
    );
    refused(
        &[("/listeners/0/cluster", json!("a"))],
        "listeners[0].cluster",
        "only tcp",
    );
    refused(
        &[("/listeners/1/cluster", Value::Null)],
        "listeners[1].cluster",
        "needs a cluster",
    );
    refused(
        &[("/listeners/1/cluster", json!("nope"))],
        "listeners[1].cluster",
        "unknown cluster `nope`",
    );
    refused(
        &[("/listeners/1/virtual_hosts", json!([{"domains": ["*"]}]))],
        "listeners[1].virtual_hosts",
        "no virtual hosts",
    );
}

#[test]
fn downstream_limits() {
    refused(
        &[("/listeners/0/limits", json!({"header_timeout_ms": 0}))],
        "listeners[0].limits.header_timeout_ms",
        "greater than 0",
    );
    refused(
        &[("/listeners/0/limits", json!({"max_headers": 0}))],
        "listeners[0].limits.max_headers",
        "greater than 0",
    );
    refused(
        &[(
            "/listeners/0/limits",
            json!({"max_request_line_bytes": 9000, "max_header_bytes": 8000}),
        )],
        "listeners[0].limits.max_request_line_bytes",
        "max_header_bytes",
    );
    accepted(&[(
        "/listeners/0/limits",
        json!({"max_connections": 0, "response_buffer_bytes": 0}),
    )]);
}

#[test]
fn virtual_hosts_and_domains() {
    let vh = "/listeners/0/virtual_hosts/0";
    refused(
        &[(&format!("{vh}/domains"), json!([]))],
        "listeners[0].virtual_hosts[0].domains",
        "at least one",
    );
    refused(
        &[(&format!("{vh}/domains/0"), json!("a*b.com"))],
        "listeners[0].virtual_hosts[0].domains[0]",
        "wildcard",
    );
    refused(
        &[(&format!("{vh}/domains/0"), json!("www.example.com:80"))],
        "listeners[0].virtual_hosts[0].domains[0]",
        "port",
    );
    refused(
        &[(&format!("{vh}/domains/1"), json!("API.example.com"))],
        "listeners[0].virtual_hosts[1].domains[0]",
        "already",
    );
    refused(
        &[(&format!("{vh}/name"), json!("api"))],
        "listeners[0].virtual_hosts[1].name",
        "duplicate virtual host",
    );
    accepted(&[
        (&format!("{vh}/domains/1"), json!("*.example.com")),
        (&format!("{vh}/domains/2"), json!("www.*")),
    ]);
}

#[test]
fn route_actions() {
    refused(
        &[(&r2("/cluster"), Value::Null)],
        R2_PATH,
        "exactly one of `cluster`, `clusters` and `direct_response`",
    );
    refused(
        &[(&r2("/direct_response"), json!({"status": 200}))],
        R2_PATH,
        "exactly one",
    );
    refused(
        &[(&r2("/cluster"), json!("nope"))],
        &r2p(".cluster"),
        "unknown cluster `nope`",
    );
    refused(
        &[(&r2("/cluster"), json!(""))],
        &r2p(".cluster"),
        "must name a cluster",
    );
    let r1 = "/listeners/0/virtual_hosts/1/routes/1";
    let r1p = "listeners[0].virtual_hosts[1].routes[1]";
    refused(
        &[(&format!("{r1}/clusters/1/name"), json!("c"))],
        &format!("{r1p}.clusters[1].name"),
        "unknown cluster `c`",
    );
    refused(
        &[(&format!("{r1}/clusters/0/weight"), json!(0))],
        &format!("{r1p}.clusters"),
        "weights",
    );
    refused(
        &[(&format!("{r1}/clusters/0/weight"), json!(-1))],
        &format!("{r1p}.clusters[0].weight"),
        "invalid value",
    );
    let r0 = "/listeners/0/virtual_hosts/1/routes/0";
    let r0p = "listeners[0].virtual_hosts[1].routes[0]";
    refused(
        &[(&format!("{r0}/direct_response/status"), json!(199))],
        &format!("{r0p}.direct_response.status"),
        "200..=599",
    );
    refused(
        &[(&format!("{r0}/direct_response/status"), json!(600))],
        &format!("{r0p}.direct_response.status"),
        "200..=599",
    );
    refused(
        &[(
            &format!("{r0}/direct_response/headers"),
            json!({"x-a": "a\u{0}b"}),
        )],
        &format!("{r0p}.direct_response.headers.x-a"),
        "NUL",
    );
    refused(
        &[(
            &format!("{r0}/direct_response/headers"),
            json!({"Content-Length": "5"}),
        )],
        &format!("{r0p}.direct_response.headers.Content-Length"),
        "managed by the proxy",
    );
    refused(&[(&r2("/name"), json!(""))], &r2p(".name"), "empty");
}

#[test]
fn route_match_fields() {
    refused(
        &[(&r2("/match/path/regex"), json!("/users/[0-9+"))],
        &r2p(".match.path.regex"),
        "regular expression",
    );
    assert_eq!(
        r2p(".match.path.regex"),
        "listeners[0].virtual_hosts[1].routes[2].match.path.regex"
    );
    refused(
        &[(&r2("/match/path/prefix"), json!("/u"))],
        &r2p(".match.path"),
        "exactly one of `exact`, `prefix` and `regex`",
    );
    refused(
        &[(&r2("/match/path"), json!({"ignore_case": true}))],
        &r2p(".match.path"),
        "exactly one",
    );
    refused(
        &[(&r2("/match/path"), json!({"exact": "users"}))],
        &r2p(".match.path.exact"),
        "start with `/`",
    );
    refused(
        &[(&r2("/match/methods/1"), json!("GET POST"))],
        &r2p(".match.methods[1]"),
        "token",
    );
    refused(
        &[(&r2("/match/headers/0/name"), json!("x user"))],
        &r2p(".match.headers[0].name"),
        "token",
    );
    refused(
        &[(&r2("/match/headers/0/exact"), json!("a"))],
        &r2p(".match.headers[0]"),
        "at most one",
    );
    refused(
        &[(
            &r2("/match/headers/1"),
            json!({"name": "x-b", "regex": "(("}),
        )],
        &r2p(".match.headers[1].regex"),
        "regular",
    );
    refused(
        &[(&r2("/match/cookies/0/name"), json!("a;b"))],
        &r2p(".match.cookies[0].name"),
        "token",
    );
    refused(
        &[(&r2("/match/query/0/name"), json!(""))],
        &r2p(".match.query[0].name"),
        "empty",
    );
    refused(
        &[(&r2("/match/query/0/regex"), json!("x"))],
        &r2p(".match.query[0]"),
        "at most one",
    );
    refused(
        &[(&r2("/match/matches"), json!([]))],
        &r2p(".match.matches"),
        "unknown field",
    );
}

#[test]
fn route_rewrites() {
    refused(
        &[(
            &r2("/request_headers/set"),
            json!({"x-a": "1\r\nx-evil: 1"}),
        )],
        &r2p(".request_headers.set.x-a"),
        "CR",
    );
    refused(
        &[(&r2("/request_headers/set"), json!({"x-a": "1", "X-A": "2"}))],
        &r2p(".request_headers.set.x-a"),
        "twice",
    );
    refused(
        &[(&r2("/response_headers"), json!({"add": {"bad name": "1"}}))],
        &r2p(".response_headers.add.bad name"),
        "header name",
    );
    refused(
        &[(&r2("/request_headers/remove/0"), json!("Transfer-Encoding"))],
        &r2p(".request_headers.remove[0]"),
        "managed",
    );
    refused(
        &[(&r2("/request_headers/set"), json!({"host": "x"}))],
        &r2p(".request_headers.set.host"),
        "managed",
    );
    refused(
        &[(&r2("/prefix_rewrite"), json!("/x"))],
        &r2p(".prefix_rewrite"),
        "match.path.prefix",
    );
    let r1 = "/listeners/0/virtual_hosts/1/routes/1";
    let r1p = "listeners[0].virtual_hosts[1].routes[1]";
    refused(
        &[(&format!("{r1}/prefix_rewrite"), json!("x"))],
        &format!("{r1p}.prefix_rewrite"),
        "start with `/`",
    );
    refused(
        &[(&format!("{r1}/prefix_rewrite"), json!("/a b"))],
        &format!("{r1p}.prefix_rewrite"),
        "visible ASCII",
    );
    refused(
        &[(&r2("/host_rewrite"), json!("bad host"))],
        &r2p(".host_rewrite"),
        "host name",
    );
    refused(
        &[(&r2("/host_rewrite"), json!(""))],
        &r2p(".host_rewrite"),
        "host name",
    );
    accepted(&[(&r2("/host_rewrite"), json!("users.internal:8080"))]);
}

#[test]
fn route_policies() {
    refused(
        &[(&r2("/fault/abort/status"), json!(199))],
        &r2p(".fault.abort.status"),
        "200..=599",
    );
    refused(
        &[(&r2("/fault/abort/percent"), json!(100.5))],
        &r2p(".fault.abort.percent"),
        "0..=100",
    );
    refused(
        &[(&r2("/fault/delay/percent"), json!(-1))],
        &r2p(".fault.delay.percent"),
        "0..=100",
    );
    refused(
        &[(&r2("/mirror/cluster"), json!("c"))],
        &r2p(".mirror.cluster"),
        "unknown cluster",
    );
    refused(
        &[(&r2("/mirror/fraction"), json!(1.5))],
        &r2p(".mirror.fraction"),
        "0..=1",
    );
    refused(
        &[(&r2("/fallback/cluster"), json!("c"))],
        &r2p(".fallback.cluster"),
        "unknown cluster",
    );
    refused(
        &[(&r2("/fallback/response"), json!({}))],
        &r2p(".fallback"),
        "exactly one",
    );
    refused(
        &[(&r2("/fallback"), json!({"response": {"status": 700}}))],
        &r2p(".fallback.response.status"),
        "200..=599",
    );
    refused(
        &[(&r2("/rate_limits/0/requests"), json!(0))],
        &r2p(".rate_limits[0].requests"),
        "greater than 0",
    );
    refused(
        &[(&r2("/rate_limits/0/per_seconds"), json!(0))],
        &r2p(".rate_limits[0].per_seconds"),
        "greater than 0",
    );
    refused(
        &[(&r2("/rate_limits/0/burst"), json!(0))],
        &r2p(".rate_limits[0].burst"),
        "greater than 0",
    );
    refused(
        &[(&r2("/rate_limits/0/max_keys"), json!(0))],
        &r2p(".rate_limits[0].max_keys"),
        "greater than 0",
    );
    refused(
        &[(&r2("/rate_limits/0/key"), json!({"header": "a b"}))],
        &r2p(".rate_limits[0].key.header"),
        "token",
    );
    refused(
        &[(&r2("/rate_limits/0/key"), json!("user"))],
        &r2p(".rate_limits[0].key"),
        "unknown variant",
    );
    accepted(&[(
        &r2("/rate_limits/1"),
        json!({"algorithm": "sliding_window", "requests": 3, "per_seconds": 0.5, "key": "client_ip"}),
    )]);
}

#[test]
fn retry_policy() {
    refused(
        &[(&r2("/retry/retry_on/1"), json!("sometimes"))],
        &r2p(".retry.retry_on[1]"),
        "unknown condition `sometimes`",
    );
    refused(
        &[(&r2("/retry/retriable_status_codes"), json!([503, 99]))],
        &r2p(".retry.retriable_status_codes[1]"),
        "200..=599",
    );
    refused(
        &[(&r2("/retry/retry_on/1"), json!("retriable-status-codes"))],
        &r2p(".retry.retriable_status_codes"),
        "needs",
    );
    refused(
        &[(&r2("/retry/backoff"), json!({"base_ms": 0}))],
        &r2p(".retry.backoff.base_ms"),
        "greater than 0",
    );
    refused(
        &[(&r2("/retry/backoff"), json!({"base_ms": 100, "max_ms": 50}))],
        &r2p(".retry.backoff.max_ms"),
        "base_ms",
    );
    refused(
        &[(&r2("/retry/backoff"), json!({"strategy": "linear"}))],
        &r2p(".retry.backoff.strategy"),
        "unknown variant",
    );
    accepted(&[(
        &r2("/retry/backoff"),
        json!({"strategy": "fixed", "base_ms": 1000}),
    )]);
    accepted(&[
        (
            &r2("/retry/retry_on"),
            json!([
                "gateway-error",
                "connect-failure",
                "reset",
                "retriable-status-codes"
            ]),
        ),
        (&r2("/retry/retriable_status_codes"), json!([409])),
    ]);
}

#[test]
fn clusters() {
    refused(
        &[("/clusters/0/name", json!(""))],
        "clusters[0].name",
        "empty",
    );
    refused(
        &[("/clusters/1/name", json!("a"))],
        "clusters[1].name",
        "duplicate cluster name `a`",
    );
    refused(
        &[("/clusters/0/endpoints/0", json!("localhost:80"))],
        "clusters[0].endpoints[0]",
        "IP:PORT",
    );
    refused(
        &[("/clusters/0/endpoints/1/address", json!("10.0.0.1"))],
        "clusters[0].endpoints[1].address",
        "IP:PORT",
    );
    refused(
        &[("/clusters/0/endpoints/1/weight", json!(0))],
        "clusters[0].endpoints[1].weight",
        "at least 1",
    );
    refused(
        &[("/clusters/0/endpoints/1/address", json!("127.0.0.1:9001"))],
        "clusters[0].endpoints[1].address",
        "duplicate",
    );
    refused(
        &[("/clusters/0/version", json!("v1"))],
        "clusters[0].version",
        "service",
    );
    refused(
        &[("/clusters/1/service", json!(""))],
        "clusters[1].service",
        "empty",
    );
    refused(
        &[(
            "/clusters/0/hash_policy",
            json!([{"cookie": "s"}, {"header": "x y"}]),
        )],
        "clusters[0].hash_policy[1].header",
        "token",
    );
    refused(
        &[("/clusters/0/hash_policy", json!([{"query": "s"}]))],
        "clusters[0].hash_policy[0]",
        "unknown variant",
    );
    refused(
        &[("/clusters/0/connect_timeout_ms", json!(0))],
        "clusters[0].connect_timeout_ms",
        "greater than 0",
    );
    refused(
        &[("/clusters/0/pool", json!({"idle_timeout_ms": 0}))],
        "clusters[0].pool.idle_timeout_ms",
        "greater than 0",
    );
    refused(
        &[("/clusters/0/circuit_breakers", json!({"max_requests": 0}))],
        "clusters[0].circuit_breakers.max_requests",
        "greater than 0",
    );
    accepted(&[("/clusters/0/circuit_breakers", json!({"max_retries": 0}))]);
    refused(
        &[("/clusters/0/host_breaker/failure_rate", json!(0))],
        "clusters[0].host_breaker.failure_rate",
        "greater than 0",
    );
    refused(
        &[("/clusters/0/host_breaker/failure_rate", json!(1.5))],
        "clusters[0].host_breaker.failure_rate",
        "at most 1",
    );
    refused(
        &[("/clusters/0/host_breaker/window", json!(0))],
        "clusters[0].host_breaker.window",
        "greater than 0",
    );
    refused(
        &[(
            "/clusters/0/host_breaker",
            json!({"window": 10, "minimum_requests": 11}),
        )],
        "clusters[0].host_breaker.minimum_requests",
        "window",
    );
    refused(
        &[("/clusters/0/bulkhead/max_concurrent", json!(0))],
        "clusters[0].bulkhead.max_concurrent",
        "greater than 0",
    );
    refused(
        &[(
            "/clusters/0/outlier_detection/max_ejection_percent",
            json!(101),
        )],
        "clusters[0].outlier_detection.max_ejection_percent",
        "0..=100",
    );
    refused(
        &[(
            "/clusters/0/outlier_detection",
            json!({"base_ejection_time_ms": 10, "max_ejection_time_ms": 5}),
        )],
        "clusters[0].outlier_detection.max_ejection_time_ms",
        "base_ejection_time_ms",
    );
    refused(
        &[("/clusters/0/healthy_panic_threshold", json!(150))],
        "clusters[0].healthy_panic_threshold",
        "0..=100",
    );
    refused(
        &[("/clusters/0/retry_budget", json!({"budget_percent": -5}))],
        "clusters[0].retry_budget.budget_percent",
        "0..=100",
    );
    refused(
        &[("/clusters/0/lb", json!("fastest"))],
        "clusters[0].lb",
        "unknown variant",
    );
}

#[test]
fn consistent_hashing_without_hash_policy_is_allowed() {
    accepted(&[("/clusters/0/lb", json!("maglev"))]);
    accepted(&[
        ("/clusters/0/lb", json!("ring_hash")),
        ("/clusters/0/hash_policy", json!([{"source_ip": true}])),
    ]);
}

#[test]
fn error_display_names_the_field() {
    let mut doc = base();
    set(&mut doc, &r2("/match/path/regex"), json!("(unclosed"));
    let err = load(&doc).expect_err("bad regex");
    let text = err.to_string();
    assert!(
        text.starts_with(
            "listeners[0].virtual_hosts[1].routes[2].match.path.regex: invalid regular expression"
        ),
        "{text}"
    );
}

#[test]
fn random_edits_never_panic_and_errors_have_paths() {
    let mut rng = fastrand::Rng::with_seed(5);
    let pointers = [
        "/workers",
        "/listeners/0/listen",
        "/listeners/0/virtual_hosts/1/domains/0",
        "/listeners/0/virtual_hosts/1/routes/1/clusters/0/weight",
        "/listeners/0/virtual_hosts/1/routes/2/match/path/regex",
        "/listeners/0/virtual_hosts/1/routes/2/fault/abort/percent",
        "/listeners/0/virtual_hosts/1/routes/2/retry/backoff",
        "/clusters/0/endpoints/0",
        "/clusters/0/host_breaker/failure_rate",
        "/clusters/1/lb",
    ];
    let values = [
        json!(0),
        json!(-1),
        json!(1e300),
        json!(""),
        json!("*"),
        json!("(("),
        json!("127.0.0.1:1"),
        json!(null),
        json!([]),
        json!({}),
        json!(true),
        json!(0.5),
        json!("\u{0}"),
    ];
    for _ in 0..2_000 {
        let mut doc = base();
        for _ in 0..rng.usize(1..4) {
            set(
                &mut doc,
                pointers[rng.usize(..pointers.len())],
                values[rng.usize(..values.len())].clone(),
            );
        }
        if let Err(e) = load(&doc) {
            assert!(!e.path.is_empty(), "error without a path: {e}");
            assert!(!e.message.is_empty());
        }
    }
}
