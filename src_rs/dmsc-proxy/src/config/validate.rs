//! Range and cross-reference checks of a parsed [`Config`], and the syntax
//! rules shared with route compilation (tokens, header values, regexes).

use std::collections::{HashMap, HashSet};
use std::net::{Ipv6Addr, SocketAddr};

use regex::bytes::{Regex, RegexBuilder};

use super::{
    Backoff, Cluster, Config, DirectResponse, DownstreamLimits, Fault, HashPolicy, HeaderRewrite,
    HostBreaker, Listener, OutlierDetection, PathMatch, Protocol, RateLimit, RateLimitKey,
    RetryPolicy, Route, RouteMatch, StaticEndpoint, Thresholds, ValueMatch, VirtualHost,
};
use crate::error::ConfigError;

/// Retry conditions a route may name.
pub(crate) const RETRY_ON: &[&str] = &[
    "5xx",
    "gateway-error",
    "connect-failure",
    "reset",
    "retriable-status-codes",
];

/// Longest regular expression accepted, in bytes of pattern.
const MAX_REGEX_LEN: usize = 4096;
/// Compiled-program size limit of one regex: bounds memory and match time of user patterns.
const REGEX_SIZE_LIMIT: usize = 1 << 20;
/// Lazy DFA cache limit of one regex.
const REGEX_DFA_LIMIT: usize = 2 << 20;
/// Longest host name (RFC 1035: 253 characters, with room for a trailing dot and brackets).
pub(crate) const MAX_DOMAIN_LEN: usize = 255;

/// RFC 9110 `token` (method and field names).
pub(crate) fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// A field value that can be written into a head as it is: no CR, LF, NUL or
/// other control character except horizontal tab.
pub(crate) fn valid_header_value(s: &str) -> bool {
    s.bytes().all(|b| b == b'\t' || (b >= 0x20 && b != 0x7f))
}

/// Fields whose values the proxy computes itself (framing, connection
/// management, Host); a rewrite or a static response must not set them.
pub(crate) fn managed_header(lowercase_name: &str) -> bool {
    matches!(
        lowercase_name,
        "content-length"
            | "transfer-encoding"
            | "connection"
            | "keep-alive"
            | "proxy-connection"
            | "te"
            | "trailer"
            | "upgrade"
            | "host"
    )
}

/// Compiles `pattern` to match a whole value (anchored at both ends), within size limits.
pub(crate) fn compile_regex(pattern: &str) -> Result<Regex, String> {
    if pattern.len() > MAX_REGEX_LEN {
        return Err(format!(
            "regular expression longer than {MAX_REGEX_LEN} bytes"
        ));
    }
    let build = |p: &str| {
        RegexBuilder::new(p)
            .size_limit(REGEX_SIZE_LIMIT)
            .dfa_size_limit(REGEX_DFA_LIMIT)
            .build()
    };
    // Compiling the pattern alone first proves its groups are balanced, so the
    // anchoring wrapper cannot be escaped by a pattern like `a)|(b`.
    build(pattern).map_err(|e| format!("invalid regular expression: {e}"))?;
    build(&format!("^(?:{pattern})$")).map_err(|e| format!("invalid regular expression: {e}"))
}

fn fail<T>(path: impl Into<String>, message: impl Into<String>) -> Result<T, ConfigError> {
    Err(ConfigError::new(path, message))
}

fn check(ok: bool, path: impl FnOnce() -> String, message: &str) -> Result<(), ConfigError> {
    if ok {
        Ok(())
    } else {
        fail(path(), message)
    }
}

fn percent_ok(x: f64) -> bool {
    x.is_finite() && (0.0..=100.0).contains(&x)
}

fn fraction_ok(x: f64) -> bool {
    x.is_finite() && (0.0..=1.0).contains(&x)
}

fn status_ok(status: u16) -> bool {
    (200..=599).contains(&status)
}

/// Checks the whole document.
pub(super) fn config(c: &Config) -> Result<(), ConfigError> {
    check(
        (1..=1024).contains(&c.workers),
        || "workers".into(),
        "must be 1..=1024",
    )?;

    let mut clusters: HashMap<&str, usize> = HashMap::new();
    for (i, cl) in c.clusters.iter().enumerate() {
        let path = format!("clusters[{i}].name");
        if cl.name.is_empty() {
            return fail(path, "must not be empty");
        }
        if let Some(first) = clusters.insert(&cl.name, i) {
            return fail(
                path,
                format!(
                    "duplicate cluster name `{}` (also clusters[{first}])",
                    cl.name
                ),
            );
        }
    }
    let ctx = Ctx {
        clusters: Some(clusters.keys().copied().collect()),
    };

    let mut names: HashMap<&str, usize> = HashMap::new();
    let mut bound: HashMap<SocketAddr, usize> = HashMap::new();
    for (i, l) in c.listeners.iter().enumerate() {
        let path = format!("listeners[{i}]");
        if l.name.is_empty() {
            return fail(format!("{path}.name"), "must not be empty");
        }
        if let Some(first) = names.insert(&l.name, i) {
            return fail(
                format!("{path}.name"),
                format!(
                    "duplicate listener name `{}` (also listeners[{first}])",
                    l.name
                ),
            );
        }
        let addr = listener(l, &path, &ctx)?;
        if addr.port() != 0 {
            if let Some(first) = bound.insert(addr, i) {
                return fail(
                    format!("{path}.listen"),
                    format!("address `{addr}` already used by listeners[{first}]"),
                );
            }
        }
    }

    for (i, cl) in c.clusters.iter().enumerate() {
        cluster(cl, &format!("clusters[{i}]"))?;
    }
    Ok(())
}

/// Names the document defines, for cross-references.
struct Ctx<'a> {
    /// Cluster names (None: not known here, any non-empty name passes).
    clusters: Option<HashSet<&'a str>>,
}

impl Ctx<'_> {
    fn cluster_ref(&self, name: &str, path: impl FnOnce() -> String) -> Result<(), ConfigError> {
        if name.is_empty() {
            return fail(path(), "must name a cluster");
        }
        match &self.clusters {
            Some(known) if !known.contains(name) => {
                fail(path(), format!("unknown cluster `{name}`"))
            }
            _ => Ok(()),
        }
    }
}

/// Checks one route on its own: everything but whether the clusters it names exist.
pub(crate) fn route_shape(r: &Route, path: &str) -> Result<(), ConfigError> {
    route(r, path, &Ctx { clusters: None })
}

/// Parses a `HOST:PORT` address with an IP host (`[::1]:80` for IPv6).
pub(crate) fn parse_address(text: &str) -> Result<SocketAddr, String> {
    text.parse::<SocketAddr>()
        .map_err(|_| format!("`{text}` is not IP:PORT (for example 127.0.0.1:8080 or [::1]:8080)"))
}

fn listener(l: &Listener, path: &str, ctx: &Ctx<'_>) -> Result<SocketAddr, ConfigError> {
    let addr = parse_address(&l.listen).or_else(|m| fail(format!("{path}.listen"), m))?;
    match l.protocol {
        Protocol::Http => {
            if l.cluster.is_some() {
                return fail(
                    format!("{path}.cluster"),
                    "only tcp listeners name a cluster; http listeners route",
                );
            }
            if l.virtual_hosts.is_empty() {
                return fail(
                    format!("{path}.virtual_hosts"),
                    "an http listener needs at least one virtual host",
                );
            }
            let mut domains: HashMap<String, usize> = HashMap::new();
            let mut vhost_names: HashMap<&str, usize> = HashMap::new();
            for (i, vh) in l.virtual_hosts.iter().enumerate() {
                let vpath = format!("{path}.virtual_hosts[{i}]");
                if !vh.name.is_empty() {
                    if let Some(first) = vhost_names.insert(&vh.name, i) {
                        return fail(
                            format!("{vpath}.name"),
                            format!(
                                "duplicate virtual host name `{}` (also virtual_hosts[{first}])",
                                vh.name
                            ),
                        );
                    }
                }
                for (j, d) in vh.domains.iter().enumerate() {
                    if let Some(first) = domains.insert(d.to_ascii_lowercase(), i) {
                        return fail(
                            format!("{vpath}.domains[{j}]"),
                            format!("domain `{d}` already in virtual_hosts[{first}]"),
                        );
                    }
                }
                virtual_host(vh, &vpath, ctx)?;
            }
        }
        Protocol::Tcp => {
            if !l.virtual_hosts.is_empty() {
                return fail(
                    format!("{path}.virtual_hosts"),
                    "tcp listeners have no virtual hosts",
                );
            }
            match &l.cluster {
                Some(name) => ctx.cluster_ref(name, || format!("{path}.cluster"))?,
                None => return fail(format!("{path}.cluster"), "a tcp listener needs a cluster"),
            }
        }
    }
    limits(&l.limits, &format!("{path}.limits"))?;
    Ok(addr)
}

fn limits(l: &DownstreamLimits, path: &str) -> Result<(), ConfigError> {
    let positive = [
        ("max_request_line_bytes", l.max_request_line_bytes as u64),
        ("max_header_bytes", l.max_header_bytes as u64),
        ("max_headers", l.max_headers as u64),
        ("header_timeout_ms", l.header_timeout_ms),
        ("idle_timeout_ms", l.idle_timeout_ms),
    ];
    for (field, value) in positive {
        check(
            value > 0,
            || format!("{path}.{field}"),
            "must be greater than 0",
        )?;
    }
    check(
        l.max_request_line_bytes <= l.max_header_bytes,
        || format!("{path}.max_request_line_bytes"),
        "must not exceed max_header_bytes",
    )
}

/// Checks one `domains` entry: `*`, `*suffix`, `prefix*` or an exact host without port.
pub(crate) fn domain(d: &str) -> Result<(), String> {
    if d == "*" {
        return Ok(());
    }
    if d.is_empty() {
        return Err("must not be empty".into());
    }
    if d.len() > MAX_DOMAIN_LEN {
        return Err(format!("longer than {MAX_DOMAIN_LEN} bytes"));
    }
    let stars = d.bytes().filter(|&b| b == b'*').count();
    let bare = d
        .strip_prefix('*')
        .or_else(|| d.strip_suffix('*'))
        .unwrap_or(d);
    if stars > 1 || (stars == 1 && bare.len() + 1 != d.len()) {
        return Err("a wildcard `*` may only be the first or the last character, once".into());
    }
    if let Some(inner) = bare.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
        if stars == 0 && inner.parse::<Ipv6Addr>().is_ok() {
            return Ok(());
        }
        return Err(format!(
            "`{d}` is not a host name or a bracketed IPv6 address"
        ));
    }
    if bare.contains(':') {
        return Err(format!("`{d}`: domains are matched without the port"));
    }
    if !bare
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
    {
        return Err(format!("`{d}` is not a host name"));
    }
    Ok(())
}

fn virtual_host(vh: &VirtualHost, path: &str, ctx: &Ctx<'_>) -> Result<(), ConfigError> {
    if vh.domains.is_empty() {
        return fail(
            format!("{path}.domains"),
            "needs at least one domain (`*` matches any)",
        );
    }
    for (j, d) in vh.domains.iter().enumerate() {
        domain(d).or_else(|m| fail(format!("{path}.domains[{j}]"), m))?;
    }
    for (k, r) in vh.routes.iter().enumerate() {
        route(r, &format!("{path}.routes[{k}]"), ctx)?;
    }
    Ok(())
}

fn route(r: &Route, path: &str, ctx: &Ctx<'_>) -> Result<(), ConfigError> {
    if let Some(name) = &r.name {
        check(
            !name.is_empty(),
            || format!("{path}.name"),
            "must not be empty",
        )?;
    }
    route_match(&r.matcher, &format!("{path}.match"))?;

    let actions = usize::from(r.cluster.is_some())
        + usize::from(!r.clusters.is_empty())
        + usize::from(r.direct_response.is_some());
    if actions != 1 {
        return fail(
            path,
            "needs exactly one of `cluster`, `clusters` and `direct_response`",
        );
    }
    if let Some(name) = &r.cluster {
        ctx.cluster_ref(name, || format!("{path}.cluster"))?;
    }
    let mut total = 0u64;
    for (j, wc) in r.clusters.iter().enumerate() {
        ctx.cluster_ref(&wc.name, || format!("{path}.clusters[{j}].name"))?;
        total += u64::from(wc.weight);
    }
    if !r.clusters.is_empty() && total == 0 {
        return fail(format!("{path}.clusters"), "weights must not all be 0");
    }
    if let Some(dr) = &r.direct_response {
        direct_response(dr, &format!("{path}.direct_response"))?;
    }
    if let Some(m) = &r.mirror {
        ctx.cluster_ref(&m.cluster, || format!("{path}.mirror.cluster"))?;
        check(
            fraction_ok(m.fraction),
            || format!("{path}.mirror.fraction"),
            "must be 0..=1",
        )?;
    }
    header_rewrite(&r.request_headers, &format!("{path}.request_headers"))?;
    header_rewrite(&r.response_headers, &format!("{path}.response_headers"))?;
    if let Some(rewrite) = &r.prefix_rewrite {
        let ppath = || format!("{path}.prefix_rewrite");
        let has_prefix = r.matcher.path.as_ref().is_some_and(|p| p.prefix.is_some());
        check(has_prefix, ppath, "needs a `match.path.prefix` to replace")?;
        check(rewrite.starts_with('/'), ppath, "must start with `/`")?;
        check(
            valid_target(rewrite),
            ppath,
            "must be visible ASCII without `#`",
        )?;
    }
    if let Some(host) = &r.host_rewrite {
        let ok = !host.is_empty()
            && host.len() <= MAX_DOMAIN_LEN
            && host.bytes().all(|b| {
                b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b':' | b'[' | b']')
            });
        check(
            ok,
            || format!("{path}.host_rewrite"),
            "must be a host name, optionally with `:PORT`",
        )?;
    }
    if let Some(f) = &r.fault {
        fault(f, &format!("{path}.fault"))?;
    }
    if let Some(rp) = &r.retry {
        retry(rp, &format!("{path}.retry"))?;
    }
    for (j, rl) in r.rate_limits.iter().enumerate() {
        rate_limit(rl, &format!("{path}.rate_limits[{j}]"))?;
    }
    if let Some(fb) = &r.fallback {
        let fpath = format!("{path}.fallback");
        match (&fb.cluster, &fb.response) {
            (Some(name), None) => ctx.cluster_ref(name, || format!("{fpath}.cluster"))?,
            (None, Some(dr)) => direct_response(dr, &format!("{fpath}.response"))?,
            _ => return fail(fpath, "needs exactly one of `cluster` and `response`"),
        }
    }
    Ok(())
}

/// A path for the request line: visible ASCII (percent-encoded otherwise), no fragment.
fn valid_target(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_graphic() && b != b'#')
}

/// Checks a route's `match` section (shared with route compilation).
pub(crate) fn route_match(m: &RouteMatch, path: &str) -> Result<(), ConfigError> {
    if let Some(p) = &m.path {
        path_match(p, &format!("{path}.path"))?;
    }
    for (i, method) in m.methods.iter().enumerate() {
        check(
            is_token(method),
            || format!("{path}.methods[{i}]"),
            "must be an HTTP method (a token)",
        )?;
    }
    for (i, v) in m.headers.iter().enumerate() {
        let vpath = format!("{path}.headers[{i}]");
        check(
            is_token(&v.name),
            || format!("{vpath}.name"),
            "must be a header name (a token)",
        )?;
        value_match(v, &vpath)?;
    }
    for (i, v) in m.cookies.iter().enumerate() {
        let vpath = format!("{path}.cookies[{i}]");
        check(
            is_token(&v.name),
            || format!("{vpath}.name"),
            "must be a cookie name (a token)",
        )?;
        value_match(v, &vpath)?;
    }
    for (i, v) in m.query.iter().enumerate() {
        let vpath = format!("{path}.query[{i}]");
        check(
            !v.name.is_empty(),
            || format!("{vpath}.name"),
            "must not be empty",
        )?;
        value_match(v, &vpath)?;
    }
    Ok(())
}

/// Checks a path condition.
fn path_match(p: &PathMatch, path: &str) -> Result<(), ConfigError> {
    let given = usize::from(p.exact.is_some())
        + usize::from(p.prefix.is_some())
        + usize::from(p.regex.is_some());
    if given != 1 {
        return fail(path, "needs exactly one of `exact`, `prefix` and `regex`");
    }
    if let Some(exact) = &p.exact {
        check(
            exact.starts_with('/'),
            || format!("{path}.exact"),
            "must start with `/`",
        )?;
    }
    if let Some(prefix) = &p.prefix {
        check(
            prefix.starts_with('/'),
            || format!("{path}.prefix"),
            "must start with `/`",
        )?;
    }
    if let Some(re) = &p.regex {
        compile_regex(re).or_else(|m| fail(format!("{path}.regex"), m))?;
    }
    Ok(())
}

/// Checks the condition of a header, cookie or query match.
fn value_match(v: &ValueMatch, path: &str) -> Result<(), ConfigError> {
    let given = usize::from(v.exact.is_some())
        + usize::from(v.prefix.is_some())
        + usize::from(v.regex.is_some())
        + usize::from(v.present.is_some());
    if given > 1 {
        return fail(
            path,
            "takes at most one of `exact`, `prefix`, `regex` and `present`",
        );
    }
    if let Some(re) = &v.regex {
        compile_regex(re).or_else(|m| fail(format!("{path}.regex"), m))?;
    }
    Ok(())
}

/// Checks a static response (shared with route compilation).
pub(crate) fn direct_response(dr: &DirectResponse, path: &str) -> Result<(), ConfigError> {
    check(
        status_ok(dr.status),
        || format!("{path}.status"),
        "must be a status code 200..=599",
    )?;
    for (name, value) in &dr.headers {
        header_field(name, value, &format!("{path}.headers.{name}"))?;
    }
    Ok(())
}

fn header_field(name: &str, value: &str, path: &str) -> Result<(), ConfigError> {
    if !is_token(name) {
        return fail(path, "is not a valid header name");
    }
    if managed_header(&name.to_ascii_lowercase()) {
        return fail(
            path,
            format!("`{name}` is managed by the proxy and cannot be set"),
        );
    }
    check(
        valid_header_value(value),
        || path.to_owned(),
        "header values must not contain CR, LF, NUL or control characters",
    )
}

/// Checks header edits (shared with route compilation).
pub(crate) fn header_rewrite(h: &HeaderRewrite, path: &str) -> Result<(), ConfigError> {
    let mut set_names = HashSet::new();
    for (name, value) in &h.set {
        let fpath = format!("{path}.set.{name}");
        header_field(name, value, &fpath)?;
        if !set_names.insert(name.to_ascii_lowercase()) {
            return fail(fpath, "set twice (header names are case-insensitive)");
        }
    }
    for (name, value) in &h.add {
        header_field(name, value, &format!("{path}.add.{name}"))?;
    }
    for (i, name) in h.remove.iter().enumerate() {
        header_field(name, "", &format!("{path}.remove[{i}]"))?;
    }
    Ok(())
}

fn fault(f: &Fault, path: &str) -> Result<(), ConfigError> {
    if let Some(d) = &f.delay {
        check(
            percent_ok(d.percent),
            || format!("{path}.delay.percent"),
            "must be 0..=100",
        )?;
    }
    if let Some(a) = &f.abort {
        check(
            status_ok(a.status),
            || format!("{path}.abort.status"),
            "must be a status code 200..=599",
        )?;
        check(
            percent_ok(a.percent),
            || format!("{path}.abort.percent"),
            "must be 0..=100",
        )?;
    }
    Ok(())
}

/// Checks a retry policy (shared with its compilation).
pub(crate) fn retry(r: &RetryPolicy, path: &str) -> Result<(), ConfigError> {
    for (i, cond) in r.retry_on.iter().enumerate() {
        if !RETRY_ON.contains(&cond.as_str()) {
            return fail(
                format!("{path}.retry_on[{i}]"),
                format!(
                    "unknown condition `{cond}` (known: {})",
                    RETRY_ON.join(", ")
                ),
            );
        }
    }
    for (i, &code) in r.retriable_status_codes.iter().enumerate() {
        check(
            status_ok(code),
            || format!("{path}.retriable_status_codes[{i}]"),
            "must be a status code 200..=599",
        )?;
    }
    if r.retry_on.iter().any(|c| c == "retriable-status-codes")
        && r.retriable_status_codes.is_empty()
    {
        return fail(
            format!("{path}.retriable_status_codes"),
            "`retriable-status-codes` in retry_on needs status codes here",
        );
    }
    backoff(&r.backoff, &format!("{path}.backoff"))
}

fn backoff(b: &Backoff, path: &str) -> Result<(), ConfigError> {
    check(
        b.base_ms > 0,
        || format!("{path}.base_ms"),
        "must be greater than 0",
    )?;
    check(
        b.max_ms >= b.base_ms,
        || format!("{path}.max_ms"),
        "must be at least base_ms",
    )
}

/// Checks a rate limit (shared with the limiter's construction).
pub(crate) fn rate_limit(r: &RateLimit, path: &str) -> Result<(), ConfigError> {
    check(
        r.requests > 0,
        || format!("{path}.requests"),
        "must be greater than 0",
    )?;
    check(
        r.per_seconds.is_finite() && r.per_seconds > 0.0,
        || format!("{path}.per_seconds"),
        "must be a finite number greater than 0",
    )?;
    if let Some(burst) = r.burst {
        check(
            burst > 0,
            || format!("{path}.burst"),
            "must be greater than 0",
        )?;
    }
    check(
        r.max_keys > 0,
        || format!("{path}.max_keys"),
        "must be greater than 0",
    )?;
    if let RateLimitKey::Header(name) = &r.key {
        check(
            is_token(name),
            || format!("{path}.key.header"),
            "must be a header name (a token)",
        )?;
    }
    Ok(())
}

fn cluster(c: &Cluster, path: &str) -> Result<(), ConfigError> {
    if let Some(service) = &c.service {
        check(
            !service.is_empty(),
            || format!("{path}.service"),
            "must not be empty",
        )?;
    }
    if c.version.is_some() && c.service.is_none() {
        return fail(format!("{path}.version"), "only applies with `service`");
    }
    let mut seen: HashMap<SocketAddr, usize> = HashMap::new();
    for (i, e) in c.endpoints.iter().enumerate() {
        let epath = format!("{path}.endpoints[{i}]");
        let apath = match e {
            StaticEndpoint::Address(_) => epath.clone(),
            StaticEndpoint::Weighted { .. } => format!("{epath}.address"),
        };
        let addr = parse_address(e.address()).or_else(|m| fail(apath.clone(), m))?;
        if let Some(first) = seen.insert(addr, i) {
            return fail(
                apath,
                format!("duplicate endpoint `{addr}` (also endpoints[{first}])"),
            );
        }
        check(
            e.weight() >= 1,
            || format!("{epath}.weight"),
            "must be at least 1",
        )?;
    }
    cluster_settings(c, path)
}

/// Checks everything of a cluster but its static endpoints (shared with cluster
/// construction, which parses those itself).
pub(crate) fn cluster_settings(c: &Cluster, path: &str) -> Result<(), ConfigError> {
    for (i, h) in c.hash_policy.iter().enumerate() {
        let hpath = format!("{path}.hash_policy[{i}]");
        match h {
            HashPolicy::Header(name) => check(
                is_token(name),
                || format!("{hpath}.header"),
                "must be a header name (a token)",
            )?,
            HashPolicy::Cookie(name) => check(
                is_token(name),
                || format!("{hpath}.cookie"),
                "must be a cookie name (a token)",
            )?,
            HashPolicy::SourceIp(_) => {}
        }
    }
    check(
        c.connect_timeout_ms > 0,
        || format!("{path}.connect_timeout_ms"),
        "must be greater than 0",
    )?;
    check(
        c.pool.idle_timeout_ms > 0,
        || format!("{path}.pool.idle_timeout_ms"),
        "must be greater than 0",
    )?;
    thresholds(&c.circuit_breakers, &format!("{path}.circuit_breakers"))?;
    if let Some(hb) = &c.host_breaker {
        host_breaker(hb, &format!("{path}.host_breaker"))?;
    }
    if let Some(b) = &c.bulkhead {
        check(
            b.max_concurrent > 0,
            || format!("{path}.bulkhead.max_concurrent"),
            "must be greater than 0",
        )?;
    }
    if let Some(o) = &c.outlier_detection {
        outlier(o, &format!("{path}.outlier_detection"))?;
    }
    check(
        percent_ok(c.healthy_panic_threshold),
        || format!("{path}.healthy_panic_threshold"),
        "must be 0..=100",
    )?;
    check(
        percent_ok(c.retry_budget.budget_percent),
        || format!("{path}.retry_budget.budget_percent"),
        "must be 0..=100",
    )
}

fn thresholds(t: &Thresholds, path: &str) -> Result<(), ConfigError> {
    // max_retries may be 0: no retries in flight at all.
    for (field, value) in [
        ("max_connections", t.max_connections),
        ("max_pending_requests", t.max_pending_requests),
        ("max_requests", t.max_requests),
    ] {
        check(
            value > 0,
            || format!("{path}.{field}"),
            "must be greater than 0",
        )?;
    }
    Ok(())
}

fn host_breaker(h: &HostBreaker, path: &str) -> Result<(), ConfigError> {
    check(
        h.failure_rate.is_finite() && h.failure_rate > 0.0 && h.failure_rate <= 1.0,
        || format!("{path}.failure_rate"),
        "must be greater than 0 and at most 1",
    )?;
    check(
        h.window > 0,
        || format!("{path}.window"),
        "must be greater than 0",
    )?;
    check(
        h.minimum_requests > 0,
        || format!("{path}.minimum_requests"),
        "must be greater than 0",
    )?;
    check(
        h.minimum_requests <= h.window,
        || format!("{path}.minimum_requests"),
        "must not exceed window",
    )?;
    check(
        h.open_ms > 0,
        || format!("{path}.open_ms"),
        "must be greater than 0",
    )?;
    check(
        h.half_open_requests > 0,
        || format!("{path}.half_open_requests"),
        "must be greater than 0",
    )
}

fn outlier(o: &OutlierDetection, path: &str) -> Result<(), ConfigError> {
    check(
        o.max_ejection_percent <= 100,
        || format!("{path}.max_ejection_percent"),
        "must be 0..=100",
    )?;
    check(
        o.interval_ms > 0,
        || format!("{path}.interval_ms"),
        "must be greater than 0",
    )?;
    check(
        o.base_ejection_time_ms > 0,
        || format!("{path}.base_ejection_time_ms"),
        "must be greater than 0",
    )?;
    check(
        o.max_ejection_time_ms >= o.base_ejection_time_ms,
        || format!("{path}.max_ejection_time_ms"),
        "must be at least base_ejection_time_ms",
    )?;
    if o.success_rate_minimum_hosts > 0 {
        check(
            o.success_rate_request_volume > 0,
            || format!("{path}.success_rate_request_volume"),
            "must be greater than 0",
        )?;
    }
    Ok(())
}
