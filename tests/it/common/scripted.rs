//! A scripted upstream on raw TCP, or TLS over it ([`Scripted::spawn_tls`]): each request
//! head is answered by byte-exact steps chosen by its path, for answers no server library
//! would send (malformed framing, closes and resets at chosen moments, stalls). It counts
//! connections (over TLS: completed handshakes) and notices a gateway that sends another
//! request on a connection it should have given up.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

/// One thing the upstream does while answering.
#[derive(Debug, Clone, Copy)]
pub enum Step {
    /// Writes (and flushes) these bytes.
    Write(&'static [u8]),
    /// Waits this long.
    Sleep(Duration),
    /// Closes the connection (FIN; over TLS `close_notify` first).
    Close,
    /// Closes the TCP connection (FIN) without TLS's `close_notify`.
    CloseBare,
    /// Aborts the connection (RST).
    Reset,
    /// Never goes on; the connection stays open until the upstream is dropped.
    Hang,
    /// Goes on once the test says so.
    WaitFor(&'static tokio::sync::Notify),
    /// The answer so far is one a gateway must not reuse the connection after; a request
    /// that still arrives on it is counted ([`Scripted::reused_after_taint`]).
    Taint,
}

/// The steps for a request to `path`, the `served`-th (from 1) on its connection.
pub type Script = fn(path: &str, served: usize) -> Vec<Step>;

/// A running scripted upstream; stops (with every connection) when dropped.
pub struct Scripted {
    pub url: String,
    connections: Arc<AtomicUsize>,
    /// Connections whose script has ended (closed by the upstream, or by the gateway).
    ended: Arc<AtomicUsize>,
    /// Connections the gateway ended in order while idle: a FIN, over TLS after its
    /// `close_notify` (a bare FIN is a truncation to rustls, and not counted).
    closed_in_order: Arc<AtomicUsize>,
    tainted_reuse: Arc<AtomicUsize>,
    /// Over TLS: the server name (SNI) and ALPN protocol of the last handshake.
    last_hello: Arc<Mutex<Option<Hello>>>,
    task: tokio::task::JoinHandle<()>,
}

/// What a TLS client asked for: (SNI, ALPN protocol agreed).
pub type Hello = (Option<String>, Option<Vec<u8>>);

/// A connection the script is played on.
trait Conn: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    fn tcp(&self) -> &TcpStream;
}

impl Conn for TcpStream {
    fn tcp(&self) -> &TcpStream {
        self
    }
}

impl Conn for tokio_rustls::server::TlsStream<TcpStream> {
    fn tcp(&self) -> &TcpStream {
        self.get_ref().0
    }
}

impl Drop for Scripted {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Scripted {
    /// Plain HTTP at `http://127.0.0.1:PORT`.
    pub async fn spawn(script: Script) -> Scripted {
        Self::spawn_with(script, None).await
    }

    /// HTTPS at `https://localhost:PORT` (listening on 127.0.0.1), with `tls`'s certificate.
    pub async fn spawn_tls(script: Script, tls: Arc<rustls::ServerConfig>) -> Scripted {
        Self::spawn_with(script, Some(tokio_rustls::TlsAcceptor::from(tls))).await
    }

    async fn spawn_with(script: Script, tls: Option<tokio_rustls::TlsAcceptor>) -> Scripted {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let url = match tls {
            None => format!("http://127.0.0.1:{port}"),
            Some(_) => format!("https://localhost:{port}"),
        };
        let connections = Arc::new(AtomicUsize::new(0));
        let tainted_reuse = Arc::new(AtomicUsize::new(0));
        let last_hello = Arc::new(Mutex::new(None));
        let ended = Arc::new(AtomicUsize::new(0));
        let closed_in_order = Arc::new(AtomicUsize::new(0));
        let shared = (
            connections.clone(),
            tainted_reuse.clone(),
            last_hello.clone(),
            closed_in_order.clone(),
        );
        let ends = ended.clone();
        let task = tokio::spawn(async move {
            let (counter, tainted, hello, in_order) = shared;
            // Connections live in this set, so dropping the upstream ends them too.
            let mut served = JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((stream, _)) = accepted else { continue };
                        // Each write goes out at once (after a TLS handshake's session
                        // tickets too), not held back until the gateway's ACK.
                        let _ = stream.set_nodelay(true);
                        let (counter, tainted, ends) = (counter.clone(), tainted.clone(), ends.clone());
                        let counters = (tainted, in_order.clone());
                        let Some(tls) = tls.clone() else {
                            counter.fetch_add(1, Ordering::SeqCst);
                            served.spawn(async move {
                                serve(stream, script, counters).await;
                                ends.fetch_add(1, Ordering::SeqCst);
                            });
                            continue;
                        };
                        let hello = hello.clone();
                        served.spawn(async move {
                            // A failed handshake (an untrusting client) is no connection.
                            let Ok(stream) = tls.accept(stream).await else { return };
                            let session = stream.get_ref().1;
                            let seen = (
                                session.server_name().map(str::to_string),
                                session.alpn_protocol().map(<[u8]>::to_vec),
                            );
                            *hello.lock().expect("not poisoned") = Some(seen);
                            counter.fetch_add(1, Ordering::SeqCst);
                            serve(stream, script, counters).await;
                            ends.fetch_add(1, Ordering::SeqCst);
                        });
                    }
                    Some(_) = served.join_next(), if !served.is_empty() => {}
                }
            }
        });
        Scripted {
            url,
            connections,
            ended,
            closed_in_order,
            tainted_reuse,
            last_hello,
            task,
        }
    }

    /// Over TLS: the SNI and ALPN protocol of the last completed handshake.
    pub fn last_hello(&self) -> Option<Hello> {
        self.last_hello.lock().expect("not poisoned").clone()
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// Connections whose script has ended (the upstream's close has been sent).
    pub fn ended(&self) -> usize {
        self.ended.load(Ordering::SeqCst)
    }

    /// Connections the gateway closed in order while idle (over TLS: with `close_notify`).
    pub fn closed_in_order(&self) -> usize {
        self.closed_in_order.load(Ordering::SeqCst)
    }

    /// Requests that arrived on a connection after a [`Step::Taint`].
    pub fn reused_after_taint(&self) -> usize {
        self.tainted_reuse.load(Ordering::SeqCst)
    }
}

/// `counters`: requests after a taint, and connections the gateway closed in order.
async fn serve(
    mut stream: impl Conn,
    script: Script,
    (tainted_reuse, in_order): (Arc<AtomicUsize>, Arc<AtomicUsize>),
) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let mut served = 0;
    let mut tainted = false;
    loop {
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            match stream.read(&mut chunk).await {
                Ok(n) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                // tokio-rustls reads a FIN without `close_notify` as an error.
                Ok(_) if buf.is_empty() => {
                    in_order.fetch_add(1, Ordering::SeqCst);
                    return;
                }
                _ => return,
            }
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        buf.drain(..end + 4);
        // A request body (the gateway's hyper path sends one) is read and dropped.
        let mut body_left = content_length(&head);
        while body_left > 0 {
            if buf.is_empty() {
                match stream.read(&mut chunk).await {
                    Ok(n) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                    _ => return,
                }
            }
            let take = body_left.min(buf.len());
            buf.drain(..take);
            body_left -= take;
        }
        if tainted {
            tainted_reuse.fetch_add(1, Ordering::SeqCst);
        }
        served += 1;
        let path = head.split(' ').nth(1).unwrap_or("/").to_string();
        for step in script(&path, served) {
            match step {
                Step::Write(bytes) => {
                    if stream.write_all(bytes).await.is_err() {
                        return;
                    }
                    let _ = stream.flush().await;
                }
                Step::Sleep(pause) => tokio::time::sleep(pause).await,
                Step::Close => {
                    let _ = stream.shutdown().await;
                    return;
                }
                Step::CloseBare => return,
                Step::Reset => {
                    let _ = stream.tcp().set_zero_linger();
                    return;
                }
                Step::Hang => std::future::pending::<()>().await,
                Step::WaitFor(go) => go.notified().await,
                Step::Taint => tainted = true,
            }
        }
    }
}

fn content_length(head: &str) -> usize {
    head.lines()
        .skip(1)
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())
                .flatten()
        })
        .unwrap_or(0)
}
