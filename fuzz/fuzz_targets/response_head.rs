//! The fast lane's response-head parser (`wire::parse_response`). Input: one byte whose low
//! bit says "the request was HEAD", then the upstream's bytes. Never panics; the head it
//! writes for the client is one complete HTTP/1.1 head with the same status, free of
//! hop-by-hop headers, never carrying both a transfer coding and a length, and framing the
//! body as it was read; re-parsing that head gives the same head again. The hyper path's
//! parser (`wire::parse_response_map`) gives the same answer, takes exactly the head off
//! the buffer, and keeps no hop-by-hop header.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate::gateway::fast::wire::{
    parse_response, parse_response_map, Framing, ParsedResponse, ResponseHead, MAX_HEADERS,
    MAX_RESPONSE_HEAD,
};

/// `parse_response_map` agrees with `parse_response` on `buf`'s head.
fn check_map_parser(buf: &[u8], head_request: bool, parsed: &ParsedResponse) {
    let mut bytes = bytes::BytesMut::from(buf);
    let mapped = parse_response_map(&mut bytes, head_request);
    match (parsed, &mapped) {
        (ParsedResponse::Complete(head), ParsedResponse::Complete((second, map))) => {
            assert_eq!(second.len, head.len);
            assert_eq!(second.status, head.status);
            assert_eq!(second.framing, head.framing);
            assert_eq!(second.reusable, head.reusable);
            assert_eq!(bytes.len(), buf.len() - head.len, "exactly the head is taken");
            for name in ["connection", "keep-alive", "transfer-encoding", "upgrade", "te"] {
                assert!(!map.contains_key(name), "{name} kept");
            }
        }
        (ParsedResponse::Interim(a), ParsedResponse::Interim(b)) => assert_eq!(a, b),
        (ParsedResponse::Partial, ParsedResponse::Partial)
        | (ParsedResponse::Invalid(_), ParsedResponse::Invalid(_))
        | (ParsedResponse::Refused(_), ParsedResponse::Refused(_)) => {}
        (a, b) => panic!("parse_response: {a:?}, parse_response_map: {b:?}"),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, buf)) = data.split_first() else {
        return;
    };
    let head_request = flags & 1 == 1;
    let mut out = Vec::new();
    let parsed = parse_response(buf, head_request, &mut out);
    check_map_parser(buf, head_request, &parsed);
    match parsed {
        ParsedResponse::Complete(head) => {
            assert!(head.len <= buf.len());
            let headers = check_client_head(&head, head_request, &out);
            // Our `connection: close` can make it 101 headers, one more than our own parser
            // reads (`MAX_HEADERS`): the re-parse below cannot take it.
            if headers > MAX_HEADERS {
                return;
            }
            let mut again = Vec::new();
            match parse_response(&out, head_request, &mut again) {
                ParsedResponse::Complete(second) => {
                    assert_eq!(second.len, out.len());
                    assert_eq!(second.status, head.status);
                    assert_eq!(second.framing, head.framing);
                    assert_eq!(again, out, "re-encoding is stable");
                }
                other => panic!("our own head parses as {other:?}"),
            }
        }
        ParsedResponse::Interim(n) => assert!(n > 0 && n <= buf.len()),
        ParsedResponse::Partial => assert!(buf.len() <= MAX_RESPONSE_HEAD),
        // Refused: framing the gateway answers with 502 on both paths (`gateway::framing`).
        ParsedResponse::Invalid(_) | ParsedResponse::Refused(_) => {}
    }
});

/// Checks the head written for the client; returns how many headers it has.
fn check_client_head(head: &ResponseHead, head_request: bool, out: &[u8]) -> usize {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS + 1];
    let mut res = httparse::Response::new(&mut slots);
    match res.parse(out) {
        Ok(httparse::Status::Complete(n)) => assert_eq!(n, out.len()),
        other => panic!("client head {other:?}: {:?}", String::from_utf8_lossy(out)),
    }
    assert_eq!(res.version, Some(1));
    assert_eq!(res.code, Some(head.status.as_u16()));
    let headers: &[httparse::Header<'_>] = res.headers;
    let named = |name: &'static str| {
        headers
            .iter()
            .filter(move |h| h.name.eq_ignore_ascii_case(name))
    };
    for hop in [
        "keep-alive",
        "proxy-connection",
        "upgrade",
        "proxy-authenticate",
    ] {
        assert_eq!(named(hop).count(), 0, "{hop} relayed");
    }
    let connection: Vec<&[u8]> = named("connection").map(|h| h.value).collect();
    let has_te = named("transfer-encoding").count() > 0;
    assert!(
        !(has_te && named("content-length").count() > 0),
        "TE beside CL"
    );
    match head.framing {
        Framing::Empty => {
            assert!(head_request || head.status.as_u16() == 204 || head.status.as_u16() == 304)
        }
        Framing::Length(_) => assert!(!has_te),
        Framing::Chunked => assert!(has_te),
        Framing::UntilClose => {
            assert!(!head.reusable);
            assert_eq!(connection, [b"close".as_slice()]);
        }
    }
    if head.framing != Framing::UntilClose {
        assert!(connection.is_empty(), "Connection relayed");
    }
    res.headers.len()
}
