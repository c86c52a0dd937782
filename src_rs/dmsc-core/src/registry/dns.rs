//! DNS-style service names: `<service>.service.<domain>` and
//! `<version>.<service>.service.<domain>`, as the DNS interface and
//! name-based discovery spell them.

/// A DNS name taken apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceName<'a> {
    /// The service (may itself contain dots).
    pub service: &'a str,
    /// The version label, when the name has one.
    pub version: Option<&'a str>,
}

/// Splits `name` (a trailing dot allowed, the domain matched case-insensitively) into its
/// service and optional version. `is_service` says whether a candidate is a known service:
/// a dotted remainder names a service when it is one, otherwise its first label is the
/// version. Returns `None` for names outside `service.<domain>`.
pub fn parse_service_name<'a>(
    name: &'a str,
    domain: &str,
    is_service: impl Fn(&str) -> bool,
) -> Option<ServiceName<'a>> {
    let name = name.strip_suffix('.').unwrap_or(name);
    let domain = domain.strip_suffix('.').unwrap_or(domain);
    let suffix_len = ".service.".len() + domain.len();
    if name.len() <= suffix_len {
        return None;
    }
    let (head, tail) = name.split_at(name.len() - suffix_len);
    if !tail[".service.".len()..].eq_ignore_ascii_case(domain)
        || !tail[..".service.".len()].eq_ignore_ascii_case(".service.")
    {
        return None;
    }
    if head.is_empty() {
        return None;
    }
    if is_service(head) {
        return Some(ServiceName {
            service: head,
            version: None,
        });
    }
    match head.split_once('.') {
        Some((version, service)) if !version.is_empty() && !service.is_empty() => {
            Some(ServiceName {
                service,
                version: Some(version),
            })
        }
        _ => Some(ServiceName {
            service: head,
            version: None,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known(name: &str) -> bool {
        matches!(name, "user-service" | "pay.v2")
    }

    #[test]
    fn plain_and_versioned_names() {
        assert_eq!(
            parse_service_name("user-service.service.dmsc", "dmsc", known),
            Some(ServiceName {
                service: "user-service",
                version: None
            })
        );
        assert_eq!(
            parse_service_name("v1.user-service.service.dmsc.", "dmsc", known),
            Some(ServiceName {
                service: "user-service",
                version: Some("v1")
            })
        );
    }

    #[test]
    fn dotted_service_names_win_over_versions() {
        assert_eq!(
            parse_service_name("pay.v2.service.mesh.local", "mesh.local", known),
            Some(ServiceName {
                service: "pay.v2",
                version: None
            })
        );
    }

    #[test]
    fn domain_is_case_insensitive_and_required() {
        assert!(parse_service_name("user-service.SERVICE.DMSC", "dmsc", known).is_some());
        assert_eq!(
            parse_service_name("user-service.service.other", "dmsc", known),
            None
        );
        assert_eq!(parse_service_name("service.dmsc", "dmsc", known), None);
        assert_eq!(parse_service_name(".service.dmsc", "dmsc", known), None);
        assert_eq!(parse_service_name("", "dmsc", known), None);
    }
}
