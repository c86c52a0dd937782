//! libketama's continuum: the MD5 consistent-hash ring of memcached clients.
//!
//! Built exactly as `ketama_create_continuum` builds it, so a key maps to the
//! same server as in libketama (and every client compatible with it):
//!
//! * server `i` with weight `w_i` out of `W` gets
//!   `ks = floorf(pct * 40.0 * (float)n)` hashes, with `pct = (float)w_i / (float)W`
//!   in single precision: the float rounding is part of the algorithm;
//! * hash `k` of a server is `MD5("<name>-<k>")`, cut into four little-endian
//!   32-bit points;
//! * points are sorted stably (glibc's `qsort` is a merge sort), so on a
//!   32-bit collision the server listed first wins;
//! * a key goes to the first point at or after `MD5(key)[0..4]`, wrapping.
//!
//! libketama itself limits names to 21 bytes (its fixed-size buffers); this
//! implementation applies the same algorithm to names of any length.

use md5::{Digest, Md5};

use super::md5_word::{ketama_hash, ketama_hashes};
use super::successor;
use crate::InvalidArgument;

/// Hashes per server before weighting; each hash yields four points.
const HASHES_PER_SERVER: f64 = 40.0;

/// A libketama-compatible ring over weighted named servers.
#[derive(Debug, Clone)]
pub struct KetamaRing {
    points: Vec<u32>,
    owners: Vec<u32>,
    node_count: usize,
}

impl KetamaRing {
    /// Builds the continuum of `nodes` (name, weight) in the given order.
    ///
    /// Refuses an empty list, empty names, duplicate names, weights below 1 and
    /// weights whose total does not fit in 64 bits (libketama's `unsigned long`).
    pub fn new<S: AsRef<str>>(nodes: &[(S, i64)]) -> Result<Self, InvalidArgument> {
        if nodes.is_empty() {
            return Err(InvalidArgument::new(
                "nodes",
                "must contain at least one node",
            ));
        }
        let mut seen = std::collections::HashSet::with_capacity(nodes.len());
        let mut total: u64 = 0;
        for (name, weight) in nodes {
            let name = name.as_ref();
            if name.is_empty() {
                return Err(InvalidArgument::new(
                    "nodes",
                    "node names must not be empty",
                ));
            }
            if !seen.insert(name) {
                return Err(InvalidArgument::new(
                    "nodes",
                    format!("node {name:?} appears more than once"),
                ));
            }
            if *weight < 1 {
                return Err(InvalidArgument::new(
                    "nodes",
                    format!("weight of {name:?} must be at least 1, got {weight}"),
                ));
            }
            total = total
                .checked_add(*weight as u64)
                .ok_or_else(|| InvalidArgument::new("nodes", "total weight must fit in 64 bits"))?;
        }

        let n = nodes.len();
        let mut entries: Vec<(u32, u32)> = Vec::with_capacity(n * 160);
        let mut key = String::new();
        for (owner, (name, weight)) in nodes.iter().enumerate() {
            for k in 0..points_per_server(*weight as u64, total, n) {
                key.clear();
                key.push_str(name.as_ref());
                key.push('-');
                key.push_str(itoa(k, &mut [0u8; 10]));
                let digest = Md5::digest(key.as_bytes());
                for quarter in digest.chunks_exact(4) {
                    let point = u32::from_le_bytes(quarter.try_into().expect("4 bytes"));
                    entries.push((point, owner as u32));
                }
            }
        }
        // Stable: equal points keep server order, as glibc's merge-sorting qsort does.
        entries.sort_by_key(|&(point, _)| point);
        if entries.is_empty() {
            // Not expected: the heaviest node's share is at least 1/n, about 40 hashes.
            return Err(InvalidArgument::new(
                "nodes",
                "weights are too uneven: no node gets a point on the ring",
            ));
        }
        let (points, owners) = entries.into_iter().unzip();
        Ok(Self {
            points,
            owners,
            node_count: n,
        })
    }

    /// libketama's key hash: the first four bytes of `MD5(key)`, little-endian.
    #[inline]
    pub fn hash(key: &[u8]) -> u32 {
        ketama_hash(key)
    }

    /// Index (in construction order) of the node owning the point at or after `h`.
    #[inline]
    pub fn pick_hash(&self, h: u32) -> usize {
        self.owners[successor(&self.points, h)] as usize
    }

    /// Index of the node `key` maps to.
    #[inline]
    pub fn get(&self, key: &[u8]) -> usize {
        self.pick_hash(Self::hash(key))
    }

    /// Node indices of many keys, hashed several at a time (faster per key than [`get`](Self::get)).
    pub fn get_many(&self, keys: &[&[u8]]) -> Vec<usize> {
        const LANES: usize = 4;
        let mut nodes = Vec::with_capacity(keys.len());
        let mut chunks = keys.chunks_exact(LANES);
        for chunk in &mut chunks {
            let chunk: [&[u8]; LANES] = chunk.try_into().expect("exact chunk");
            nodes.extend(ketama_hashes(chunk).map(|h| self.pick_hash(h)));
        }
        nodes.extend(chunks.remainder().iter().map(|key| self.get(key)));
        nodes
    }

    /// Number of nodes the ring was built from.
    pub fn node_count(&self) -> usize {
        self.node_count
    }

    /// The sorted points of the continuum.
    pub fn points(&self) -> &[u32] {
        &self.points
    }

    /// The node index owning each point of [`points`](Self::points).
    pub fn owners(&self) -> &[u32] {
        &self.owners
    }
}

/// `floorf(pct * 40.0 * (float)numservers)` with libketama's mix of float and double.
fn points_per_server(weight: u64, total: u64, servers: usize) -> u32 {
    let pct = weight as f32 / total as f32;
    // `pct * 40.0` and `* (float)n` are double operations in C; `floorf` then takes a float.
    let product = f64::from(pct) * HASHES_PER_SERVER * f64::from(servers as f32);
    (product as f32).floor() as u32
}

/// Decimal digits of `value` without allocating (the `%d` of `sprintf`).
fn itoa(mut value: u32, buf: &mut [u8; 10]) -> &str {
    let mut start = buf.len();
    loop {
        start -= 1;
        buf[start] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    std::str::from_utf8(&buf[start..]).expect("ASCII digits")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_weights_give_160_points_per_server() {
        let ring = KetamaRing::new(&[("a", 1), ("b", 1), ("c", 1)]).unwrap();
        assert_eq!(ring.points().len(), 3 * 160);
        assert!(ring.points().windows(2).all(|w| w[0] <= w[1]));
        for node in 0..3u32 {
            assert_eq!(ring.owners().iter().filter(|&&o| o == node).count(), 160);
        }
    }

    #[test]
    fn weight_share_uses_single_precision_like_libketama() {
        // 1/3 in float is slightly above 1/3, so 40 * 3 * pct rounds to exactly 40.
        assert_eq!(points_per_server(1, 3, 3), 40);
        assert_eq!(points_per_server(400, 1600, 3), 30);
        assert_eq!(points_per_server(600, 1600, 3), 45);
        assert_eq!(points_per_server(1, 1000, 2), 0);
    }

    #[test]
    fn key_equal_to_a_point_maps_to_that_point() {
        let ring = KetamaRing::new(&[("10.0.0.1:11211", 1), ("10.0.0.2:11211", 1)]).unwrap();
        // "<name>-0" hashes to the first point of that server.
        let h = KetamaRing::hash(b"10.0.0.2:11211-0");
        assert!(ring.points().contains(&h));
        assert_eq!(ring.get(b"10.0.0.2:11211-0"), 1);
    }

    #[test]
    fn lookups_wrap_past_the_last_point() {
        let ring = KetamaRing::new(&[("a", 1), ("b", 2)]).unwrap();
        let first_owner = ring.owners()[0] as usize;
        assert_eq!(ring.pick_hash(u32::MAX), first_owner);
        assert_eq!(ring.pick_hash(0), first_owner);
        let last = *ring.points().last().unwrap();
        assert_eq!(
            ring.pick_hash(last),
            *ring.owners().last().unwrap() as usize
        );
    }

    #[test]
    fn get_many_equals_get_for_each_key() {
        let ring = KetamaRing::new(&[("a", 1), ("b", 2), ("c", 3)]).unwrap();
        let owned: Vec<String> = (0..37)
            .map(|i| format!("key-{i}").repeat(i % 5 + 1))
            .collect();
        let keys: Vec<&[u8]> = owned.iter().map(|k| k.as_bytes()).collect();
        let expected: Vec<usize> = keys.iter().map(|k| ring.get(k)).collect();
        assert_eq!(ring.get_many(&keys), expected);
    }

    #[test]
    fn itoa_prints_decimal() {
        let mut buf = [0u8; 10];
        assert_eq!(itoa(0, &mut buf), "0");
        assert_eq!(itoa(159, &mut buf), "159");
        assert_eq!(itoa(u32::MAX, &mut buf), "4294967295");
    }

    #[test]
    fn bad_nodes_are_refused() {
        let empty: [(&str, i64); 0] = [];
        assert_eq!(KetamaRing::new(&empty).unwrap_err().argument, "nodes");
        assert!(KetamaRing::new(&[("a", 0)]).is_err());
        assert!(KetamaRing::new(&[("a", -1)]).is_err());
        assert!(KetamaRing::new(&[("", 1)]).is_err());
        assert!(KetamaRing::new(&[("a", 1), ("a", 2)]).is_err());
        assert!(KetamaRing::new(&[("a", i64::MAX), ("b", i64::MAX), ("c", 2)]).is_err());
    }
}
