//! Where a chunked body (RFC 9112 §7.1) ends, found as its bytes stream past: the fast lane
//! relays them unchanged and only needs to know when the last chunk and the trailers have
//! gone by; the hyper path, which frames the body anew for its client, also takes where
//! each chunk's data lies and the trailer fields ([`ChunkScanner::advance_with`]). Size
//! lines are parsed by httparse; sizes, lines and trailers are bounded.
//!
//! Every line must end in CRLF, as hyper's decoder requires on the other path: the bytes go
//! to the client verbatim, and a client that took a bare LF for a line end (RFC 9112 §2.2
//! allows it to) would find a different end of the message than we did. So a bare LF, a
//! stray CR or a trailer line that is not a header field is an error, never an end.

/// Longest chunk-size line (with extensions) or trailer line accepted.
const MAX_CHUNK_LINE: usize = 4096;
/// Largest trailer section accepted.
const MAX_TRAILERS: usize = 16 * 1024;

/// Follows a chunked body (RFC 9112 §7.1) byte by byte as it streams past, to find where
/// the message ends; the bytes themselves are relayed unchanged.
#[derive(Debug, Default)]
pub struct ChunkScanner {
    state: ChunkState,
    /// The part of a size line or trailer line seen so far.
    line: Vec<u8>,
    trailer_bytes: usize,
    /// The trailer fields seen so far (each line with its CRLF), when they are kept.
    trailers: Option<Vec<u8>>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    #[default]
    Size,
    Data(u64),
    /// The CRLF after a chunk's data; the number says how many of its bytes came.
    DataEnd(u8),
    Trailers,
    Done,
}

/// A chunked body that cannot be relayed.
#[derive(Debug, PartialEq, Eq)]
pub struct ChunkError(pub &'static str);

impl ChunkScanner {
    /// A scanner that keeps the trailer fields ([`Self::take_trailers`]).
    pub fn keeping_trailers() -> Self {
        ChunkScanner {
            trailers: Some(Vec::new()),
            ..Self::default()
        }
    }

    /// Looks at the next bytes of the body; returns how many belong to it (fewer than
    /// `buf.len()` only when the body ended inside `buf`).
    pub fn advance(&mut self, buf: &[u8]) -> Result<usize, ChunkError> {
        self.advance_with(buf, |_| {})
    }

    /// [`Self::advance`], telling `data` where in `buf` each run of chunk data lies.
    pub fn advance_with(
        &mut self,
        buf: &[u8],
        mut data: impl FnMut(std::ops::Range<usize>),
    ) -> Result<usize, ChunkError> {
        let mut i = 0;
        while i < buf.len() {
            match self.state {
                ChunkState::Done => return Ok(i),
                ChunkState::Data(left) => {
                    let take = (buf.len() - i).min(usize::try_from(left).unwrap_or(usize::MAX));
                    data(i..i + take);
                    i += take;
                    let left = left - take as u64;
                    self.state = if left == 0 {
                        ChunkState::DataEnd(0)
                    } else {
                        ChunkState::Data(left)
                    };
                }
                ChunkState::DataEnd(seen) => {
                    let expected = if seen == 0 { b'\r' } else { b'\n' };
                    if buf[i] != expected {
                        return Err(ChunkError("chunk data not followed by CRLF"));
                    }
                    i += 1;
                    self.state = if seen == 0 {
                        ChunkState::DataEnd(1)
                    } else {
                        ChunkState::Size
                    };
                }
                ChunkState::Size => {
                    let (consumed, line_done) = self.take_line(&buf[i..], MAX_CHUNK_LINE)?;
                    i += consumed;
                    if line_done {
                        self.state = size_line(&self.line)?;
                        self.line.clear();
                    }
                }
                ChunkState::Trailers => {
                    let (consumed, line_done) = self.take_line(&buf[i..], MAX_CHUNK_LINE)?;
                    i += consumed;
                    self.trailer_bytes += consumed;
                    if self.trailer_bytes > MAX_TRAILERS {
                        return Err(ChunkError("trailers too large"));
                    }
                    if line_done {
                        if trailer_line(&mut self.line)? {
                            self.state = ChunkState::Done;
                        } else if let Some(trailers) = &mut self.trailers {
                            // `trailer_line` left the line with a second CRLF after it.
                            trailers.extend_from_slice(&self.line[..self.line.len() - 2]);
                        }
                        self.line.clear();
                    }
                }
            }
        }
        Ok(i)
    }

    /// The last chunk and the trailer section have gone past.
    pub fn is_done(&self) -> bool {
        self.state == ChunkState::Done
    }

    /// The trailer fields, once the body is done, if it had any and they were kept.
    pub fn take_trailers(&mut self) -> Option<http::HeaderMap> {
        let raw = self
            .trailers
            .take()
            .filter(|t| !t.is_empty() && self.is_done())?;
        let mut slots = [httparse::EMPTY_HEADER; super::MAX_HEADERS];
        let mut section = raw;
        section.extend_from_slice(b"\r\n");
        let Ok(httparse::Status::Complete((_, fields))) =
            httparse::parse_headers(&section, &mut slots)
        else {
            return None;
        };
        let mut map = http::HeaderMap::with_capacity(fields.len());
        for field in fields.iter() {
            if let (Ok(name), Ok(value)) = (
                http::HeaderName::from_bytes(field.name.as_bytes()),
                http::HeaderValue::from_bytes(field.value),
            ) {
                map.append(name, value);
            }
        }
        Some(map)
    }

    /// Adds bytes up to and including the next LF to `line`; says how many it took and
    /// whether the line is complete.
    fn take_line(&mut self, buf: &[u8], max: usize) -> Result<(usize, bool), ChunkError> {
        let (take, done) = match buf.iter().position(|&b| b == b'\n') {
            Some(at) => (at + 1, true),
            None => (buf.len(), false),
        };
        if self.line.len() + take > max {
            return Err(ChunkError("chunk line too long"));
        }
        self.line.extend_from_slice(&buf[..take]);
        Ok((take, done))
    }
}

/// A chunk-size line (RFC 9112 §7.1): at least one hex digit, extensions, CRLF. httparse
/// takes an empty size for 0 and a line without CRLF as unfinished; both are refused here.
fn size_line(line: &[u8]) -> Result<ChunkState, ChunkError> {
    if !line.first().is_some_and(u8::is_ascii_hexdigit) {
        return Err(ChunkError("chunk size line without a size"));
    }
    match httparse::parse_chunk_size(line) {
        Ok(httparse::Status::Complete((_, 0))) => Ok(ChunkState::Trailers),
        Ok(httparse::Status::Complete((_, n))) => Ok(ChunkState::Data(n)),
        _ => Err(ChunkError("bad chunk size line")),
    }
}

/// Checks one line of the trailer section (ending in LF); says whether it was the empty
/// line that ends the body. `line` is scratch space: it may be changed.
fn trailer_line(line: &mut Vec<u8>) -> Result<bool, ChunkError> {
    let Some(text) = line.strip_suffix(b"\r\n") else {
        return Err(ChunkError("trailer line not ended by CRLF"));
    };
    if text.is_empty() {
        return Ok(true);
    }
    if text.contains(&b'\r') {
        return Err(ChunkError("stray CR in a trailer line"));
    }
    // One header field and the end of a header section: what httparse takes as such is what
    // hyper's decoder would take.
    line.extend_from_slice(b"\r\n");
    let mut slot = [httparse::EMPTY_HEADER; 1];
    match httparse::parse_headers(line, &mut slot) {
        Ok(httparse::Status::Complete((n, fields))) if n == line.len() && fields.len() == 1 => {
            Ok(false)
        }
        _ => Err(ChunkError("trailer line is not a header field")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_scanner_finds_the_end_across_any_split() {
        let body = b"5;ext=1\r\nhello\r\n3\r\nabc\r\n0\r\nX-Trailer: t\r\n\r\nNEXT";
        let end = body.len() - 4;
        for split in 0..=body.len() {
            let mut scanner = ChunkScanner::default();
            let first = scanner.advance(&body[..split]).expect("valid");
            let second = scanner.advance(&body[first..]).expect("valid");
            assert!(scanner.is_done(), "split at {split}");
            assert_eq!(first + second, end, "split at {split}");
        }
    }

    #[test]
    fn chunk_scanner_gives_the_data_and_trailers_across_any_split() {
        let body = b"5;ext=1\r\nhello\r\n3\r\nabc\r\n0\r\nX-Trailer: t\r\nX-Two: 2\r\n\r\nNEXT";
        for split in 0..=body.len() {
            let mut scanner = ChunkScanner::keeping_trailers();
            let mut data = Vec::new();
            let first = scanner
                .advance_with(&body[..split], |r| data.extend_from_slice(&body[r]))
                .expect("valid");
            let rest = &body[first..];
            scanner
                .advance_with(rest, |r| data.extend_from_slice(&rest[r]))
                .expect("valid");
            assert_eq!(data, b"helloabc", "split at {split}");
            let trailers = scanner.take_trailers().expect("trailers");
            assert_eq!(
                trailers.get("x-trailer").map(|v| v.as_bytes()),
                Some(&b"t"[..])
            );
            assert_eq!(trailers.get("x-two").map(|v| v.as_bytes()), Some(&b"2"[..]));
        }
        let mut plain = ChunkScanner::keeping_trailers();
        plain.advance(b"2\r\nok\r\n0\r\n\r\n").expect("valid");
        assert!(plain.is_done() && plain.take_trailers().is_none());
    }

    #[test]
    fn chunk_scanner_without_trailers_and_byte_by_byte() {
        let body = b"2\r\nok\r\n0\r\n\r\n";
        let mut scanner = ChunkScanner::default();
        for (i, byte) in body.iter().enumerate() {
            assert!(!scanner.is_done(), "done early at {i}");
            assert_eq!(scanner.advance(std::slice::from_ref(byte)), Ok(1));
        }
        assert!(scanner.is_done());
    }

    #[test]
    fn chunk_scanner_refuses_bad_framing() {
        for bad in [&b"zz\r\n"[..], b"2\r\nokXX", &[b'1'; 5000]] {
            let mut scanner = ChunkScanner::default();
            assert!(
                scanner.advance(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    /// A body in which some line is not ended by CRLF is an error at that line, whichever
    /// way it is split, and never an end of the body.
    #[test]
    fn chunk_scanner_never_takes_a_bare_lf_or_a_bad_trailer_for_an_end() {
        let bad: [&[u8]; 14] = [
            b"5\nhello\r\n0\r\n\r\n",
            b"5;ext=1\nhello\r\n0\r\n\r\n",
            b"5\r\nhello\n0\r\n\r\n",
            b"5\r\nhello\r0\r\n\r\n",
            b"5\r\nhello\r\n0\n\r\n",
            b"5\r\nhello\r\n0\r\n\n",
            b"5\r\nhello\r\n0\r\nX-T: t\n\r\n",
            b"5\r\nhello\r\n0\r\nX-T: t\r\n\n",
            b"5\r\nhello\r\n0\r\nX-T: a\rb\r\n\r\n",
            b"5\r\nhello\r\n0\r\nno colon\r\n\r\n",
            b"5\r\nhello\r\n0\r\n folded\r\n\r\n",
            b"5\r\nhello\r\n\r\n",
            b"5\r\nhello\r\n;ext\r\n\r\n",
            b"5\r\nhello\r\n 0\r\n\r\n",
        ];
        for body in bad {
            for split in 0..=body.len() {
                let mut scanner = ChunkScanner::default();
                let result = scanner
                    .advance(&body[..split])
                    .and_then(|_| scanner.advance(&body[split..]));
                assert!(
                    result.is_err() && !scanner.is_done(),
                    "{:?} split at {split}",
                    String::from_utf8_lossy(body)
                );
            }
        }
    }
}
