//! Extraction of the data of a chunked body whose framing
//! [`crate::http1::ChunkedScanner`] already validated, for HTTP/1.0 clients
//! (which cannot receive the chunked coding).

/// Where the extractor is in the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading the hex size.
    Size(u64),
    /// Skipping a chunk extension up to the LF ending the size line.
    SizeLine(u64),
    /// Inside chunk data, this much left.
    Data(u64),
    /// Skipping the CRLF after chunk data.
    DataEnd,
    /// In the trailer section: `at_line_start` and whether the line is empty so far.
    Trailer { line_len: usize },
    /// The body ended.
    Done,
}

/// Turns validated chunked bytes into the data they carry.
#[derive(Debug, Clone)]
pub(crate) struct Dechunker {
    state: State,
}

impl Default for Dechunker {
    fn default() -> Self {
        Self {
            state: State::Size(0),
        }
    }
}

impl Dechunker {
    /// Appends the data carried by `input` (validated body bytes) to `out`.
    pub(crate) fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) {
        let mut i = 0;
        while i < input.len() {
            match self.state {
                State::Size(n) => {
                    let b = input[i];
                    i += 1;
                    match b {
                        b'0'..=b'9' => self.state = State::Size(n * 16 + u64::from(b - b'0')),
                        b'a'..=b'f' => self.state = State::Size(n * 16 + u64::from(b - b'a' + 10)),
                        b'A'..=b'F' => self.state = State::Size(n * 16 + u64::from(b - b'A' + 10)),
                        b'\n' => self.state = Self::after_size(n),
                        _ => self.state = State::SizeLine(n),
                    }
                }
                State::SizeLine(n) => {
                    if input[i] == b'\n' {
                        self.state = Self::after_size(n);
                    }
                    i += 1;
                }
                State::Data(left) => {
                    let take = left.min((input.len() - i) as u64) as usize;
                    out.extend_from_slice(&input[i..i + take]);
                    i += take;
                    let left = left - take as u64;
                    self.state = if left == 0 {
                        State::DataEnd
                    } else {
                        State::Data(left)
                    };
                }
                State::DataEnd => {
                    if input[i] == b'\n' {
                        self.state = State::Size(0);
                    }
                    i += 1;
                }
                State::Trailer { line_len } => {
                    let b = input[i];
                    i += 1;
                    self.state = match b {
                        b'\n' if line_len == 0 => State::Done,
                        b'\n' => State::Trailer { line_len: 0 },
                        b'\r' => State::Trailer { line_len },
                        _ => State::Trailer {
                            line_len: line_len + 1,
                        },
                    };
                }
                State::Done => return,
            }
        }
    }

    fn after_size(n: u64) -> State {
        if n == 0 {
            State::Trailer { line_len: 0 }
        } else {
            State::Data(n)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_split_gives_the_data() {
        let body = b"5;ext=1\r\nhello\r\nA\r\n0123456789\r\n0\r\nx-t: 1\r\n\r\n";
        let mut rng = fastrand::Rng::with_seed(11);
        for _ in 0..500 {
            let mut d = Dechunker::default();
            let mut out = Vec::new();
            let mut rest: &[u8] = body;
            while !rest.is_empty() {
                let n = rng.usize(1..=rest.len());
                d.feed(&rest[..n], &mut out);
                rest = &rest[n..];
            }
            assert_eq!(out, b"hello0123456789");
            assert_eq!(d.state, State::Done);
        }
    }
}
