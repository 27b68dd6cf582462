//! Header rewriting between client and upstream; pure functions on `HeaderMap` (and, for
//! the fast lane, the request's rewrite written straight into its upstream head: [`wire`]).
//!
//! RFC 9110 §7.6.1: hop-by-hop headers, and any header the `Connection` header names,
//! belong to one connection and are dropped both ways (except `Upgrade` on a WebSocket
//! upgrade, the only protocol switch passed on: see [`is_upgrade_request`]). Both engines
//! read `Connection` with [`connection_tokens`] and drop response headers by
//! [`response_drops`], the one rule for what an upstream's answer loses on its way.
//! `X-Forwarded-For` is appended to; `X-Forwarded-Proto` and `X-Forwarded-Host` are
//! overwritten. Identity headers (`X-Auth-*`) are set only from a verified principal, so they
//! cannot be spoofed: every client header an upstream could read as one of them, or as
//! something else the gateway vouches for, is removed first, in any spelling (see
//! [`is_forged`]). Every request carries an `X-Request-Id` to the upstream: the caller's
//! when it is sane (1-128 visible ASCII characters, one header line), else a new random
//! one ([`request_id`]); the same id is echoed in the response and written in the access log.

mod view;
mod wire;

pub use view::{HeaderView, RawHeaders};
pub use wire::encode_prepared_request;

use crate::verify::IdentityHeaders;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Version};

pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
pub const X_AUTH_SUBJECT: HeaderName = HeaderName::from_static("x-auth-subject");
pub const X_AUTH_CLIENT_ID: HeaderName = HeaderName::from_static("x-auth-client-id");
pub const X_AUTH_SCOPE: HeaderName = HeaderName::from_static("x-auth-scope");
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The longest caller-sent `X-Request-Id` passed on (DESIGN.md: 1-128 visible ASCII).
pub const MAX_REQUEST_ID: usize = 128;

/// Always hop-by-hop (RFC 9110 §7.6.1, plus the legacy `Keep-Alive` and `Proxy-Connection`,
/// and `HTTP2-Settings`, which belongs to an h2c upgrade, RFC 7540 §3.2.1).
pub const HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    HeaderName::from_static("http2-settings"),
];

/// Facts about the client connection that the forwarded headers carry.
pub struct ForwardedFor<'a> {
    /// The peer's IP, pre-rendered once per connection.
    pub client_ip: &'a HeaderValue,
    /// `http` or `https`.
    pub proto: &'static HeaderValue,
    /// The request's one authority (`gateway::authority`), for `X-Forwarded-Host`.
    pub host: Option<HeaderValue>,
    /// The request's id ([`request_id`]), for `X-Request-Id`.
    pub request_id: &'a HeaderValue,
}

/// Rewrites a client's request headers for the upstream. [`encode_prepared_request`] writes
/// the same result straight into an HTTP/1.1 head.
pub fn prepare_request(
    headers: &mut HeaderMap,
    forwarded: ForwardedFor<'_>,
    identity: Option<&IdentityHeaders>,
    upgrade: bool,
) {
    // One pass over the names finds what needs removing; most requests carry none of it.
    let found = scan_request(headers);
    if found.hop_by_hop {
        strip_hop_by_hop(headers, upgrade);
    } else if upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
    if found.forged {
        remove_forged(headers);
    }
    // The upstream's Host comes from its own URL, like nginx's default `proxy_set_header Host
    // $proxy_host`; the request's authority travels in X-Forwarded-Host.
    headers.remove(header::HOST);
    append_forwarded_for(headers, forwarded.client_ip);
    headers.insert(X_FORWARDED_PROTO, forwarded.proto.clone());
    match forwarded.host {
        Some(host) => headers.insert(X_FORWARDED_HOST, host),
        None => headers.remove(X_FORWARDED_HOST),
    };
    // Replaces whatever the caller sent: the id was chosen from it by `request_id`.
    headers.insert(X_REQUEST_ID, forwarded.request_id.clone());
    // Whatever X-Auth-* the caller sent is gone already.
    if let Some(id) = identity {
        headers.insert(X_AUTH_SUBJECT, id.subject.clone());
        headers.insert(X_AUTH_CLIENT_ID, id.client_id.clone());
        headers.insert(X_AUTH_SCOPE, id.scope.clone());
    }
}

/// The id of a request with these headers: the caller's `X-Request-Id` when it is one
/// line of 1 to [`MAX_REQUEST_ID`] visible ASCII characters (copied, so the id does not
/// keep the request's buffer alive), else a new one ([`new_request_id`]).
pub fn request_id(headers: &impl HeaderView) -> HeaderValue {
    let mut given = headers.values(X_REQUEST_ID);
    match (given.next(), given.next()) {
        (Some(id), None) if is_sane_request_id(id) => {
            HeaderValue::from_bytes(id).unwrap_or_else(|_| new_request_id())
        }
        _ => new_request_id(),
    }
}

/// 1 to [`MAX_REQUEST_ID`] bytes, each visible ASCII (`!` to `~`): safe in a header, a log
/// line and a shell, and short enough not to bloat either.
pub fn is_sane_request_id(id: &[u8]) -> bool {
    (1..=MAX_REQUEST_ID).contains(&id.len()) && id.iter().all(|b| (0x21..=0x7e).contains(b))
}

/// A new request id: 128 random bits as 32 lower-case hex digits. The bits come from a
/// fast generator per thread (xoshiro, seeded by the OS), not the cryptographic one: an id
/// is no secret (a caller may send any sane id of its own and have it used), it only needs
/// to be unique, and the cryptographic generator cost more than the rest of making the id.
pub fn new_request_id() -> HeaderValue {
    use rand::{Rng, SeedableRng};
    thread_local! {
        static IDS: std::cell::RefCell<rand::rngs::SmallRng> =
            std::cell::RefCell::new(rand::rngs::SmallRng::from_os_rng());
    }
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let halves: [u64; 2] = IDS.with(|ids| ids.borrow_mut().random());
    let mut text = [0u8; 32];
    for (half, digits) in halves.iter().zip(text.chunks_exact_mut(16)) {
        for (i, digit) in digits.iter_mut().enumerate() {
            *digit = HEX[((half >> (60 - 4 * i)) & 0xf) as usize];
        }
    }
    // Hex digits are always a valid header value; the fallback only keeps a panic off the
    // request path.
    HeaderValue::from_bytes(&text).unwrap_or_else(|_| HeaderValue::from_static(ZERO_REQUEST_ID))
}

/// `value` for a response header that is new in every response (`X-Request-Id`), marked
/// so that HTTP/2 sends it as a literal never added to the HPACK table (RFC 7541 §6.2.3).
/// Indexed, each response's id would go into the client's dynamic table, push older
/// entries out, and lengthen the encoder's search of the entries of that name (some fifty
/// once the table is full of ids): about 4,000 instructions a response for a value that is
/// never sent twice. HTTP/1.1 writes the value as it is.
pub fn unindexed(mut value: HeaderValue) -> HeaderValue {
    value.set_sensitive(true);
    value
}

/// What [`new_request_id`] would give if hex digits were ever refused (they are not).
const ZERO_REQUEST_ID: &str = "00000000000000000000000000000000";

/// Who frames a relayed response body for the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    /// The engine frames the body anew (hyper): the upstream's `Transfer-Encoding` and
    /// `Trailer` went with the upstream's framing.
    Reframed,
    /// The body's bytes pass unchanged (the fast lane), so the upstream's
    /// `Transfer-Encoding` and `Trailer` stay true and stay.
    Verbatim,
}

/// The tokens of `Connection` header values (RFC 9110 §7.6.1: a comma-separated list,
/// case-insensitive), trimmed, empty elements skipped. Bytes, so that the fast lane reads
/// raw heads with it too: the gateway's one reader of `Connection`.
pub fn connection_tokens<'a>(
    values: impl IntoIterator<Item = &'a [u8]>,
) -> impl Iterator<Item = &'a [u8]> {
    values
        .into_iter()
        .flat_map(|v| v.split(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|t| !t.is_empty())
}

/// The one rule for an upstream's response header, on either engine: whether it stops at
/// the gateway. Hop-by-hop headers ([`HOP_BY_HOP`] and `Upgrade`) and those `connection`
/// (its [`connection_tokens`]) names stop, except the framing of the message the client
/// gets: `Content-Length` always (naming it in `Connection` cannot unframe a message), and
/// `Transfer-Encoding` and `Trailer` when the body is relayed verbatim.
pub fn response_drops(name: &[u8], connection: &[&[u8]], framing: BodyFraming) -> bool {
    // Most answers' headers (`date`, `server`, `content-type`, ...) have a length no
    // hop-by-hop or framing name has: one comparison instead of a dozen.
    if connection.is_empty() && !matches!(name.len(), 2 | 7 | 10 | 14 | 16..=19) {
        return false;
    }
    let kept_framing = name.eq_ignore_ascii_case(b"content-length")
        || (framing == BodyFraming::Verbatim
            && (name.eq_ignore_ascii_case(b"transfer-encoding")
                || name.eq_ignore_ascii_case(b"trailer")));
    if kept_framing {
        return false;
    }
    is_hop_by_hop_name(name) || connection.iter().any(|t| name.eq_ignore_ascii_case(t))
}

/// Rewrites an upstream's response headers for a client whose body hyper frames anew
/// ([`response_drops`] with [`BodyFraming::Reframed`]). On a WebSocket switch (`upgrade`)
/// the `Upgrade` header survives and `Connection: upgrade` is re-stated for the next hop.
pub fn prepare_response(headers: &mut HeaderMap, upgrade: bool) {
    // Most answers carry none of these: one pass over the names beats a dozen lookups.
    if headers.keys().any(is_hop_by_hop) {
        let named: Vec<&[u8]> = connection_tokens(
            headers
                .get_all(header::CONNECTION)
                .iter()
                .map(|v| v.as_bytes()),
        )
        .collect();
        let dropped: Vec<HeaderName> = headers
            .keys()
            .filter(|n| !(upgrade && *n == header::UPGRADE))
            .filter(|n| response_drops(n.as_str().as_bytes(), &named, BodyFraming::Reframed))
            .cloned()
            .collect();
        for name in dropped {
            headers.remove(name);
        }
    }
    if upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

/// True for the one protocol switch the gateway passes on: a WebSocket opening handshake
/// (RFC 6455 §4.1: an HTTP/1.1 `GET` with `Connection: upgrade` and `Upgrade: websocket`, that
/// one protocol and nothing beside it).
///
/// Any other request asking to switch is forwarded as a plain request, its `Upgrade`,
/// `HTTP2-Settings` and `Connection` headers dropped, as nginx does. h2c above all: an
/// upstream that took it would speak HTTP/2 with the client directly, and every later request
/// on that connection would pass the guard unseen. Refusing such requests instead would break
/// clients that offer h2c and carry on in HTTP/1.1 when it is not taken (`curl --http2`).
pub fn is_upgrade_request(method: &Method, version: Version, headers: &HeaderMap) -> bool {
    if method != Method::GET || version != Version::HTTP_11 {
        return false;
    }
    let mut protocols = headers.get_all(header::UPGRADE).iter();
    let only_websocket = match (protocols.next(), protocols.next()) {
        (Some(p), None) => p.as_bytes().trim_ascii().eq_ignore_ascii_case(b"websocket"),
        _ => false,
    };
    only_websocket
        && connection_tokens(
            headers
                .get_all(header::CONNECTION)
                .iter()
                .map(|v| v.as_bytes()),
        )
        .any(|t| t.eq_ignore_ascii_case(b"upgrade"))
}

fn is_hop_by_hop(name: &HeaderName) -> bool {
    name == header::UPGRADE || HOP_BY_HOP.contains(name)
}

/// [`is_hop_by_hop`] for a name as it came on the wire, in any case.
fn is_hop_by_hop_name(name: &[u8]) -> bool {
    name.eq_ignore_ascii_case(b"upgrade")
        || HOP_BY_HOP
            .iter()
            .any(|n| name.eq_ignore_ascii_case(n.as_str().as_bytes()))
}

/// Drops a request's hop-by-hop headers and those the `Connection` header names. On an
/// upgrade the `Upgrade` header survives and `Connection: upgrade` is re-stated for the
/// next hop.
fn strip_hop_by_hop(headers: &mut HeaderMap, upgrade: bool) {
    if headers.contains_key(header::CONNECTION) {
        let named: Vec<HeaderName> = connection_tokens(
            headers
                .get_all(header::CONNECTION)
                .iter()
                .map(|v| v.as_bytes()),
        )
        .filter_map(|t| HeaderName::from_bytes(t).ok())
        .collect();
        for name in named {
            if !(upgrade && name == header::UPGRADE) {
                headers.remove(name);
            }
        }
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
    if upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    } else {
        headers.remove(header::UPGRADE);
    }
}

/// What one pass over a request's header names found.
struct Found {
    hop_by_hop: bool,
    forged: bool,
}

fn scan_request(headers: &HeaderMap) -> Found {
    let mut found = Found {
        hop_by_hop: false,
        forged: false,
    };
    for name in headers.keys() {
        found.hop_by_hop |= is_hop_by_hop(name);
        found.forged |= is_forged(name.as_str().as_bytes());
    }
    found
}

/// A client header an upstream could take for something the gateway vouches for: any
/// `X-Auth-*` name (the identity headers, and any the gateway may set later), `Forwarded`,
/// `X-Real-IP`, `X-Original-URL` and `X-Rewrite-URL` (routing and client-address overrides
/// in common frameworks), and `X_Forwarded_For`/`_Proto`/`_Host`. Matched case-insensitively
/// with `_` read as `-`, because WSGI, CGI and their kin turn both into the same variable
/// (`X_Auth_Subject` and `X-Auth-Subject` are both `HTTP_X_AUTH_SUBJECT`). The `-` spellings
/// of `X-Forwarded-*` are not forged: they are appended to or overwritten instead.
pub fn is_forged(name: &[u8]) -> bool {
    // The common case ends here: few header names start with either letter.
    if !matches!(name.first(), Some(b'x' | b'X' | b'f' | b'F')) {
        return false;
    }
    const ALWAYS: [&[u8]; 4] = [
        b"forwarded",
        b"x-real-ip",
        b"x-original-url",
        b"x-rewrite-url",
    ];
    const UNDERSCORED: [&[u8]; 3] = [
        b"x-forwarded-for",
        b"x-forwarded-proto",
        b"x-forwarded-host",
    ];
    let prefix = b"x-auth-";
    (name.len() >= prefix.len() && same_name(&name[..prefix.len()], prefix))
        || ALWAYS.iter().any(|n| same_name(name, n))
        || (name.contains(&b'_') && UNDERSCORED.iter().any(|n| same_name(name, n)))
}

/// `name` spells `canonical` (lower case, with `-`), ignoring case and reading `_` as `-`.
fn same_name(name: &[u8], canonical: &[u8]) -> bool {
    name.len() == canonical.len()
        && name
            .iter()
            .zip(canonical)
            .all(|(&n, &c)| n.to_ascii_lowercase() == c || (n == b'_' && c == b'-'))
}

/// Removes every header [`is_forged`] matches (rare: only then is a list made).
fn remove_forged(headers: &mut HeaderMap) {
    let forged: Vec<HeaderName> = headers
        .keys()
        .filter(|n| is_forged(n.as_str().as_bytes()))
        .cloned()
        .collect();
    for name in forged {
        headers.remove(name);
    }
}

fn append_forwarded_for(headers: &mut HeaderMap, client_ip: &HeaderValue) {
    if !headers.contains_key(&X_FORWARDED_FOR) {
        headers.insert(X_FORWARDED_FOR, client_ip.clone());
        return;
    }
    let mut joined: Vec<u8> = Vec::new();
    for v in headers.get_all(&X_FORWARDED_FOR) {
        joined.extend_from_slice(v.as_bytes());
        joined.extend_from_slice(b", ");
    }
    joined.extend_from_slice(client_ip.as_bytes());
    match HeaderValue::from_bytes(&joined) {
        Ok(v) => {
            headers.insert(X_FORWARDED_FOR, v);
        }
        // Values came from valid headers; if joining fails, start the chain afresh.
        Err(_) => {
            headers.insert(X_FORWARDED_FOR, client_ip.clone());
        }
    }
}

#[cfg(test)]
mod tests;
