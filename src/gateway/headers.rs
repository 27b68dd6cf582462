//! Header rewriting between client and upstream; pure functions on `HeaderMap`.
//!
//! RFC 9110 §7.6.1: hop-by-hop headers, and any header the `Connection` header names,
//! belong to one connection and are dropped both ways (except `Upgrade` on an upgrade).
//! `X-Forwarded-For` is appended to; `X-Forwarded-Proto` and `X-Forwarded-Host` are
//! overwritten. Identity headers (`X-Auth-*`) are removed from what the caller sent and set
//! only from a verified principal, so they cannot be spoofed.

use crate::verify::IdentityHeaders;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};

pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
pub const X_AUTH_SUBJECT: HeaderName = HeaderName::from_static("x-auth-subject");
pub const X_AUTH_CLIENT_ID: HeaderName = HeaderName::from_static("x-auth-client-id");
pub const X_AUTH_SCOPE: HeaderName = HeaderName::from_static("x-auth-scope");

/// Always hop-by-hop (RFC 9110 §7.6.1, plus the legacy `Keep-Alive` and `Proxy-Connection`).
pub const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

/// Facts about the client connection that the forwarded headers carry.
pub struct ForwardedFor<'a> {
    /// The peer's IP, pre-rendered once per connection.
    pub client_ip: &'a HeaderValue,
    /// `http` or `https`.
    pub proto: &'static HeaderValue,
    /// The Host (or `:authority`) the client asked for.
    pub host: Option<HeaderValue>,
}

pub static PROTO_HTTP: HeaderValue = HeaderValue::from_static("http");
pub static PROTO_HTTPS: HeaderValue = HeaderValue::from_static("https");

/// Rewrites a client's request headers for the upstream.
pub fn prepare_request(
    headers: &mut HeaderMap,
    forwarded: ForwardedFor<'_>,
    identity: Option<&IdentityHeaders>,
    upgrade: bool,
) {
    remove_hop_by_hop(headers, upgrade);
    // The upstream's Host comes from its own URL, like nginx's default `proxy_set_header Host
    // $proxy_host`; the caller's Host travels in X-Forwarded-Host.
    headers.remove(header::HOST);
    append_forwarded_for(headers, forwarded.client_ip);
    headers.insert(X_FORWARDED_PROTO, forwarded.proto.clone());
    match forwarded.host {
        Some(host) => headers.insert(X_FORWARDED_HOST, host),
        None => headers.remove(X_FORWARDED_HOST),
    };
    // `insert` replaces every value the caller sent, so spoofed values cannot survive.
    match identity {
        Some(id) => {
            headers.insert(X_AUTH_SUBJECT, id.subject.clone());
            headers.insert(X_AUTH_CLIENT_ID, id.client_id.clone());
            headers.insert(X_AUTH_SCOPE, id.scope.clone());
        }
        None => {
            headers.remove(X_AUTH_SUBJECT);
            headers.remove(X_AUTH_CLIENT_ID);
            headers.remove(X_AUTH_SCOPE);
        }
    }
}

/// Rewrites an upstream's response headers for the client.
pub fn prepare_response(headers: &mut HeaderMap, upgrade: bool) {
    remove_hop_by_hop(headers, upgrade);
}

/// True when the request asks to switch protocols (WebSocket and friends).
pub fn is_upgrade_request(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE) && connection_has_token(headers, "upgrade")
}

fn connection_has_token(headers: &HeaderMap, token: &str) -> bool {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Drops hop-by-hop headers and those the `Connection` header names. On an upgrade the
/// `Upgrade` header survives and `Connection: upgrade` is re-stated for the next hop.
fn remove_hop_by_hop(headers: &mut HeaderMap, upgrade: bool) {
    // Most messages carry none of these: one pass over the names beats a dozen lookups.
    let any = headers
        .keys()
        .any(|k| k == header::UPGRADE || HOP_BY_HOP.contains(k));
    if !any {
        if upgrade {
            headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        }
        return;
    }
    if headers.contains_key(header::CONNECTION) {
        let named: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
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
