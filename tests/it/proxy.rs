//! Proxying: forwarded headers, hop-by-hop headers, streaming both ways, round-robin and
//! dead targets, 502/504, upgrades and HTTP/2.

use crate::common::{self, echoed, raw, refused_url, route, TestGateway, Upstream};
use serde_json::Value;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const OPEN: &str = "auth = \"none\"";

async fn open_gateway(up: &Upstream, extra: &str) -> TestGateway {
    TestGateway::spawn(&route("api", "/", &up.url(), &format!("{OPEN}\n{extra}"))).await
}

async fn get_echo(client: &reqwest::Client, url: &str) -> Value {
    let r = client.get(url).send().await.expect("sent");
    assert_eq!(r.status(), 200, "{url}");
    r.json().await.expect("echo JSON")
}

#[tokio::test]
async fn forwarded_for_is_appended_while_proto_and_host_are_overwritten() {
    let up = Upstream::echo().await;
    let gw = open_gateway(&up, "").await;
    let r = common::client()
        .get(gw.url("/x"))
        .header("x-forwarded-for", "203.0.113.7, 198.51.100.1")
        .header("x-forwarded-proto", "https")
        .header("x-forwarded-host", "evil.example")
        .send()
        .await
        .expect("sent");
    assert_eq!(r.status(), 200);
    let echo: Value = r.json().await.expect("json");
    assert_eq!(
        echoed(&echo, "x-forwarded-for"),
        ["203.0.113.7, 198.51.100.1, 127.0.0.1"]
    );
    assert_eq!(echoed(&echo, "x-forwarded-proto"), ["http"]);
    assert_eq!(echoed(&echo, "x-forwarded-host"), [gw.public.to_string()]);
    // The upstream's own Host comes from its URL, not from the caller.
    assert_eq!(echoed(&echo, "host"), [up.server.addr.to_string()]);

    // Without an incoming chain, the chain starts with the peer.
    let echo = get_echo(&common::client(), &gw.url("/x")).await;
    assert_eq!(echoed(&echo, "x-forwarded-for"), ["127.0.0.1"]);

    // A chain split over several header lines is kept in order, as one list.
    let r = raw::get(
        gw.public,
        "/x",
        "X-Forwarded-For: 203.0.113.7
X-Forwarded-For: 198.51.100.1
",
    )
    .await;
    let echo: Value = serde_json::from_str(&r.body).expect("json");
    assert_eq!(
        echoed(&echo, "x-forwarded-for"),
        ["203.0.113.7, 198.51.100.1, 127.0.0.1"]
    );
}

#[tokio::test]
async fn hop_by_hop_request_headers_and_those_named_in_connection_are_dropped() {
    let up = Upstream::echo().await;
    let gw = open_gateway(&up, "").await;
    let r = raw::get(
        gw.public,
        "/x",
        "Connection: x-client-hop\r\n\
         X-Client-Hop: private\r\n\
         Keep-Alive: timeout=5\r\n\
         Proxy-Connection: keep-alive\r\n\
         Proxy-Authorization: Basic YTpi\r\n\
         TE: trailers\r\n\
         Upgrade: h2c\r\n\
         X-End-To-End: kept\r\n",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.head);
    let echo: Value = serde_json::from_str(&r.body).expect("json");
    for gone in [
        "x-client-hop",
        "keep-alive",
        "proxy-connection",
        "proxy-authorization",
        "te",
        "upgrade",
    ] {
        assert!(
            echoed(&echo, gone).is_empty(),
            "{gone} reached the upstream: {echo}"
        );
    }
    for value in echoed(&echo, "connection") {
        assert!(!value.contains("x-client-hop"), "connection: {value}");
    }
    assert_eq!(echoed(&echo, "x-end-to-end"), ["kept"]);
}

#[tokio::test]
async fn hop_by_hop_response_headers_and_those_named_in_connection_are_dropped() {
    let up = Upstream::echo().await;
    let gw = open_gateway(&up, "").await;
    let r = common::client()
        .get(gw.url("/x"))
        .send()
        .await
        .expect("sent");
    assert_eq!(r.status(), 200);
    // The echo upstream sends `connection: keep-alive, x-upstream-hop`,
    // `x-upstream-hop: secret` and `keep-alive: timeout=5`.
    assert!(r.headers().get("x-upstream-hop").is_none(), "{r:?}");
    assert!(r.headers().get("keep-alive").is_none(), "{r:?}");
    for value in r.headers().get_all("connection") {
        let value = value.to_str().expect("ASCII");
        assert!(!value.contains("x-upstream-hop"), "connection: {value}");
    }
    assert_eq!(r.headers()["content-type"], "application/json");
}

#[tokio::test]
async fn large_request_body_reaches_the_upstream_whole() {
    let up = Upstream::echo().await;
    let gw = open_gateway(&up, "").await;
    let body = vec![b'x'; 5_000_000];
    let r = common::client()
        .post(gw.url("/upload"))
        .body(body)
        .send()
        .await
        .expect("sent");
    assert_eq!(r.status(), 200);
    let echo: Value = r.json().await.expect("json");
    assert_eq!(echo["method"], "POST");
    assert_eq!(echo["body_len"], 5_000_000);
    assert_eq!(echoed(&echo, "content-length"), ["5000000"]);
}

#[tokio::test]
async fn request_body_streams_to_the_upstream_before_the_client_finishes_it() {
    let up = Upstream::echo().await;
    let gw = open_gateway(&up, "").await;
    let mut stream = TcpStream::connect(gw.public).await.expect("connect");
    let head = format!(
        "POST /upload HTTP/1.1\r\nHost: {}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        gw.public
    );
    let chunk = vec![b'a'; 64 * 1024];
    let mut first = head.into_bytes();
    first.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
    first.extend_from_slice(&chunk);
    first.extend_from_slice(b"\r\n");
    stream.write_all(&first).await.expect("write head");
    // The body is not finished, yet the request is already at the upstream: the gateway
    // forwards as it reads instead of buffering the whole body first.
    up.wait_for_hits(1).await;
    let mut rest = Vec::new();
    for _ in 0..3 {
        rest.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        rest.extend_from_slice(&chunk);
        rest.extend_from_slice(b"\r\n");
    }
    rest.extend_from_slice(b"0\r\n\r\n");
    stream.write_all(&rest).await.expect("write rest");
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
        .await
        .expect("answer within 10s")
        .expect("read");
    let r = raw::parse(&answer);
    assert_eq!(r.status, 200, "{}", r.head);
    let echo: Value = serde_json::from_str(&r.body).expect("json");
    assert_eq!(echo["body_len"], 4 * 64 * 1024);
}

#[tokio::test]
async fn response_body_streams_to_the_client_before_the_upstream_finishes_it() {
    let up = Upstream::echo().await;
    let gw = open_gateway(&up, "").await;
    let mut r = common::client()
        .get(gw.url("/stream"))
        .send()
        .await
        .expect("sent");
    assert_eq!(r.status(), 200);
    // The upstream holds its last chunk until release(): the first one must arrive anyway.
    let first = tokio::time::timeout(Duration::from_secs(10), r.chunk())
        .await
        .expect("first chunk arrives before the upstream finishes")
        .expect("read")
        .expect("a chunk, not the end");
    assert_eq!(&first[..], b"first-chunk;");
    up.release();
    let mut rest = Vec::new();
    while let Some(chunk) = tokio::time::timeout(Duration::from_secs(10), r.chunk())
        .await
        .expect("rest within 10s")
        .expect("read")
    {
        rest.extend_from_slice(&chunk);
    }
    assert_eq!(rest, b"last-chunk");
}

#[tokio::test]
async fn requests_are_spread_round_robin_over_the_upstreams() {
    let a = Upstream::named("a").await;
    let b = Upstream::named("b").await;
    let gw = TestGateway::spawn(&format!(
        "[[routes]]\nname = \"api\"\npath_prefix = \"/\"\nupstream = [\"{}\", \"{}\"]\n{OPEN}\n",
        a.url(),
        b.url()
    ))
    .await;
    let c = common::client();
    let mut seen = Vec::new();
    for _ in 0..6 {
        let echo = get_echo(&c, &gw.url("/x")).await;
        seen.push(echo["upstream"].as_str().expect("name").to_string());
    }
    assert!(
        seen.windows(2).all(|w| w[0] != w[1]),
        "targets alternate: {seen:?}"
    );
    assert_eq!((a.hits(), b.hits()), (3, 3));
}

#[tokio::test]
async fn a_refusing_target_is_retried_elsewhere_and_then_skipped() {
    let live = Upstream::named("live").await;
    let dead = refused_url();
    let gw = TestGateway::spawn(&format!(
        "[[routes]]\nname = \"api\"\npath_prefix = \"/\"\nupstream = [\"{dead}\", \"{}\"]\n{OPEN}\n",
        live.url()
    ))
    .await;
    let c = common::client();
    // The first pick is the dead target: a GET is retried on the other one.
    let echo = get_echo(&c, &gw.url("/first")).await;
    assert_eq!(echo["upstream"], "live");
    // Requests with a body are never retried, so these succeed only because the dead
    // target is now skipped instead of taking its turn.
    for i in 0..6 {
        let r = c
            .post(gw.url("/write"))
            .body(format!("payload {i}"))
            .send()
            .await
            .expect("sent");
        assert_eq!(r.status(), 200, "POST #{i} went to the dead target");
    }
    assert_eq!(live.hits(), 7);
}

#[tokio::test]
async fn an_unreachable_upstream_is_502_json() {
    let gw = TestGateway::spawn(&route("api", "/", &refused_url(), OPEN)).await;
    let r = common::client()
        .get(gw.url("/x"))
        .send()
        .await
        .expect("sent");
    assert_eq!(r.status(), 502);
    assert_eq!(r.headers()["content-type"], "application/json");
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["error"], "bad_gateway");
    let m = gw.metrics().await;
    assert_eq!(
        common::count(
            &m,
            "tollgate_requests_total",
            &[("route", "api"), ("status", "502")]
        ),
        1
    );
}

#[tokio::test]
async fn an_upstream_without_headers_within_the_route_timeout_is_504_json() {
    let up = Upstream::echo().await;
    let gw = open_gateway(&up, "timeout = \"300ms\"").await;
    let started = Instant::now();
    let r = common::client()
        .get(gw.url("/slow"))
        .send()
        .await
        .expect("sent");
    let waited = started.elapsed();
    up.release();
    assert_eq!(r.status(), 504);
    assert_eq!(r.headers()["content-type"], "application/json");
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["error"], "gateway_timeout");
    assert!(
        waited >= Duration::from_millis(300),
        "answered after {waited:?}, before the timeout"
    );
    assert!(
        waited < Duration::from_secs(10),
        "answered after {waited:?}"
    );
    assert_eq!(up.hits(), 1);
    // A fast request on the same route is unaffected.
    get_echo(&common::client(), &gw.url("/fast")).await;
}

#[tokio::test]
async fn upgrade_requests_are_passed_through_and_bytes_flow_both_ways() {
    let up = Upstream::echo().await;
    let gw = open_gateway(&up, "").await;
    let mut stream = TcpStream::connect(gw.public).await.expect("connect");
    let request = format!(
        "GET /ws HTTP/1.1\r\nHost: {}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        gw.public
    );
    stream
        .write_all(request.as_bytes())
        .await
        .expect("write request");
    let (head, early) = raw::read_head(&mut stream).await;
    assert_eq!(head.status, 101, "{}", head.head);
    assert_eq!(head.header("upgrade"), Some("websocket"));
    assert!(early.is_empty(), "no bytes before we send any: {early:?}");
    for message in [&b"hello through the gateway"[..], b"and a second frame"] {
        stream.write_all(message).await.expect("write upgraded");
        let mut back = vec![0u8; message.len()];
        tokio::time::timeout(Duration::from_secs(10), stream.read_exact(&mut back))
            .await
            .expect("echo within 10s")
            .expect("read upgraded");
        assert_eq!(back, message);
    }
    assert_eq!(up.hits(), 1);
}

#[tokio::test]
async fn http2_prior_knowledge_on_the_public_port_is_proxied() {
    let up = Upstream::echo().await;
    let gw = open_gateway(&up, "").await;
    let c = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .expect("client");
    let r = c
        .post(gw.url("/h2?q=1"))
        .body("over h2")
        .send()
        .await
        .expect("sent");
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    assert_eq!(r.status(), 200);
    let echo: Value = r.json().await.expect("json");
    assert_eq!(echo["path"], "/h2");
    assert_eq!(echo["query"], "q=1");
    assert_eq!(echo["body"], "over h2");
    // HTTP/2 has no Host header: the :authority travels as X-Forwarded-Host.
    assert_eq!(echoed(&echo, "x-forwarded-host"), [gw.public.to_string()]);
}
