//! The fast lane over TLS: HTTP/1.1 (by ALPN, or with no ALPN at all) takes the same loop
//! as on plain TCP and hands over to hyper the same way; HTTP/2 stays on hyper. And the
//! fast lane's upstream connections belong to the target, not to the client connection.
//!
//! Which engine answered is told by a probe header: the upstream below spells it
//! `X-Engine-Probe`; the fast lane relays the upstream's head byte for byte, while hyper
//! writes every header name in lower case.

use crate::common::{self, raw, remote_verify, route, tls, Introspector, TestGateway};
use serde_json::{json, Map, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

const TOKEN: &str = "tok-tls-lane-4c1e";
const PROBE_AS_SENT: &str = "\r\nX-Engine-Probe: sent\r\n";
const PROBE_LOWERED: &str = "\r\nx-engine-probe: sent\r\n";

/// A raw HTTP/1.1 upstream: answers every request (keep-alive) with its method, path,
/// headers and body as JSON, under a response header spelled `X-Engine-Probe`. Counts its
/// connections; stops with every connection when dropped.
struct ProbeEcho {
    url: String,
    connections: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ProbeEcho {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ProbeEcho {
    async fn spawn() -> ProbeEcho {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let connections = Arc::new(AtomicUsize::new(0));
        let counter = connections.clone();
        let task = tokio::spawn(async move {
            let mut served = JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((stream, _)) = accepted else { continue };
                        counter.fetch_add(1, Ordering::SeqCst);
                        served.spawn(echo(stream));
                    }
                    Some(_) = served.join_next(), if !served.is_empty() => {}
                }
            }
        });
        ProbeEcho {
            url,
            connections,
            task,
        }
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

async fn echo(mut stream: TcpStream) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            match stream.read(&mut chunk).await {
                Ok(n) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                _ => return,
            }
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        buf.drain(..end + 4);
        let mut lines = head.split("\r\n");
        let mut request_line = lines.next().unwrap_or("").split(' ');
        let (method, path) = (request_line.next(), request_line.next());
        let mut headers = Map::new();
        for line in lines {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            let values = headers
                .entry(name.trim().to_ascii_lowercase())
                .or_insert_with(|| json!([]));
            if let Value::Array(values) = values {
                values.push(json!(value.trim()));
            }
        }
        let length: usize = headers
            .get("content-length")
            .and_then(|v| v[0].as_str()?.parse().ok())
            .unwrap_or(0);
        while buf.len() < length {
            match stream.read(&mut chunk).await {
                Ok(n) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                _ => return,
            }
        }
        let body: Vec<u8> = buf.drain(..length).collect();
        let answer = json!({
            "method": method,
            "path": path,
            "headers": headers,
            "body": String::from_utf8_lossy(&body),
        })
        .to_string();
        let response = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Engine-Probe: sent\r\n\
             Content-Length: {}\r\n\r\n{answer}",
            answer.len()
        );
        if stream.write_all(response.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// A gateway with plain and TLS listeners (the TLS one's HTTP/1.1 on the fast lane, or on
/// hyper alone) and one bearer route `/api` to a probe echo, verified by an introspector
/// that knows [`TOKEN`] as alice's.
async fn guarded(fast_tls: bool) -> (TestGateway, String, ProbeEcho, Introspector) {
    let up = ProbeEcho::spawn().await;
    let introspector = Introspector::spawn(Duration::ZERO).await;
    introspector.active(TOKEN, "alice", "email");
    let body = format!(
        "{}{}",
        remote_verify(&introspector, ""),
        route(
            "api",
            "/api",
            &up.url,
            "auth = \"bearer\"\nscopes = [\"email\"]"
        )
    );
    let (gw, cert) = tls::spawn_gateway_with(&body, fast_tls).await;
    (gw, cert, up, introspector)
}

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: gw.test\r\nAuthorization: Bearer {TOKEN}\r\n\r\n")
}

/// Sends `request` on `conn` and reads the answer (sized or chunked).
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut S,
    request: &str,
) -> raw::RawResponse {
    conn.write_all(request.as_bytes()).await.expect("write");
    raw::read_response(conn).await
}

fn echo_of(response: &raw::RawResponse) -> Value {
    let start = response.body.find('{').unwrap_or(0);
    serde_json::from_str(&response.body[start..])
        .unwrap_or_else(|e| panic!("not the echo ({e}): {}", response.head))
}

fn took_fast_lane(response: &raw::RawResponse) -> bool {
    assert!(
        response.head.contains(PROBE_AS_SENT) || response.head.contains(PROBE_LOWERED),
        "no probe header: {}",
        response.head
    );
    response.head.contains(PROBE_AS_SENT)
}

#[tokio::test]
async fn a_guarded_get_over_tls_http1_takes_the_fast_lane_with_identity_and_https() {
    let (gw, cert, up, _introspector) = guarded(true).await;
    for alpn in [&[b"http/1.1".as_slice()][..], &[]] {
        let mut conn = tls::connect_raw_alpn(&cert, &gw, alpn).await;
        let response = exchange(&mut conn, &get("/api/inbox")).await;
        assert_eq!(response.status, 200, "ALPN {alpn:?}: {}", response.head);
        assert!(
            took_fast_lane(&response),
            "ALPN {alpn:?}: {}",
            response.head
        );
        let echo = echo_of(&response);
        assert_eq!(echo["path"], "/api/inbox");
        assert_eq!(common::echoed(&echo, "x-auth-subject"), ["alice"]);
        assert_eq!(common::echoed(&echo, "x-auth-scope"), ["email"]);
        assert_eq!(common::echoed(&echo, "x-forwarded-proto"), ["https"]);
        assert_eq!(common::echoed(&echo, "x-forwarded-host"), ["gw.test"]);
    }
    assert_eq!(
        up.connections(),
        1,
        "the second client reused the pooled connection"
    );
}

/// The probe is not vacuous: the same request to a TLS listener set to hyper alone comes
/// back with the header name in lower case, with the same identity and scheme upstream.
#[tokio::test]
async fn the_same_get_through_hyper_over_tls_is_told_apart_and_forwarded_alike() {
    let (gw, cert, _up, _introspector) = guarded(false).await;
    let mut conn = tls::connect_raw(&cert, &gw).await;
    let response = exchange(&mut conn, &get("/api/inbox")).await;
    assert_eq!(response.status, 200, "{}", response.head);
    assert!(!took_fast_lane(&response), "{}", response.head);
    let echo = echo_of(&response);
    assert_eq!(common::echoed(&echo, "x-auth-subject"), ["alice"]);
    assert_eq!(common::echoed(&echo, "x-forwarded-proto"), ["https"]);
}

#[tokio::test]
async fn a_post_over_tls_is_handed_to_hyper_and_the_connection_goes_on_there() {
    let (gw, cert, _up, _introspector) = guarded(true).await;
    let mut conn = tls::connect_raw(&cert, &gw).await;
    let first = exchange(&mut conn, &get("/api/first")).await;
    assert!(took_fast_lane(&first), "{}", first.head);
    let post = format!(
        "POST /api/second HTTP/1.1\r\nHost: gw.test\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Length: 5\r\n\r\nhello"
    );
    let second = exchange(&mut conn, &post).await;
    assert_eq!(second.status, 200, "{}", second.head);
    assert!(
        !took_fast_lane(&second),
        "hyper serves the POST: {}",
        second.head
    );
    let echo = echo_of(&second);
    assert_eq!(echo["method"], "POST");
    assert_eq!(echo["body"], "hello");
    assert_eq!(common::echoed(&echo, "x-forwarded-proto"), ["https"]);
    // A connection handed over stays with hyper.
    let third = exchange(&mut conn, &get("/api/third")).await;
    assert_eq!(third.status, 200, "{}", third.head);
    assert!(!took_fast_lane(&third), "{}", third.head);
}

#[tokio::test]
async fn keep_alive_over_tls_serves_many_requests_on_one_upstream_connection() {
    let (gw, cert, up, _introspector) = guarded(true).await;
    let mut conn = tls::connect_raw(&cert, &gw).await;
    for i in 0..50 {
        let response = exchange(&mut conn, &get(&format!("/api/n/{i}"))).await;
        assert_eq!(response.status, 200, "request {i}: {}", response.head);
        assert!(took_fast_lane(&response), "request {i}: {}", response.head);
        assert_eq!(echo_of(&response)["path"], format!("/api/n/{i}"));
    }
    // Two pipelined requests in one write: answered in order.
    let both = format!("{}{}", get("/api/p/1"), get("/api/p/2"));
    conn.write_all(both.as_bytes()).await.expect("write");
    for expected in ["/api/p/1", "/api/p/2"] {
        let response = raw::read_response(&mut conn).await;
        assert_eq!(echo_of(&response)["path"], expected);
    }
    assert_eq!(up.connections(), 1);
}

#[tokio::test]
async fn http2_over_tls_is_served_by_hyper_with_identity_and_https() {
    let (gw, cert, _up, _introspector) = guarded(true).await;
    let client = tls::client(&cert, &gw, false);
    for i in 0..3 {
        let response = client
            .get(tls::url(&gw, &format!("/api/h2/{i}")))
            .bearer_auth(TOKEN)
            .send()
            .await
            .expect("HTTP/2 request");
        assert_eq!(response.version(), reqwest::Version::HTTP_2);
        assert_eq!(response.status(), 200);
        let echo: Value = response.json().await.expect("echo");
        assert_eq!(echo["path"], format!("/api/h2/{i}"));
        assert_eq!(common::echoed(&echo, "x-auth-subject"), ["alice"]);
        assert_eq!(common::echoed(&echo, "x-forwarded-proto"), ["https"]);
    }
}

/// Client connections that go idle after a request hold no upstream connection: the next
/// client's request reuses the one the last left in the target's pool. (At most one more
/// is opened: a request may arrive in the instant between the previous answer's last byte
/// and its connection going back to the pool.)
#[tokio::test]
async fn idle_client_connections_do_not_hold_upstream_connections() {
    const CLIENTS: usize = 6;
    let (gw, cert, up, _introspector) = guarded(true).await;
    let mut idle_plain = Vec::new();
    let mut idle_tls = Vec::new();
    for i in 0..CLIENTS / 2 {
        let mut plain = TcpStream::connect(gw.public).await.expect("connect");
        let response = exchange(&mut plain, &get(&format!("/api/plain/{i}"))).await;
        assert!(took_fast_lane(&response), "{}", response.head);
        idle_plain.push(plain);
        let mut over_tls = tls::connect_raw(&cert, &gw).await;
        let response = exchange(&mut over_tls, &get(&format!("/api/tls/{i}"))).await;
        assert!(took_fast_lane(&response), "{}", response.head);
        idle_tls.push(over_tls);
    }
    assert!(
        up.connections() <= 2,
        "{CLIENTS} idle clients, {} upstream connections",
        up.connections()
    );
    // Still open and usable.
    let response = exchange(&mut idle_tls[0], &get("/api/again")).await;
    assert_eq!(response.status, 200);
}

/// A fast-lane connection over TLS that the gateway ends (here: idle past
/// `keepalive_timeout`) ends cleanly, with a `close_notify`: a TLS client reads the end of
/// the stream, not a truncation.
#[tokio::test]
async fn an_idle_tls_connection_the_gateway_closes_gets_a_close_notify() {
    let up = ProbeEcho::spawn().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let cert = tls::write_self_signed(dir.path());
    let config = format!(
        "{}[server.tls]\nlisten = \"127.0.0.1:0\"\ncert = \"cert.pem\"\nkey = \"key.pem\"\n\n{}",
        common::server_section("keepalive_timeout = \"1s\""),
        route("open", "/", &up.url, "auth = \"none\"")
    );
    let gw = TestGateway::spawn_in(dir, &config).await;
    let mut conn = tls::connect_raw(&cert, &gw).await;
    let response = exchange(&mut conn, "GET /idle HTTP/1.1\r\nHost: gw.test\r\n\r\n").await;
    assert!(took_fast_lane(&response), "{}", response.head);
    let mut rest = Vec::new();
    let end = tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut rest))
        .await
        .expect("closed within 10 s");
    match end {
        Ok(_) => assert!(rest.is_empty(), "nothing more than the close: {rest:?}"),
        Err(e) => panic!("the connection ended without a close_notify: {e}"),
    }
}
