//! A request made of owned values: routing without parsing a head (a "which
//! route would this take" query, tests of routing tables).

use super::RequestView;

/// Request attributes as owned values; routed with [`super::RouteTable::select_view`].
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PlainRequest {
    /// The method, as sent.
    pub method: String,
    /// The path without the query.
    pub path: String,
    /// The host without port (None: the request names none).
    pub host: Option<String>,
    /// Header fields `(name, value)` in order; names compare ASCII case-insensitively.
    pub headers: Vec<(String, Vec<u8>)>,
    /// Cookies `(name, value)` in order.
    pub cookies: Vec<(String, String)>,
    /// Query parameters `(name, decoded value)` in order.
    pub query: Vec<(String, String)>,
}

impl PlainRequest {
    /// A `GET` of `path` naming `host`.
    pub fn get(host: &str, path: &str) -> Self {
        Self {
            method: "GET".into(),
            path: path.into(),
            host: Some(host.into()),
            ..Self::default()
        }
    }

    /// This request with `method`.
    #[must_use]
    pub fn method(mut self, method: &str) -> Self {
        self.method = method.into();
        self
    }

    /// This request with one more header field.
    #[must_use]
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.as_bytes().to_vec()));
        self
    }

    /// This request with one more cookie.
    #[must_use]
    pub fn cookie(mut self, name: &str, value: &str) -> Self {
        self.cookies.push((name.into(), value.into()));
        self
    }

    /// This request with one more query parameter.
    #[must_use]
    pub fn query(mut self, name: &str, value: &str) -> Self {
        self.query.push((name.into(), value.into()));
        self
    }
}

impl RequestView for PlainRequest {
    fn method(&self) -> &str {
        &self.method
    }
    fn path(&self) -> &str {
        &self.path
    }
    fn host(&self) -> Option<&str> {
        self.host.as_deref()
    }
    fn header_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }
    fn cookie(&self, name: &str) -> Option<&str> {
        self.cookies
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
    fn query_param(&self, name: &str) -> Option<String> {
        self.query
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    }
}
