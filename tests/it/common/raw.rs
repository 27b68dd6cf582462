//! Raw HTTP/1.1 over TCP, for requests a well-behaved client library would "fix" first
//! (dot segments, percent-encoded dots, doubled slashes, odd headers).

use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub struct RawResponse {
    pub status: u16,
    pub head: String,
    pub body: String,
}

impl RawResponse {
    /// The first value of a header, matched case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// Sends `GET {target}` with `Connection: close` and reads the whole answer.
pub async fn get(addr: SocketAddr, target: &str, extra_headers: &str) -> RawResponse {
    let request = format!(
        "GET {target} HTTP/1.1\r\nHost: {addr}\r\n{extra_headers}Connection: close\r\n\r\n"
    );
    send(addr, &request).await
}

/// Sends bytes as written and reads until the server closes (bounded by 10 s).
pub async fn send(addr: SocketAddr, request: &str) -> RawResponse {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut buf))
        .await
        .expect("server answered within 10s")
        .expect("read");
    parse(&buf)
}

pub fn parse(buf: &[u8]) -> RawResponse {
    let text = String::from_utf8_lossy(buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    RawResponse {
        status,
        head: head.to_string(),
        body: dechunk(head, body),
    }
}

fn dechunk(head: &str, body: &str) -> String {
    if !head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        return body.to_string();
    }
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || tail.len() < n {
            break;
        }
        out.push_str(&tail[..n]);
        rest = tail[n..].trim_start_matches("\r\n");
    }
    out
}

/// Reads one response head (up to the blank line) from a connection that stays open;
/// returns it and whatever body bytes arrived with it. Bounded by 10 s.
pub async fn read_head(stream: &mut TcpStream) -> (RawResponse, Vec<u8>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        assert!(buf.len() < 64 * 1024, "response head too large");
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut chunk))
            .await
            .expect("response head within 10s")
            .expect("read");
        assert!(
            n > 0,
            "connection closed before the end of the head: {buf:?}"
        );
        buf.extend_from_slice(&chunk[..n]);
    };
    let rest = buf.split_off(end);
    (parse(&buf), rest)
}

/// Reads one whole response (head and a `Content-Length` body) from a connection that
/// stays open. Bounded by 10 s.
pub async fn read_response(stream: &mut TcpStream) -> RawResponse {
    let (mut response, mut body) = read_head(stream).await;
    let length: usize = response
        .header("content-length")
        .unwrap_or_else(|| panic!("no Content-Length in {}", response.head))
        .parse()
        .expect("a number");
    let mut chunk = [0u8; 4096];
    while body.len() < length {
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut chunk))
            .await
            .expect("response body within 10s")
            .expect("read");
        assert!(n > 0, "connection closed inside the body");
        body.extend_from_slice(&chunk[..n]);
    }
    response.body = String::from_utf8_lossy(&body).into_owned();
    response
}

/// Waits (at most `bound`) until the server closes `stream`; returns how long that took
/// and anything the server sent before closing. Panics if it stays open.
pub async fn closed_within(stream: &mut TcpStream, bound: Duration) -> (Duration, Vec<u8>) {
    let started = std::time::Instant::now();
    let mut received = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let read = tokio::time::timeout_at((started + bound).into(), stream.read(&mut chunk))
            .await
            .unwrap_or_else(|_| panic!("the connection was still open after {bound:?}"));
        match read {
            Ok(n) if n > 0 => received.extend_from_slice(&chunk[..n]),
            // End of stream or a reset: closed either way.
            Ok(_) | Err(_) => return (started.elapsed(), received),
        }
    }
}
