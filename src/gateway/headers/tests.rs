use super::*;
use crate::server::PROTO_HTTPS;
use crate::verify::Principal;
use http::{Method, Version};

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

static REQUEST_ID: HeaderValue = HeaderValue::from_static("req-1");

fn forwarded(ip: &HeaderValue) -> ForwardedFor<'_> {
    ForwardedFor {
        client_ip: ip,
        proto: &PROTO_HTTPS,
        host: Some(HeaderValue::from_static("api.example.com")),
        request_id: &REQUEST_ID,
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
    let mut h = headers(&[
        ("connection", "Upgrade, HTTP2-Settings"),
        ("upgrade", "websocket"),
        ("http2-settings", "AAMAAABkAAQAAP__"),
    ]);
    assert!(is_upgrade_request(&Method::GET, Version::HTTP_11, &h));
    let ip = HeaderValue::from_static("10.0.0.1");
    prepare_request(&mut h, forwarded(&ip), None, true);
    assert_eq!(h["upgrade"], "websocket");
    assert_eq!(h["connection"], "upgrade");
    assert!(!h.contains_key("http2-settings"));
}

#[test]
fn only_a_websocket_get_over_http11_is_an_upgrade() {
    let upgrade = |method: Method, version: Version, upgrades: &[&str]| {
        let mut pairs = vec![("connection", "keep-alive, Upgrade")];
        pairs.extend(upgrades.iter().map(|u| ("upgrade", *u)));
        is_upgrade_request(&method, version, &headers(&pairs))
    };
    let h11 = Version::HTTP_11;
    assert!(upgrade(Method::GET, h11, &["websocket"]));
    assert!(upgrade(Method::GET, h11, &["WebSocket"]));
    for refused in [
        &["h2c"][..],
        &["websocket, h2c"],
        &["h2c, websocket"],
        &["websocket", "h2c"],
        &["websocket/13"],
        &["TLS/1.2"],
        &[],
    ] {
        assert!(!upgrade(Method::GET, h11, refused), "{refused:?}");
    }
    assert!(!upgrade(Method::POST, h11, &["websocket"]));
    assert!(!upgrade(Method::GET, Version::HTTP_10, &["websocket"]));
    assert!(!upgrade(Method::GET, Version::HTTP_2, &["websocket"]));
    let no_connection = headers(&[("upgrade", "websocket")]);
    assert!(!is_upgrade_request(&Method::GET, h11, &no_connection));
}

#[test]
fn a_refused_upgrade_is_forwarded_without_its_switch_headers() {
    let mut h = headers(&[
        ("connection", "Upgrade, HTTP2-Settings"),
        ("upgrade", "h2c"),
        ("http2-settings", "AAMAAABkAAQAAP__"),
        ("accept", "*/*"),
    ]);
    let ip = HeaderValue::from_static("10.0.0.1");
    prepare_request(&mut h, forwarded(&ip), None, false);
    for gone in ["connection", "upgrade", "http2-settings"] {
        assert!(!h.contains_key(gone), "{gone} should be dropped");
    }
    assert_eq!(h["accept"], "*/*");
    // Without Connection naming it, HTTP2-Settings still belongs to one hop.
    let mut h = headers(&[("http2-settings", "AAMAAABkAAQAAP__")]);
    prepare_request(&mut h, forwarded(&ip), None, false);
    assert!(!h.contains_key("http2-settings"));
}

#[test]
fn forged_names_match_in_any_spelling() {
    let cases = [
        ("x-auth-subject", true),
        ("x_auth_subject", true),
        ("X_Auth_Subject", true),
        ("x-auth_client-id", true),
        ("x_auth-scope", true),
        ("x-auth-anything-else", true),
        ("x_auth_", true),
        ("forwarded", true),
        ("Forwarded", true),
        ("x-real-ip", true),
        ("x_real_ip", true),
        ("x-original-url", true),
        ("x_original_url", true),
        ("x-rewrite-url", true),
        ("X_Rewrite-URL", true),
        ("x_forwarded_for", true),
        ("x-forwarded_for", true),
        ("x_forwarded_proto", true),
        ("x_forwarded-host", true),
        // The '-' spellings are appended to or overwritten, not removed.
        ("x-forwarded-for", false),
        ("x-forwarded-proto", false),
        ("x-forwarded-host", false),
        ("x-auth", false),
        ("x-authorization", false),
        ("x-author-id", false),
        ("authorization", false),
        ("forwarded-for", false),
        ("x-forwarded-port", false),
        ("x-request-id", false),
        ("accept", false),
        ("", false),
    ];
    for (name, want) in cases {
        assert_eq!(is_forged(name.as_bytes()), want, "{name}");
    }
}

#[test]
fn forged_headers_never_reach_the_upstream_and_real_ones_are_set() {
    let p = Principal::new(
        "alice".into(),
        "mail-app".into(),
        None,
        vec!["email".into()],
        None,
    )
    .expect("plain ASCII");
    let ip = HeaderValue::from_static("10.0.0.1");
    for identity in [None, Some(&p.headers)] {
        let mut h = headers(&[
            ("x_auth_subject", "admin"),
            ("X-Auth-Subject", "admin"),
            ("x-auth-roles", "admin"),
            ("forwarded", "for=1.2.3.4;host=evil.example"),
            ("x-real-ip", "1.2.3.4"),
            ("x-original-url", "/admin"),
            ("x-rewrite-url", "/admin"),
            ("x_forwarded_for", "1.2.3.4"),
            ("x_forwarded_host", "evil.example"),
            ("x_forwarded_proto", "https"),
            ("accept", "*/*"),
        ]);
        prepare_request(&mut h, forwarded(&ip), identity, false);
        let left: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
        let mut want = vec![
            "accept",
            "x-forwarded-for",
            "x-forwarded-proto",
            "x-forwarded-host",
            "x-request-id",
        ];
        if identity.is_some() {
            want.extend(["x-auth-subject", "x-auth-client-id", "x-auth-scope"]);
            assert_eq!(h["x-auth-subject"], "alice");
            assert_eq!(h.get_all("x-auth-subject").iter().count(), 1);
        }
        let mut left_sorted = left.clone();
        left_sorted.sort_unstable();
        want.sort_unstable();
        assert_eq!(left_sorted, want, "identity: {}", identity.is_some());
        assert_eq!(h["x-forwarded-for"], "10.0.0.1");
    }
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

#[test]
fn the_request_id_replaces_whatever_the_caller_sent() {
    let mut h = headers(&[("x-request-id", "mine"), ("x-request-id", "again")]);
    let ip = HeaderValue::from_static("10.0.0.1");
    prepare_request(&mut h, forwarded(&ip), None, false);
    let ids: Vec<_> = h.get_all(X_REQUEST_ID).iter().collect();
    assert_eq!(ids, [&REQUEST_ID]);
}

#[test]
fn a_sane_request_id_is_kept_and_anything_else_replaced() {
    let long = "a".repeat(MAX_REQUEST_ID);
    let too_long = "a".repeat(MAX_REQUEST_ID + 1);
    let cases: [(&[&str], bool); 8] = [
        (&["abc-123_XYZ.~!"], true),
        (&[long.as_str()], true),
        (&[too_long.as_str()], false),
        (&["has space"], false),
        (&["tab\there"], false),
        (&["caf\u{e9}"], false),
        (&["one", "two"], false),
        (&[], false),
    ];
    for (given, kept) in cases {
        let mut h = HeaderMap::new();
        for v in given {
            if let Ok(v) = HeaderValue::from_bytes(v.as_bytes()) {
                h.append(X_REQUEST_ID, v);
            }
        }
        let id = request_id(&h);
        if kept {
            assert_eq!(id.as_bytes(), given[0].as_bytes(), "{given:?}");
        } else {
            assert_eq!(id.len(), 32, "{given:?}: {id:?}");
            assert!(id.as_bytes().iter().all(u8::is_ascii_hexdigit), "{id:?}");
        }
    }
}

#[test]
fn new_request_ids_differ() {
    let ids: std::collections::HashSet<_> = (0..1000).map(|_| new_request_id()).collect();
    assert_eq!(ids.len(), 1000);
}

#[test]
fn an_unindexed_value_is_marked_for_http2_and_keeps_its_bytes() {
    let id = new_request_id();
    let sent = unindexed(id.clone());
    assert!(sent.is_sensitive(), "never indexed by HPACK");
    assert!(!id.is_sensitive());
    assert_eq!(sent.as_bytes(), id.as_bytes());
}

#[test]
fn connection_tokens_are_trimmed_and_empty_elements_skipped() {
    let values: [&[u8]; 3] = [b" Keep-Alive ,x-hop", b",,", b"close,\t Upgrade"];
    let tokens: Vec<&[u8]> = connection_tokens(values).collect();
    let expected: [&[u8]; 4] = [b"Keep-Alive", b"x-hop", b"close", b"Upgrade"];
    assert_eq!(tokens, expected);
    assert_eq!(connection_tokens([&b""[..]]).count(), 0);
}

/// One rule for both engines; they differ only in who frames the body.
#[test]
fn response_hop_by_hop_rule_table() {
    use BodyFraming::{Reframed, Verbatim};
    let named: [&[u8]; 4] = [
        b"x-hop",
        b"content-length",
        b"transfer-encoding",
        b"Trailer",
    ];
    let cases: [(&str, bool, bool); 14] = [
        // (name, dropped when reframed, dropped when verbatim)
        ("content-type", false, false),
        ("x-hop", true, true),
        ("X-Hop", true, true),
        ("connection", true, true),
        ("keep-alive", true, true),
        ("proxy-connection", true, true),
        ("upgrade", true, true),
        ("te", true, true),
        ("http2-settings", true, true),
        ("proxy-authenticate", true, true),
        // The message's framing: hyper writes its own, the fast lane relays the upstream's.
        ("transfer-encoding", true, false),
        ("trailer", true, false),
        // Naming it in `Connection` cannot unframe a message.
        ("content-length", false, false),
        ("x-request-id", false, false),
    ];
    for (name, reframed, verbatim) in cases {
        let name_bytes = name.as_bytes();
        assert_eq!(
            response_drops(name_bytes, &named, Reframed),
            reframed,
            "{name} reframed"
        );
        assert_eq!(
            response_drops(name_bytes, &named, Verbatim),
            verbatim,
            "{name} verbatim"
        );
    }
}

#[test]
fn response_headers_named_by_connection_are_dropped_but_not_content_length() {
    let mut h = headers(&[
        ("connection", "x-hop, content-length"),
        ("x-hop", "1"),
        ("content-length", "2"),
        ("transfer-encoding", "chunked"),
        ("upgrade", "h2c"),
    ]);
    prepare_response(&mut h, false);
    let left: Vec<&str> = h.keys().map(|n| n.as_str()).collect();
    assert_eq!(left, ["content-length"]);
}

#[test]
fn a_websocket_switch_keeps_upgrade_and_restates_connection() {
    let mut h = headers(&[
        ("connection", "Upgrade, x-hop"),
        ("upgrade", "websocket"),
        ("x-hop", "1"),
        ("sec-websocket-accept", "abc"),
    ]);
    prepare_response(&mut h, true);
    assert_eq!(h["upgrade"], "websocket");
    assert_eq!(h["connection"], "upgrade");
    assert!(!h.contains_key("x-hop"));
    assert_eq!(h["sec-websocket-accept"], "abc");
}

/// The lines `encode_prepared_request` writes, as (lower-case name, value) pairs, sorted.
fn wire_lines(out: &[u8]) -> Vec<(String, String)> {
    let text = std::str::from_utf8(out).expect("header lines are text in these tests");
    let mut lines: Vec<(String, String)> = text
        .split_terminator("\r\n")
        .map(|l| {
            let (name, value) = l.split_once(": ").expect("a `name: value` line");
            (name.to_ascii_lowercase(), value.to_owned())
        })
        .collect();
    lines.sort();
    lines
}

/// A header map's (name, value) pairs, sorted.
fn map_lines(map: &HeaderMap) -> Vec<(String, String)> {
    let mut lines: Vec<(String, String)> = map
        .iter()
        .map(|(n, v)| {
            let value = v.to_str().expect("test values are visible ASCII");
            (n.as_str().to_owned(), value.to_owned())
        })
        .collect();
    lines.sort();
    lines
}

fn identity_principal() -> Principal {
    Principal::new(
        "alice".into(),
        "mail-app".into(),
        Some("alice".into()),
        vec!["email".into()],
        None,
    )
    .expect("plain ASCII")
}

#[test]
fn wire_rewrite_writes_the_gateways_headers_after_the_clients() {
    let h = headers(&[
        ("accept", "*/*"),
        ("host", "gw.test"),
        ("x-forwarded-for", "10.1.1.1"),
        ("x-auth-subject", "mallory"),
        ("connection", "keep-alive"),
    ]);
    let ip = HeaderValue::from_static("10.0.0.1");
    let p = identity_principal();
    let mut out = Vec::new();
    encode_prepared_request(&h, &forwarded(&ip), Some(&p.headers), false, &mut out);
    assert_eq!(
        std::str::from_utf8(&out).expect("text"),
        "accept: */*\r\n\
         x-forwarded-for: 10.1.1.1, 10.0.0.1\r\n\
         x-forwarded-proto: https\r\n\
         x-forwarded-host: api.example.com\r\n\
         x-request-id: req-1\r\n\
         x-auth-subject: alice\r\n\
         x-auth-client-id: mail-app\r\n\
         x-auth-scope: email\r\n"
    );
}

/// `name` as a client may spell it: 0 as is, 1 upper case, 2 capitalised words.
fn spell(name: &str, case: u8) -> String {
    match case {
        0 => name.to_owned(),
        1 => name.to_ascii_uppercase(),
        _ => name
            .split('-')
            .map(|w| {
                let mut w = w.to_owned();
                if let Some(first) = w.get_mut(..1) {
                    first.make_ascii_uppercase();
                }
                w
            })
            .collect::<Vec<_>>()
            .join("-"),
    }
}

/// The lines as the fast lane holds them: slices of one buffer, names as spelt.
fn raw_headers(pairs: &[(String, &str)]) -> RawHeaders {
    let text: String = pairs.iter().map(|(n, v)| format!("{n}: {v}\r\n")).collect();
    let buf = bytes::Bytes::from(text);
    let mut raw = RawHeaders::with_capacity(buf.clone(), pairs.len());
    let mut at = 0;
    for (name, value) in pairs {
        let value_at = at + name.len() + 2;
        let pushed = raw.push(
            &buf[at..at + name.len()],
            &buf[value_at..value_at + value.len()],
        );
        assert!(pushed, "slices of the buffer");
        at = value_at + value.len() + 2;
    }
    raw
}

/// Header names a request may carry that the rewrite treats specially, and plain ones.
const NAMES: &[&str] = &[
    "accept",
    "host",
    "connection",
    "keep-alive",
    "upgrade",
    "te",
    "trailer",
    "transfer-encoding",
    "proxy-authorization",
    "proxy-connection",
    "http2-settings",
    "x-forwarded-for",
    "x_forwarded_for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-request-id",
    "x-auth-subject",
    "x-auth-client-id",
    "x-auth-scope",
    "x_auth_scope",
    "x-auth-other",
    "forwarded",
    "x-real-ip",
    "x-original-url",
    "x-custom",
    "authorization",
];

/// Values, among them `Connection` token lists naming other headers.
const VALUES: &[&str] = &[
    "1",
    "a b",
    "keep-alive",
    "close",
    "Upgrade",
    "x-custom, te",
    "x-forwarded-for",
    "X-Request-Id, accept",
    "host",
    "x-auth-subject",
    " , ",
];

proptest::proptest! {
    #![proptest_config(proptest::test_runner::Config {
        cases: 2048,
        failure_persistence: None,
        ..Default::default()
    })]

    /// The fast lane's rewrite written to the wire (from the raw lines, names in any case)
    /// and the hyper path's rewrite of a header map leave the upstream the same headers (the
    /// same values, as many times), for any list of headers, with or without identity, host
    /// and a WebSocket switch.
    #[test]
    fn wire_rewrite_matches_header_map_rewrite(
        pairs in proptest::collection::vec((0..NAMES.len(), 0..VALUES.len(), 0..3u8), 0..12),
        with_identity: bool,
        with_host: bool,
        upgrade: bool,
    ) {
        let spelt: Vec<(String, &str)> = pairs
            .iter()
            .map(|&(n, v, case)| (spell(NAMES[n], case), VALUES[v]))
            .collect();
        let pairs: Vec<(&str, &str)> = pairs.iter().map(|&(n, v, _)| (NAMES[n], VALUES[v])).collect();
        let client = headers(&pairs);
        let ip = HeaderValue::from_static("10.0.0.1");
        let p = identity_principal();
        let identity = with_identity.then_some(&p.headers);
        let for_request = || {
            let mut f = forwarded(&ip);
            if !with_host {
                f.host = None;
            }
            f
        };

        let mut out = Vec::new();
        encode_prepared_request(&client, &for_request(), identity, upgrade, &mut out);
        let mut map = client.clone();
        prepare_request(&mut map, for_request(), identity, upgrade);
        proptest::prop_assert_eq!(wire_lines(&out), map_lines(&map));

        let raw = raw_headers(&spelt);
        let mut from_raw = Vec::new();
        encode_prepared_request(&raw, &for_request(), identity, upgrade, &mut from_raw);
        proptest::prop_assert_eq!(wire_lines(&from_raw), map_lines(&map));
    }
}

/// Without a `Connection` header the rule first looks at the name's length alone; every
/// hop-by-hop name, in any case, must still be dropped.
#[test]
fn hop_by_hop_response_headers_are_dropped_without_a_connection_header() {
    let names = HOP_BY_HOP
        .into_iter()
        .map(|n| n.as_str().to_owned())
        .chain(["upgrade".to_owned()]);
    for name in names {
        for spelling in [name.clone(), name.to_ascii_uppercase()] {
            assert!(
                response_drops(spelling.as_bytes(), &[], BodyFraming::Reframed),
                "{spelling}"
            );
        }
    }
    for kept in [
        "date",
        "server",
        "content-type",
        "content-length",
        "x-request-id",
    ] {
        assert!(
            !response_drops(kept.as_bytes(), &[], BodyFraming::Reframed),
            "{kept}"
        );
    }
}
