//! W3C Trace Context (`traceparent`): parsing, validation and child spans.
//!
//! Format (version 00): `00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>`, lower-case
//! hex, neither id all zeros. Parsing is strict for version 00; a higher version is accepted
//! when its first four fields are well formed (the spec's forward-compatibility rule), and
//! what follows them is ignored.

use std::fmt;

/// Length of a version-00 `traceparent` value.
pub const TRACEPARENT_LEN: usize = 55;

/// The sampled flag of `trace-flags`.
pub const FLAG_SAMPLED: u8 = 0x01;

/// One hop of a distributed trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceContext {
    /// 16-byte trace id shared by every span of the trace (never all zeros).
    pub trace_id: [u8; 16],
    /// 8-byte id of the current span (never all zeros).
    pub span_id: [u8; 8],
    /// `trace-flags` (bit 0: sampled).
    pub flags: u8,
}

/// Why a `traceparent` value was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseError {
    /// Wrong length or separators.
    Shape,
    /// A field is not lower-case hex.
    Hex,
    /// Version `ff` is forbidden.
    Version,
    /// The trace id or the parent id is all zeros.
    ZeroId,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ParseError::Shape => "traceparent: not of the form vv-<32 hex>-<16 hex>-<2 hex>",
            ParseError::Hex => "traceparent: fields must be lower-case hexadecimal",
            ParseError::Version => "traceparent: version ff is invalid",
            ParseError::ZeroId => "traceparent: trace id and parent id must not be all zeros",
        })
    }
}

impl std::error::Error for ParseError {}

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

fn decode<const N: usize>(hex: &[u8]) -> Result<[u8; N], ParseError> {
    let mut out = [0u8; N];
    for (byte, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
        let high = hex_value(pair[0]).ok_or(ParseError::Hex)?;
        let low = hex_value(pair[1]).ok_or(ParseError::Hex)?;
        *byte = (high << 4) | low;
    }
    Ok(out)
}

fn random_nonzero<const N: usize>() -> [u8; N] {
    loop {
        let mut id = [0u8; N];
        for chunk in id.chunks_mut(8) {
            let bytes = fastrand::u64(..).to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
        if id.iter().any(|&b| b != 0) {
            return id;
        }
    }
}

impl TraceContext {
    /// A new sampled root span with random ids.
    pub fn new_root() -> Self {
        Self {
            trace_id: random_nonzero(),
            span_id: random_nonzero(),
            flags: FLAG_SAMPLED,
        }
    }

    /// Parses a `traceparent` header value.
    pub fn parse(value: &str) -> Result<Self, ParseError> {
        let bytes = value.as_bytes();
        let well_shaped = bytes.len() >= TRACEPARENT_LEN
            && bytes[2] == b'-'
            && bytes[35] == b'-'
            && bytes[52] == b'-';
        if !well_shaped {
            return Err(ParseError::Shape);
        }
        let [version] = decode::<1>(&bytes[0..2])?;
        if version == 0xff {
            return Err(ParseError::Version);
        }
        // Version 00 has exactly four fields; later versions may append "-..." fields.
        if (version == 0 && bytes.len() != TRACEPARENT_LEN)
            || (bytes.len() > TRACEPARENT_LEN && bytes[TRACEPARENT_LEN] != b'-')
        {
            return Err(ParseError::Shape);
        }
        let trace_id = decode::<16>(&bytes[3..35])?;
        let span_id = decode::<8>(&bytes[36..52])?;
        let [flags] = decode::<1>(&bytes[53..55])?;
        if trace_id == [0; 16] || span_id == [0; 8] {
            return Err(ParseError::ZeroId);
        }
        Ok(Self {
            trace_id,
            span_id,
            flags,
        })
    }

    /// The context for a call made from this span: same trace and flags, a new span id.
    pub fn child(&self) -> Self {
        Self {
            span_id: random_nonzero(),
            ..*self
        }
    }

    /// Whether the sampled flag is set.
    pub fn sampled(&self) -> bool {
        self.flags & FLAG_SAMPLED != 0
    }
}

impl fmt::Display for TraceContext {
    /// Formats as a version-00 `traceparent` value.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("00-")?;
        self.trace_id
            .iter()
            .try_for_each(|b| write!(f, "{b:02x}"))?;
        f.write_str("-")?;
        self.span_id.iter().try_for_each(|b| write!(f, "{b:02x}"))?;
        write!(f, "-{:02x}", self.flags)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn parses_and_formats_the_spec_example() {
        let context = TraceContext::parse(EXAMPLE).unwrap();
        assert_eq!(context.trace_id[0], 0x4b);
        assert_eq!(context.span_id[7], 0xb7);
        assert!(context.sampled());
        assert_eq!(context.to_string(), EXAMPLE);
    }

    #[test]
    fn refuses_malformed_values() {
        let cases = [
            ("", ParseError::Shape),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",
                ParseError::Shape,
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
                ParseError::Shape,
            ),
            (
                "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
                ParseError::Hex,
            ),
            (
                "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                ParseError::Version,
            ),
            (
                "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
                ParseError::ZeroId,
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
                ParseError::ZeroId,
            ),
            (
                "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                ParseError::Shape,
            ),
        ];
        for (value, error) in cases {
            assert_eq!(TraceContext::parse(value), Err(error), "{value:?}");
        }
    }

    #[test]
    fn future_versions_keep_the_first_fields() {
        let value = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra";
        assert!(TraceContext::parse(value).is_ok());
    }

    #[test]
    fn children_share_the_trace_and_round_trip() {
        let root = TraceContext::new_root();
        let child = root.child();
        assert_eq!(child.trace_id, root.trace_id);
        assert_ne!(child.span_id, root.span_id);
        assert_eq!(TraceContext::parse(&child.to_string()), Ok(child));
        assert_eq!(child.to_string().len(), TRACEPARENT_LEN);
    }

    #[test]
    fn arbitrary_input_never_panics() {
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..20_000 {
            let len = rng.usize(..70);
            let value: String = (0..len)
                .map(|_| *rng.choice(b"0123456789abcdefABX-_ ".iter()).unwrap() as char)
                .collect();
            if let Ok(context) = TraceContext::parse(&value) {
                assert_ne!(context.trace_id, [0; 16]);
            }
        }
    }
}
