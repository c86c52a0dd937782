//! libketama's key hash, `MD5(key)[0..4]` read little-endian, for short keys, several at a time.
//!
//! A lookup only needs the first word of the digest, so for keys that fit one
//! block (up to 55 bytes) the compression stops once that word is final (61 of
//! 64 steps). MD5 is a chain of dependent steps, so one digest cannot go
//! faster than its latency; hashing `N` keys in lock-step gives the CPU `N`
//! independent chains (and lets the compiler use SIMD lanes) for batches.
//! Longer keys use the `md-5` crate.

use md5::{Digest, Md5};

/// Longest key that fits in one 64-byte block with its padding and length.
const ONE_BLOCK: usize = 55;

/// libketama's hash of one key.
#[inline]
pub(crate) fn ketama_hash(key: &[u8]) -> u32 {
    if key.len() > ONE_BLOCK {
        return digest_word(key);
    }
    first_word::<1>(&block_words([key]))[0]
}

/// libketama's hashes of `N` keys at once.
#[inline]
pub(crate) fn ketama_hashes<const N: usize>(keys: [&[u8]; N]) -> [u32; N] {
    if keys.iter().any(|k| k.len() > ONE_BLOCK) {
        return keys.map(ketama_hash);
    }
    first_word::<N>(&block_words(keys))
}

fn digest_word(key: &[u8]) -> u32 {
    let digest = Md5::digest(key);
    u32::from_le_bytes([digest[0], digest[1], digest[2], digest[3]])
}

/// The 16 message words of each key's single padded block, lane by lane.
#[inline(always)]
fn block_words<const N: usize>(keys: [&[u8]; N]) -> [[u32; N]; 16] {
    let mut words = [[0u32; N]; 16];
    for (lane, key) in keys.iter().enumerate() {
        let mut block = [0u8; 64];
        block[..key.len()].copy_from_slice(key);
        block[key.len()] = 0x80;
        block[56..].copy_from_slice(&((key.len() as u64) * 8).to_le_bytes());
        for (w, chunk) in words.iter_mut().zip(block.chunks_exact(4)) {
            w[lane] = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        }
    }
    words
}

type Lanes<const N: usize> = [u32; N];

#[inline(always)]
fn step<const N: usize>(
    a: &mut Lanes<N>,
    b: &Lanes<N>,
    mix: impl Fn(usize) -> u32,
    m: &Lanes<N>,
    k: u32,
    s: u32,
) {
    for l in 0..N {
        a[l] = b[l].wrapping_add(
            a[l].wrapping_add(mix(l))
                .wrapping_add(m[l])
                .wrapping_add(k)
                .rotate_left(s),
        );
    }
}

#[inline(always)]
fn f<const N: usize>(
    a: &mut Lanes<N>,
    b: &Lanes<N>,
    c: &Lanes<N>,
    d: &Lanes<N>,
    m: &Lanes<N>,
    k: u32,
    s: u32,
) {
    step(a, b, |l| d[l] ^ (b[l] & (c[l] ^ d[l])), m, k, s);
}

#[inline(always)]
fn g<const N: usize>(
    a: &mut Lanes<N>,
    b: &Lanes<N>,
    c: &Lanes<N>,
    d: &Lanes<N>,
    m: &Lanes<N>,
    k: u32,
    s: u32,
) {
    // The two terms share no bits, so `+` equals `|` and the c-term can be added early.
    step(a, b, |l| (b[l] & d[l]).wrapping_add(c[l] & !d[l]), m, k, s);
}

#[inline(always)]
fn h<const N: usize>(
    a: &mut Lanes<N>,
    b: &Lanes<N>,
    c: &Lanes<N>,
    d: &Lanes<N>,
    m: &Lanes<N>,
    k: u32,
    s: u32,
) {
    step(a, b, |l| b[l] ^ c[l] ^ d[l], m, k, s);
}

#[inline(always)]
fn i<const N: usize>(
    a: &mut Lanes<N>,
    b: &Lanes<N>,
    c: &Lanes<N>,
    d: &Lanes<N>,
    m: &Lanes<N>,
    k: u32,
    s: u32,
) {
    step(a, b, |l| c[l] ^ (b[l] | !d[l]), m, k, s);
}

/// Word A of the MD5 digest of single-block messages (RFC 1321), up to step 60.
#[inline(always)]
fn first_word<const N: usize>(m: &[Lanes<N>; 16]) -> Lanes<N> {
    const A0: u32 = 0x6745_2301;
    let mut a = [A0; N];
    let mut b = [0xefcd_ab89u32; N];
    let mut c = [0x98ba_dcfeu32; N];
    let mut d = [0x1032_5476u32; N];
    f(&mut a, &b, &c, &d, &m[0], 0xd76aa478, 7);
    f(&mut d, &a, &b, &c, &m[1], 0xe8c7b756, 12);
    f(&mut c, &d, &a, &b, &m[2], 0x242070db, 17);
    f(&mut b, &c, &d, &a, &m[3], 0xc1bdceee, 22);
    f(&mut a, &b, &c, &d, &m[4], 0xf57c0faf, 7);
    f(&mut d, &a, &b, &c, &m[5], 0x4787c62a, 12);
    f(&mut c, &d, &a, &b, &m[6], 0xa8304613, 17);
    f(&mut b, &c, &d, &a, &m[7], 0xfd469501, 22);
    f(&mut a, &b, &c, &d, &m[8], 0x698098d8, 7);
    f(&mut d, &a, &b, &c, &m[9], 0x8b44f7af, 12);
    f(&mut c, &d, &a, &b, &m[10], 0xffff5bb1, 17);
    f(&mut b, &c, &d, &a, &m[11], 0x895cd7be, 22);
    f(&mut a, &b, &c, &d, &m[12], 0x6b901122, 7);
    f(&mut d, &a, &b, &c, &m[13], 0xfd987193, 12);
    f(&mut c, &d, &a, &b, &m[14], 0xa679438e, 17);
    f(&mut b, &c, &d, &a, &m[15], 0x49b40821, 22);
    g(&mut a, &b, &c, &d, &m[1], 0xf61e2562, 5);
    g(&mut d, &a, &b, &c, &m[6], 0xc040b340, 9);
    g(&mut c, &d, &a, &b, &m[11], 0x265e5a51, 14);
    g(&mut b, &c, &d, &a, &m[0], 0xe9b6c7aa, 20);
    g(&mut a, &b, &c, &d, &m[5], 0xd62f105d, 5);
    g(&mut d, &a, &b, &c, &m[10], 0x02441453, 9);
    g(&mut c, &d, &a, &b, &m[15], 0xd8a1e681, 14);
    g(&mut b, &c, &d, &a, &m[4], 0xe7d3fbc8, 20);
    g(&mut a, &b, &c, &d, &m[9], 0x21e1cde6, 5);
    g(&mut d, &a, &b, &c, &m[14], 0xc33707d6, 9);
    g(&mut c, &d, &a, &b, &m[3], 0xf4d50d87, 14);
    g(&mut b, &c, &d, &a, &m[8], 0x455a14ed, 20);
    g(&mut a, &b, &c, &d, &m[13], 0xa9e3e905, 5);
    g(&mut d, &a, &b, &c, &m[2], 0xfcefa3f8, 9);
    g(&mut c, &d, &a, &b, &m[7], 0x676f02d9, 14);
    g(&mut b, &c, &d, &a, &m[12], 0x8d2a4c8a, 20);
    h(&mut a, &b, &c, &d, &m[5], 0xfffa3942, 4);
    h(&mut d, &a, &b, &c, &m[8], 0x8771f681, 11);
    h(&mut c, &d, &a, &b, &m[11], 0x6d9d6122, 16);
    h(&mut b, &c, &d, &a, &m[14], 0xfde5380c, 23);
    h(&mut a, &b, &c, &d, &m[1], 0xa4beea44, 4);
    h(&mut d, &a, &b, &c, &m[4], 0x4bdecfa9, 11);
    h(&mut c, &d, &a, &b, &m[7], 0xf6bb4b60, 16);
    h(&mut b, &c, &d, &a, &m[10], 0xbebfbc70, 23);
    h(&mut a, &b, &c, &d, &m[13], 0x289b7ec6, 4);
    h(&mut d, &a, &b, &c, &m[0], 0xeaa127fa, 11);
    h(&mut c, &d, &a, &b, &m[3], 0xd4ef3085, 16);
    h(&mut b, &c, &d, &a, &m[6], 0x04881d05, 23);
    h(&mut a, &b, &c, &d, &m[9], 0xd9d4d039, 4);
    h(&mut d, &a, &b, &c, &m[12], 0xe6db99e5, 11);
    h(&mut c, &d, &a, &b, &m[15], 0x1fa27cf8, 16);
    h(&mut b, &c, &d, &a, &m[2], 0xc4ac5665, 23);
    i(&mut a, &b, &c, &d, &m[0], 0xf4292244, 6);
    i(&mut d, &a, &b, &c, &m[7], 0x432aff97, 10);
    i(&mut c, &d, &a, &b, &m[14], 0xab9423a7, 15);
    i(&mut b, &c, &d, &a, &m[5], 0xfc93a039, 21);
    i(&mut a, &b, &c, &d, &m[12], 0x655b59c3, 6);
    i(&mut d, &a, &b, &c, &m[3], 0x8f0ccc92, 10);
    i(&mut c, &d, &a, &b, &m[10], 0xffeff47d, 15);
    i(&mut b, &c, &d, &a, &m[1], 0x85845dd1, 21);
    i(&mut a, &b, &c, &d, &m[8], 0x6fa87e4f, 6);
    i(&mut d, &a, &b, &c, &m[15], 0xfe2ce6e0, 10);
    i(&mut c, &d, &a, &b, &m[6], 0xa3014314, 15);
    i(&mut b, &c, &d, &a, &m[13], 0x4e0811a1, 21);
    i(&mut a, &b, &c, &d, &m[4], 0xf7537e82, 6);
    // Steps 61..63 only change d, c and b.
    a.map(|word| word.wrapping_add(A0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys_of_every_length() -> Vec<Vec<u8>> {
        (0..=130u8)
            .map(|len| (0..len).map(|i| i.wrapping_mul(37) ^ len).collect())
            .collect()
    }

    #[test]
    fn matches_md5_for_every_length() {
        for key in keys_of_every_length() {
            assert_eq!(ketama_hash(&key), digest_word(&key), "length {}", key.len());
        }
        // RFC 1321 test suite: MD5("") = d41d8cd9..., MD5("abc") = 90015098...
        assert_eq!(ketama_hash(b""), 0xd98c_1dd4);
        assert_eq!(ketama_hash(b"abc"), 0x9850_0190);
    }

    #[test]
    fn lanes_match_single_hashes() {
        let keys = keys_of_every_length();
        for group in keys.chunks_exact(4) {
            let refs: [&[u8]; 4] = std::array::from_fn(|j| group[j].as_slice());
            assert_eq!(ketama_hashes(refs), refs.map(digest_word));
        }
    }
}
