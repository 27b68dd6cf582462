//! A scripted upstream on raw TCP: each request head is answered by byte-exact steps chosen
//! by its path, for answers no server library would send (malformed framing, closes and
//! resets at chosen moments, stalls). It counts connections and notices a gateway that
//! sends another request on a connection it should have given up.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

/// One thing the upstream does while answering.
#[derive(Debug, Clone, Copy)]
pub enum Step {
    /// Writes (and flushes) these bytes.
    Write(&'static [u8]),
    /// Waits this long.
    Sleep(Duration),
    /// Closes the connection (FIN).
    Close,
    /// Aborts the connection (RST).
    Reset,
    /// Never goes on; the connection stays open until the upstream is dropped.
    Hang,
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
    tainted_reuse: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Scripted {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Scripted {
    pub async fn spawn(script: Script) -> Scripted {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let connections = Arc::new(AtomicUsize::new(0));
        let tainted_reuse = Arc::new(AtomicUsize::new(0));
        let (counter, tainted) = (connections.clone(), tainted_reuse.clone());
        let task = tokio::spawn(async move {
            // Connections live in this set, so dropping the upstream ends them too.
            let mut served = JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((stream, _)) = accepted else { continue };
                        counter.fetch_add(1, Ordering::SeqCst);
                        served.spawn(serve(stream, script, tainted.clone()));
                    }
                    Some(_) = served.join_next(), if !served.is_empty() => {}
                }
            }
        });
        Scripted {
            url,
            connections,
            tainted_reuse,
            task,
        }
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// Requests that arrived on a connection after a [`Step::Taint`].
    pub fn reused_after_taint(&self) -> usize {
        self.tainted_reuse.load(Ordering::SeqCst)
    }
}

async fn serve(mut stream: TcpStream, script: Script, tainted_reuse: Arc<AtomicUsize>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let mut served = 0;
    let mut tainted = false;
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
                Step::Close => return,
                Step::Reset => {
                    let _ = stream.set_zero_linger();
                    return;
                }
                Step::Hang => std::future::pending::<()>().await,
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
