//! Whole routing tables: virtual host precedence, route order, every match
//! kind on real parsed requests, and what a compiled route carries.

use std::time::Duration;

use dmsc_proxy::http1::{parse_request, Limits, RequestHead};
use dmsc_proxy::route::{
    FallbackPolicy, PlainRequest, Route, RouteAction, RouteTable, DEFAULT_TIMEOUT,
};
use dmsc_proxy::Config;

const DOC: &str = r#"{
  "listeners": [{"name": "out", "listen": "127.0.0.1:0", "virtual_hosts": [
    {"name": "any", "domains": ["*"], "routes": [{"direct_response": {"status": 404, "body": "any"}}]},
    {"name": "prefixed", "domains": ["shop.*"], "routes": [{"cluster": "shop"}]},
    {"name": "wild", "domains": ["*.example.com"], "routes": [{"cluster": "wild"}]},
    {"name": "api", "domains": ["api.example.com", "api.internal"], "routes": [
      {"name": "health", "match": {"path": {"exact": "/health"}}, "direct_response": {"body": "ok"}},
      {"match": {"path": {"prefix": "/v2/"}, "headers": [{"name": "x-canary", "exact": "1"}]},
       "cluster": "v2", "prefix_rewrite": "/", "timeout_ms": 0},
      {"match": {"path": {"prefix": "/v2/"}, "cookies": [{"name": "group", "exact": "beta"}]},
       "clusters": [{"name": "v1", "weight": 0}, {"name": "v2", "weight": 1}], "timeout_ms": 2500},
      {"match": {"path": {"regex": "/users/[0-9]+"}, "methods": ["GET", "HEAD"]}, "cluster": "users",
       "request_headers": {"set": {"x-route": "users"}}, "host_rewrite": "users.internal",
       "fault": {"abort": {"status": 503, "percent": 10}},
       "fallback": {"response": {"status": 503, "body": "later"}}},
      {"match": {"query": [{"name": "debug", "exact": "on"}]}, "cluster": "debug"},
      {"match": {"path": {"prefix": "/"}}, "cluster": "v1", "mirror": {"cluster": "shadow", "fraction": 0.5}}
    ]}
  ]}],
  "clusters": [{"name": "v1"}, {"name": "v2"}, {"name": "users"}, {"name": "debug"}, {"name": "shadow"},
               {"name": "shop"}, {"name": "wild"}]
}"#;

fn table(doc: &str) -> RouteTable {
    let config = Config::from_json(doc).expect("valid document");
    RouteTable::compile(&config.listeners[0].virtual_hosts, "listeners[0]").expect("compiles")
}

fn name<'a>(t: &'a RouteTable, r: &PlainRequest) -> Option<&'a str> {
    t.select_view(r).map(|route| &*route.name)
}

fn cluster_of(route: &Route) -> &str {
    match &route.action {
        RouteAction::Forward(w) => w.pick(0),
        RouteAction::Respond(_) => "<direct>",
    }
}

#[test]
fn virtual_host_precedence() {
    let t = table(DOC);
    assert_eq!(
        name(&t, &PlainRequest::get("api.example.com", "/health")),
        Some("health")
    );
    assert_eq!(
        name(&t, &PlainRequest::get("API.Example.COM", "/health")),
        Some("health")
    );
    assert_eq!(
        name(&t, &PlainRequest::get("api.internal", "/health")),
        Some("health")
    );
    assert_eq!(
        name(&t, &PlainRequest::get("www.example.com", "/health")),
        Some("wild/0")
    );
    assert_eq!(
        name(&t, &PlainRequest::get("shop.example.com", "/")),
        Some("wild/0")
    );
    assert_eq!(
        name(&t, &PlainRequest::get("shop.local", "/")),
        Some("prefixed/0")
    );
    assert_eq!(
        name(&t, &PlainRequest::get("elsewhere.org", "/")),
        Some("any/0")
    );
    assert_eq!(
        name(
            &t,
            &PlainRequest {
                host: None,
                ..PlainRequest::get("", "/")
            }
        ),
        Some("any/0")
    );
}

#[test]
fn first_matching_route_wins_and_names_default() {
    let t = table(DOC);
    let api = |path: &str| PlainRequest::get("api.example.com", path);
    assert_eq!(
        name(&t, &api("/v2/items").header("X-Canary", "1")),
        Some("api/1")
    );
    assert_eq!(
        name(&t, &api("/v2/items").cookie("group", "beta")),
        Some("api/2")
    );
    assert_eq!(
        name(
            &t,
            &api("/v2/items")
                .header("x-canary", "1")
                .cookie("group", "beta")
        ),
        Some("api/1")
    );
    assert_eq!(name(&t, &api("/v2/items")), Some("api/5"));
    assert_eq!(name(&t, &api("/users/7")), Some("api/3"));
    assert_eq!(
        name(
            &t,
            &PlainRequest {
                method: "POST".into(),
                ..api("/users/7")
            }
        ),
        Some("api/5")
    );
    assert_eq!(name(&t, &api("/users/7/x")), Some("api/5"));
    assert_eq!(
        name(&t, &api("/anything").query("debug", "on")),
        Some("api/4")
    );
}

#[test]
fn no_route_without_catch_all() {
    let t = table(
        r#"{"listeners": [{"name": "l", "listen": "127.0.0.1:0", "virtual_hosts": [
             {"domains": ["a.example.com"], "routes": [{"match": {"path": {"exact": "/x"}}, "cluster": "c"}]}]}],
            "clusters": [{"name": "c"}]}"#,
    );
    assert!(t
        .select_view(&PlainRequest::get("b.example.com", "/x"))
        .is_none());
    assert!(t
        .select_view(&PlainRequest::get("a.example.com", "/y"))
        .is_none());
    assert_eq!(
        name(&t, &PlainRequest::get("a.example.com", "/x")),
        Some("a.example.com/0")
    );
}

#[test]
fn compiled_route_contents() {
    let t = table(DOC);
    let routes: Vec<&Route> = t.routes().collect();
    let by_name = |n: &str| *routes.iter().find(|r| &*r.name == n).expect("route exists");

    let health = by_name("health");
    match &health.action {
        RouteAction::Respond(r) => {
            assert_eq!(r.status, 200);
            assert_eq!(&*r.body, b"ok");
        }
        RouteAction::Forward(_) => panic!("health answers directly"),
    }
    assert_eq!(health.timeout, Some(DEFAULT_TIMEOUT));

    let canary = by_name("api/1");
    assert_eq!(cluster_of(canary), "v2");
    assert_eq!(canary.timeout, None);
    let (prefix, replacement) = canary.prefix_rewrite.as_ref().expect("rewrite");
    assert_eq!((&**prefix, &**replacement), ("/v2/", "/"));
    assert_eq!(
        canary.rewrite_target("/v2/items?id=3").as_deref(),
        Some("/items?id=3")
    );
    assert_eq!(canary.rewrite_target("/v3/items"), None);

    let beta = by_name("api/2");
    assert_eq!(beta.timeout, Some(Duration::from_millis(2500)));
    match &beta.action {
        RouteAction::Forward(w) => {
            for r in [0, 1, 7, u64::MAX] {
                assert_eq!(&**w.pick(r), "v2");
            }
        }
        RouteAction::Respond(_) => panic!("beta forwards"),
    }

    let users = by_name("api/3");
    assert_eq!(users.host_rewrite.as_deref(), Some("users.internal"));
    assert_eq!(&*users.request_headers.remove[0], "x-route");
    assert_eq!(&*users.request_headers.add[0].0, "x-route");
    let fault = users.fault.as_ref().expect("fault");
    assert_eq!(fault.abort, Some((503, 0.1)));
    assert!(matches!(&users.fallback, Some(FallbackPolicy::Respond(r)) if r.status == 503));
    assert_eq!(users.rewrite_target("/users/7"), None);

    let root = by_name("api/5");
    let mirror = root.mirror.as_ref().expect("mirror");
    assert_eq!((&*mirror.cluster, mirror.fraction), ("shadow", 0.5));
    assert!(root.fault.is_none() && root.fallback.is_none() && root.rate_limits.is_empty());
}

#[test]
fn compile_errors_name_the_field() {
    let config = Config::from_json(DOC).expect("valid");
    let mut vhosts = config.listeners[0].virtual_hosts.clone();
    vhosts[3].routes[3]
        .matcher
        .path
        .as_mut()
        .expect("path")
        .regex = Some("[".into());
    let err = RouteTable::compile(&vhosts, "listeners[0]").expect_err("bad regex");
    assert_eq!(
        err.path,
        "listeners[0].virtual_hosts[3].routes[3].match.path.regex"
    );

    let mut vhosts = config.listeners[0].virtual_hosts.clone();
    vhosts[1].domains.push("*.example.com".into());
    let err = RouteTable::compile(&vhosts, "listeners[0]").expect_err("duplicate domain");
    assert_eq!(err.path, "listeners[0].virtual_hosts[2].domains[0]");

    let mut vhosts = config.listeners[0].virtual_hosts.clone();
    vhosts[3].routes[0].prefix_rewrite = Some("/x".into());
    let err = RouteTable::compile(&vhosts, "listeners[0]").expect_err("rewrite of an exact path");
    assert_eq!(
        err.path,
        "listeners[0].virtual_hosts[3].routes[0].prefix_rewrite"
    );
}

fn head(text: &str) -> RequestHead {
    let bytes = text.replace('\n', "\r\n");
    let (head, _) = parse_request(bytes.as_bytes(), &Limits::default())
        .expect("valid")
        .expect("complete");
    head
}

fn route_name<'a>(t: &'a RouteTable, text: &str) -> Option<&'a str> {
    t.select(&head(text)).map(|r| &*r.name)
}

#[test]
fn parsed_requests_route_like_plain_ones() {
    let t = table(DOC);
    assert_eq!(
        route_name(&t, "GET /health HTTP/1.1\nHost: api.example.com:8080\n\n"),
        Some("health")
    );
    assert_eq!(
        route_name(&t, "GET /health?x=1 HTTP/1.1\nHost: API.EXAMPLE.COM\n\n"),
        Some("health")
    );
    assert_eq!(
        route_name(
            &t,
            "GET /v2/a HTTP/1.1\nHost: api.example.com\nX-Canary: 1\n\n"
        ),
        Some("api/1")
    );
    assert_eq!(
        route_name(
            &t,
            "GET /v2/a HTTP/1.1\nHost: api.example.com\nCookie: a=1; group=beta\n\n"
        ),
        Some("api/2")
    );
    assert_eq!(
        route_name(&t, "HEAD /users/12 HTTP/1.1\nHost: api.example.com\n\n"),
        Some("api/3")
    );
    assert_eq!(
        route_name(&t, "DELETE /users/12 HTTP/1.1\nHost: api.example.com\n\n"),
        Some("api/5")
    );
    assert_eq!(
        route_name(&t, "GET /x?debug=%6Fn HTTP/1.1\nHost: api.example.com\n\n"),
        Some("api/4")
    );
    assert_eq!(
        route_name(&t, "GET /x HTTP/1.1\nHost: www.example.com\n\n"),
        Some("wild/0")
    );
    assert_eq!(route_name(&t, "GET /x HTTP/1.0\n\n"), Some("any/0"));
}

#[test]
fn repeated_headers_are_all_considered() {
    let t = table(DOC);
    assert_eq!(
        route_name(
            &t,
            "GET /v2/a HTTP/1.1\nHost: api.example.com\nX-Canary: 0\nx-canary: 1\n\n"
        ),
        Some("api/1")
    );
}
