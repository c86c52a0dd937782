//! Validation and weight normalisation of the host lists Envoy's hashing balancers take.

use std::collections::HashSet;

use crate::InvalidArgument;

/// Hosts checked against Envoy's rules, with their weights normalised to sum to 1.
pub(crate) struct NormalizedHosts {
    /// `weight / total` per host, in the caller's order, as Envoy computes it.
    pub weights: Vec<f64>,
    /// Smallest normalised weight (at most 1.0, Envoy's starting value).
    pub min_weight: f64,
    /// Largest normalised weight (at least 0.0, Envoy's starting value).
    pub max_weight: f64,
}

/// Refuses what Envoy would refuse (no hosts, empty keys, weights below 1 or
/// summing past `u32::MAX`) and duplicate keys, whose relative order Envoy
/// leaves to pointer values.
pub(crate) fn normalize<S: AsRef<str>>(
    hosts: &[S],
    weights: Option<&[i64]>,
) -> Result<NormalizedHosts, InvalidArgument> {
    if hosts.is_empty() {
        return Err(InvalidArgument::new(
            "hosts",
            "must contain at least one host",
        ));
    }
    let mut seen = HashSet::with_capacity(hosts.len());
    for (i, host) in hosts.iter().enumerate() {
        let host = host.as_ref();
        if host.is_empty() {
            return Err(InvalidArgument::new(
                "hosts",
                format!("host {i} is an empty string"),
            ));
        }
        if !seen.insert(host) {
            return Err(InvalidArgument::new(
                "hosts",
                format!("host {host:?} appears more than once"),
            ));
        }
    }
    let raw: Vec<u64> = match weights {
        None => vec![1; hosts.len()],
        Some(weights) => {
            if weights.len() != hosts.len() {
                return Err(InvalidArgument::new(
                    "weights",
                    format!(
                        "has {} entries but hosts has {}",
                        weights.len(),
                        hosts.len()
                    ),
                ));
            }
            let mut raw = Vec::with_capacity(weights.len());
            for (host, &w) in hosts.iter().zip(weights) {
                if w < 1 {
                    return Err(InvalidArgument::new(
                        "weights",
                        format!("weight of {:?} must be at least 1, got {w}", host.as_ref()),
                    ));
                }
                raw.push(w as u64);
            }
            raw
        }
    };
    // Envoy validates endpoint weights so that their sum fits in 32 bits.
    let total = raw
        .iter()
        .try_fold(0u64, |acc, &w| acc.checked_add(w))
        .filter(|&t| t <= u64::from(u32::MAX))
        .ok_or_else(|| {
            InvalidArgument::new("weights", format!("must sum to at most {}", u32::MAX))
        })?;
    let mut min_weight = 1.0f64;
    let mut max_weight = 0.0f64;
    let weights = raw
        .iter()
        .map(|&w| {
            let normalized = w as f64 / total as f64;
            min_weight = min_weight.min(normalized);
            max_weight = max_weight.max(normalized);
            normalized
        })
        .collect();
    Ok(NormalizedHosts {
        weights,
        min_weight,
        max_weight,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_weights_when_none_given() {
        let n = normalize(&["a", "b", "c", "d"], None).unwrap();
        assert_eq!(n.weights, vec![0.25; 4]);
        assert_eq!((n.min_weight, n.max_weight), (0.25, 0.25));
    }

    #[test]
    fn weights_are_shares_of_the_total() {
        let n = normalize(&["a", "b"], Some(&[1, 3])).unwrap();
        assert_eq!(n.weights, vec![0.25, 0.75]);
        assert_eq!((n.min_weight, n.max_weight), (0.25, 0.75));
    }

    #[test]
    fn bad_host_lists_name_the_argument() {
        let none: [&str; 0] = [];
        assert_eq!(normalize(&none, None).err().unwrap().argument, "hosts");
        assert_eq!(normalize(&["a", ""], None).err().unwrap().argument, "hosts");
        assert_eq!(
            normalize(&["a", "a"], None).err().unwrap().argument,
            "hosts"
        );
        for bad in [&[1i64][..], &[1, 0], &[1, -2], &[i64::from(u32::MAX), 1]] {
            let err = normalize(&["a", "b"], Some(bad)).err().unwrap();
            assert_eq!(err.argument, "weights", "{bad:?}");
        }
    }
}
