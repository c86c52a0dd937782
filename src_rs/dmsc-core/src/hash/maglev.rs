//! Envoy's `maglev` load balancer: the lookup table of the Maglev paper, built as Envoy builds it.
//!
//! * hosts are sorted by key (bytewise) so the table does not depend on list order;
//! * each host's permutation is `offset = xxHash64(key, 0) % M`,
//!   `skip = xxHash64(key, 1) % (M - 1) + 1`, slot `j` being `(offset + j * skip) % M`;
//! * the table is filled in rounds (pseudocode listing 1 of the paper) with
//!   Envoy's weighting: in round `r` a host with share `w` takes its next free
//!   preferred slot when `r * w >= target`, then `target += max_share`, so the
//!   heaviest host fills every round and a host with a third of its weight
//!   every third round;
//! * a 64-bit request hash `h` goes to `table[h % M]`.
//!
//! `M` must be prime (Envoy refuses other sizes): it makes every permutation
//! visit every slot.

use super::hosts::normalize;
use super::xxhash64;
use crate::InvalidArgument;

/// Envoy's default table size (the paper's recommendation for small clusters).
pub const DEFAULT_TABLE_SIZE: u64 = 65537;
/// The largest table size Envoy's configuration accepts.
pub const MAX_TABLE_SIZE: u64 = 5_000_011;

const EMPTY: u32 = u32::MAX;

/// One host's preference list and weight, the input of the table fill.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MaglevPermutation {
    /// Index the host is reported as in the table.
    pub host: u32,
    /// First preferred slot, below the table size.
    pub offset: u64,
    /// Stride between preferred slots, in `1..table_size`.
    pub skip: u64,
    /// Share of the table the host should get (any positive scale).
    pub weight: f64,
}

/// A Maglev lookup table mapping `hash % table_size` to a host index.
#[derive(Debug, Clone)]
pub struct Maglev {
    table: Vec<u32>,
    host_count: usize,
}

impl Maglev {
    /// Builds Envoy's table for `hosts` (keys as Envoy hashes them) and optional weights.
    ///
    /// Refuses an empty host list, empty or duplicate keys, weights of a
    /// different length, below 1 or summing past `u32::MAX`, and a
    /// `table_size` that is not a prime up to 5000011.
    pub fn new<S: AsRef<str>>(
        hosts: &[S],
        weights: Option<&[i64]>,
        table_size: u64,
    ) -> Result<Self, InvalidArgument> {
        check_table_size(table_size)?;
        let normalized = normalize(hosts, weights)?;
        let mut order: Vec<usize> = (0..hosts.len()).collect();
        order.sort_unstable_by(|&a, &b| hosts[a].as_ref().cmp(hosts[b].as_ref()));
        let permutations: Vec<MaglevPermutation> = order
            .into_iter()
            .map(|i| {
                let key = hosts[i].as_ref().as_bytes();
                MaglevPermutation {
                    host: i as u32,
                    offset: xxhash64(key, 0) % table_size,
                    skip: xxhash64(key, 1) % (table_size - 1) + 1,
                    weight: normalized.weights[i],
                }
            })
            .collect();
        Ok(Self {
            table: fill(&permutations, normalized.max_weight, table_size),
            host_count: hosts.len(),
        })
    }

    /// Builds a table from explicit permutations, filled in the order given.
    ///
    /// This is the paper's algorithm with the hashing left to the caller (e.g.
    /// to reproduce the paper's worked example). Refuses an empty list, a
    /// non-prime `table_size`, offsets or skips out of range and weights that
    /// are not finite and positive.
    pub fn from_permutations(
        permutations: &[MaglevPermutation],
        table_size: u64,
    ) -> Result<Self, InvalidArgument> {
        check_table_size(table_size)?;
        if permutations.is_empty() {
            return Err(InvalidArgument::new(
                "permutations",
                "must contain at least one host",
            ));
        }
        let mut max_weight = 0.0f64;
        for p in permutations {
            if p.offset >= table_size || p.skip == 0 || p.skip >= table_size {
                return Err(InvalidArgument::new(
                    "permutations",
                    format!(
                        "host {}: offset must be below and skip within 1..{table_size}",
                        p.host
                    ),
                ));
            }
            crate::error::require_positive("permutations", p.weight)?;
            max_weight = max_weight.max(p.weight);
        }
        let host_count = permutations
            .iter()
            .map(|p| p.host as usize + 1)
            .max()
            .unwrap_or(0);
        Ok(Self {
            table: fill(permutations, max_weight, table_size),
            host_count,
        })
    }

    /// Index of the host Envoy picks for the 64-bit request hash `h`.
    #[inline]
    pub fn pick_hash(&self, h: u64) -> usize {
        self.table[(h % self.table.len() as u64) as usize] as usize
    }

    /// Index of the host for `key`, hashed with xxHash64 (seed 0) as Envoy hashes a header value.
    #[inline]
    pub fn get(&self, key: &[u8]) -> usize {
        self.pick_hash(xxhash64(key, 0))
    }

    /// The lookup table: the host index of every slot.
    pub fn table(&self) -> &[u32] {
        &self.table
    }

    /// Number of hosts the table was built from.
    pub fn host_count(&self) -> usize {
        self.host_count
    }
}

/// Fills the table in rounds, as Envoy's `constructImplementationInternals` does.
fn fill(permutations: &[MaglevPermutation], max_weight: f64, table_size: u64) -> Vec<u32> {
    struct Cursor {
        next_slot: u64,
        target_weight: f64,
    }
    let size = table_size as usize;
    let mut table = vec![EMPTY; size];
    let mut cursors: Vec<Cursor> = permutations
        .iter()
        .map(|p| Cursor {
            next_slot: p.offset,
            target_weight: 0.0,
        })
        .collect();
    let mut filled = 0usize;
    let mut round: u32 = 1;
    while filled < size {
        for (p, cursor) in permutations.iter().zip(cursors.iter_mut()) {
            if filled == size {
                break;
            }
            if f64::from(round) * p.weight < cursor.target_weight {
                continue;
            }
            cursor.target_weight += max_weight;
            // The permutation is a full cycle (prime size), so a free slot is always ahead.
            let mut slot = cursor.next_slot;
            while table[slot as usize] != EMPTY {
                slot = advance(slot, p.skip, table_size);
            }
            table[slot as usize] = p.host;
            cursor.next_slot = advance(slot, p.skip, table_size);
            filled += 1;
        }
        round += 1;
    }
    table
}

#[inline]
fn advance(slot: u64, skip: u64, table_size: u64) -> u64 {
    let next = slot + skip;
    if next >= table_size {
        next - table_size
    } else {
        next
    }
}

fn check_table_size(table_size: u64) -> Result<(), InvalidArgument> {
    if table_size > MAX_TABLE_SIZE {
        return Err(InvalidArgument::new(
            "table_size",
            format!("must be at most {MAX_TABLE_SIZE}, got {table_size}"),
        ));
    }
    if !is_prime(table_size) {
        return Err(InvalidArgument::new(
            "table_size",
            format!("must be a prime number, got {table_size}"),
        ));
    }
    Ok(())
}

fn is_prime(n: u64) -> bool {
    if n < 2 {
        return false;
    }
    let mut d = 2u64;
    while d * d <= n {
        if n % d == 0 {
            return false;
        }
        d += 1;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::super::PORTS_90_TO_95;
    use super::*;

    #[test]
    fn reproduces_the_paper_table_1_example() {
        // Maglev paper, Table 1: M = 7, B0 (offset 3, skip 4), B1 (0, 2), B2 (3, 1).
        let perms =
            [(0, 3, 4), (1, 0, 2), (2, 3, 1)].map(|(host, offset, skip)| MaglevPermutation {
                host,
                offset,
                skip,
                weight: 1.0,
            });
        let m = Maglev::from_permutations(&perms, 7).unwrap();
        assert_eq!(m.table(), &[1, 0, 1, 0, 2, 2, 0]);
    }

    #[test]
    fn matches_envoy_basic_tables() {
        let m = Maglev::new(&PORTS_90_TO_95, None, 7).unwrap();
        assert_eq!(m.table(), &[2, 4, 0, 1, 5, 0, 3]);
        assert_eq!(m.pick_hash(10), 1);
        let m = Maglev::new(&["90", "91", "92", "93", "94", "95"], None, 7).unwrap();
        assert_eq!(m.table(), &[2, 5, 0, 3, 4, 1, 0]);
    }

    #[test]
    fn matches_envoy_weighted_table() {
        let m = Maglev::new(&PORTS_90_TO_95[..2], Some(&[1, 2]), 17).unwrap();
        assert_eq!(
            m.table(),
            &[1, 0, 0, 1, 0, 1, 1, 0, 1, 1, 1, 1, 1, 0, 1, 0, 1]
        );
    }

    #[test]
    fn table_does_not_depend_on_host_order() {
        let m = Maglev::new(&PORTS_90_TO_95, None, 65537).unwrap();
        let reversed: Vec<&str> = PORTS_90_TO_95.iter().rev().copied().collect();
        let r = Maglev::new(&reversed, None, 65537).unwrap();
        let n = PORTS_90_TO_95.len() as u32;
        assert!(m
            .table()
            .iter()
            .zip(r.table())
            .all(|(&a, &b)| a == n - 1 - b));
    }

    #[test]
    fn single_host_takes_every_slot() {
        let m = Maglev::new(&["only"], Some(&[7]), 17).unwrap();
        assert!(m.table().iter().all(|&h| h == 0));
    }

    #[test]
    fn table_size_must_be_a_prime_within_envoy_limits() {
        for bad in [0, 1, 8, 65536, 5_000_012, 10_000_019] {
            let err = Maglev::new(&["a"], None, bad).unwrap_err();
            assert_eq!(err.argument, "table_size", "{bad}");
        }
        assert!(Maglev::new(&["a"], None, 2).is_ok());
        assert!(Maglev::new(&["a"], None, MAX_TABLE_SIZE).is_ok());
    }

    #[test]
    fn bad_permutations_are_refused() {
        let ok = MaglevPermutation {
            host: 0,
            offset: 0,
            skip: 1,
            weight: 1.0,
        };
        assert!(Maglev::from_permutations(&[], 7).is_err());
        for bad in [
            MaglevPermutation { offset: 7, ..ok },
            MaglevPermutation { skip: 0, ..ok },
            MaglevPermutation { skip: 7, ..ok },
            MaglevPermutation { weight: 0.0, ..ok },
            MaglevPermutation {
                weight: f64::NAN,
                ..ok
            },
        ] {
            assert_eq!(
                Maglev::from_permutations(&[bad], 7).unwrap_err().argument,
                "permutations"
            );
        }
    }

    #[test]
    fn is_prime_agrees_with_known_values() {
        let primes: Vec<u64> = (0..30).filter(|&n| is_prime(n)).collect();
        assert_eq!(primes, vec![2, 3, 5, 7, 11, 13, 17, 19, 23, 29]);
        assert!(is_prime(65537) && is_prime(MAX_TABLE_SIZE));
    }
}
