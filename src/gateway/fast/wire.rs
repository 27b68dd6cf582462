//! HTTP/1.1 on the wire for the fast lane: which request heads it may take, and how an
//! upstream's response head is framed and re-encoded for the client ([`chunked`] finds
//! where a chunked body ends). Pure functions over byte slices; parsing itself is httparse's (hyper's parser).
//!
//! The rules lean towards declining: anything this module is not sure of (a body, an
//! upgrade, `Expect`, `Connection: close`, HTTP/1.0, odd targets, bad header bytes) is left
//! to hyper, so request smuggling has no new surface here: the fast lane only ever forwards
//! body-less GET and HEAD requests.

pub mod chunked;

pub use chunked::ChunkScanner;

use super::super::framing::{self, FramingError, HeadFacts};
use super::super::headers::{
    connection_tokens, response_drops, BodyFraming, HeaderView, RawHeaders,
};
use bytes::{Bytes, BytesMut};
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::uri::PathAndQuery;
use http::{Method, StatusCode};

/// Most headers a head may carry (hyper's default limit too).
pub const MAX_HEADERS: usize = 100;
pub use super::super::framing::MAX_RESPONSE_HEAD;

/// A request head the fast lane takes.
#[derive(Debug)]
pub struct RequestHead {
    /// Bytes of the head (request line through the empty line) at the front of the buffer.
    pub len: usize,
    pub method: Method,
    pub target: PathAndQuery,
    /// The header lines where they lie in the buffer (no map is built).
    pub headers: RawHeaders,
}

/// What the front of a client's buffer holds.
#[derive(Debug)]
pub enum ParsedRequest {
    Complete(RequestHead),
    /// The head has not fully arrived.
    Partial,
    /// Something the fast lane leaves to hyper (which also answers malformed requests).
    Decline,
}

/// Parses a request head and decides whether the fast lane may take it. The target and
/// header lines share `buf`'s memory. httparse takes only token names and values without
/// control bytes, which is what a `HeaderMap` takes (hyper, which parses with httparse too,
/// builds its values unchecked on that ground), so both engines read the same headers: the
/// fuzz targets `request_head` (every line taken is one a `HeaderMap` takes) and
/// `request_head_vs_hyper` hold them to it.
pub fn parse_request(buf: &Bytes) -> ParsedRequest {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut slots);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return ParsedRequest::Partial,
        Err(_) => return ParsedRequest::Decline,
    };
    let method = match req.method {
        Some("GET") => Method::GET,
        Some("HEAD") => Method::HEAD,
        _ => return ParsedRequest::Decline,
    };
    if req.version != Some(1) {
        return ParsedRequest::Decline;
    }
    let target = match req.path {
        Some(p) if p.starts_with('/') => {
            match PathAndQuery::from_maybe_shared(buf.slice_ref(p.as_bytes())) {
                Ok(pq) => pq,
                Err(_) => return ParsedRequest::Decline,
            }
        }
        _ => return ParsedRequest::Decline,
    };
    let mut headers = RawHeaders::with_capacity(buf.clone(), req.headers.len());
    for h in req.headers.iter() {
        let (name, value) = (h.name.as_bytes(), h.value);
        if declines_request_header(name, value) || !headers.push(name, value) {
            return ParsedRequest::Decline;
        }
    }
    ParsedRequest::Complete(RequestHead {
        len,
        method,
        target,
        headers,
    })
}

/// Headers that mean a body, a protocol switch, an interim response or the end of the
/// connection: hyper handles those.
fn declines_request_header(name: &[u8], value: &[u8]) -> bool {
    const DECLINED: [&[u8]; 4] = [
        b"content-length",
        b"transfer-encoding",
        b"upgrade",
        b"expect",
    ];
    if DECLINED.iter().any(|d| name.eq_ignore_ascii_case(d)) {
        return true;
    }
    if name.eq_ignore_ascii_case(b"connection") {
        // Only `keep-alive` (the HTTP/1.1 default anyway) stays on the fast lane.
        return !connection_tokens([value]).all(|t| t.eq_ignore_ascii_case(b"keep-alive"));
    }
    false
}

/// How the body of a response is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body (HEAD, 204, 304).
    Empty,
    /// `Content-Length` bytes.
    Length(u64),
    /// `Transfer-Encoding` ending in chunked: relayed verbatim up to the last chunk.
    Chunked,
    /// Until the upstream closes; the client connection closes after it too.
    UntilClose,
}

/// An upstream response head, re-encoded for the client.
#[derive(Debug)]
pub struct ResponseHead {
    /// Bytes of the upstream's head at the front of its buffer.
    pub len: usize,
    pub status: StatusCode,
    pub framing: Framing,
    /// The upstream connection may carry another request after this response.
    pub reusable: bool,
}

/// What the front of an upstream's buffer holds.
#[derive(Debug)]
pub enum ParsedResponse<H = ResponseHead> {
    Complete(H),
    /// A 1xx interim response of this many bytes: dropped, the final one follows.
    Interim(usize),
    Partial,
    /// Not a response this proxy can relay; the client gets 502.
    Invalid(&'static str),
    /// Framing the gateway refuses on both paths ([`framing::check`]); the client gets 502.
    Refused(FramingError),
}

/// What a buffer holds that is not a final head ([`read_response`]'s other answers).
type NotFinal = ParsedResponse<std::convert::Infallible>;

impl NotFinal {
    /// The same answer, for a parser whose complete head is `H`.
    fn map_head<H>(self) -> ParsedResponse<H> {
        match self {
            ParsedResponse::Complete(never) => match never {},
            ParsedResponse::Interim(len) => ParsedResponse::Interim(len),
            ParsedResponse::Partial => ParsedResponse::Partial,
            ParsedResponse::Invalid(why) => ParsedResponse::Invalid(why),
            ParsedResponse::Refused(fault) => ParsedResponse::Refused(fault),
        }
    }
}

/// Parses an upstream's response head and writes the client's version of it to `out`.
/// `head_request`: the request was HEAD, so there is no body whatever the headers say.
pub fn parse_response(buf: &[u8], head_request: bool, out: &mut Vec<u8>) -> ParsedResponse {
    parse_response_with(buf, head_request, &[], out)
}

/// [`parse_response`], with the headers in `set` in the client's version instead of any
/// the upstream sent under those names (the gateway's `X-Request-Id`).
pub fn parse_response_with(
    buf: &[u8],
    head_request: bool,
    set: &[(&HeaderName, &HeaderValue)],
    out: &mut Vec<u8>,
) -> ParsedResponse {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let Read {
        head,
        headers,
        reason,
        named,
    } = match read_response(buf, head_request, &mut slots) {
        Ok(read) => read,
        Err(other) => return other.map_head(),
    };
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(head.status.as_str().as_bytes());
    out.push(b' ');
    let reason = head
        .status
        .canonical_reason()
        .or(reason)
        .unwrap_or_default();
    out.extend_from_slice(reason.as_bytes());
    out.extend_from_slice(b"\r\n");
    for h in headers.iter() {
        // The chunked body is relayed as it came: its framing headers stay true.
        let drop = response_drops(h.name.as_bytes(), &named, BodyFraming::Verbatim)
            || set
                .iter()
                .any(|(name, _)| h.name.eq_ignore_ascii_case(name.as_str()));
        if !drop {
            out.extend_from_slice(h.name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(h.value);
            out.extend_from_slice(b"\r\n");
        }
    }
    for (name, value) in set {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if head.framing == Framing::UntilClose {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    ParsedResponse::Complete(head)
}

/// An upstream's response head as a header map, for an engine that frames the body anew
/// (the hyper path): the same parse and framing rules as [`parse_response_with`], the
/// headers [`response_drops`] with [`BodyFraming::Reframed`]. On `Complete` the head has
/// been taken off the front of `buf`; the map's values share its memory.
pub fn parse_response_map(
    buf: &mut BytesMut,
    head_request: bool,
) -> ParsedResponse<(ResponseHead, HeaderMap)> {
    // Where each kept line lies in the head: the map is built once the head is split off.
    let mut kept: Vec<(std::ops::Range<usize>, std::ops::Range<usize>)> = Vec::new();
    let head = {
        let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let Read {
            head,
            headers,
            named,
            ..
        } = match read_response(&buf[..], head_request, &mut slots) {
            Ok(read) => read,
            Err(other) => return other.map_head(),
        };
        let base = buf.as_ptr() as usize;
        let span = |s: &[u8]| {
            let at = s.as_ptr() as usize - base;
            at..at + s.len()
        };
        kept.reserve(headers.len());
        for h in headers.iter() {
            if !response_drops(h.name.as_bytes(), &named, BodyFraming::Reframed) {
                kept.push((span(h.name.as_bytes()), span(h.value)));
            }
        }
        head
    };
    let bytes = buf.split_to(head.len).freeze();
    let mut map = HeaderMap::with_capacity(kept.len());
    for (name, value) in kept {
        let name = HeaderName::from_bytes(&bytes[name]);
        let value = HeaderValue::from_maybe_shared(bytes.slice(value));
        match (name, value) {
            (Ok(name), Ok(value)) => {
                map.append(name, value);
            }
            _ => return ParsedResponse::Invalid("malformed response header"),
        }
    }
    ParsedResponse::Complete((head, map))
}

/// A final response head as [`read_response`] found it.
struct Read<'h, 'b> {
    head: ResponseHead,
    headers: &'h [httparse::Header<'b>],
    reason: Option<&'b str>,
    /// The tokens of its `Connection` lines: the headers they name stop here too.
    named: Vec<&'b [u8]>,
}

/// Parses a response head and applies the framing rules: the head's facts and lines, or
/// what the buffer holds instead of a final head. Inlined into both parsers: called
/// out of line it cost the fast lane ~1% of a request's instructions.
#[inline(always)]
fn read_response<'h, 'b>(
    buf: &'b [u8],
    head_request: bool,
    slots: &'h mut [httparse::Header<'b>; MAX_HEADERS],
) -> Result<Read<'h, 'b>, NotFinal> {
    let mut res = httparse::Response::new(slots);
    let len = match res.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() > MAX_RESPONSE_HEAD => {
            return Err(ParsedResponse::Invalid("response head too large"))
        }
        Ok(httparse::Status::Partial) => return Err(ParsedResponse::Partial),
        Err(_) => return Err(ParsedResponse::Invalid("malformed response head")),
    };
    let Some(status) = res.code.and_then(|c| StatusCode::from_u16(c).ok()) else {
        return Err(ParsedResponse::Invalid("bad status code"));
    };
    if status.is_informational() {
        // Neither engine sends an upgrade this way, so any 101 is refused.
        let facts = HeadFacts {
            head_len: len,
            ..HeadFacts::default()
        };
        return Err(match framing::check(status, facts, false) {
            Ok(()) => ParsedResponse::Interim(len),
            Err(fault) => ParsedResponse::Refused(fault),
        });
    }
    let http10 = res.version == Some(0);
    let (headers, reason) = (res.headers, res.reason);

    let mut connection_close = http10;
    let mut named: Vec<&[u8]> = Vec::new();
    let mut chunked = false;
    let mut has_te = false;
    let mut has_length = false;
    let mut length: Option<u64> = None;
    for h in headers.iter() {
        if h.name.eq_ignore_ascii_case("connection") {
            for token in connection_tokens([h.value]) {
                if token.eq_ignore_ascii_case(b"close") {
                    connection_close = true;
                } else if token.eq_ignore_ascii_case(b"keep-alive") && http10 {
                    connection_close = false;
                }
                named.push(token);
            }
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            has_te = true;
            // Only the last coding decides (RFC 9112 §6.3).
            chunked = std::str::from_utf8(h.value).is_ok_and(|v| {
                v.rsplit(',')
                    .next()
                    .is_some_and(|c| c.trim().eq_ignore_ascii_case("chunked"))
            });
        } else if h.name.eq_ignore_ascii_case("content-length") {
            has_length = true;
            match parse_content_length(h.value) {
                Some(n) if length.is_none_or(|l| l == n) => length = Some(n),
                _ => return Err(ParsedResponse::Invalid("bad Content-Length")),
            }
        }
    }
    let facts = HeadFacts {
        http10,
        transfer_encoding: has_te,
        content_length: has_length,
        upgrade_websocket: false,
        head_len: len,
    };
    if let Err(fault) = framing::check(status, facts, false) {
        return Err(ParsedResponse::Refused(fault));
    }
    let framing =
        if head_request || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
            Framing::Empty
        } else if has_te {
            if chunked {
                Framing::Chunked
            } else {
                Framing::UntilClose
            }
        } else if let Some(n) = length {
            Framing::Length(n)
        } else {
            Framing::UntilClose
        };
    let head = ResponseHead {
        len,
        status,
        framing,
        reusable: !connection_close && framing != Framing::UntilClose,
    };
    Ok(Read {
        head,
        headers,
        reason,
        named,
    })
}

/// `Content-Length`: digits, or a list of identical values (RFC 9110 §8.6).
#[inline(always)]
fn parse_content_length(value: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(value).ok()?;
    let mut result: Option<u64> = None;
    for part in text.split(',') {
        let part = part.trim();
        if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let n: u64 = part.parse().ok()?;
        if result.is_some_and(|r| r != n) {
            return None;
        }
        result = Some(n);
    }
    result
}

/// Writes a whole response we produced (an error) as HTTP/1.1; no body for HEAD.
pub fn encode_response(response: &http::Response<Bytes>, head_request: bool, out: &mut Vec<u8>) {
    let status = response.status();
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or_default().as_bytes());
    out.extend_from_slice(b"\r\n");
    encode_headers(response.headers(), out);
    out.extend_from_slice(b"content-length: ");
    out.extend_from_slice(response.body().len().to_string().as_bytes());
    out.extend_from_slice(b"\r\n\r\n");
    if !head_request {
        out.extend_from_slice(response.body());
    }
}

/// Writes a request head with `headers` as they are.
pub fn encode_request(
    method: &Method,
    path_and_query: &str,
    host: &str,
    headers: &impl HeaderView,
    out: &mut Vec<u8>,
) {
    encode_request_with(
        method,
        path_and_query,
        host,
        |out| encode_headers(headers, out),
        out,
    );
}

/// Writes the request head the upstream receives: the request line, its `Host`, then the
/// header lines `write_headers` writes (the gateway's rewrite of the client's,
/// [`encode_prepared_request`](super::super::headers::encode_prepared_request)).
pub fn encode_request_with(
    method: &Method,
    path_and_query: &str,
    host: &str,
    write_headers: impl FnOnce(&mut Vec<u8>),
    out: &mut Vec<u8>,
) {
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(path_and_query.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\nhost: ");
    out.extend_from_slice(host.as_bytes());
    out.extend_from_slice(b"\r\n");
    write_headers(out);
    out.extend_from_slice(b"\r\n");
}

fn encode_headers(headers: &impl HeaderView, out: &mut Vec<u8>) {
    for (name, value) in headers.lines() {
        out.extend_from_slice(name);
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
}

#[cfg(test)]
mod tests;
