//! Request conditions of one route, compiled: path, method, headers, cookies, query.

use regex::bytes::Regex;

use super::RequestView;
use crate::config::{self, compile_regex};
use crate::error::ConfigError;

/// The path condition.
#[derive(Debug)]
enum PathMatcher {
    /// No condition.
    Any,
    /// Equal to (case-sensitive).
    Exact(Box<str>),
    /// Equal to, ASCII case-insensitive.
    ExactIgnoreCase(Box<str>),
    /// Starts with (case-sensitive).
    Prefix(Box<str>),
    /// Starts with, ASCII case-insensitive.
    PrefixIgnoreCase(Box<str>),
    /// Whole path matches.
    Regex(Regex),
}

impl PathMatcher {
    /// Builds a checked condition; `path` names it for errors of the regex.
    fn build(p: Option<&config::PathMatch>, path: &str) -> Result<Self, ConfigError> {
        let Some(p) = p else { return Ok(Self::Any) };
        Ok(match (&p.exact, &p.prefix, &p.regex) {
            (Some(e), _, _) if p.ignore_case => Self::ExactIgnoreCase(e.as_str().into()),
            (Some(e), _, _) => Self::Exact(e.as_str().into()),
            (_, Some(x), _) if p.ignore_case => Self::PrefixIgnoreCase(x.as_str().into()),
            (_, Some(x), _) => Self::Prefix(x.as_str().into()),
            (_, _, Some(re)) => Self::Regex(
                compile_regex(re).map_err(|m| ConfigError::new(format!("{path}.regex"), m))?,
            ),
            // The check refused a condition with none of the three.
            (None, None, None) => Self::Any,
        })
    }

    fn matches(&self, path: &str) -> bool {
        let p = path.as_bytes();
        match self {
            Self::Any => true,
            Self::Exact(e) => path == &**e,
            Self::ExactIgnoreCase(e) => p.eq_ignore_ascii_case(e.as_bytes()),
            Self::Prefix(x) => path.starts_with(&**x),
            Self::PrefixIgnoreCase(x) => {
                p.len() >= x.len() && p[..x.len()].eq_ignore_ascii_case(x.as_bytes())
            }
            Self::Regex(re) => re.is_match(p),
        }
    }
}

/// The condition of a header, cookie or query value.
#[derive(Debug)]
enum Condition {
    /// At least one value exists.
    Present,
    /// No value exists.
    Absent,
    /// Some value is equal to.
    Exact(Box<[u8]>),
    /// Some value starts with.
    Prefix(Box<[u8]>),
    /// Some value matches as a whole.
    Regex(Regex),
}

impl Condition {
    /// Judges the values found under the name (all of them, for repeated header fields).
    fn holds<'a>(&self, mut values: impl Iterator<Item = &'a [u8]>) -> bool {
        match self {
            Self::Present => values.next().is_some(),
            Self::Absent => values.next().is_none(),
            Self::Exact(e) => values.any(|v| v == &**e),
            Self::Prefix(x) => values.any(|v| v.starts_with(x)),
            Self::Regex(re) => values.any(|v| re.is_match(v)),
        }
    }
}

/// A named condition, compiled.
#[derive(Debug)]
struct ValueMatcher {
    /// Name (lowercased for headers).
    name: Box<str>,
    condition: Condition,
    invert: bool,
}

impl ValueMatcher {
    /// Builds a checked condition; `path` names it for errors of the regex.
    fn build(v: &config::ValueMatch, path: &str, lowercase: bool) -> Result<Self, ConfigError> {
        let condition = if let Some(e) = &v.exact {
            Condition::Exact(e.as_bytes().into())
        } else if let Some(x) = &v.prefix {
            Condition::Prefix(x.as_bytes().into())
        } else if let Some(re) = &v.regex {
            Condition::Regex(
                compile_regex(re).map_err(|m| ConfigError::new(format!("{path}.regex"), m))?,
            )
        } else if v.present == Some(false) {
            Condition::Absent
        } else {
            // A name alone asks for presence, as in Envoy.
            Condition::Present
        };
        let name = if lowercase {
            v.name.to_ascii_lowercase()
        } else {
            v.name.clone()
        };
        Ok(Self {
            name: name.into(),
            condition,
            invert: v.invert,
        })
    }

    fn judge<'a>(&self, values: impl Iterator<Item = &'a [u8]>) -> bool {
        self.condition.holds(values) != self.invert
    }
}

/// Every condition of a route's `match`, compiled.
#[derive(Debug)]
pub(crate) struct RouteMatcher {
    path: PathMatcher,
    methods: Box<[Box<str>]>,
    headers: Box<[ValueMatcher]>,
    cookies: Box<[ValueMatcher]>,
    query: Box<[ValueMatcher]>,
}

impl RouteMatcher {
    /// Builds a `match` section checked by [`config::validate::route_match`]; `path`
    /// names it for errors of its regexes (`...routes[2].match`).
    pub(crate) fn build(m: &config::RouteMatch, path: &str) -> Result<Self, ConfigError> {
        let list = |items: &[config::ValueMatch], kind: &str, lowercase: bool| {
            items
                .iter()
                .enumerate()
                .map(|(i, v)| ValueMatcher::build(v, &format!("{path}.{kind}[{i}]"), lowercase))
                .collect::<Result<Box<[ValueMatcher]>, ConfigError>>()
        };
        Ok(Self {
            path: PathMatcher::build(m.path.as_ref(), &format!("{path}.path"))?,
            methods: m.methods.iter().map(|x| Box::from(x.as_str())).collect(),
            headers: list(&m.headers, "headers", true)?,
            cookies: list(&m.cookies, "cookies", false)?,
            query: list(&m.query, "query", false)?,
        })
    }

    /// The path condition when it is a prefix (what `prefix_rewrite` replaces).
    pub(crate) fn prefix(&self) -> Option<&str> {
        match &self.path {
            PathMatcher::Prefix(x) | PathMatcher::PrefixIgnoreCase(x) => Some(x),
            _ => None,
        }
    }

    /// Whether the request meets every condition. Cheap conditions go first; no
    /// allocation unless a query condition is present.
    pub(crate) fn matches<R: RequestView + ?Sized>(&self, request: &R) -> bool {
        if !self.methods.is_empty() {
            let method = request.method();
            if !self.methods.iter().any(|m| **m == *method) {
                return false;
            }
        }
        if !self.path.matches(request.path()) {
            return false;
        }
        for h in &*self.headers {
            if !h.judge(request.header_values(&h.name)) {
                return false;
            }
        }
        for c in &*self.cookies {
            if !c.judge(request.cookie(&c.name).map(str::as_bytes).into_iter()) {
                return false;
            }
        }
        for q in &*self.query {
            let value = request.query_param(&q.name);
            if !q.judge(value.as_deref().map(str::as_bytes).into_iter()) {
                return false;
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::RouteMatcher;
    use crate::config::{validate, RouteMatch};
    use crate::error::ConfigError;
    use crate::route::PlainRequest;

    fn req(path: &str) -> PlainRequest {
        PlainRequest::get("example.com", path)
    }

    /// Checks and builds, as route compilation does.
    fn compile(json: &str) -> Result<RouteMatcher, ConfigError> {
        let m: RouteMatch = serde_json::from_str(json).expect("valid match JSON");
        validate::route_match(&m, "match")?;
        RouteMatcher::build(&m, "match")
    }

    fn matcher(json: &str) -> RouteMatcher {
        compile(json).expect("valid match")
    }

    fn error(json: &str) -> String {
        compile(json).expect_err("invalid match").to_string()
    }

    #[test]
    fn empty_match_takes_everything() {
        let m = matcher("{}");
        assert!(m.matches(&req("/")));
        assert!(m.matches(&req("/anything?x").method("DELETE")));
    }

    #[test]
    fn path_exact() {
        let m = matcher(r#"{"path": {"exact": "/health"}}"#);
        assert!(m.matches(&req("/health")));
        assert!(!m.matches(&req("/health/")));
        assert!(!m.matches(&req("/HEALTH")));
        assert!(!m.matches(&req("/")));
        let ci = matcher(r#"{"path": {"exact": "/health", "ignore_case": true}}"#);
        assert!(ci.matches(&req("/HeAlTh")));
        assert!(!ci.matches(&req("/healthz")));
    }

    #[test]
    fn path_prefix() {
        let m = matcher(r#"{"path": {"prefix": "/api/"}}"#);
        assert!(m.matches(&req("/api/")));
        assert!(m.matches(&req("/api/v1/users")));
        assert!(!m.matches(&req("/api")));
        assert!(!m.matches(&req("/API/v1")));
        assert_eq!(m.prefix(), Some("/api/"));
        let ci = matcher(r#"{"path": {"prefix": "/api/", "ignore_case": true}}"#);
        assert!(ci.matches(&req("/API/v1")));
        assert!(!ci.matches(&req("/ap")));
    }

    #[test]
    fn path_regex_is_a_full_match() {
        let m = matcher(r#"{"path": {"regex": "/users/[0-9]+"}}"#);
        assert!(m.matches(&req("/users/42")));
        assert!(!m.matches(&req("/users/42/posts")));
        assert!(!m.matches(&req("/v1/users/42")));
        assert_eq!(m.prefix(), None);
        // An alternation stays inside the anchors.
        let alt = matcher(r#"{"path": {"regex": "/a|/b"}}"#);
        assert!(alt.matches(&req("/b")));
        assert!(!alt.matches(&req("/bx")));
        assert!(!alt.matches(&req("x/a")));
    }

    #[test]
    fn methods_any_of() {
        let m = matcher(r#"{"methods": ["GET", "HEAD"]}"#);
        assert!(m.matches(&req("/")));
        assert!(m.matches(&req("/").method("HEAD")));
        assert!(!m.matches(&req("/").method("POST")));
        assert!(!m.matches(&req("/").method("get")));
    }

    #[test]
    fn header_kinds() {
        let exact = matcher(r#"{"headers": [{"name": "X-Version", "exact": "v2"}]}"#);
        assert!(exact.matches(&req("/").header("x-version", "v2")));
        assert!(!exact.matches(&req("/").header("x-version", "v22")));
        assert!(!exact.matches(&req("/")));

        let prefix = matcher(r#"{"headers": [{"name": "user-agent", "prefix": "curl/"}]}"#);
        assert!(prefix.matches(&req("/").header("User-Agent", "curl/8.0")));
        assert!(!prefix.matches(&req("/").header("User-Agent", "wget")));

        let regex = matcher(r#"{"headers": [{"name": "x-id", "regex": "[a-f0-9]{4}"}]}"#);
        assert!(regex.matches(&req("/").header("x-id", "beef")));
        assert!(!regex.matches(&req("/").header("x-id", "beefy")));

        let present = matcher(r#"{"headers": [{"name": "x-canary"}]}"#);
        assert!(present.matches(&req("/").header("X-Canary", "")));
        assert!(!present.matches(&req("/")));

        let absent = matcher(r#"{"headers": [{"name": "x-canary", "present": false}]}"#);
        assert!(absent.matches(&req("/")));
        assert!(!absent.matches(&req("/").header("x-canary", "1")));
    }

    #[test]
    fn header_repeated_fields_any_value_matches() {
        let m = matcher(r#"{"headers": [{"name": "x-tag", "exact": "b"}]}"#);
        assert!(m.matches(&req("/").header("x-tag", "a").header("X-Tag", "b")));
        assert!(!m.matches(&req("/").header("x-tag", "a").header("x-tag", "c")));
    }

    #[test]
    fn header_invert() {
        let m = matcher(r#"{"headers": [{"name": "x-env", "exact": "prod", "invert": true}]}"#);
        assert!(m.matches(&req("/").header("x-env", "dev")));
        assert!(m.matches(&req("/")));
        assert!(!m.matches(&req("/").header("x-env", "prod")));
    }

    #[test]
    fn cookies_and_query() {
        let c = matcher(r#"{"cookies": [{"name": "group", "exact": "beta"}]}"#);
        assert!(c.matches(&req("/").cookie("group", "beta")));
        assert!(!c.matches(&req("/").cookie("group", "alpha")));
        assert!(!c.matches(&req("/").cookie("Group", "beta")));
        assert!(!c.matches(&req("/")));

        let q = matcher(r#"{"query": [{"name": "debug", "regex": "1|true"}]}"#);
        assert!(q.matches(&req("/").query("debug", "true")));
        assert!(!q.matches(&req("/").query("debug", "yes")));
        assert!(!q.matches(&req("/")));
        let qi = matcher(r#"{"query": [{"name": "debug", "invert": true}]}"#);
        assert!(qi.matches(&req("/")));
        assert!(!qi.matches(&req("/").query("debug", "")));
    }

    #[test]
    fn every_condition_must_hold() {
        let m = matcher(
            r#"{"path": {"prefix": "/api"}, "methods": ["POST"],
                "headers": [{"name": "x-a", "exact": "1"}],
                "cookies": [{"name": "c", "present": true}],
                "query": [{"name": "q", "prefix": "v"}]}"#,
        );
        let full = req("/api/x")
            .method("POST")
            .header("x-a", "1")
            .cookie("c", "")
            .query("q", "v1");
        assert!(m.matches(&full));
        assert!(!m.matches(&PlainRequest {
            path: "/web".into(),
            ..full.clone()
        }));
        assert!(!m.matches(&full.clone().method("PUT")));
        assert!(!m.matches(&PlainRequest {
            headers: vec![],
            ..full.clone()
        }));
        assert!(!m.matches(&PlainRequest {
            cookies: vec![],
            ..full.clone()
        }));
        assert!(!m.matches(&PlainRequest {
            query: vec![],
            ..full
        }));
    }

    #[test]
    fn bad_conditions_name_their_field() {
        assert!(error(r#"{"path": {"exact": "/a", "prefix": "/b"}}"#).starts_with("match.path: "));
        assert!(error(r#"{"path": {}}"#).starts_with("match.path: "));
        assert!(error(r#"{"path": {"regex": "("}}"#).starts_with("match.path.regex: "));
        assert!(error(r#"{"path": {"regex": "a)|(b"}}"#).starts_with("match.path.regex: "));
        assert!(error(r#"{"methods": ["GET", "BAD METHOD"]}"#).starts_with("match.methods[1]: "));
        assert!(
            error(r#"{"headers": [{"name": "bad name"}]}"#).starts_with("match.headers[0].name: ")
        );
        assert!(
            error(r#"{"headers": [{"name": "x", "exact": "a", "prefix": "b"}]}"#)
                .starts_with("match.headers[0]: ")
        );
        assert!(error(r#"{"cookies": [{"name": "c", "regex": "[z-a]"}]}"#)
            .starts_with("match.cookies[0].regex: "));
        assert!(error(r#"{"query": [{"name": ""}]}"#).starts_with("match.query[0].name: "));
    }

    #[test]
    fn huge_regex_is_refused() {
        let json = format!(r#"{{"path": {{"regex": "{}"}}}}"#, "(a{1000}){1000}");
        assert!(error(&json).starts_with("match.path.regex: "));
    }
}
