//! The fast lane's upstream connections: connecting, the idle ones each target keeps for
//! whichever client connection asks next, and the check that an idle one is still fit to
//! carry a request.
//!
//! The idle connections are the target's, not a client connection's: a keep-alive client
//! that goes quiet holds no upstream connection, and the pool stays as large as the
//! busiest moment's concurrency (at most [`MAX_IDLE_PER_TARGET`]), not as the number of
//! clients. An idle connection keeps no read buffer, and none is kept past
//! [`IDLE_TIMEOUT`]: a task per pool, running only while the pool holds any, closes the
//! aged ones even when no request comes (as the pooled client's does).

use super::BUFFER;
use crate::gateway::upstream::{Target, CONNECT_TIMEOUT};
use bytes::BytesMut;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Idle connections one target keeps (as many as the pooled client keeps per upstream).
const MAX_IDLE_PER_TARGET: usize = 1024;
/// An idle connection older than this is closed rather than reused (the pooled client's
/// idle timeout): the upstream has most likely closed it already.
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// One keep-alive connection to a target, with the bytes read from it and not yet relayed.
pub(super) struct UpstreamConn {
    pub stream: TcpStream,
    pub buf: BytesMut,
    /// The pool it goes back to.
    home: Arc<IdleConns>,
}

/// A target's idle connections, most recently used last (reused first, so the rest can
/// age out).
#[derive(Default)]
pub struct IdleConns {
    conns: Mutex<VecDeque<Parked>>,
    /// A reaper task ([`reap`]) is on its way for this pool.
    reaping: AtomicBool,
}

struct Parked {
    stream: TcpStream,
    since: Instant,
}

impl UpstreamConn {
    pub async fn connect(target: &Target) -> std::io::Result<UpstreamConn> {
        let stream =
            tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(target.connect_addr()))
                .await
                .map_err(|_| {
                    std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out")
                })??;
        stream.set_nodelay(true)?;
        Ok(UpstreamConn {
            stream,
            buf: BytesMut::with_capacity(BUFFER),
            home: target.idle.clone(),
        })
    }

    /// Back to its target's pool for the next request (its buffer, empty, is freed).
    pub fn park(self) {
        let UpstreamConn { stream, home, .. } = self;
        home.put(stream);
    }
}

/// Nothing has arrived while idle: no close, and no stray bytes (an upstream's `408`,
/// say) that would be taken for the next response. Costs no system call when the socket's
/// readiness says there is nothing to read.
fn is_quiet(stream: &TcpStream) -> bool {
    let mut probe = [0u8; 1];
    matches!(
        stream.try_read(&mut probe),
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock
    )
}

impl IdleConns {
    /// The most recently parked connection that is still quiet and young enough; the ones
    /// that are not are closed on the way.
    pub(super) fn take(self: &Arc<Self>) -> Option<UpstreamConn> {
        self.take_at(Instant::now())
    }

    fn take_at(self: &Arc<Self>, now: Instant) -> Option<UpstreamConn> {
        loop {
            let parked = self.lock().pop_back()?;
            if now.duration_since(parked.since) < IDLE_TIMEOUT && is_quiet(&parked.stream) {
                return Some(UpstreamConn {
                    stream: parked.stream,
                    buf: BytesMut::new(),
                    home: self.clone(),
                });
            }
        }
    }

    /// Keeps `stream` within the limit (else it closes), and closes the oldest idle one
    /// if it has aged out: the pool sheds what a busier moment left as requests go on.
    fn put(self: &Arc<Self>, stream: TcpStream) {
        self.put_at(stream, Instant::now());
        self.reap_later();
    }

    fn put_at(&self, stream: TcpStream, now: Instant) {
        let (stale, refused) = {
            let mut conns = self.lock();
            let stale = conns
                .front()
                .is_some_and(|p| now.duration_since(p.since) >= IDLE_TIMEOUT)
                .then(|| conns.pop_front());
            if conns.len() >= MAX_IDLE_PER_TARGET {
                (stale, Some(stream))
            } else {
                conns.push_back(Parked { stream, since: now });
                (stale, None)
            }
        };
        // Closed outside the lock.
        drop((stale, refused));
    }

    /// Starts the reaper unless one is on its way (a load first: this runs per request).
    fn reap_later(self: &Arc<Self>) {
        if self.reaping.load(Ordering::Relaxed) || self.reaping.swap(true, Ordering::AcqRel) {
            return;
        }
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn(reap(Arc::downgrade(self)))),
            Err(_) => self.reaping.store(false, Ordering::Release),
        }
    }

    /// Takes out the connections parked for [`IDLE_TIMEOUT`] or longer (the oldest are at
    /// the front), to be closed outside the lock.
    fn aged(&self, now: Instant) -> Vec<Parked> {
        let mut conns = self.lock();
        let n = conns
            .iter()
            .take_while(|p| now.duration_since(p.since) >= IDLE_TIMEOUT)
            .count();
        conns.drain(..n).collect()
    }

    fn lock(&self) -> MutexGuard<'_, VecDeque<Parked>> {
        // A panic while holding the lock leaves the deque consistent: take it anyway.
        self.conns.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Idle connections now (tests and diagnostics).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Closes `pool`'s aged connections every half [`IDLE_TIMEOUT`] while it has any; ends when
/// it is empty (the next `put` starts another) or gone (its target retired by a reload).
async fn reap(pool: Weak<IdleConns>) {
    loop {
        tokio::time::sleep(IDLE_TIMEOUT / 2).await;
        let Some(pool) = pool.upgrade() else { return };
        drop(pool.aged(Instant::now()));
        if !pool.is_empty() {
            continue;
        }
        pool.reaping.store(false, Ordering::Release);
        // A `put` between the look and the store saw a reaper on its way and started none:
        // carry on for it, unless another has started since.
        if pool.is_empty() || pool.reaping.swap(true, Ordering::AcqRel) {
            return;
        }
    }
}

impl std::fmt::Debug for IdleConns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdleConns")
            .field("idle", &self.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;

    /// A connected pair on loopback: (ours, the upstream's end).
    async fn pair(listener: &TcpListener) -> (TcpStream, TcpStream) {
        let ours = TcpStream::connect(listener.local_addr().expect("bound"))
            .await
            .expect("connect");
        let (theirs, _) = listener.accept().await.expect("accept");
        (ours, theirs)
    }

    fn port(stream: &TcpStream) -> u16 {
        stream.local_addr().expect("bound").port()
    }

    #[tokio::test]
    async fn the_last_parked_comes_back_first_and_a_closed_one_never() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let pool = Arc::new(IdleConns::default());
        let (first, _first_peer) = pair(&listener).await;
        let (second, second_peer) = pair(&listener).await;
        let (first_port, second_port) = (port(&first), port(&second));
        let now = Instant::now();
        pool.put_at(first, now);
        pool.put_at(second, now);
        let taken = pool.take_at(now).expect("an idle connection");
        assert_eq!(port(&taken.stream), second_port, "most recent first");
        pool.put_at(taken.stream, now);

        // The upstream closes the most recent one while it idles: it is skipped.
        drop(second_peer);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let taken = pool.take_at(now).expect("the other one is still there");
            if port(&taken.stream) == first_port {
                break;
            }
            // The close had not arrived yet: park it again and look once more.
            assert!(Instant::now() < deadline, "the close never showed");
            pool.put_at(taken.stream, now);
            tokio::task::yield_now().await;
        }
        assert!(pool.is_empty(), "the closed one was dropped, not kept");
    }

    #[tokio::test(start_paused = true)]
    async fn aged_connections_are_closed_without_a_request_and_the_reaper_then_ends() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let pool = Arc::new(IdleConns::default());
        let (conn, mut peer) = pair(&listener).await;
        pool.put(conn);
        assert!(
            pool.reaping.load(Ordering::Acquire),
            "a reaper is on its way"
        );
        // Time stands still until every task waits; then it jumps to the next timer.
        tokio::time::sleep(IDLE_TIMEOUT * 2).await;
        assert!(pool.is_empty(), "reaped without any request");
        assert!(!pool.reaping.load(Ordering::Acquire), "the reaper ended");
        let mut byte = [0u8; 1];
        let read = peer.read(&mut byte).await.expect("a clean close");
        assert_eq!(read, 0, "the upstream sees the connection closed");
    }

    #[tokio::test]
    async fn connections_idle_past_the_timeout_are_neither_reused_nor_kept() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let pool = Arc::new(IdleConns::default());
        let start = Instant::now();
        let later = start + IDLE_TIMEOUT + Duration::from_secs(1);
        let (old, _old_peer) = pair(&listener).await;
        pool.put_at(old, start);
        assert!(pool.take_at(later).is_none(), "too old to reuse");

        let (old, _old_peer) = pair(&listener).await;
        let (new, _new_peer) = pair(&listener).await;
        let new_port = port(&new);
        pool.put_at(old, start);
        pool.put_at(new, later);
        assert_eq!(pool.len(), 1, "parking a connection sheds an aged one");
        let taken = pool.take_at(later).expect("the fresh one");
        assert_eq!(port(&taken.stream), new_port);
    }
}
