//! Validation of a chunked body passing through the proxy.

use super::syntax::{CR, FIELD_VALUE, HTAB, LF, SP, TCHAR};
use super::ParseError;

/// Longest chunk-size line (size and extensions) accepted, so extensions
/// cannot make a peer scan without end.
const MAX_SIZE_LINE: u32 = 4096;
/// Most hex digits of a chunk size: 16 cannot overflow a u64.
const MAX_SIZE_DIGITS: u8 = 16;

/// What one call to [`ChunkedScanner::scan`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkScan {
    /// Bytes of the input that belong to the body (to be forwarded as they are).
    pub consumed: usize,
    /// The last chunk and the trailer section ended within those bytes.
    pub complete: bool,
}

/// Where the scanner is in the chunked grammar (RFC 9112 7.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before the first hex digit of a chunk size.
    SizeStart,
    /// Within the hex digits.
    Size,
    /// BWS that must be followed by `;`.
    ExtBwsBeforeSemi,
    /// After `;`, before the extension name.
    ExtBeforeName,
    /// Within an extension name.
    ExtName,
    /// BWS after a name: `=` or `;` must follow.
    ExtBwsAfterName,
    /// After `=`, before the value.
    ExtBeforeValue,
    /// Within a token value.
    ExtTokenValue,
    /// Within a quoted-string value.
    ExtQuoted,
    /// After a backslash in a quoted string.
    ExtQuotedPair,
    /// After the closing quote.
    ExtAfterQuoted,
    /// After the CR of the size line.
    SizeLf,
    /// Within chunk data.
    Data,
    /// Expecting the CR after chunk data.
    DataCr,
    /// Expecting the LF after chunk data.
    DataLf,
    /// At the start of a trailer line (or the final CRLF).
    TrailerStart,
    /// Within a trailer field name.
    TrailerName,
    /// Within a trailer field value.
    TrailerValue,
    /// After the CR of a trailer line.
    TrailerLf,
    /// After the CR of the final empty line.
    EndLf,
    /// The body has ended.
    Done,
    /// The body was malformed; every later call fails the same way.
    Failed(ParseError),
}

/// Walks a chunked body incrementally, checking its framing without copying it:
/// the proxy forwards validated bytes verbatim and knows exactly where the
/// message ends (the next pipelined message starts after `consumed`).
#[derive(Debug, Clone)]
pub struct ChunkedScanner {
    state: State,
    /// Size of the chunk being read, then data bytes still expected.
    remaining: u64,
    digits: u8,
    line_len: u32,
    trailer_len: usize,
    max_trailer: usize,
}

impl ChunkedScanner {
    /// A scanner at the start of a body; trailers are limited to `max_trailer` bytes.
    pub fn new(max_trailer: usize) -> Self {
        Self {
            state: State::SizeStart,
            remaining: 0,
            digits: 0,
            line_len: 0,
            trailer_len: 0,
            max_trailer,
        }
    }

    /// Scans the next bytes of the body.
    ///
    /// On success, `consumed` is `input.len()` unless the body ended earlier.
    /// After an error the scanner stays failed.
    pub fn scan(&mut self, input: &[u8]) -> Result<ChunkScan, ParseError> {
        self.scan_data(input, |_| {})
    }

    /// Like [`ChunkedScanner::scan`], handing the chunk data found (without the
    /// framing) to `on_data`, in order, as it is found.
    pub fn scan_data(
        &mut self,
        input: &[u8],
        on_data: impl FnMut(&[u8]),
    ) -> Result<ChunkScan, ParseError> {
        match self.run(input, on_data) {
            Ok(consumed) => Ok(ChunkScan {
                consumed,
                complete: self.state == State::Done,
            }),
            Err(e) => {
                self.state = State::Failed(e);
                Err(e)
            }
        }
    }

    /// True once the whole body has been seen.
    pub fn is_complete(&self) -> bool {
        self.state == State::Done
    }

    fn run(&mut self, input: &[u8], mut on_data: impl FnMut(&[u8])) -> Result<usize, ParseError> {
        let mut i = 0;
        while i < input.len() {
            match self.state {
                State::Done => return Ok(i),
                State::Failed(e) => return Err(e),
                State::Data => {
                    // Bulk skip: chunk data is forwarded untouched.
                    let avail = (input.len() - i) as u64;
                    let take = avail.min(self.remaining);
                    // `take <= avail`, which came from a usize.
                    let end = i + usize::try_from(take).unwrap_or(input.len() - i);
                    on_data(&input[i..end]);
                    i = end;
                    self.remaining -= take;
                    if self.remaining == 0 {
                        self.state = State::DataCr;
                    }
                }
                State::TrailerStart
                | State::TrailerName
                | State::TrailerValue
                | State::TrailerLf
                | State::EndLf => {
                    let b = input[i];
                    // The limit covers the field lines, not the final CRLF.
                    let final_line = self.state == State::EndLf
                        || (self.state == State::TrailerStart && b == CR);
                    if !final_line {
                        self.trailer_len += 1;
                        if self.trailer_len > self.max_trailer {
                            return Err(ParseError::BadTrailer);
                        }
                    }
                    self.state = trailer_step(self.state, b)?;
                    i += 1;
                }
                _ => {
                    self.size_line_step(input[i])?;
                    i += 1;
                }
            }
        }
        match self.state {
            State::Failed(e) => Err(e),
            _ => Ok(i),
        }
    }

    /// One byte of a chunk-size line or a data terminator.
    fn size_line_step(&mut self, b: u8) -> Result<(), ParseError> {
        use State::*;
        let bad = Err(ParseError::BadChunk);
        if matches!(self.state, SizeStart) {
            self.line_len = 0;
            self.digits = 0;
            self.remaining = 0;
        }
        self.line_len += 1;
        if self.line_len > MAX_SIZE_LINE {
            return bad;
        }
        let is_ws = b == SP || b == HTAB;
        let is_tchar = TCHAR[b as usize];
        self.state = match (self.state, b) {
            (SizeStart | Size, _) if b.is_ascii_hexdigit() => {
                if self.digits == MAX_SIZE_DIGITS {
                    return bad;
                }
                self.digits += 1;
                let digit = u64::from((b as char).to_digit(16).unwrap_or(0));
                self.remaining = (self.remaining << 4) | digit;
                Size
            }
            (Size, b';') => ExtBeforeName,
            (Size, CR) => SizeLf,
            (Size, _) if is_ws => ExtBwsBeforeSemi,
            (ExtBwsBeforeSemi, b';') => ExtBeforeName,
            (ExtBwsBeforeSemi, _) if is_ws => ExtBwsBeforeSemi,
            (ExtBeforeName, _) if is_ws => ExtBeforeName,
            (ExtBeforeName, _) if is_tchar => ExtName,
            (ExtName, _) if is_tchar => ExtName,
            (ExtName, b'=') | (ExtBwsAfterName, b'=') => ExtBeforeValue,
            (ExtName, b';') | (ExtBwsAfterName, b';') => ExtBeforeName,
            (ExtName, CR) => SizeLf,
            (ExtName, _) | (ExtBwsAfterName, _) if is_ws => ExtBwsAfterName,
            (ExtBeforeValue, _) if is_ws => ExtBeforeValue,
            (ExtBeforeValue, b'"') => ExtQuoted,
            (ExtBeforeValue, _) if is_tchar => ExtTokenValue,
            (ExtTokenValue, _) if is_tchar => ExtTokenValue,
            (ExtTokenValue, b';') | (ExtAfterQuoted, b';') => ExtBeforeName,
            (ExtTokenValue, CR) | (ExtAfterQuoted, CR) => SizeLf,
            (ExtTokenValue, _) | (ExtAfterQuoted, _) if is_ws => ExtBwsBeforeSemi,
            (ExtQuoted, b'"') => ExtAfterQuoted,
            (ExtQuoted, b'\\') => ExtQuotedPair,
            (ExtQuoted, _) if FIELD_VALUE[b as usize] => ExtQuoted,
            (ExtQuotedPair, _) if FIELD_VALUE[b as usize] => ExtQuoted,
            (SizeLf, LF) if self.remaining == 0 => {
                self.trailer_len = 0;
                TrailerStart
            }
            (SizeLf, LF) => Data,
            (DataCr, CR) => DataLf,
            (DataLf, LF) => SizeStart,
            _ => return bad,
        };
        Ok(())
    }
}

/// One byte of the trailer section.
fn trailer_step(state: State, b: u8) -> Result<State, ParseError> {
    use State::*;
    let next = match (state, b) {
        (TrailerStart, CR) => EndLf,
        (TrailerStart, _) | (TrailerName, _) if TCHAR[b as usize] => TrailerName,
        (TrailerName, b':') => TrailerValue,
        (TrailerValue, CR) => TrailerLf,
        (TrailerValue, _) if FIELD_VALUE[b as usize] => TrailerValue,
        (TrailerLf, LF) => TrailerStart,
        (EndLf, LF) => Done,
        _ => return Err(ParseError::BadTrailer),
    };
    Ok(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan_all(body: &[u8]) -> Result<ChunkScan, ParseError> {
        ChunkedScanner::new(1024).scan(body)
    }

    #[test]
    fn simple_body() {
        let body = b"5\r\nhello\r\n0\r\n\r\nNEXT";
        assert_eq!(
            scan_all(body),
            Ok(ChunkScan {
                consumed: body.len() - 4,
                complete: true
            })
        );
    }

    #[test]
    fn byte_at_a_time() {
        let body = b"a;x=\"q\\\"\"\r\n0123456789\r\n0\r\nT: v\r\n\r\n";
        let mut s = ChunkedScanner::new(64);
        for (i, b) in body.iter().enumerate() {
            let r = s.scan(std::slice::from_ref(b)).expect("valid");
            assert_eq!(r.consumed, 1);
            assert_eq!(r.complete, i == body.len() - 1);
        }
        assert!(s.is_complete());
        assert_eq!(
            s.scan(b"more"),
            Ok(ChunkScan {
                consumed: 0,
                complete: true
            })
        );
    }

    #[test]
    fn any_split_gives_the_data() {
        let body = b"5;ext=1\r\nhello\r\nA\r\n0123456789\r\n0\r\nx-t: 1\r\n\r\nNEXT";
        let mut rng = fastrand::Rng::with_seed(11);
        for _ in 0..500 {
            let mut s = ChunkedScanner::new(64);
            let mut data = Vec::new();
            let mut rest: &[u8] = body;
            while !s.is_complete() {
                let n = rng.usize(1..=rest.len());
                let scan = s
                    .scan_data(&rest[..n], |d| data.extend_from_slice(d))
                    .expect("valid");
                rest = &rest[scan.consumed..];
            }
            assert_eq!(data, b"hello0123456789");
            assert_eq!(rest, b"NEXT");
        }
    }

    #[test]
    fn failure_is_sticky() {
        let mut s = ChunkedScanner::new(64);
        assert_eq!(s.scan(b"z\r\n"), Err(ParseError::BadChunk));
        assert_eq!(s.scan(b"0\r\n\r\n"), Err(ParseError::BadChunk));
    }
}
