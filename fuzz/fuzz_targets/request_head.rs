//! The fast lane's request-head parser (`wire::parse_request`): never panics, takes only
//! body-less GET/HEAD in origin-form over HTTP/1.1 without framing or switching headers
//! (a `Connection` naming nothing but `keep-alive`, empty elements ignored),
//! reports a head length that ends at the empty line, and what it would send upstream
//! (`wire::encode_request`) parses back to the same request.
#![no_main]

use bytes::Bytes;
use http::header::{
    HeaderMap, CONNECTION, CONTENT_LENGTH, EXPECT, HOST, TRANSFER_ENCODING, UPGRADE,
};
use http::Method;
use libfuzzer_sys::fuzz_target;
use tollgate::gateway::fast::wire::{
    encode_request, parse_request, ParsedRequest, RequestHead, MAX_HEADERS,
};

fuzz_target!(|data: &[u8]| {
    let buf = Bytes::copy_from_slice(data);
    let ParsedRequest::Complete(head) = parse_request(&buf) else {
        return;
    };
    check_head(data, &head);

    // The bytes after the head (a pipelined request) never change the head.
    match parse_request(&buf.slice(..head.len)) {
        ParsedRequest::Complete(alone) => assert_same(&head, &alone),
        other => panic!("the head alone parses as {other:?}"),
    }
    // Cut one byte short, the head is not complete.
    assert!(!matches!(
        parse_request(&buf.slice(..head.len - 1)),
        ParsedRequest::Complete(_)
    ));

    // What goes upstream re-parses to the same request, with the upstream's Host first
    // (the rewrite replaces the client's).
    // Every line the fast lane takes is one a `HeaderMap` takes.
    let mut headers = head
        .headers
        .to_map()
        .expect("the fast lane took a line no HeaderMap takes");
    headers.remove(HOST);
    let mut out = Vec::new();
    encode_request(
        &head.method,
        head.target.as_str(),
        "upstream.test:8080",
        &headers,
        &mut out,
    );
    // Parsed with room for the headers the rewrite adds: 100 from the client and our Host
    // are fine upstream of us (hyper's client sends as many on the other path).
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS + 8];
    let mut again = httparse::Request::new(&mut slots);
    match again.parse(&out) {
        Ok(httparse::Status::Complete(n)) => assert_eq!(n, out.len()),
        other => panic!("the encoded request parses as {other:?}"),
    }
    assert_eq!(again.method, Some(head.method.as_str()));
    assert_eq!(again.path, Some(head.target.as_str()));
    assert_eq!(again.version, Some(1));
    let mut want = vec![(HOST.as_str().to_string(), b"upstream.test:8080".to_vec())];
    want.extend(pairs(&headers));
    let got: Vec<(String, Vec<u8>)> = again
        .headers
        .iter()
        .map(|h| (h.name.to_ascii_lowercase(), h.value.to_vec()))
        .collect();
    assert_eq!(got, want);
});

fn check_head(data: &[u8], head: &RequestHead) {
    assert!(head.len <= data.len());
    assert!(
        data[..head.len].ends_with(b"\n"),
        "head ends at its empty line"
    );
    assert!(head.method == Method::GET || head.method == Method::HEAD);
    assert!(head.target.as_str().starts_with('/'));
    let headers = head.headers.to_map().expect("lines a HeaderMap takes");
    for name in [CONTENT_LENGTH, TRANSFER_ENCODING, UPGRADE, EXPECT] {
        assert!(!headers.contains_key(&name), "{name} taken");
    }
    for value in headers.get_all(CONNECTION) {
        let text = value.to_str().expect("a taken Connection is text");
        // Empty list elements count for nothing (RFC 9110 §5.6.1): `Connection: ` and
        // `keep-alive,` name no option but keep-alive.
        assert!(text
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .all(|t| t.eq_ignore_ascii_case("keep-alive")));
    }
}

fn pairs(headers: &HeaderMap) -> Vec<(String, Vec<u8>)> {
    headers
        .iter()
        .map(|(n, v)| (n.as_str().to_string(), v.as_bytes().to_vec()))
        .collect()
}

fn assert_same(a: &RequestHead, b: &RequestHead) {
    assert_eq!(a.len, b.len);
    assert_eq!(a.method, b.method);
    assert_eq!(a.target, b.target);
    let map = |h: &RequestHead| h.headers.to_map().expect("lines a HeaderMap takes");
    assert_eq!(pairs(&map(a)), pairs(&map(b)));
}
