use super::*;
use crate::verify::Principal;

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (k, v) in pairs {
        map.append(
            HeaderName::from_bytes(k.as_bytes()).expect("test header name"),
            HeaderValue::from_str(v).expect("test header value"),
        );
    }
    map
}

fn forwarded(ip: &HeaderValue) -> ForwardedFor<'_> {
    ForwardedFor {
        client_ip: ip,
        proto: &PROTO_HTTPS,
        host: Some(HeaderValue::from_static("api.example.com")),
    }
}

#[test]
fn hop_by_hop_and_connection_named_headers_are_dropped() {
    let mut h = headers(&[
        ("connection", "keep-alive, x-secret-hop"),
        ("keep-alive", "timeout=5"),
        ("x-secret-hop", "1"),
        ("te", "trailers"),
        ("transfer-encoding", "chunked"),
        ("proxy-authorization", "Basic abc"),
        ("upgrade", "websocket"),
        ("accept", "application/json"),
    ]);
    let ip = HeaderValue::from_static("10.0.0.1");
    prepare_request(&mut h, forwarded(&ip), None, false);
    for gone in [
        "connection",
        "keep-alive",
        "x-secret-hop",
        "te",
        "transfer-encoding",
        "proxy-authorization",
        "upgrade",
    ] {
        assert!(!h.contains_key(gone), "{gone} should be dropped");
    }
    assert_eq!(h["accept"], "application/json");
}

#[test]
fn upgrade_keeps_upgrade_and_restates_connection() {
    let mut h = headers(&[("connection", "Upgrade"), ("upgrade", "websocket")]);
    assert!(is_upgrade_request(&h));
    let ip = HeaderValue::from_static("10.0.0.1");
    prepare_request(&mut h, forwarded(&ip), None, true);
    assert_eq!(h["upgrade"], "websocket");
    assert_eq!(h["connection"], "upgrade");
}

#[test]
fn forwarded_for_is_appended_and_proto_host_overwritten() {
    let mut h = headers(&[
        ("x-forwarded-for", "1.1.1.1"),
        ("x-forwarded-for", "2.2.2.2"),
        ("x-forwarded-proto", "gopher"),
        ("x-forwarded-host", "evil.example"),
        ("host", "api.example.com"),
    ]);
    let ip = HeaderValue::from_static("10.0.0.1");
    prepare_request(&mut h, forwarded(&ip), None, false);
    assert_eq!(h["x-forwarded-for"], "1.1.1.1, 2.2.2.2, 10.0.0.1");
    assert_eq!(h.get_all("x-forwarded-for").iter().count(), 1);
    assert_eq!(h["x-forwarded-proto"], "https");
    assert_eq!(h["x-forwarded-host"], "api.example.com");
    assert!(!h.contains_key("host"));
}

#[test]
fn spoofed_identity_headers_are_removed_and_set_from_principal() {
    let mut h = headers(&[
        ("x-auth-subject", "admin"),
        ("x-auth-client-id", "evil"),
        ("x-auth-scope", "everything"),
    ]);
    let ip = HeaderValue::from_static("10.0.0.1");
    prepare_request(&mut h, forwarded(&ip), None, false);
    assert!(!h.contains_key("x-auth-subject"));
    assert!(!h.contains_key("x-auth-client-id"));
    assert!(!h.contains_key("x-auth-scope"));

    let p = Principal::new(
        "alice".into(),
        "mail-app".into(),
        None,
        vec!["email".into()],
        None,
    )
    .expect("plain ASCII");
    let mut h = headers(&[("x-auth-subject", "admin")]);
    prepare_request(&mut h, forwarded(&ip), Some(&p.headers), false);
    assert_eq!(h["x-auth-subject"], "alice");
    assert_eq!(h.get_all("x-auth-subject").iter().count(), 1);
    assert_eq!(h["x-auth-client-id"], "mail-app");
    assert_eq!(h["x-auth-scope"], "email");
}

#[test]
fn response_hop_by_hop_headers_are_dropped() {
    let mut h = headers(&[
        ("connection", "close"),
        ("keep-alive", "x"),
        ("content-type", "text/plain"),
    ]);
    prepare_response(&mut h, false);
    assert!(!h.contains_key("connection"));
    assert!(!h.contains_key("keep-alive"));
    assert_eq!(h["content-type"], "text/plain");
}
