//! What a service instance advertises when it registers.

use crate::InvalidArgument;

/// Longest accepted service name (a DNS name's limit).
pub const MAX_NAME_LEN: usize = 253;
/// Longest accepted host, version, zone, cluster, label key or value.
pub const MAX_FIELD_LEN: usize = 255;
/// Most labels one endpoint may carry.
pub const MAX_LABELS: usize = 64;

/// A service instance's registration: where it listens and what it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Service name, DNS-safe (letters, digits, `-`, `_`, `.`).
    pub name: String,
    /// Host name or IP address the instance listens on.
    pub host: String,
    /// TCP port the instance listens on (1..=65535).
    pub port: u16,
    /// Version of the service this instance runs (free text, e.g. `v1.2.3`).
    pub version: String,
    /// Path of the HTTP health check (`/health`); empty means no active check.
    pub health_check_url: String,
    /// Availability zone, for locality-aware routing.
    pub zone: String,
    /// Cluster the instance belongs to.
    pub cluster: String,
    /// Free-form labels, kept sorted by key.
    pub labels: Vec<(String, String)>,
    /// Relative weight for weighted balancing (at least 1).
    pub weight: u32,
}

impl Default for Endpoint {
    fn default() -> Self {
        Self {
            name: String::new(),
            host: String::new(),
            port: 0,
            version: String::new(),
            health_check_url: String::new(),
            zone: String::new(),
            cluster: String::new(),
            labels: Vec::new(),
            weight: 1,
        }
    }
}

/// Whether `name` is acceptable as a service name (and so as a DNS label sequence).
pub fn is_dns_safe(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && !name.starts_with(['-', '.'])
        && !name.ends_with(['-', '.'])
        && !name.contains("..")
}

fn check_len(argument: &'static str, value: &str) -> Result<(), InvalidArgument> {
    if value.len() > MAX_FIELD_LEN {
        return Err(InvalidArgument::new(
            argument,
            format!("longer than {MAX_FIELD_LEN} bytes"),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(InvalidArgument::new(
            argument,
            "contains control characters",
        ));
    }
    Ok(())
}

impl Endpoint {
    /// Sets or replaces label `key`, keeping labels sorted by key.
    pub fn set_label(&mut self, key: &str, value: &str) -> Result<(), InvalidArgument> {
        check_len("label key", key)?;
        check_len("label value", value)?;
        if key.is_empty() {
            return Err(InvalidArgument::new("label key", "must not be empty"));
        }
        match self.labels.binary_search_by(|(k, _)| k.as_str().cmp(key)) {
            Ok(at) => self.labels[at].1 = value.to_owned(),
            Err(at) => {
                if self.labels.len() >= MAX_LABELS {
                    return Err(InvalidArgument::new(
                        "labels",
                        format!("at most {MAX_LABELS} labels"),
                    ));
                }
                self.labels.insert(at, (key.to_owned(), value.to_owned()));
            }
        }
        Ok(())
    }

    /// The value of label `key`, if set.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .binary_search_by(|(k, _)| k.as_str().cmp(key))
            .ok()
            .map(|at| self.labels[at].1.as_str())
    }

    /// Checks that the endpoint can be registered; the error names the first bad field.
    pub fn validate(&self) -> Result<(), InvalidArgument> {
        if !is_dns_safe(&self.name) {
            return Err(InvalidArgument::new(
                "name",
                format!(
                    "must be 1-{MAX_NAME_LEN} letters, digits, '-', '_' or '.', got {:?}",
                    self.name
                ),
            ));
        }
        if self.host.is_empty() {
            return Err(InvalidArgument::new("host", "must not be empty"));
        }
        check_len("host", &self.host)?;
        if self.host.contains(|c: char| c.is_whitespace() || c == '/') {
            return Err(InvalidArgument::new(
                "host",
                "must be a host name or IP address",
            ));
        }
        if self.port == 0 {
            return Err(InvalidArgument::new("port", "must be between 1 and 65535"));
        }
        check_len("version", &self.version)?;
        check_len("zone", &self.zone)?;
        check_len("cluster", &self.cluster)?;
        check_len("health_check_url", &self.health_check_url)?;
        if !self.health_check_url.is_empty() && !self.health_check_url.starts_with('/') {
            return Err(InvalidArgument::new(
                "health_check_url",
                "must be a path starting with '/'",
            ));
        }
        if self.weight == 0 {
            return Err(InvalidArgument::new("weight", "must be at least 1"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> Endpoint {
        Endpoint {
            name: "user-service".into(),
            host: "127.0.0.1".into(),
            port: 8080,
            ..Endpoint::default()
        }
    }

    #[test]
    fn a_complete_endpoint_is_valid() {
        assert_eq!(valid().validate(), Ok(()));
    }

    /// Makes one field of a valid endpoint invalid.
    type Spoil = fn(&mut Endpoint);

    #[test]
    fn each_bad_field_is_named() {
        let cases: [(&str, Spoil); 6] = [
            ("name", |e| e.name = "bad name".into()),
            ("name", |e| e.name = String::new()),
            ("host", |e| e.host = String::new()),
            ("port", |e| e.port = 0),
            ("health_check_url", |e| e.health_check_url = "health".into()),
            ("weight", |e| e.weight = 0),
        ];
        for (field, spoil) in cases {
            let mut endpoint = valid();
            spoil(&mut endpoint);
            assert_eq!(endpoint.validate().unwrap_err().argument, field);
        }
    }

    #[test]
    fn dns_safety() {
        assert!(is_dns_safe("a.b-c_d"));
        for bad in ["", "-a", "a.", "a..b", "a b", "ä", &"x".repeat(254)] {
            assert!(!is_dns_safe(bad), "{bad:?}");
        }
    }

    #[test]
    fn labels_stay_sorted_and_replace() {
        let mut endpoint = valid();
        endpoint.set_label("zone", "a").unwrap();
        endpoint.set_label("app", "x").unwrap();
        endpoint.set_label("zone", "b").unwrap();
        assert_eq!(endpoint.labels.len(), 2);
        assert_eq!(endpoint.labels[0].0, "app");
        assert_eq!(endpoint.label("zone"), Some("b"));
        assert!(endpoint.set_label("", "v").is_err());
    }
}
