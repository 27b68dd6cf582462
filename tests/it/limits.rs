//! The `[server]` limits, over real sockets: `max_connections` (extra connections wait in
//! the backlog), `request_head_timeout` and `keepalive_timeout` (on the fast lane, on hyper
//! after a request with a body, and over HTTP/2), `max_request_body` (global and per
//! route, declared and chunked, proxied and at `/oauth/token`) and `request_body_timeout`
//! (slow bodies at `/oauth/token`, the login form, `/verify` and a proxied route). After
//! every refusal the next good request succeeds.

use crate::common::oauth::{AuthConfig, AuthServer, REPORTS, RESOURCE_SERVER};
use crate::common::{self, raw, route, server_section, TestGateway, Upstream};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const OPEN: &str = "auth = \"none\"";

/// Bodies the echo upstream answers 200 to; the fast lane takes the GET, hyper the POST.
const FAST_LANE_GET: &str = "GET /api/x HTTP/1.1\r\nHost: gw\r\n\r\n";
const HYPER_POST: &str = "POST /api/x HTTP/1.1\r\nHost: gw\r\nContent-Length: 2\r\n\r\nhi";
const ENGINES: [(&str, &str); 2] = [("fast lane", FAST_LANE_GET), ("hyper", HYPER_POST)];

/// tollgate with these `[server]` keys and an open route `/api` to `up`.
async fn gateway(server_keys: &str, up: &Upstream) -> TestGateway {
    TestGateway::spawn(&format!(
        "{}{}",
        server_section(server_keys),
        route("api", "/api", &up.url(), OPEN)
    ))
    .await
}

async fn connect(addr: SocketAddr) -> TcpStream {
    TcpStream::connect(addr).await.expect("connect")
}

/// Sends `request` on a new connection and reads its answer; the connection stays open.
async fn served(addr: SocketAddr, request: &str) -> TcpStream {
    let mut stream = connect(addr).await;
    stream.write_all(request.as_bytes()).await.expect("write");
    let response = raw::read_response(&mut stream).await;
    assert_eq!(response.status, 200, "{}", response.body);
    stream
}

fn error_code(response: &raw::RawResponse) -> String {
    let body: Value = serde_json::from_str(&response.body)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", response.body));
    body["error"].as_str().unwrap_or("").to_string()
}

async fn open_connections(gw: &TestGateway) -> u64 {
    common::count(
        &gw.metrics().await,
        "tollgate_open_connections",
        &[("listener", "public")],
    )
}

// ---------------------------------------------------------------- connections

#[tokio::test]
async fn max_connections_leaves_extra_connections_waiting_until_one_closes() {
    let up = Upstream::echo().await;
    let gw = gateway("max_connections = 2", &up).await;
    for (engine, request) in ENGINES {
        let first = served(gw.public, request).await;
        let second = served(gw.public, request).await;
        // The third connects (the kernel's backlog takes it) but is not served...
        let mut third = connect(gw.public).await;
        third.write_all(request.as_bytes()).await.expect("write");
        let early =
            tokio::time::timeout(Duration::from_millis(300), raw::read_response(&mut third)).await;
        assert!(early.is_err(), "{engine}: a third connection was served");
        assert_eq!(open_connections(&gw).await, 2, "{engine}");
        // ...until one of the two closes.
        drop(first);
        let response = raw::read_response(&mut third).await;
        assert_eq!(response.status, 200, "{engine}: {}", response.body);
        drop((second, third));
    }
}

/// Reads exactly `want.len()` bytes from `stream` (bounded by 5 s) and compares them.
async fn echoed(stream: &mut TcpStream, want: &[u8]) {
    let mut got = vec![0u8; want.len()];
    tokio::time::timeout(
        Duration::from_secs(5),
        tokio::io::AsyncReadExt::read_exact(stream, &mut got),
    )
    .await
    .expect("echo within 5 s")
    .expect("echo read");
    assert_eq!(got, want);
}

/// A WebSocket outlives the HTTP exchange that upgraded it: it keeps its connection's place
/// under `max_connections` and in `tollgate_open_connections`, and a graceful shutdown
/// waits for it (up to the drain deadline) while bytes keep flowing both ways.
#[tokio::test]
async fn an_open_websocket_holds_its_connection_slot_and_the_drain_waits_for_it() {
    let up = Upstream::echo().await;
    let mut gw = TestGateway::spawn(&format!(
        "{}{}",
        server_section("max_connections = 1"),
        route("ws", "/ws", &up.url(), OPEN)
    ))
    .await;
    let mut ws = connect(gw.public).await;
    ws.write_all(
        b"GET /ws HTTP/1.1\r\nHost: gw\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
    )
    .await
    .expect("write");
    let (switched, early_bytes) = raw::read_head(&mut ws).await;
    assert_eq!(switched.status, 101, "{}", switched.head);
    assert!(early_bytes.is_empty(), "{early_bytes:?}");
    ws.write_all(b"ping").await.expect("write");
    echoed(&mut ws, b"ping").await;

    // The only slot is the WebSocket's: another connection waits in the backlog.
    let mut other = connect(gw.public).await;
    other
        .write_all(FAST_LANE_GET.as_bytes())
        .await
        .expect("write");
    let early =
        tokio::time::timeout(Duration::from_millis(300), raw::read_response(&mut other)).await;
    assert!(
        early.is_err(),
        "a second connection was served beside the WebSocket"
    );
    assert_eq!(open_connections(&gw).await, 1);
    drop(other);

    let running = gw.running.take().expect("running");
    let shutdown = tokio::spawn(running.shutdown());
    // Draining: the WebSocket still carries data and shutdown waits for it.
    ws.write_all(b"still there").await.expect("write");
    echoed(&mut ws, b"still there").await;
    assert!(
        !shutdown.is_finished(),
        "shutdown did not wait for the WebSocket"
    );
    drop(ws);
    tokio::time::timeout(Duration::from_secs(10), shutdown)
        .await
        .expect("shutdown completes once the WebSocket closed")
        .expect("shutdown task");
}

#[tokio::test]
async fn request_head_timeout_closes_a_connection_whose_head_does_not_arrive() {
    let up = Upstream::echo().await;
    let gw = gateway(
        "request_head_timeout = \"300ms\"\nkeepalive_timeout = \"20s\"",
        &up,
    )
    .await;
    let partial = "GET /api/x HTTP/1.1\r\nHost: gw\r\n";
    // (what, listener, request served first on the connection, bytes then sent)
    let cases = [
        ("nothing sent, fast lane", gw.public, None, ""),
        ("nothing sent, hyper", gw.internal, None, ""),
        ("half a first head, fast lane", gw.public, None, partial),
        ("half a first head, hyper", gw.internal, None, partial),
        (
            "half a head after a request, fast lane",
            gw.public,
            Some(FAST_LANE_GET),
            partial,
        ),
        (
            "half a head after a request, hyper",
            gw.public,
            Some(HYPER_POST),
            partial,
        ),
    ];
    for (what, addr, first, bytes) in cases {
        let mut stream = match first {
            Some(request) => served(addr, request).await,
            None => connect(addr).await,
        };
        stream.write_all(bytes.as_bytes()).await.expect("write");
        let (after, received) = raw::closed_within(&mut stream, Duration::from_secs(5)).await;
        // Closed by the head timeout: not at once, and long before the keep-alive limit.
        assert!(
            after >= Duration::from_millis(200),
            "{what}: after {after:?}"
        );
        assert!(received.is_empty(), "{what}: {received:?}");
    }
    let response = raw::get(gw.public, "/api/x", "").await;
    assert_eq!(response.status, 200, "still serving");
}

#[tokio::test]
async fn keepalive_timeout_closes_an_idle_connection_but_not_at_the_head_timeout() {
    let up = Upstream::echo().await;
    let gw = gateway(
        "request_head_timeout = \"200ms\"\nkeepalive_timeout = \"1s\"",
        &up,
    )
    .await;
    for (engine, request) in ENGINES {
        let mut stream = served(gw.public, request).await;
        let (idle, _) = raw::closed_within(&mut stream, Duration::from_secs(5)).await;
        assert!(
            idle >= Duration::from_millis(800),
            "{engine}: after {idle:?}"
        );
    }
    let idle = idle_http2_connection_lifetime(gw.public).await;
    assert!(idle >= Duration::from_millis(800), "HTTP/2: after {idle:?}");
    assert!(idle < Duration::from_secs(5), "HTTP/2: after {idle:?}");
}

/// Makes one HTTP/2 (prior knowledge) request and measures how long the connection then
/// stays open.
async fn idle_http2_connection_lifetime(addr: SocketAddr) -> Duration {
    let io = TokioIo::new(connect(addr).await);
    let (mut sender, connection) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
        .await
        .expect("HTTP/2 handshake");
    let connection = tokio::spawn(connection);
    let request = http::Request::get(format!("http://{addr}/api/x"))
        .body(Empty::<Bytes>::new())
        .expect("request");
    let response = sender.send_request(request).await.expect("answered");
    assert_eq!(response.status(), 200);
    response.into_body().collect().await.expect("body");
    let idle = Instant::now();
    tokio::time::timeout(Duration::from_secs(5), connection)
        .await
        .expect("the server ended the idle HTTP/2 connection within 5s")
        .expect("the connection task ran")
        .ok();
    idle.elapsed()
}

// ---------------------------------------------------------------- body size

#[tokio::test]
async fn a_body_over_the_route_limit_is_413_and_never_reaches_the_upstream() {
    let up = Upstream::echo().await;
    let gw = TestGateway::spawn(&format!(
        "{}{}{}{}",
        server_section("max_request_body = \"1KiB\""),
        route("api", "/api", &up.url(), OPEN),
        route(
            "small",
            "/small",
            &up.url(),
            "auth = \"none\"\nmax_request_body = \"100B\""
        ),
        route(
            "big",
            "/big",
            &up.url(),
            "auth = \"none\"\nmax_request_body = \"8KiB\""
        ),
    ))
    .await;
    let post = |path: &str, len: usize| {
        common::client()
            .post(gw.url(path))
            .body("x".repeat(len))
            .send()
    };
    // (path, body length, status)
    let cases = [
        ("/api/x", 2048, 413),
        ("/small/x", 200, 413),
        ("/api/x", 1024, 200),
        ("/small/x", 100, 200),
        ("/big/x", 2048, 200),
        ("/big/x", 8193, 413),
    ];
    for (path, len, want) in cases {
        let hits = up.hits();
        let r = post(path, len).await.expect("answered");
        assert_eq!(r.status(), want, "{path} with {len} bytes");
        let body: Value = r.json().await.expect("JSON");
        if want == 413 {
            assert_eq!(body["error"], "request_too_large", "{body}");
            assert_eq!(
                up.hits(),
                hits,
                "{path}: the upstream saw a refused request"
            );
        } else {
            assert_eq!(body["body_len"], len, "{body}");
        }
    }
}

#[tokio::test]
async fn a_chunked_body_crossing_the_limit_is_cut_with_413() {
    let up = Upstream::echo().await;
    let gw = gateway("max_request_body = \"1KiB\"", &up).await;
    let chunk = "x".repeat(800);
    let head = "POST /api/x HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n";
    // Two chunks cross the limit; the last chunk never comes.
    let request = format!("{head}320\r\n{chunk}\r\n320\r\n{chunk}\r\n");
    let mut stream = connect(gw.public).await;
    stream.write_all(request.as_bytes()).await.expect("write");
    let (response, _) = raw::read_head(&mut stream).await;
    assert_eq!(response.status, 413, "{}", response.head);
    // Under the limit, chunked is fine.
    let small = format!("{head}320\r\n{chunk}\r\n0\r\n\r\n");
    drop(served(gw.public, &small).await);
}

#[tokio::test]
async fn token_endpoint_refuses_bodies_over_the_server_limit_with_413() {
    let s = AuthConfig::default()
        .server("max_request_body = \"1KiB\"")
        .spawn()
        .await;
    let form = format!("grant_type=client_credentials&pad={}", "x".repeat(2048));
    let r = common::client()
        .post(s.url("/oauth/token"))
        .basic_auth(REPORTS.id, REPORTS.secret)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .expect("answered");
    assert_eq!(r.status(), 413);
    let body: Value = r.json().await.expect("JSON");
    assert_eq!(body["error"], "invalid_request", "{body}");

    let head = "POST /oauth/token HTTP/1.1\r\nHost: gw\r\n\
                Content-Type: application/x-www-form-urlencoded\r\n\
                Transfer-Encoding: chunked\r\n\r\n";
    let chunk = "x".repeat(800);
    let request = format!("{head}320\r\n{chunk}\r\n320\r\n{chunk}\r\n");
    let mut stream = connect(s.gw.public).await;
    stream.write_all(request.as_bytes()).await.expect("write");
    let response = raw::read_response(&mut stream).await;
    assert_eq!(response.status, 413, "{}", response.body);
    assert_eq!(error_code(&response), "invalid_request");

    assert_token_endpoint_works(&s).await;
}

async fn assert_token_endpoint_works(s: &AuthServer) {
    let answer = s
        .token(REPORTS, &[("grant_type", "client_credentials")])
        .await;
    assert_eq!(answer.status, 200, "{}", answer.json);
}

// ---------------------------------------------------------------- body time

/// A head declaring a 100-byte body, then 10 bytes of it, then silence.
fn stalled_post(path: &str, content_type: &str, auth: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: gw\r\nContent-Type: {content_type}\r\n{auth}\
         Content-Length: 100\r\n\r\ngrant_type"
    )
}

/// Sends `request` and waits for the answer, which must come within 5 s (the body
/// timeout is 300 ms) and close the connection.
async fn answer_to_stalled(addr: SocketAddr, request: &str) -> raw::RawResponse {
    let started = Instant::now();
    let response = raw::send(addr, request).await;
    let after = started.elapsed();
    assert!(
        after >= Duration::from_millis(250),
        "answered after {after:?}"
    );
    assert!(after < Duration::from_secs(5), "answered after {after:?}");
    response
}

#[tokio::test]
async fn a_slow_body_is_408_at_the_token_endpoint_the_login_form_and_verify() {
    let s = AuthConfig::default()
        .server("request_body_timeout = \"300ms\"")
        .spawn()
        .await;
    let form = "application/x-www-form-urlencoded";
    let response = answer_to_stalled(s.gw.public, &stalled_post("/oauth/token", form, "")).await;
    assert_eq!(response.status, 408, "{}", response.body);
    assert_eq!(error_code(&response), "invalid_request");

    let response = answer_to_stalled(s.gw.public, &stalled_post("/oauth/login", form, "")).await;
    assert_eq!(response.status, 408, "{}", response.body);
    assert_eq!(
        response.header("content-type"),
        Some("text/html; charset=utf-8"),
        "the login form gets a page"
    );

    let response = answer_to_stalled(s.gw.internal, &stalled_post("/verify", form, "")).await;
    assert_eq!(response.status, 408, "{}", response.body);
    assert_eq!(error_code(&response), "invalid_request");

    // Still healthy: the next good requests succeed.
    assert_token_endpoint_works(&s).await;
    let answer = s.verify_as(RESOURCE_SERVER, "no-such-token").await;
    assert_eq!(answer.status, 200, "{}", answer.json);
    assert_eq!(answer.json["active"], false);
}

#[tokio::test]
async fn a_proxied_body_that_pauses_past_the_limit_is_408() {
    let up = Upstream::echo().await;
    let gw = gateway("request_body_timeout = \"300ms\"", &up).await;
    let response = answer_to_stalled(gw.public, &stalled_post("/api/x", "text/plain", "")).await;
    assert_eq!(response.status, 408, "{}", response.body);
    assert_eq!(error_code(&response), "request_timeout");
    // Still healthy, on both engines.
    for (_, request) in ENGINES {
        drop(served(gw.public, request).await);
    }
}

#[tokio::test]
async fn a_proxied_body_may_take_long_if_it_never_pauses_past_the_limit() {
    let up = Upstream::echo().await;
    let gw = gateway("request_body_timeout = \"300ms\"", &up).await;
    let mut stream = connect(gw.public).await;
    stream
        .write_all(b"POST /api/x HTTP/1.1\r\nHost: gw\r\nContent-Length: 8\r\n\r\n")
        .await
        .expect("write");
    // 8 pieces 100 ms apart: 800 ms in all, no pause near 300 ms.
    for piece in b"slowbody" {
        tokio::time::sleep(Duration::from_millis(100)).await;
        stream.write_all(&[*piece]).await.expect("write");
    }
    let response = raw::read_response(&mut stream).await;
    assert_eq!(response.status, 200, "{}", response.body);
    let echo: Value = serde_json::from_str(&response.body).expect("JSON");
    assert_eq!(echo["body"], "slowbody");
}
