//! The one authority (host and port) a request is for, decided once and then used for
//! routing, `X-Forwarded-Host` and anything logged, so that no two of them can disagree.
//!
//! RFC 9112 §3.2.2: an absolute-form target's authority wins over `Host`; RFC 9113 §8.3.1:
//! HTTP/2's `:authority` wins, and a `Host` beside it that names something else makes the
//! request malformed. RFC 9112 §3.2: an HTTP/1.1 request without `Host`, and any request with
//! two `Host` lines or an invalid one, is answered 400; an HTTP/2 request needs `:authority`
//! or `Host`. Pure: no IO, no hyper.
//!
//! "Valid" is `uri-host[:port]` (RFC 3986 §3.2.2) narrowed to what names a server: an IP
//! literal, or a name of letters, digits, `-`, `.`, `_` and `~`. RFC 3986 also lets a
//! reg-name hold sub-delims and %-escapes and be empty; no DNS name does, and an upstream
//! that splits `X-Forwarded-Host` on `,` (a list, when proxies are chained) would read
//! `good.example,evil.example` as another host than the one we routed on. No userinfo
//! (RFC 9110 §4.2.4), so `http://user@host/` as a target is refused too.

use super::headers::HeaderView;
use http::header::{HeaderValue, HOST};
use http::uri::Authority;
use http::Version;

/// Why a request's authority cannot be trusted (answered with 400).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthorityError {
    #[error("the request has no Host header")]
    MissingHost,
    #[error("the request has more than one Host header")]
    DuplicateHost,
    #[error("the Host header is not a valid host[:port]")]
    MalformedHost,
    #[error("the request target's authority is not a valid host[:port]")]
    MalformedTarget,
    #[error("the Host header names another authority than :authority")]
    ConflictingHost,
}

/// The authority of a request: `target` is the absolute-form target's or HTTP/2's
/// `:authority`, if any. `None` only for an HTTP/1.0 request that names none.
pub fn request_authority(
    version: Version,
    target: Option<&Authority>,
    headers: &impl HeaderView,
) -> Result<Option<HeaderValue>, AuthorityError> {
    let mut hosts = headers.values(HOST);
    let host = hosts.next();
    if hosts.next().is_some() {
        return Err(AuthorityError::DuplicateHost);
    }
    if host.is_some_and(|h| !is_valid(h)) {
        return Err(AuthorityError::MalformedHost);
    }
    if version == Version::HTTP_11 && host.is_none() {
        // Even beside an absolute-form target (RFC 9112 §3.2: "any HTTP/1.1 request").
        return Err(AuthorityError::MissingHost);
    }
    let Some(target) = target else {
        return match host {
            // A valid authority is a valid header value.
            Some(h) => headers
                .keep(h)
                .map(Some)
                .ok_or(AuthorityError::MalformedHost),
            None if version <= Version::HTTP_10 => Ok(None),
            None => Err(AuthorityError::MissingHost),
        };
    };
    if !is_valid(target.as_str().as_bytes()) {
        return Err(AuthorityError::MalformedTarget);
    }
    let conflicting = version >= Version::HTTP_2
        && host.is_some_and(|h| !h.eq_ignore_ascii_case(target.as_str().as_bytes()));
    if conflicting {
        return Err(AuthorityError::ConflictingHost);
    }
    HeaderValue::from_str(target.as_str())
        .map(Some)
        .map_err(|_| AuthorityError::MalformedTarget)
}

/// The authority of a request as hyper parsed it.
pub fn of_request<B>(req: &http::Request<B>) -> Result<Option<HeaderValue>, AuthorityError> {
    request_authority(req.version(), req.uri().authority(), req.headers())
}

/// `host[:port]` as the module comment narrows it.
pub fn is_valid(authority: &[u8]) -> bool {
    let (host_ok, port) = match authority.strip_prefix(b"[") {
        Some(rest) => {
            let Some(end) = rest.iter().position(|&b| b == b']') else {
                return false;
            };
            let literal = std::str::from_utf8(&rest[..end]);
            let ipv6 = literal.is_ok_and(|l| l.parse::<std::net::Ipv6Addr>().is_ok());
            (ipv6, &rest[end + 1..])
        }
        None => {
            let colon = authority
                .iter()
                .position(|&b| b == b':')
                .unwrap_or(authority.len());
            let (host, port) = authority.split_at(colon);
            (
                !host.is_empty() && host.iter().all(|&b| is_name_byte(b)),
                port,
            )
        }
    };
    host_ok
        && match port {
            [] => true,
            [b':', digits @ ..] => is_port(digits),
            _ => false,
        }
}

/// A byte of a host name or an IPv4 address.
fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// RFC 3986 allows an empty port (`host:`); beyond 65535 is no TCP port.
fn is_port(digits: &[u8]) -> bool {
    digits.len() <= 5
        && digits.iter().all(u8::is_ascii_digit)
        && digits
            .iter()
            .fold(0u32, |n, &d| n * 10 + u32::from(d - b'0'))
            <= 65535
}

#[cfg(test)]
mod tests;
