//! Envoy's `ring_hash` load balancer, reproduced so both pick the same host.
//!
//! Construction follows Envoy's `RingHashLoadBalancer::Ring`:
//!
//! * weights are normalised to shares `w_i / W` (double precision);
//! * `scale = min(ceil(min_share * min_ring_size) / min_share, max_ring_size)`
//!   so the lightest host gets a whole number of entries;
//! * walking the hosts in the given order, running sums `target += scale * share`
//!   and `current += 1` decide how many entries each host gets, entry `j` of
//!   host `key` being `xxHash64("<key>_<j>", seed 0)`;
//! * entries are sorted by hash; a hash `h` goes to the first entry at or after
//!   `h`, wrapping (Envoy's port of libketama's search).
//!
//! The host key is what Envoy hashes: the endpoint's `hash_key` metadata if
//! set, else its hostname with `use_hostname_for_hashing`, else its address as
//! `ip:port`.

use super::hosts::normalize;
use super::{successor, xxhash64};
use crate::InvalidArgument;

/// Envoy's default `minimum_ring_size`.
pub const DEFAULT_MIN_RING_SIZE: u64 = 1024;
/// Envoy's default `maximum_ring_size`.
pub const DEFAULT_MAX_RING_SIZE: u64 = 8 * 1024 * 1024;
/// The largest ring size Envoy's configuration accepts.
pub const MAX_RING_SIZE: u64 = 8 * 1024 * 1024;

/// A ring of xxHash64 points, each owned by a host index.
#[derive(Debug, Clone)]
pub struct RingHash {
    hashes: Vec<u64>,
    owners: Vec<u32>,
    host_count: usize,
}

impl RingHash {
    /// Builds Envoy's ring for `hosts` (keys as Envoy hashes them) and optional weights.
    ///
    /// Refuses an empty host list, empty or duplicate keys, weights of a
    /// different length, below 1 or summing past `u32::MAX`, and ring sizes
    /// outside `1..=8388608` or with `min_ring_size > max_ring_size`.
    pub fn new<S: AsRef<str>>(
        hosts: &[S],
        weights: Option<&[i64]>,
        min_ring_size: u64,
        max_ring_size: u64,
    ) -> Result<Self, InvalidArgument> {
        check_ring_size("min_ring_size", min_ring_size)?;
        check_ring_size("max_ring_size", max_ring_size)?;
        if min_ring_size > max_ring_size {
            return Err(InvalidArgument::new(
                "min_ring_size",
                format!("must not exceed max_ring_size ({max_ring_size}), got {min_ring_size}"),
            ));
        }
        let normalized = normalize(hosts, weights)?;
        let min_share = normalized.min_weight;
        let scale =
            ((min_share * min_ring_size as f64).ceil() / min_share).min(max_ring_size as f64);

        let mut entries: Vec<(u64, u32)> = Vec::with_capacity(scale.ceil() as usize);
        let mut key = Vec::with_capacity(64);
        let mut current = 0.0f64;
        let mut target = 0.0f64;
        for (owner, (host, share)) in hosts.iter().zip(&normalized.weights).enumerate() {
            key.clear();
            key.extend_from_slice(host.as_ref().as_bytes());
            key.push(b'_');
            let prefix = key.len();
            target += scale * share;
            let mut j: u64 = 0;
            while current < target {
                key.truncate(prefix);
                push_decimal(&mut key, j);
                entries.push((xxhash64(&key, 0), owner as u32));
                j += 1;
                current += 1.0;
            }
        }
        entries.sort_unstable();
        let (hashes, owners) = entries.into_iter().unzip();
        Ok(Self {
            hashes,
            owners,
            host_count: hosts.len(),
        })
    }

    /// Index of the host that Envoy picks for the 64-bit request hash `h`.
    #[inline]
    pub fn pick_hash(&self, h: u64) -> usize {
        self.owners[successor(&self.hashes, h)] as usize
    }

    /// Index of the host for `key`, hashed with xxHash64 (seed 0) as Envoy hashes a header value.
    #[inline]
    pub fn get(&self, key: &[u8]) -> usize {
        self.pick_hash(xxhash64(key, 0))
    }

    /// Number of hosts the ring was built from.
    pub fn host_count(&self) -> usize {
        self.host_count
    }

    /// The sorted hashes of the ring's entries.
    pub fn hashes(&self) -> &[u64] {
        &self.hashes
    }

    /// The host index owning each entry of [`hashes`](Self::hashes).
    pub fn owners(&self) -> &[u32] {
        &self.owners
    }
}

fn check_ring_size(argument: &'static str, size: u64) -> Result<(), InvalidArgument> {
    if (1..=MAX_RING_SIZE).contains(&size) {
        Ok(())
    } else {
        Err(InvalidArgument::new(
            argument,
            format!("must be between 1 and {MAX_RING_SIZE}, got {size}"),
        ))
    }
}

/// Appends the decimal digits of `value` (what `absl::StrCat` prints).
fn push_decimal(out: &mut Vec<u8>, mut value: u64) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[start..]);
}

#[cfg(test)]
mod tests {
    use super::super::PORTS_90_TO_95;
    use super::*;

    fn ring(hosts: &[&str], weights: Option<&[i64]>, min: u64, max: u64) -> RingHash {
        RingHash::new(hosts, weights, min, max).unwrap()
    }

    #[test]
    fn matches_envoy_basic_ring() {
        // Envoy's ring_hash_lb_test "Basic": six hosts, minimum ring size 12.
        let r = ring(&PORTS_90_TO_95, None, 12, DEFAULT_MAX_RING_SIZE);
        let expected: [(u64, u32); 12] = [
            (833437586790550860, 4),
            (928266305478181108, 2),
            (1033482794131418490, 0),
            (3551244743356806947, 5),
            (3851675632748031481, 3),
            (5583722120771150861, 1),
            (6311230543546372928, 1),
            (7700377290971790572, 3),
            (13144177310400110813, 5),
            (13444792449719432967, 2),
            (15516499411664133160, 4),
            (16117243373044804889, 0),
        ];
        let (hashes, owners): (Vec<u64>, Vec<u32>) = expected.iter().copied().unzip();
        assert_eq!(r.hashes(), &hashes[..]);
        assert_eq!(r.owners(), &owners[..]);
        assert_eq!(r.pick_hash(0), 4);
        assert_eq!(r.pick_hash(u64::MAX), 4);
        assert_eq!(r.pick_hash(3551244743356806947), 5);
        assert_eq!(r.pick_hash(3551244743356806948), 3);
        assert_eq!(r.pick_hash(16117243373044804880), 0);
    }

    #[test]
    fn matches_envoy_hostname_ring() {
        let r = ring(
            &["90", "91", "92", "93", "94", "95"],
            None,
            12,
            DEFAULT_MAX_RING_SIZE,
        );
        assert_eq!(r.hashes()[0], 1975508444536362413);
        assert_eq!(r.pick_hash(0), 5);
        assert_eq!(r.pick_hash(7225015537174310577), 2);
        assert_eq!(r.pick_hash(6803900775736438537), 3);
    }

    #[test]
    fn matches_envoy_uneven_and_weighted_tiny_rings() {
        let r = ring(
            &["127.0.0.1:80", "127.0.0.1:81"],
            None,
            3,
            DEFAULT_MAX_RING_SIZE,
        );
        assert_eq!(
            r.hashes(),
            &[
                5454692015285649509,
                7859399908942313493,
                13838424394637650569,
                16064866803292627174
            ]
        );
        let r = ring(&PORTS_90_TO_95[..3], Some(&[1, 2, 3]), 6, 6);
        assert_eq!(r.hashes().len(), 6);
        for (h, host) in [
            (928266305478181108u64, 2usize),
            (4443673547860492590, 2),
            (5583722120771150861, 1),
            (6311230543546372928, 1),
            (13444792449719432967, 2),
            (16117243373044804889, 0),
        ] {
            assert_eq!(r.pick_hash(h), host, "hash {h}");
        }
    }

    #[test]
    fn matches_envoy_weighted_large_ring_counts() {
        let r = ring(
            &PORTS_90_TO_95[..3],
            Some(&[1, 2, 3]),
            6144,
            DEFAULT_MAX_RING_SIZE,
        );
        assert_eq!(r.hashes().len(), 6144);
        let mut counts = [0u32; 3];
        for i in 0..6000u64 {
            counts[r.pick_hash(i * (u64::MAX / 6000))] += 1;
        }
        assert_eq!(counts, [987, 1932, 3081]);
    }

    #[test]
    fn matches_envoy_fractional_scales() {
        let r = ring(&PORTS_90_TO_95[..2], None, 1023, 1023);
        let per_host: Vec<usize> = (0..2u32)
            .map(|h| r.owners().iter().filter(|&&o| o == h).count())
            .collect();
        assert_eq!(per_host, vec![512, 511]);
        let mut counts = [0u32; 2];
        for i in 0..1023u64 {
            counts[r.pick_hash(i * (u64::MAX / 1023))] += 1;
        }
        assert_eq!(counts, [526, 497]);

        // Ring of 2 for 4 hosts: half of them get no entry at all.
        let r = ring(&PORTS_90_TO_95[..4], None, 2, 2);
        assert_eq!(r.hashes().len(), 2);
    }

    #[test]
    fn get_hashes_the_key_with_xxhash64() {
        let r = ring(
            &PORTS_90_TO_95,
            None,
            DEFAULT_MIN_RING_SIZE,
            DEFAULT_MAX_RING_SIZE,
        );
        for key in [&b"session-1"[..], b"", b"user:42"] {
            assert_eq!(r.get(key), r.pick_hash(xxhash64(key, 0)));
        }
    }

    #[test]
    fn bad_ring_sizes_name_the_argument() {
        let hosts = ["a", "b"];
        let err = RingHash::new(&hosts, None, 20, 10).unwrap_err();
        assert_eq!(err.argument, "min_ring_size");
        assert_eq!(
            RingHash::new(&hosts, None, 0, 10).unwrap_err().argument,
            "min_ring_size"
        );
        let err = RingHash::new(&hosts, None, 1, MAX_RING_SIZE + 1).unwrap_err();
        assert_eq!(err.argument, "max_ring_size");
        let empty: [&str; 0] = [];
        assert_eq!(
            RingHash::new(&empty, None, 1, 2).unwrap_err().argument,
            "hosts"
        );
    }
}
