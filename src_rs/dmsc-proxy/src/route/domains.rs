//! Virtual host selection by Host, with Envoy's precedence: an exact name,
//! then the longest `*suffix`, then the longest `prefix*`, then `*`.

use std::collections::HashMap;

use crate::config::validate::{domain, MAX_DOMAIN_LEN};
use crate::error::ConfigError;

/// Domains of a listener's virtual hosts, indexed for lookup.
#[derive(Debug, Default)]
pub(crate) struct DomainIndex {
    /// Lowercased exact names.
    exact: HashMap<Box<str>, usize>,
    /// Lowercased suffixes (without the `*`), longest first.
    suffixes: Vec<(Box<str>, usize)>,
    /// Lowercased prefixes (without the `*`), longest first.
    prefixes: Vec<(Box<str>, usize)>,
    /// The virtual host of `*`.
    any: Option<usize>,
}

impl DomainIndex {
    /// Adds the domains of virtual host number `vhost`; `path` names its `domains` for errors.
    pub(crate) fn add(
        &mut self,
        domains: &[String],
        vhost: usize,
        path: &str,
    ) -> Result<(), ConfigError> {
        for (j, d) in domains.iter().enumerate() {
            let fail = |m: String| ConfigError::new(format!("{path}[{j}]"), m);
            domain(d).map_err(fail)?;
            let lower = d.to_ascii_lowercase();
            let taken = if lower == "*" {
                self.any.replace(vhost).is_some()
            } else if let Some(suffix) = lower.strip_prefix('*') {
                push_unique(&mut self.suffixes, suffix, vhost)
            } else if let Some(prefix) = lower.strip_suffix('*') {
                push_unique(&mut self.prefixes, prefix, vhost)
            } else {
                self.exact.insert(lower.as_str().into(), vhost).is_some()
            };
            if taken {
                return Err(fail(format!(
                    "domain `{d}` appears in more than one virtual host"
                )));
            }
        }
        // Longest first: the most specific wildcard wins.
        self.suffixes.sort_by_key(|s| std::cmp::Reverse(s.0.len()));
        self.prefixes.sort_by_key(|p| std::cmp::Reverse(p.0.len()));
        Ok(())
    }

    /// The virtual host for a Host value (port already stripped; None: no Host at all).
    pub(crate) fn find(&self, host: Option<&str>) -> Option<usize> {
        let host = strip_port(host.unwrap_or(""));
        // A fully qualified name with its root dot is the same host.
        let host = host.strip_suffix('.').unwrap_or(host).as_bytes();
        if !host.is_empty() && host.len() <= MAX_DOMAIN_LEN && !self.exact.is_empty() {
            let mut buf = [0u8; MAX_DOMAIN_LEN];
            let lower = &mut buf[..host.len()];
            lower.copy_from_slice(host);
            lower.make_ascii_lowercase();
            // ASCII lowercasing keeps UTF-8 valid; anything else cannot equal a domain.
            if let Some(&i) = std::str::from_utf8(lower)
                .ok()
                .and_then(|h| self.exact.get(h))
            {
                return Some(i);
            }
        }
        // The wildcard matches at least one character, as in Envoy.
        for (suffix, i) in &self.suffixes {
            let s = suffix.as_bytes();
            if host.len() > s.len() && host[host.len() - s.len()..].eq_ignore_ascii_case(s) {
                return Some(*i);
            }
        }
        for (prefix, i) in &self.prefixes {
            let p = prefix.as_bytes();
            if host.len() > p.len() && host[..p.len()].eq_ignore_ascii_case(p) {
                return Some(*i);
            }
        }
        self.any
    }
}

/// `host` without a `:port` suffix (`[v6]:port` keeps its brackets).
fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.find(']').map_or(host, |end| &host[..=end]);
    }
    host.rfind(':').map_or(host, |colon| &host[..colon])
}

fn push_unique(list: &mut Vec<(Box<str>, usize)>, key: &str, vhost: usize) -> bool {
    if list.iter().any(|(k, _)| &**k == key) {
        return true;
    }
    list.push((key.into(), vhost));
    false
}

#[cfg(test)]
mod tests {
    use super::DomainIndex;

    fn index(vhosts: &[&[&str]]) -> DomainIndex {
        let mut idx = DomainIndex::default();
        for (i, domains) in vhosts.iter().enumerate() {
            let domains: Vec<String> = domains.iter().map(|d| (*d).to_owned()).collect();
            idx.add(&domains, i, "domains").expect("valid domains");
        }
        idx
    }

    #[test]
    fn precedence_exact_suffix_prefix_any() {
        let idx = index(&[&["*"], &["foo.*"], &["*.example.com"], &["api.example.com"]]);
        assert_eq!(idx.find(Some("api.example.com")), Some(3));
        assert_eq!(idx.find(Some("web.example.com")), Some(2));
        assert_eq!(idx.find(Some("foo.example.com")), Some(2));
        assert_eq!(idx.find(Some("foo.bar")), Some(1));
        assert_eq!(idx.find(Some("other.org")), Some(0));
        assert_eq!(idx.find(None), Some(0));
    }

    #[test]
    fn longest_wildcard_wins() {
        let idx = index(&[&["*.com"], &["*.example.com"], &["a.*"], &["a.b.*"]]);
        assert_eq!(idx.find(Some("x.example.com")), Some(1));
        assert_eq!(idx.find(Some("x.other.com")), Some(0));
        assert_eq!(idx.find(Some("a.b.c")), Some(3));
        assert_eq!(idx.find(Some("a.c")), Some(2));
    }

    #[test]
    fn case_insensitive_and_trailing_dot() {
        let idx = index(&[&["API.Example.com"], &["*.Svc.Local"]]);
        assert_eq!(idx.find(Some("api.example.com")), Some(0));
        assert_eq!(idx.find(Some("API.EXAMPLE.COM")), Some(0));
        assert_eq!(idx.find(Some("api.example.com.")), Some(0));
        assert_eq!(idx.find(Some("X.SVC.LOCAL")), Some(1));
    }

    #[test]
    fn a_port_left_on_the_host_is_ignored() {
        let idx = index(&[&["api.example.com"], &["[::1]"], &["*.svc"]]);
        assert_eq!(idx.find(Some("api.example.com:8080")), Some(0));
        assert_eq!(idx.find(Some("[::1]:80")), Some(1));
        assert_eq!(idx.find(Some("[::1]")), Some(1));
        assert_eq!(idx.find(Some("a.svc:1")), Some(2));
    }

    #[test]
    fn wildcards_match_at_least_one_character() {
        let idx = index(&[&["*.example.com"], &["www.*"]]);
        assert_eq!(idx.find(Some(".example.com")), None);
        assert_eq!(idx.find(Some("example.com")), None);
        assert_eq!(idx.find(Some("www.")), None);
        assert_eq!(idx.find(Some("www.x")), Some(1));
    }

    #[test]
    fn no_match_without_catch_all() {
        let idx = index(&[&["a.example.com"]]);
        assert_eq!(idx.find(Some("b.example.com")), None);
        assert_eq!(idx.find(None), None);
        let long = "a".repeat(400);
        assert_eq!(idx.find(Some(&long)), None);
    }

    #[test]
    fn bad_and_duplicate_domains_are_refused() {
        let mut idx = DomainIndex::default();
        for bad in [
            "",
            "a*b.com",
            "*.*",
            "*a*",
            "example.com:80",
            "bad host",
            "[zz]",
        ] {
            let err = idx.add(&[bad.to_owned()], 0, "d").expect_err(bad);
            assert_eq!(err.path, "d[0]", "{bad}");
        }
        let mut idx = DomainIndex::default();
        idx.add(&["a.com".into(), "[::1]".into()], 0, "d")
            .expect("valid");
        let err = idx
            .add(&["b.com".into(), "A.com".into()], 1, "e")
            .expect_err("duplicate");
        assert_eq!(err.path, "e[1]");
    }

    #[test]
    fn random_hosts_never_panic() {
        let idx = index(&[&["*"], &["foo.*"], &["*.example.com"], &["api.example.com"]]);
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..20_000 {
            let len = rng.usize(0..300);
            let host: String = (0..len).map(|_| rng.char(..)).collect();
            let found = idx.find(Some(&host));
            assert!(found.is_some());
        }
    }
}
