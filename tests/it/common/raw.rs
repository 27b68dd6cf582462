//! Raw HTTP/1.1 over TCP, for requests a well-behaved client library would "fix" first
//! (dot segments, percent-encoded dots, doubled slashes, odd headers), and [`Recorder`], an
//! upstream that keeps every request head it receives.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

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
pub async fn read_head<S: AsyncRead + Unpin + ?Sized>(stream: &mut S) -> (RawResponse, Vec<u8>) {
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

/// Reads one whole response from a connection that stays open: its head, then a body framed
/// by Content-Length or chunked (none after a 101, 204 or 304; else until close). Bounded.
pub async fn read_response<S: AsyncRead + Unpin>(stream: &mut S) -> RawResponse {
    let (mut response, mut body) = read_head(stream).await;
    if matches!(response.status, 101 | 204 | 304) {
        return response;
    }
    let length: Option<usize> = response
        .header("content-length")
        .map(|v| v.parse().expect("numeric Content-Length"));
    let chunked = response
        .header("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
    let mut chunk = [0u8; 4096];
    loop {
        let done = match length {
            Some(n) => body.len() >= n,
            None if chunked => body.ends_with(b"0\r\n\r\n"),
            None => false,
        };
        if done {
            break;
        }
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut chunk))
            .await
            .expect("body within 10s")
            .expect("read");
        if n == 0 {
            assert!(length.is_none() && !chunked, "closed inside the body");
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    let text = String::from_utf8_lossy(&body).into_owned();
    response.body = dechunk(&response.head, &text);
    response
}

/// An upstream that answers `101 Switching Protocols` to any request carrying `Upgrade`
/// (whatever it names) and then echoes bytes, as a careless upstream would; every other
/// request gets 200 with the request head it received as the body. Every head is kept.
pub struct Recorder {
    pub addr: SocketAddr,
    heads: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Recorder {
    pub async fn spawn() -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let heads: Arc<Mutex<Vec<String>>> = Arc::default();
        let kept = heads.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(answer_recorded(stream, kept.clone()));
            }
        });
        Recorder { addr, heads, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request head received so far, in order.
    pub fn heads(&self) -> Vec<String> {
        self.heads.lock().expect("not poisoned").clone()
    }
}

async fn answer_recorded(mut stream: TcpStream, heads: Arc<Mutex<Vec<String>>>) {
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
        heads.lock().expect("not poisoned").push(head.clone());
        let header = |name: &str| {
            head.lines().skip(1).find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim()
                    .eq_ignore_ascii_case(name)
                    .then(|| v.trim().to_string())
            })
        };
        if let Some(protocol) = header("upgrade") {
            let answer = format!(
                "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: {protocol}\r\n\r\n"
            );
            if stream.write_all(answer.as_bytes()).await.is_err() {
                return;
            }
            // Whatever follows is the new protocol's: echoed back as it comes.
            let _ = stream.write_all(&buf).await;
            let (mut r, mut w) = stream.split();
            let _ = tokio::io::copy(&mut r, &mut w).await;
            return;
        }
        // A body (by Content-Length only: enough for these tests) is read and dropped.
        let length: usize = header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        while buf.len() < length {
            match stream.read(&mut chunk).await {
                Ok(n) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                _ => return,
            }
        }
        buf.drain(..length);
        let answer = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{head}",
            head.len()
        );
        if stream.write_all(answer.as_bytes()).await.is_err() {
            return;
        }
    }
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

/// How one response ended, as a strict client judges it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A whole message (its framing complete): status and (de-chunked) body.
    Answered(u16, String),
    /// The connection ended (closed or reset) before a whole message had arrived.
    Aborted,
    /// Neither within 10 s: these bytes came, and the connection stayed open.
    Unfinished(String),
}

/// Reads one response (to a request that was not HEAD) from a connection that may stay
/// open after it. Bounded by 10 s.
pub async fn read_outcome(conn: &mut (impl AsyncRead + Unpin + ?Sized)) -> Outcome {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(outcome) = whole_message(&buf, false) {
            return outcome;
        }
        let read = tokio::time::timeout(Duration::from_secs(10), conn.read(&mut chunk)).await;
        match read {
            Err(_elapsed) => {
                return Outcome::Unfinished(String::from_utf8_lossy(&buf).into_owned())
            }
            Ok(Ok(0)) => return whole_message(&buf, true).unwrap_or(Outcome::Aborted),
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
            Ok(Err(_)) => return Outcome::Aborted,
        }
    }
}

/// The response at the front of `buf` if it is whole; `closed`: nothing more will come.
fn whole_message(buf: &[u8], closed: bool) -> Option<Outcome> {
    let mut slots = [httparse::EMPTY_HEADER; 64];
    let mut res = httparse::Response::new(&mut slots);
    let len = match res.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        _ => return closed.then_some(Outcome::Aborted),
    };
    let status = res.code.expect("parsed");
    let header = |name: &str| {
        res.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).into_owned())
    };
    let body = &buf[len..];
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    if status == 204 || status == 304 {
        return Some(Outcome::Answered(status, String::new()));
    }
    if header("transfer-encoding").is_some_and(|te| te.to_ascii_lowercase().contains("chunked")) {
        return match dechunk_strict(body) {
            Some(body) => Some(Outcome::Answered(status, text(&body))),
            None => closed.then_some(Outcome::Aborted),
        };
    }
    if let Some(length) = header("content-length").and_then(|l| l.trim().parse::<usize>().ok()) {
        return if body.len() >= length {
            Some(Outcome::Answered(status, text(&body[..length])))
        } else {
            closed.then_some(Outcome::Aborted)
        };
    }
    // Delimited by the close: whole only if the connection closed cleanly.
    closed.then(|| Outcome::Answered(status, text(body)))
}

/// A chunked body with every line ended by CRLF, up to its empty trailer line; `None`
/// until it is all there.
fn dechunk_strict(mut rest: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let end = rest.windows(2).position(|w| w == b"\r\n")?;
        let line = std::str::from_utf8(&rest[..end]).ok()?;
        let size = usize::from_str_radix(line.split(';').next()?.trim(), 16).ok()?;
        rest = &rest[end + 2..];
        if size == 0 {
            // Trailers, up to the empty line.
            loop {
                let end = rest.windows(2).position(|w| w == b"\r\n")?;
                if end == 0 {
                    return Some(out);
                }
                rest = &rest[end + 2..];
            }
        }
        if rest.len() < size + 2 || &rest[size..size + 2] != b"\r\n" {
            return None;
        }
        out.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}
