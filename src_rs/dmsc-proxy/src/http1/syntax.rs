//! Byte classes of RFC 9110/9112 grammar, as lookup tables.

/// Carriage return.
pub(super) const CR: u8 = b'\r';
/// Line feed.
pub(super) const LF: u8 = b'\n';
/// Space.
pub(super) const SP: u8 = b' ';
/// Horizontal tab.
pub(super) const HTAB: u8 = b'\t';

/// A table of the 256 bytes: true where `$pred` holds for byte `$c`. A macro
/// because a `const fn` cannot call a predicate it is given.
macro_rules! byte_table {
    (|$c:ident| $pred:expr) => {{
        let mut t = [false; 256];
        let mut i = 0;
        while i < 256 {
            let $c = i as u8;
            t[i] = $pred;
            i += 1;
        }
        t
    }};
}

/// `tchar` (RFC 9110 5.6.2).
pub(super) static TCHAR: [bool; 256] = byte_table!(|c| c.is_ascii_alphanumeric()
    || matches!(
        c,
        b'!' | b'#'
            | b'$'
            | b'%'
            | b'&'
            | b'\''
            | b'*'
            | b'+'
            | b'-'
            | b'.'
            | b'^'
            | b'_'
            | b'`'
            | b'|'
            | b'~'
    ));
/// Bytes allowed inside a field value: VCHAR, obs-text, SP, HTAB.
pub(super) static FIELD_VALUE: [bool; 256] = byte_table!(|c| c == HTAB || (c >= 0x20 && c != 0x7f));
/// Bytes allowed in a request target: visible ASCII; a fragment is never sent
/// in a request target.
pub(super) static TARGET: [bool; 256] = byte_table!(|c| c > 0x20 && c < 0x7f && c != b'#');
/// Bytes of a registered name (host) in an authority: unreserved, sub-delims,
/// pct-encoded (RFC 3986 3.2.2).
pub(super) static REG_NAME: [bool; 256] = byte_table!(|c| c.is_ascii_alphanumeric()
    || matches!(
        c,
        b'-' | b'.'
            | b'_'
            | b'~'
            | b'!'
            | b'$'
            | b'&'
            | b'\''
            | b'('
            | b')'
            | b'*'
            | b'+'
            | b','
            | b';'
            | b'='
            | b'%'
    ));

/// True if `s` is a non-empty token.
pub(super) fn is_token(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&b| TCHAR[b as usize])
}

/// `s` without leading and trailing SP/HTAB.
pub(super) fn trim_ows(s: &[u8]) -> &[u8] {
    let mut a = 0;
    let mut b = s.len();
    while a < b && matches!(s[a], SP | HTAB) {
        a += 1;
    }
    while b > a && matches!(s[b - 1], SP | HTAB) {
        b -= 1;
    }
    &s[a..b]
}

/// The non-empty, OWS-trimmed elements of a comma-separated list (RFC 9110 5.6.1).
pub(super) fn list_elements(s: &[u8]) -> impl Iterator<Item = &[u8]> {
    s.split(|&b| b == b',')
        .map(trim_ows)
        .filter(|e| !e.is_empty())
}

/// Splits an authority `host[:port]` into its host (brackets of an IP literal
/// removed) and port, or `None` if it is malformed. An empty authority gives an
/// empty host.
pub(super) fn split_authority(a: &[u8]) -> Option<(&[u8], Option<&[u8]>)> {
    let (host, rest) = if let Some(inner) = a.strip_prefix(b"[") {
        let close = inner.iter().position(|&b| b == b']')?;
        let lit = &inner[..close];
        let ok = !lit.is_empty()
            && lit
                .iter()
                .all(|&b| b.is_ascii_hexdigit() || b == b':' || b == b'.');
        if !ok {
            return None;
        }
        (lit, &inner[close + 1..])
    } else {
        let end = a.iter().position(|&b| b == b':').unwrap_or(a.len());
        let host = &a[..end];
        if !host.iter().all(|&b| REG_NAME[b as usize]) {
            return None;
        }
        (host, &a[end..])
    };
    if rest.is_empty() {
        return Some((host, None));
    }
    let port = rest.strip_prefix(b":")?;
    if port.len() > 5 || !port.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some((host, Some(port)))
}

/// Case-insensitive ASCII comparison of a name with a lowercase literal.
#[inline]
pub(super) fn name_is(name: &[u8], lower: &[u8]) -> bool {
    name.len() == lower.len() && name.eq_ignore_ascii_case(lower)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authority_forms() {
        assert_eq!(
            split_authority(b"example.com"),
            Some((&b"example.com"[..], None))
        );
        assert_eq!(
            split_authority(b"example.com:8080"),
            Some((&b"example.com"[..], Some(&b"8080"[..])))
        );
        assert_eq!(
            split_authority(b"[::1]:80"),
            Some((&b"::1"[..], Some(&b"80"[..])))
        );
        assert_eq!(split_authority(b"[::1]"), Some((&b"::1"[..], None)));
        assert_eq!(split_authority(b""), Some((&b""[..], None)));
        assert_eq!(split_authority(b"a b"), None);
        assert_eq!(split_authority(b"a/b"), None);
        assert_eq!(split_authority(b"u@h"), None);
        assert_eq!(split_authority(b"h:80x"), None);
        assert_eq!(split_authority(b"h:123456"), None);
        assert_eq!(split_authority(b"[::1"), None);
        assert_eq!(split_authority(b"[]"), None);
        assert_eq!(split_authority(b"[::1]x"), None);
    }

    #[test]
    fn lists() {
        let v: Vec<&[u8]> = list_elements(b" a ,, b\t,c ").collect();
        assert_eq!(v, vec![&b"a"[..], b"b", b"c"]);
        assert!(is_token(b"chunked"));
        assert!(!is_token(b"chun ked"));
        assert!(!is_token(b""));
    }
}
