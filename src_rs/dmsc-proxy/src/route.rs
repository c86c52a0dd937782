//! Compiled routing tables: which route a request takes, and what the route does.

mod domains;
mod matcher;
mod plain;

use std::sync::Arc;
use std::time::Duration;

use crate::config;
use crate::error::ConfigError;
use crate::http1::{Head, RequestHead};
use crate::policy::{KeyedRateLimiter, RetryPolicy};

use domains::DomainIndex;
use matcher::RouteMatcher;
pub use plain::PlainRequest;

/// Whole-request timeout of a route that does not set `timeout_ms` (Envoy's default).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15);

/// The parts of a request that routing looks at. [`RequestHead`] is the real one,
/// [`PlainRequest`] one made of owned values; anything implementing it can be routed.
pub trait RequestView {
    /// The method, as sent (methods are case-sensitive).
    fn method(&self) -> &str;
    /// The path without the query.
    fn path(&self) -> &str;
    /// The host without port (None: the request names none).
    fn host(&self) -> Option<&str>;
    /// Every value of header `name` (lowercase; compared ASCII case-insensitively), in order.
    fn header_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a;
    /// The value of cookie `name`.
    fn cookie(&self, name: &str) -> Option<&str>;
    /// The first value of query parameter `name`, percent-decoded.
    fn query_param(&self, name: &str) -> Option<String>;
}

impl RequestView for RequestHead {
    fn method(&self) -> &str {
        RequestHead::method(self)
    }
    fn path(&self) -> &str {
        RequestHead::path(self)
    }
    fn host(&self) -> Option<&str> {
        RequestHead::host(self)
    }
    fn header_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.header_pairs()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| v)
    }
    fn cookie(&self, name: &str) -> Option<&str> {
        RequestHead::cookie(self, name)
    }
    fn query_param(&self, name: &str) -> Option<String> {
        RequestHead::query_param(self, name)
    }
}

/// A request with its method and path read once (for a [`RequestHead`] each read
/// re-validates the target), the rest read through.
struct ReadOnce<'r, R: ?Sized> {
    method: &'r str,
    path: &'r str,
    inner: &'r R,
}

impl<R: RequestView + ?Sized> RequestView for ReadOnce<'_, R> {
    fn method(&self) -> &str {
        self.method
    }
    fn path(&self) -> &str {
        self.path
    }
    fn host(&self) -> Option<&str> {
        self.inner.host()
    }
    fn header_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.inner.header_values(name)
    }
    fn cookie(&self, name: &str) -> Option<&str> {
        self.inner.cookie(name)
    }
    fn query_param(&self, name: &str) -> Option<String> {
        self.inner.query_param(name)
    }
}

/// The routes of one HTTP listener, compiled (regexes built, weights summed).
#[derive(Debug)]
pub struct RouteTable {
    /// Virtual hosts in config order, each with its routes in order.
    vhosts: Vec<Vec<(RouteMatcher, Route)>>,
    /// Host lookup.
    domains: DomainIndex,
}

/// A compiled route.
#[derive(Debug)]
pub struct Route {
    /// `vhost/route` name for metrics and logs.
    pub name: Arc<str>,
    /// What to do with a matching request.
    pub action: RouteAction,
    /// Copy requests to a shadow cluster.
    pub mirror: Option<MirrorPolicy>,
    /// Edits of the request head sent upstream.
    pub request_headers: HeaderRewrite,
    /// Edits of the response head sent downstream.
    pub response_headers: HeaderRewrite,
    /// Replace the matched path prefix with this.
    pub prefix_rewrite: Option<(Box<str>, Box<str>)>,
    /// Replace Host sent upstream.
    pub host_rewrite: Option<Box<str>>,
    /// Fault injection.
    pub fault: Option<FaultPolicy>,
    /// Whole-request timeout (retries included); None: no timeout.
    pub timeout: Option<Duration>,
    /// Retry policy.
    pub retry: RetryPolicy,
    /// Rate limits (each checked; the first to refuse answers 429).
    pub rate_limits: Vec<Arc<KeyedRateLimiter>>,
    /// Fallback when the cluster cannot serve.
    pub fallback: Option<FallbackPolicy>,
}

impl Route {
    /// Writes into `out` the origin-form target (path and query) to send upstream
    /// after `prefix_rewrite`; false, with `out` untouched, when this target is sent
    /// unchanged. The matched prefix (compared ASCII case-insensitively, as an
    /// `ignore_case` prefix matches it) is replaced by the replacement; where both the
    /// replacement and the rest bring a `/`, one is dropped.
    pub fn write_target(&self, target: &str, out: &mut String) -> bool {
        let Some((prefix, replacement)) = &self.prefix_rewrite else {
            return false;
        };
        let matched = target
            .as_bytes()
            .get(..prefix.len())
            .is_some_and(|head| head.eq_ignore_ascii_case(prefix.as_bytes()));
        // Non-ASCII bytes compare exactly, so a match ends on a character boundary.
        let Some(rest) = target.get(prefix.len()..).filter(|_| matched) else {
            return false;
        };
        let rest = match rest.strip_prefix('/') {
            Some(tail) if replacement.ends_with('/') => tail,
            _ => rest,
        };
        out.clear();
        out.reserve(replacement.len() + rest.len());
        out.push_str(replacement);
        out.push_str(rest);
        true
    }

    /// [`Route::write_target`] into a new string; None: send the target unchanged.
    pub fn rewrite_target(&self, target: &str) -> Option<String> {
        let mut out = String::new();
        self.write_target(target, &mut out).then_some(out)
    }
}

/// What a route does.
#[derive(Debug)]
pub enum RouteAction {
    /// Forward to one of these clusters, by weight.
    Forward(WeightedClusters),
    /// Answer directly.
    Respond(StaticResponse),
}

/// A weighted choice of cluster names.
#[derive(Debug)]
pub struct WeightedClusters {
    /// Each cluster with the upper end of its range in `0..total`; never empty.
    entries: Box<[(Arc<str>, u64)]>,
    /// Sum of the weights, > 0.
    total: u64,
}

impl WeightedClusters {
    /// A split from `(cluster, weight)` pairs; None when empty or every weight is 0.
    pub fn new(clusters: &[(Arc<str>, u32)]) -> Option<Self> {
        let mut total = 0u64;
        let entries: Box<[(Arc<str>, u64)]> = clusters
            .iter()
            .map(|(name, weight)| {
                total += u64::from(*weight);
                (Arc::clone(name), total)
            })
            .collect();
        (total > 0).then_some(Self { entries, total })
    }

    /// One cluster taking every request.
    pub fn single(cluster: Arc<str>) -> Self {
        Self {
            entries: Box::new([(cluster, 1)]),
            total: 1,
        }
    }

    /// The cluster for a request, given a uniform random `u64` (weights proportional).
    pub fn pick(&self, random: u64) -> &Arc<str> {
        if let [(only, _)] = &*self.entries {
            return only;
        }
        let r = random % self.total;
        // Ranges of weight 0 are empty, so `r < upper` never lands on them.
        let i = self
            .entries
            .iter()
            .position(|(_, upper)| r < *upper)
            .unwrap_or(self.entries.len() - 1);
        &self.entries[i].0
    }

    /// Every cluster of the split with its weight, in config order.
    pub fn clusters(&self) -> impl Iterator<Item = (&Arc<str>, u32)> + '_ {
        let mut low = 0u64;
        self.entries.iter().map(move |(name, upper)| {
            let weight = u32::try_from(upper - low).unwrap_or(u32::MAX);
            low = *upper;
            (name, weight)
        })
    }
}

/// A ready-made response.
#[derive(Debug, Clone)]
pub struct StaticResponse {
    /// Status.
    pub status: u16,
    /// Extra headers.
    pub headers: Vec<(Box<str>, Box<[u8]>)>,
    /// Body.
    pub body: Arc<[u8]>,
}

impl StaticResponse {
    /// Compiles a `direct_response` (or fallback `response`); `path` names it for errors.
    pub fn compile(config: &config::DirectResponse, path: &str) -> Result<Self, ConfigError> {
        config::validate::direct_response(config, path)?;
        Ok(Self::build(config))
    }

    /// Compiles a response already checked.
    fn build(config: &config::DirectResponse) -> Self {
        Self {
            status: config.status,
            headers: config
                .headers
                .iter()
                .map(|(n, v)| (n.to_ascii_lowercase().into_boxed_str(), v.as_bytes().into()))
                .collect(),
            body: config.body.as_bytes().into(),
        }
    }
}

/// Mirroring, compiled.
#[derive(Debug)]
pub struct MirrorPolicy {
    /// Shadow cluster.
    pub cluster: Arc<str>,
    /// Fraction of requests mirrored, 0.0..=1.0.
    pub fraction: f64,
}

impl MirrorPolicy {
    /// Whether to mirror one request, given a uniform random `u64`.
    pub fn sample(&self, random: u64) -> bool {
        chance(random, self.fraction)
    }
}

/// True with probability `p` (0..=1) for a uniform `random`, in parts per million.
fn chance(random: u64, p: f64) -> bool {
    // `as` saturates: NaN and negatives give 0 (never), above 1 gives always.
    (random % 1_000_000) < (p * 1_000_000.0) as u64
}

/// Header edits, compiled (names lowercased and validated).
#[derive(Debug, Default)]
pub struct HeaderRewrite {
    /// Drop these names, and the names of `set` (which are then added).
    pub remove: Vec<Box<str>>,
    /// Added after removal (`set` and `add` entries both end up here).
    pub add: Vec<(Box<str>, Box<[u8]>)>,
}

impl HeaderRewrite {
    /// No edits at all.
    pub fn is_empty(&self) -> bool {
        self.remove.is_empty() && self.add.is_empty()
    }

    /// Compiles header edits: `set` becomes a removal plus an addition. `path` names
    /// the section for errors (`...routes[0].request_headers`).
    pub fn compile(config: &config::HeaderRewrite, path: &str) -> Result<Self, ConfigError> {
        config::validate::header_rewrite(config, path)?;
        Ok(Self::build(config))
    }

    /// Compiles edits already checked.
    fn build(config: &config::HeaderRewrite) -> Self {
        let mut remove: Vec<Box<str>> = Vec::with_capacity(config.remove.len() + config.set.len());
        for name in config.remove.iter().chain(config.set.keys()) {
            let lower = name.to_ascii_lowercase();
            if !remove.iter().any(|r| **r == *lower) {
                remove.push(lower.into_boxed_str());
            }
        }
        let add = config
            .set
            .iter()
            .chain(config.add.iter())
            .map(|(n, v)| (n.to_ascii_lowercase().into_boxed_str(), v.as_bytes().into()))
            .collect();
        Self { remove, add }
    }
}

/// Fault injection, compiled.
#[derive(Debug)]
pub struct FaultPolicy {
    /// Delay and its probability 0..=1.
    pub delay: Option<(Duration, f64)>,
    /// Abort status and its probability 0..=1.
    pub abort: Option<(u16, f64)>,
}

/// What fault injection decided for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FaultDecision {
    /// Wait this long first.
    pub delay: Option<Duration>,
    /// Then answer this status instead of forwarding.
    pub abort: Option<u16>,
}

impl FaultPolicy {
    /// Decides for one request from two uniform random numbers.
    pub fn decide(&self, random_delay: u64, random_abort: u64) -> FaultDecision {
        FaultDecision {
            delay: self
                .delay
                .and_then(|(d, p)| chance(random_delay, p).then_some(d)),
            abort: self
                .abort
                .and_then(|(s, p)| chance(random_abort, p).then_some(s)),
        }
    }

    /// Compiles a `fault` section (None when it injects nothing).
    fn compile(config: &config::Fault) -> Option<Self> {
        let delay = config
            .delay
            .as_ref()
            .map(|d| (Duration::from_millis(d.delay_ms), d.percent / 100.0));
        let abort = config.abort.as_ref().map(|a| (a.status, a.percent / 100.0));
        (delay.is_some() || abort.is_some()).then_some(Self { delay, abort })
    }
}

/// Fallback, compiled.
#[derive(Debug)]
pub enum FallbackPolicy {
    /// Try this cluster instead.
    Cluster(Arc<str>),
    /// Answer this.
    Respond(StaticResponse),
}

impl RouteTable {
    /// Compiles the virtual hosts of an HTTP listener. `path` is the listener's config
    /// path (`listeners[0]`) for errors. Cluster names are not checked here
    /// ([`config::Config::validate`] does that).
    pub fn compile(vhosts: &[config::VirtualHost], path: &str) -> Result<Self, ConfigError> {
        let mut domains = DomainIndex::default();
        let mut compiled = Vec::with_capacity(vhosts.len());
        for (i, vh) in vhosts.iter().enumerate() {
            let vpath = format!("{path}.virtual_hosts[{i}]");
            domains.add(&vh.domains, i, &format!("{vpath}.domains"))?;
            let vname = vhost_name(vh);
            let routes = vh
                .routes
                .iter()
                .enumerate()
                .map(|(k, r)| compile_route(r, vname, k, &format!("{vpath}.routes[{k}]")))
                .collect::<Result<Vec<_>, _>>()?;
            compiled.push(routes);
        }
        Ok(Self {
            vhosts: compiled,
            domains,
        })
    }

    /// The first matching route of the first virtual host matching the request's host.
    pub fn select(&self, request: &RequestHead) -> Option<&Route> {
        self.select_view(request)
    }

    /// [`RouteTable::select`] for any [`RequestView`].
    pub fn select_view<R: RequestView + ?Sized>(&self, request: &R) -> Option<&Route> {
        let vhost = self.vhosts.get(self.domains.find(request.host())?)?;
        // Every route tried reads the method and path: derive them once.
        let request = ReadOnce {
            method: request.method(),
            path: request.path(),
            inner: request,
        };
        vhost
            .iter()
            .find(|(m, _)| m.matches(&request))
            .map(|(_, r)| r)
    }

    /// Every route, virtual host by virtual host, in config order.
    pub fn routes(&self) -> impl Iterator<Item = &Route> + '_ {
        self.vhosts.iter().flatten().map(|(_, r)| r)
    }
}

/// The name routes of a virtual host are prefixed with: its own, else its first domain.
fn vhost_name(vh: &config::VirtualHost) -> &str {
    if !vh.name.is_empty() {
        return &vh.name;
    }
    vh.domains.first().map_or("", String::as_str)
}

/// Compiles one route. The route is checked once, up front, by the same rules
/// [`config::Config::validate`] applies; the parts are then built without checking again.
fn compile_route(
    r: &config::Route,
    vhost: &str,
    index: usize,
    path: &str,
) -> Result<(RouteMatcher, Route), ConfigError> {
    config::validate::route_shape(r, path)?;
    let matcher = RouteMatcher::build(&r.matcher, &format!("{path}.match"))?;
    let name: Arc<str> = match &r.name {
        Some(n) => n.as_str().into(),
        None => format!("{vhost}/{index}").into(),
    };
    // route_shape() allowed exactly one of cluster, clusters and direct_response.
    let action = if let Some(dr) = &r.direct_response {
        RouteAction::Respond(StaticResponse::build(dr))
    } else if let Some(c) = &r.cluster {
        RouteAction::Forward(WeightedClusters::single(c.as_str().into()))
    } else {
        let split: Vec<(Arc<str>, u32)> = r
            .clusters
            .iter()
            .map(|w| (w.name.as_str().into(), w.weight))
            .collect();
        let weighted = WeightedClusters::new(&split).ok_or_else(|| {
            ConfigError::new(format!("{path}.clusters"), "weights must not all be 0")
        })?;
        RouteAction::Forward(weighted)
    };
    let mirror = r.mirror.as_ref().map(|m| MirrorPolicy {
        cluster: m.cluster.as_str().into(),
        fraction: m.fraction,
    });
    // route_shape() refused a prefix_rewrite without a path prefix to replace.
    let prefix_rewrite = r.prefix_rewrite.as_ref().and_then(|rewrite| {
        let prefix = matcher.prefix()?;
        Some((prefix.into(), rewrite.as_str().into()))
    });
    let fallback = r.fallback.as_ref().and_then(|fb| match fb {
        config::Fallback {
            cluster: Some(c), ..
        } => Some(FallbackPolicy::Cluster(c.as_str().into())),
        config::Fallback {
            response: Some(dr), ..
        } => Some(FallbackPolicy::Respond(StaticResponse::build(dr))),
        _ => None,
    });
    let retry = RetryPolicy::compile(r.retry.as_ref()).map_err(|e| e.within(path))?;
    let rate_limits = r
        .rate_limits
        .iter()
        .enumerate()
        .map(|(j, rl)| KeyedRateLimiter::new(rl, &format!("{path}.rate_limits[{j}]")).map(Arc::new))
        .collect::<Result<Vec<_>, _>>()?;
    let route = Route {
        name,
        action,
        mirror,
        request_headers: HeaderRewrite::build(&r.request_headers),
        response_headers: HeaderRewrite::build(&r.response_headers),
        prefix_rewrite,
        host_rewrite: r.host_rewrite.as_deref().map(Box::from),
        fault: r.fault.as_ref().and_then(FaultPolicy::compile),
        timeout: match r.timeout_ms {
            None => Some(DEFAULT_TIMEOUT),
            Some(0) => None,
            Some(ms) => Some(Duration::from_millis(ms)),
        },
        retry,
        rate_limits,
        fallback,
    };
    Ok((matcher, route))
}
