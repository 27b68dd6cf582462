//! The HTTP/1.1 fast lane (body-less GET/HEAD on plain TCP): every way an upstream may frame
//! a response, upstream connection reuse and replacement, pipelining, errors that keep the
//! connection, and hand-over to hyper in the middle of a connection.

use crate::common::scripted::{Scripted, Step};
use crate::common::{self, raw, route, TestGateway, Upstream};
use serde_json::Value;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const OPEN: &str = "auth = \"none\"";

/// Canned answers chosen by path, for the fast lane's framing cases.
fn script(path: &str, served: usize) -> Vec<Step> {
    use Step::{Close, Write};
    match path {
        "/chunked" => vec![
            Write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel"),
            Write(b"lo\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n"),
        ],
        "/until-close" => vec![
            Write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil "),
            Write(b"close"),
            Close,
        ],
        // Keep-alive by its headers, then closed anyway: what an upstream's idle timeout does.
        "/then-close" => vec![
            Write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"),
            Close,
        ],
        "/early-hints" => vec![
            Write(b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"),
            Write(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfinal"),
        ],
        "/bad-length" => vec![
            Write(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab"),
            Close,
        ],
        // Looks reusable, but takes a second request only to close without an answer: the
        // race between reusing an idle connection and the upstream's idle timeout.
        "/answer-once" if served > 1 => vec![Close],
        _ => vec![Write(
            b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\nConnection: keep-alive\r\n\r\ndefault",
        )],
    }
}

async fn connect(gw: &TestGateway) -> TcpStream {
    TcpStream::connect(gw.public).await.expect("connect")
}

async fn send(stream: &mut TcpStream, request: &str) {
    stream.write_all(request.as_bytes()).await.expect("write");
}

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: gw.test\r\n\r\n")
}

/// Reads one response with a Content-Length body from a connection that stays open.
async fn read_sized(stream: &mut TcpStream) -> raw::RawResponse {
    let (mut response, mut body) = raw::read_head(stream).await;
    let length: usize = response
        .header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no content-length in {}", response.head));
    while body.len() < length {
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut chunk))
            .await
            .expect("body within 10s")
            .expect("read");
        assert!(n > 0, "closed inside the body");
        body.extend_from_slice(&chunk[..n]);
    }
    assert_eq!(body.len(), length, "no bytes beyond the body");
    response.body = String::from_utf8_lossy(&body).into_owned();
    response
}

/// Reads until `marker` has arrived (bounded), for bodies without a length.
async fn read_until(stream: &mut TcpStream, marker: &[u8]) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buf.windows(marker.len()).any(|w| w == marker) {
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut chunk))
            .await
            .expect("bytes within 10s")
            .expect("read");
        assert!(n > 0, "closed before {marker:?}: {buf:?}");
        buf.extend_from_slice(&chunk[..n]);
    }
    buf
}

/// Reads everything until the gateway closes the connection (bounded).
async fn read_until_closed(stream: &mut TcpStream) -> Vec<u8> {
    let mut all = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut all))
        .await
        .expect("the gateway closes the connection")
        .expect("read");
    all
}

async fn scripted_gateway() -> (Scripted, TestGateway) {
    let up = Scripted::spawn(script).await;
    let gw = TestGateway::spawn(&route("api", "/", &up.url, OPEN)).await;
    (up, gw)
}

/// A gateway with one open route to an echo upstream, and a client connection to it.
async fn echo_client() -> (Upstream, TestGateway, TcpStream) {
    let up = Upstream::echo().await;
    let gw = TestGateway::spawn(&route("api", "/", &up.url(), OPEN)).await;
    let client = connect(&gw).await;
    (up, gw, client)
}

/// A gateway in front of a scripted upstream, and a client connection that has sent
/// `GET path` on it.
async fn scripted_get(path: &str) -> (Scripted, TestGateway, TcpStream) {
    let (up, gw) = scripted_gateway().await;
    let mut client = connect(&gw).await;
    send(&mut client, &get(path)).await;
    (up, gw, client)
}

#[tokio::test]
async fn chunked_bodies_are_relayed_whole_with_trailers_over_one_upstream_connection() {
    let (up, gw) = scripted_gateway().await;
    let mut client = connect(&gw).await;
    for _ in 0..3 {
        send(&mut client, &get("/chunked")).await;
        let bytes = read_until(&mut client, b"X-Trailer: t\r\n\r\n").await;
        let text = String::from_utf8_lossy(&bytes);
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        assert!(
            text.ends_with("\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n"),
            "{text}"
        );
    }
    assert_eq!(up.connections(), 1, "the upstream connection is kept alive");
}

#[tokio::test]
async fn a_body_delimited_by_close_closes_the_client_connection_after_it() {
    let (_up, _gw, mut client) = scripted_get("/until-close").await;
    let all = read_until_closed(&mut client).await;
    let response = raw::parse(&all);
    assert_eq!(response.status, 200);
    assert_eq!(response.header("connection"), Some("close"));
    assert_eq!(response.body, "until close");
}

/// Sends `GET path` three times on one client connection, checks each answer, and says
/// how many upstream connections the scripted upstream accepted meanwhile.
async fn three_gets_on_one_client(path: &str, body: &str) -> usize {
    let (up, gw) = scripted_gateway().await;
    let mut client = connect(&gw).await;
    for round in 1..=3 {
        send(&mut client, &get(path)).await;
        let response = read_sized(&mut client).await;
        assert_eq!(response.status, 200, "round {round}");
        assert_eq!(response.body, body);
    }
    up.connections()
}

#[tokio::test]
async fn an_upstream_connection_closed_while_idle_is_replaced_without_an_error() {
    let connections = three_gets_on_one_client("/then-close", "ok").await;
    assert_eq!(connections, 3, "a fresh connection each time");
}

#[tokio::test]
async fn a_reused_connection_closed_unanswered_is_retried_on_a_fresh_one() {
    let connections = three_gets_on_one_client("/answer-once", "default").await;
    assert_eq!(
        connections, 3,
        "each later request needed a fresh connection"
    );
}

#[tokio::test]
async fn interim_responses_are_dropped_and_the_final_one_relayed() {
    let (_up, _gw, mut client) = scripted_get("/early-hints").await;
    let response = read_sized(&mut client).await;
    assert_eq!(response.status, 200);
    assert_eq!(response.body, "final");
}

#[tokio::test]
async fn a_malformed_upstream_response_is_502_and_the_client_connection_stays() {
    let (_up, _gw, mut client) = scripted_get("/bad-length").await;
    let response = read_sized(&mut client).await;
    assert_eq!(response.status, 502);
    let body: Value = serde_json::from_str(&response.body).expect("JSON error");
    assert_eq!(body["error"], "bad_gateway");
    send(&mut client, &get("/")).await;
    assert_eq!(read_sized(&mut client).await.body, "default");
}

#[tokio::test]
async fn head_gets_the_headers_and_no_body_and_the_connection_goes_on() {
    let (_up, _gw, mut client) = echo_client().await;
    send(&mut client, "HEAD /h HTTP/1.1\r\nHost: gw.test\r\n\r\n").await;
    let (head, extra) = raw::read_head(&mut client).await;
    assert_eq!(head.status, 200);
    assert!(head.header("content-length").is_some(), "{}", head.head);
    assert!(extra.is_empty(), "no body after a HEAD response");
    send(&mut client, &get("/after-head")).await;
    let echo: Value = serde_json::from_str(&read_sized(&mut client).await.body).expect("echo");
    assert_eq!(echo["method"], "GET");
    assert_eq!(echo["path"], "/after-head");
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order() {
    let (_up, _gw, mut client) = echo_client().await;
    send(
        &mut client,
        &format!("{}{}{}", get("/one"), get("/two"), get("/three")),
    )
    .await;
    for expected in ["/one", "/two", "/three"] {
        let echo: Value = serde_json::from_str(&read_sized(&mut client).await.body).expect("echo");
        assert_eq!(echo["path"], expected);
    }
}

#[tokio::test]
async fn a_request_with_a_body_mid_connection_is_served_by_the_full_server() {
    let (_up, _gw, mut client) = echo_client().await;
    send(&mut client, &get("/first")).await;
    let echo: Value = serde_json::from_str(&read_sized(&mut client).await.body).expect("echo");
    assert_eq!(echo["path"], "/first");
    send(
        &mut client,
        "POST /second HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 5\r\n\r\nhello",
    )
    .await;
    let (head, body) = raw::read_head(&mut client).await;
    assert_eq!(head.status, 200);
    let rest = read_until_json_end(&mut client, body).await;
    let echo: Value = serde_json::from_str(&rest).expect("echo");
    assert_eq!(echo["method"], "POST");
    assert_eq!(echo["body"], "hello");
    send(&mut client, &get("/third")).await;
    let (head, _) = raw::read_head(&mut client).await;
    assert_eq!(
        head.status, 200,
        "the connection goes on after the hand-over"
    );
}

/// The echo body is one JSON object; hyper may send it chunked or sized.
async fn read_until_json_end(stream: &mut TcpStream, mut body: Vec<u8>) -> String {
    let mut chunk = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&body).into_owned();
        let dechunked = raw::parse(format!("HTTP/1.1 200 OK\r\n\r\n{text}").as_bytes()).body;
        if let Some(start) = dechunked.find('{') {
            if serde_json::from_str::<Value>(dechunked[start..].trim_end_matches(|c| c != '}'))
                .is_ok()
            {
                return dechunked[start..]
                    .trim_end_matches(|c| c != '}')
                    .to_string();
            }
        }
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut chunk))
            .await
            .expect("body within 10s")
            .expect("read");
        assert!(n > 0, "closed inside the body");
        body.extend_from_slice(&chunk[..n]);
    }
}

#[tokio::test]
async fn a_head_that_arrives_in_pieces_is_served() {
    let (_up, _gw, mut client) = echo_client().await;
    send(&mut client, "GET /pieces HTTP/1.1\r\nHo").await;
    // No readiness signal exists for "the gateway has read the first piece"; whether or not
    // it has, the answer must be the same.
    tokio::time::sleep(Duration::from_millis(50)).await;
    send(&mut client, "st: gw.test\r\n\r\n").await;
    let (head, _) = raw::read_head(&mut client).await;
    assert_eq!(head.status, 200);
}

#[tokio::test]
async fn refusals_on_the_fast_lane_keep_the_connection_and_are_counted() {
    let up = Upstream::echo().await;
    let gw = TestGateway::spawn(&format!(
        "{}{}",
        route("open", "/open", &up.url(), OPEN),
        route(
            "guarded",
            "/guarded",
            &up.url(),
            "auth = \"bearer\"\nscopes = [\"x\"]"
        ),
    ))
    .await;
    let mut client = connect(&gw).await;
    send(&mut client, &get("/nowhere")).await;
    let response = read_sized(&mut client).await;
    assert_eq!(response.status, 404);
    send(&mut client, &get("/guarded/a")).await;
    let response = read_sized(&mut client).await;
    assert_eq!(response.status, 401);
    assert_eq!(
        response
            .header("www-authenticate")
            .map(crate::common::without_resource_metadata)
            .as_deref(),
        Some(r#"Bearer realm="tollgate""#)
    );
    send(
        &mut client,
        "HEAD /guarded/a HTTP/1.1\r\nHost: gw.test\r\nAuthorization: Bearer a b\r\n\r\n",
    )
    .await;
    let (head, extra) = raw::read_head(&mut client).await;
    assert_eq!(head.status, 401);
    assert!(extra.is_empty(), "no error body after HEAD");
    send(&mut client, &get("/open/fine")).await;
    assert_eq!(read_sized(&mut client).await.status, 200);

    let metrics = gw.metrics().await;
    let count = |route: &str, status: &str| {
        common::count(
            &metrics,
            "tollgate_requests_total",
            &[("route", route), ("status", status)],
        )
    };
    assert_eq!(count("_none", "404"), 1);
    assert_eq!(count("guarded", "401"), 2);
    assert_eq!(count("open", "200"), 1);
}
