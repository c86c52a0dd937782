//! Consistent hashing that agrees, key for key, with the systems a mesh talks to.
//!
//! * [`KetamaRing`]: libketama's MD5 continuum (memcached clients, uhashring).
//! * [`RingHash`]: Envoy's `ring_hash` load balancer (xxHash64 ring).
//! * [`Maglev`]: Envoy's `maglev` load balancer (Maglev lookup table).
//!
//! Each structure is immutable once built and answers with the *index* of a
//! host in the list it was built from, so callers keep whatever host objects
//! they like beside it. Lookups never allocate.

mod hosts;
mod ketama;
mod maglev;
mod md5_word;
mod ring_hash;

pub use ketama::KetamaRing;
pub use maglev::{Maglev, MaglevPermutation, DEFAULT_TABLE_SIZE, MAX_TABLE_SIZE};
pub use ring_hash::{RingHash, DEFAULT_MAX_RING_SIZE, DEFAULT_MIN_RING_SIZE, MAX_RING_SIZE};

/// xxHash64 of `bytes`; Envoy hashes request keys (headers, cookies, ...) and
/// host keys with seed 0, and Maglev's skip with seed 1.
#[inline]
pub fn xxhash64(bytes: &[u8], seed: u64) -> u64 {
    xxhash_rust::xxh64::xxh64(bytes, seed)
}

/// Index of the first point at or after `h` on a sorted circle, wrapping to 0 past the end.
///
/// This is the answer of libketama's `ketama_get_server` search (which Envoy's
/// ring hash ported), including its choice of the *first* of equal points.
/// `points` must not be empty.
#[inline]
fn successor<T: Ord + Copy>(points: &[T], h: T) -> usize {
    let i = points.partition_point(|&p| p < h);
    if i == points.len() {
        0
    } else {
        i
    }
}

/// The host keys of Envoy's `maglev` and `ring_hash` tests, whose tables those tests pin.
#[cfg(test)]
const PORTS_90_TO_95: [&str; 6] = [
    "127.0.0.1:90",
    "127.0.0.1:91",
    "127.0.0.1:92",
    "127.0.0.1:93",
    "127.0.0.1:94",
    "127.0.0.1:95",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xxhash64_matches_reference_vectors() {
        assert_eq!(xxhash64(b"", 0), 0xEF46_DB37_51D8_E999);
        assert_eq!(xxhash64(b"a", 0), 0xD24E_C4F1_A98C_6E5B);
    }

    #[test]
    fn successor_takes_first_point_at_or_after_and_wraps() {
        let points = [10u64, 20, 20, 30];
        assert_eq!(successor(&points, 0), 0);
        assert_eq!(successor(&points, 10), 0);
        assert_eq!(successor(&points, 11), 1);
        assert_eq!(successor(&points, 20), 1);
        assert_eq!(successor(&points, 30), 3);
        assert_eq!(successor(&points, 31), 0);
        assert_eq!(successor(&points, u64::MAX), 0);
    }
}
