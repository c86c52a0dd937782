//! Byte formatting for heads the proxy writes: numbers and header fields,
//! without going through `fmt` (no allocation on the request path).

const HEX: &[u8; 16] = b"0123456789abcdef";

/// The decimal digits of `n` in a stack buffer: `(buffer, start)`.
pub(crate) fn u64_digits(mut n: u64) -> ([u8; 20], usize) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    (digits, i)
}

/// Appends the decimal digits of `n`.
pub(crate) fn push_u64(out: &mut Vec<u8>, n: u64) {
    let (digits, start) = u64_digits(n);
    out.extend_from_slice(&digits[start..]);
}

/// Appends `n` in lower-case hexadecimal (chunk sizes).
pub(crate) fn push_hex(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 16];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = HEX[(n & 0xf) as usize];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// Writes `bytes` as lower-case hex into `out` (which must be twice as long).
pub(crate) fn hex_into(bytes: &[u8], out: &mut [u8]) {
    for (pair, b) in out.chunks_exact_mut(2).zip(bytes) {
        pair[0] = HEX[usize::from(b >> 4)];
        pair[1] = HEX[usize::from(b & 0xf)];
    }
}

/// Appends the field line `name: value\r\n`.
pub(crate) fn push_field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Appends the field line `content-length: n\r\n`.
pub(crate) fn push_content_length(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(b"content-length: ");
    push_u64(out, n);
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_format_like_std() {
        let mut rng = fastrand::Rng::with_seed(3);
        let edges = [0, 7, 9, 10, 15, 16, 99, 1234567890, u64::MAX];
        let random = (0..10_000).map(|_| match rng.u8(..4) {
            0 => rng.u64(..10),
            1 => rng.u64(..100_000),
            2 => u64::MAX - rng.u64(..10),
            _ => rng.u64(..),
        });
        for n in edges.into_iter().chain(random) {
            let mut out = Vec::new();
            push_u64(&mut out, n);
            assert_eq!(out, n.to_string().as_bytes());
            let (digits, start) = u64_digits(n);
            assert_eq!(&digits[start..], n.to_string().as_bytes());
            out.clear();
            push_hex(&mut out, n);
            assert_eq!(out, format!("{n:x}").as_bytes());
        }
    }

    #[test]
    fn bytes_as_hex() {
        let mut out = [0u8; 6];
        hex_into(&[0x00, 0xab, 0x7f], &mut out);
        assert_eq!(&out, b"00ab7f");
    }

    #[test]
    fn field_lines() {
        let mut out = Vec::new();
        push_field(&mut out, b"x-a", b"1");
        push_content_length(&mut out, 42);
        assert_eq!(out, b"x-a: 1\r\ncontent-length: 42\r\n");
    }
}
