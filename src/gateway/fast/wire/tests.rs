use super::*;
use http::HeaderMap;

fn request(raw: &str) -> ParsedRequest {
    parse_request(&Bytes::copy_from_slice(raw.as_bytes()))
}

#[test]
fn plain_get_and_head_are_taken() {
    for method in ["GET", "HEAD"] {
        let raw = format!(
            "{method} /api/x?y=1 HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer t\r\n\r\nNEXT"
        );
        match request(&raw) {
            ParsedRequest::Complete(head) => {
                assert_eq!(head.method.as_str(), method);
                assert_eq!(head.target.as_str(), "/api/x?y=1");
                assert_eq!(
                    head.headers.first(http::header::AUTHORIZATION),
                    Some(b"Bearer t".as_slice())
                );
                assert_eq!(&raw[head.len..], "NEXT", "len covers the head only");
            }
            other => panic!("{method}: {other:?}"),
        }
    }
}

#[test]
fn anything_with_a_body_an_upgrade_or_an_odd_shape_is_declined() {
    let declined = [
        "POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
        "PUT /a HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET /a HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc",
        "GET /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "GET /a HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
        "GET /a HTTP/1.1\r\nExpect: 100-continue\r\n\r\n",
        "GET /a HTTP/1.1\r\nConnection: close\r\n\r\n",
        "GET /a HTTP/1.0\r\n\r\n",
        "GET http://a/x HTTP/1.1\r\n\r\n",
        "OPTIONS * HTTP/1.1\r\n\r\n",
        "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        "GET /a HTTP/1.1\r\nBad Header: x\r\n\r\n",
        "garbage\r\n\r\n",
    ];
    for raw in declined {
        assert!(
            matches!(request(raw), ParsedRequest::Decline),
            "should decline: {raw:?}"
        );
    }
}

#[test]
fn keep_alive_is_the_only_connection_option_kept() {
    let raw = "GET /a HTTP/1.1\r\nConnection: keep-alive\r\n\r\n";
    assert!(matches!(request(raw), ParsedRequest::Complete(_)));
}

#[test]
fn an_unfinished_head_is_partial() {
    assert!(matches!(
        request("GET /a HTTP/1.1\r\nHost: a\r\n"),
        ParsedRequest::Partial
    ));
}

fn response(raw: &str, head_request: bool) -> (ParsedResponse, String) {
    let mut out = Vec::new();
    let parsed = parse_response(raw.as_bytes(), head_request, &mut out);
    (parsed, String::from_utf8(out).expect("utf-8"))
}

fn complete(raw: &str, head_request: bool) -> (ResponseHead, String) {
    match response(raw, head_request) {
        (ParsedResponse::Complete(head), out) => (head, out),
        (other, _) => panic!("{other:?}"),
    }
}

#[test]
fn content_length_framing_and_hop_by_hop_removal() {
    let raw = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: keep-alive, X-Secret\r\n\
               X-Secret: 1\r\nKeep-Alive: timeout=5\r\nX-Kept: yes\r\n\r\nhello";
    let (head, out) = complete(raw, false);
    assert_eq!(head.framing, Framing::Length(5));
    assert!(head.reusable);
    assert_eq!(&raw[head.len..], "hello");
    assert_eq!(
        out,
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Kept: yes\r\n\r\n"
    );
}

#[test]
fn chunked_keeps_its_transfer_encoding() {
    let raw = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
    let (head, out) = complete(raw, false);
    assert_eq!(head.framing, Framing::Chunked);
    assert_eq!(out, raw);
}

#[test]
fn framing_the_gateway_refuses_on_both_paths_is_refused_here() {
    let refused = [
        (
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 99\r\n\r\n",
            FramingError::LengthAndTransferCoding,
        ),
        (
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: gzip\r\n\r\n",
            FramingError::LengthAndTransferCoding,
        ),
        (
            "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            FramingError::TransferCodingInHttp10,
        ),
        (
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n",
            FramingError::UnrequestedSwitch,
        ),
    ];
    for (raw, fault) in refused {
        for head_request in [false, true] {
            assert!(
                matches!(response(raw, head_request).0, ParsedResponse::Refused(f) if f == fault),
                "{raw:?}"
            );
        }
    }
}

#[test]
fn no_length_means_until_close_and_the_client_is_told() {
    let (head, out) = complete("HTTP/1.1 200 OK\r\nX-A: b\r\n\r\n", false);
    assert_eq!(head.framing, Framing::UntilClose);
    assert!(!head.reusable);
    assert!(out.ends_with("connection: close\r\n\r\n"), "{out}");
    let (head, _) = complete("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", false);
    assert_eq!(head.framing, Framing::UntilClose, "chunked must be last");
}

#[test]
fn head_204_and_304_have_no_body() {
    let (head, _) = complete("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", true);
    assert_eq!(head.framing, Framing::Empty);
    for status in ["204 No Content", "304 Not Modified"] {
        let (head, _) = complete(&format!("HTTP/1.1 {status}\r\n\r\n"), false);
        assert_eq!(head.framing, Framing::Empty, "{status}");
        assert!(head.reusable);
    }
}

#[test]
fn close_and_http10_end_upstream_reuse() {
    let (head, _) = complete(
        "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
        false,
    );
    assert!(!head.reusable);
    let (head, _) = complete("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", false);
    assert!(!head.reusable);
    let (head, out) = complete(
        "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n",
        false,
    );
    assert!(head.reusable);
    assert!(out.starts_with("HTTP/1.1 200 OK\r\n"));
}

#[test]
fn interim_responses_are_skipped_and_bad_ones_refused() {
    assert!(matches!(
        response("HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n", false).0,
        ParsedResponse::Interim(n) if n == 40
    ));
    let invalid = [
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 1, 2\r\n\r\n",
        "HTTP/1.1 2000 OK\r\n\r\n",
        "nonsense\r\n\r\n",
    ];
    for raw in invalid {
        assert!(
            matches!(response(raw, false).0, ParsedResponse::Invalid(_)),
            "{raw:?}"
        );
    }
    let (head, _) = complete("HTTP/1.1 200 OK\r\nContent-Length: 3, 3\r\n\r\n", false);
    assert_eq!(head.framing, Framing::Length(3));
}

#[test]
fn an_oversized_response_head_is_refused_whole_or_in_part() {
    let head = format!(
        "HTTP/1.1 200 OK\r\nX-Big: {}\r\n\r\n",
        "a".repeat(MAX_RESPONSE_HEAD)
    );
    assert!(matches!(
        response(&head, false).0,
        ParsedResponse::Refused(FramingError::HeadTooLarge)
    ));
    let partial = &head[..head.len() - 2];
    assert!(matches!(
        response(partial, false).0,
        ParsedResponse::Invalid(_)
    ));
}

#[test]
fn error_responses_have_a_length_and_no_body_for_head() {
    let response = http::Response::builder()
        .status(404)
        .header("content-type", "application/json")
        .body(Bytes::from_static(b"{}"))
        .expect("response");
    let mut out = Vec::new();
    encode_response(&response, false, &mut out);
    assert_eq!(
        String::from_utf8_lossy(&out),
        "HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}"
    );
    out.clear();
    encode_response(&response, true, &mut out);
    assert!(String::from_utf8_lossy(&out).ends_with("content-length: 2\r\n\r\n"));
}

#[test]
fn request_heads_carry_the_upstream_host_first() {
    let mut headers = HeaderMap::new();
    headers.insert("x-forwarded-for", HeaderValue::from_static("1.2.3.4"));
    let mut out = Vec::new();
    encode_request(&Method::GET, "/v1/a?b", "api:3000", &headers, &mut out);
    assert_eq!(
        String::from_utf8_lossy(&out),
        "GET /v1/a?b HTTP/1.1\r\nhost: api:3000\r\nx-forwarded-for: 1.2.3.4\r\n\r\n"
    );
}

/// httparse refuses control bytes and DEL in values (the fast lane relies on it, as hyper
/// does); obs-text and tabs are values a `HeaderMap` takes too.
#[test]
fn control_bytes_in_values_are_left_to_hyper() {
    for bad in ["a\u{1}b", "a\u{7f}b", "a\u{0}b"] {
        let raw = format!("GET / HTTP/1.1\r\nHost: a\r\nX-Odd: {bad}\r\n\r\n");
        assert!(
            matches!(request(&raw), ParsedRequest::Decline),
            "{bad:?} declined"
        );
    }
    let mut raw = b"GET / HTTP/1.1\r\nHost: a\r\nX-Odd: a\tb \xe9\r\n\r\n".to_vec();
    let ParsedRequest::Complete(head) = parse_request(&Bytes::from(std::mem::take(&mut raw)))
    else {
        panic!("tab and obs-text are taken");
    };
    let map = head.headers.to_map().expect("a HeaderMap takes them too");
    assert_eq!(map["x-odd"].as_bytes(), b"a\tb \xe9");
}
