//! The one pool of upstream connections: raw HTTP/1.1 keep-alive connections per upstream
//! origin (`scheme://host:port`; plain TCP or TLS, [`super::stream`]), shared by every route
//! that names it, by both engines (the fast lane, and the hyper path's body-less requests,
//! write and read them with the fast lane's wire code; the hyper path's requests with a body
//! run hyper's HTTP/1.1 client connection over them in the request's own task) and across
//! reloads.
//!
//! The idle connections are the origin's, not a client connection's: a keep-alive client
//! that goes quiet holds no upstream connection, and a short-lived client finds a warm one.
//! The pool stays as large as the busiest moment's concurrency (at most
//! `[server] upstream_max_idle`), not as the number of clients. An idle connection keeps no
//! buffer, and none is kept past `[server] upstream_idle_timeout`: a task per pool, running
//! only while the pool holds any, closes the aged ones even when no request comes.
//! `tollgate_upstream_connections{upstream, state}` counts each pool's idle connections and
//! those lent to a request (active).

use super::stream::UpstreamStream;
use super::tls::TlsTarget;
use crate::config::PoolBudget;
use crate::gateway::upstream::CONNECT_TIMEOUT;
use crate::metrics::{Metrics, PoolGauges};
use bytes::BytesMut;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;
use tokio::time::Instant;

/// One keep-alive connection to an origin, lent to one request, with the bytes read from it
/// and not yet relayed (hyper's client, on the hyper path's requests with a body, reads
/// through its own buffer instead).
pub(crate) struct UpstreamConn {
    pub stream: UpstreamStream,
    pub buf: BytesMut,
    /// Counts it as active until it is parked or dropped.
    lease: Lease,
}

/// A connection lent out of an origin's pool: counted active until dropped, and the way
/// back into the pool ([`Lease::park`]).
pub(crate) struct Lease {
    home: Arc<IdleConns>,
}

/// An origin's idle connections, most recently used last (reused first, so the rest can
/// age out), under its budget.
pub struct IdleConns {
    conns: Mutex<VecDeque<Parked>>,
    /// A reaper task ([`reap`]) is on its way for this pool.
    reaping: AtomicBool,
    /// `[server] upstream_max_idle` (a reload changes it in place).
    max_idle: AtomicUsize,
    /// `[server] upstream_idle_timeout`, in milliseconds.
    idle_timeout_ms: AtomicU64,
    gauges: PoolGauges,
}

struct Parked {
    stream: UpstreamStream,
    since: Instant,
}

/// Every origin's pool, by `scheme://host:port`: what the gateway's targets draw on. A
/// reload builds the next from the last ([`Pools::carry_over`]), so the origins that stay
/// keep their warm connections.
#[derive(Default)]
pub struct Pools {
    by_origin: Mutex<HashMap<String, Arc<IdleConns>>>,
}

// === impl UpstreamConn ===

impl UpstreamConn {
    /// A new connection to `addr` (`host:port`) for `home`'s origin, over TLS to `tls`'s
    /// name for an `https://` one; TCP and the TLS handshake together within
    /// [`CONNECT_TIMEOUT`].
    pub async fn connect(
        home: &Arc<IdleConns>,
        addr: &str,
        tls: Option<&TlsTarget>,
    ) -> std::io::Result<UpstreamConn> {
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, UpstreamStream::connect(addr, tls))
            .await
            .map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out")
            })??;
        Ok(UpstreamConn {
            stream,
            buf: BytesMut::new(),
            lease: Lease::new(home.clone()),
        })
    }

    /// Back to its origin's pool for the next request (its buffer, empty, is freed).
    pub fn park(self) {
        let UpstreamConn { stream, lease, .. } = self;
        lease.park(stream);
    }

    /// The stream alone, and its lease (for an engine that reads through its own buffer).
    pub fn into_parts(self) -> (UpstreamStream, Lease) {
        (self.stream, self.lease)
    }
}

// === impl Lease ===

impl Lease {
    fn new(home: Arc<IdleConns>) -> Self {
        home.gauges.active.inc();
        Lease { home }
    }

    /// Puts `stream` back in the pool it was lent from.
    pub fn park(self, stream: UpstreamStream) {
        self.home.put(stream);
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.home.gauges.active.dec();
    }
}

// === impl IdleConns ===

impl IdleConns {
    /// An empty pool under `budget`, counted in `gauges`.
    pub fn new(budget: PoolBudget, gauges: PoolGauges) -> Self {
        let pool = IdleConns {
            conns: Mutex::default(),
            reaping: AtomicBool::new(false),
            max_idle: AtomicUsize::new(0),
            idle_timeout_ms: AtomicU64::new(0),
            gauges,
        };
        pool.set_budget(budget);
        pool
    }

    /// Applies a (reloaded) budget; the next `put` and the reaper go by it.
    pub fn set_budget(&self, budget: PoolBudget) {
        self.max_idle.store(budget.max_idle, Ordering::Relaxed);
        let ms = u64::try_from(budget.idle_timeout.as_millis()).unwrap_or(u64::MAX);
        self.idle_timeout_ms.store(ms, Ordering::Relaxed);
    }

    fn idle_timeout(&self) -> Duration {
        Duration::from_millis(self.idle_timeout_ms.load(Ordering::Relaxed))
    }

    /// The most recently parked connection that is still quiet and young enough; the ones
    /// that are not are closed on the way.
    pub(crate) fn take(self: &Arc<Self>) -> Option<UpstreamConn> {
        self.take_at(Instant::now())
    }

    fn take_at(self: &Arc<Self>, now: Instant) -> Option<UpstreamConn> {
        let timeout = self.idle_timeout();
        loop {
            let mut parked = {
                let mut conns = self.lock();
                let parked = conns.pop_back();
                self.gauges.idle.set(conns.len() as i64);
                parked?
            };
            if now.duration_since(parked.since) < timeout && parked.stream.is_quiet() {
                return Some(UpstreamConn {
                    stream: parked.stream,
                    buf: BytesMut::new(),
                    lease: Lease::new(self.clone()),
                });
            }
        }
    }

    /// Keeps `stream` within the limit (else it closes), and closes the oldest idle one
    /// if it has aged out: the pool sheds what a busier moment left as requests go on.
    fn put(self: &Arc<Self>, stream: UpstreamStream) {
        self.put_at(stream, Instant::now());
        self.reap_later();
    }

    fn put_at(&self, stream: UpstreamStream, now: Instant) {
        let (timeout, max) = (self.idle_timeout(), self.max_idle.load(Ordering::Relaxed));
        let (stale, refused) = {
            let mut conns = self.lock();
            let stale = conns
                .front()
                .is_some_and(|p| now.duration_since(p.since) >= timeout)
                .then(|| conns.pop_front());
            let refused = if conns.len() >= max {
                Some(stream)
            } else {
                conns.push_back(Parked { stream, since: now });
                None
            };
            self.gauges.idle.set(conns.len() as i64);
            (stale, refused)
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

    /// Takes out the connections parked for the idle timeout or longer (the oldest are at
    /// the front), to be closed outside the lock.
    fn aged(&self, now: Instant) -> Vec<Parked> {
        let timeout = self.idle_timeout();
        let mut conns = self.lock();
        let n = conns
            .iter()
            .take_while(|p| now.duration_since(p.since) >= timeout)
            .count();
        let aged = conns.drain(..n).collect();
        self.gauges.idle.set(conns.len() as i64);
        aged
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

/// Closes `pool`'s aged connections every half idle timeout while it has any; ends when
/// it is empty (the next `put` starts another) or gone (its origin retired by a reload).
async fn reap(pool: Weak<IdleConns>) {
    loop {
        let period = match pool.upgrade() {
            Some(pool) => pool.idle_timeout() / 2,
            None => return,
        };
        tokio::time::sleep(period.max(Duration::from_millis(1))).await;
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

// === impl Pools ===

impl Pools {
    /// The pool of `origin` (`scheme://host:port`), made under `budget` (and counted in
    /// `metrics`, if given) if this set has none yet.
    pub fn get_or_make(
        &self,
        origin: &str,
        budget: PoolBudget,
        metrics: Option<&Metrics>,
    ) -> Arc<IdleConns> {
        let mut by_origin = self.by_origin.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(pool) = by_origin.get(origin) {
            pool.set_budget(budget);
            return pool.clone();
        }
        let gauges = match metrics {
            Some(metrics) => metrics.upstream_pool(origin),
            None => PoolGauges::detached(),
        };
        let pool = Arc::new(IdleConns::new(budget, gauges));
        by_origin.insert(origin.to_string(), pool.clone());
        pool
    }

    /// The next configuration's set: the pools of the origins in `keep` carried over from
    /// this one (with their connections), the others' series removed from `/metrics` (their
    /// connections close once no request holds one).
    pub fn carry_over(&self, keep: &[String], metrics: &Metrics) -> Pools {
        let by_origin = self.by_origin.lock().unwrap_or_else(|e| e.into_inner());
        let mut next = HashMap::new();
        for (origin, pool) in by_origin.iter() {
            if keep.contains(origin) {
                next.insert(origin.clone(), pool.clone());
            } else {
                metrics.upstream_pool_retired(origin);
            }
        }
        Pools {
            by_origin: Mutex::new(next),
        }
    }
}

impl std::fmt::Debug for Pools {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pools").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(90);

    fn pool() -> Arc<IdleConns> {
        let budget = PoolBudget {
            max_idle: 1024,
            idle_timeout: TIMEOUT,
        };
        Arc::new(IdleConns::new(budget, PoolGauges::detached()))
    }
    use tokio::io::AsyncReadExt;
    use tokio::net::{TcpListener, TcpStream};

    /// A connected pair on loopback: (ours, the upstream's end).
    async fn pair(listener: &TcpListener) -> (UpstreamStream, TcpStream) {
        let ours = TcpStream::connect(listener.local_addr().expect("bound"))
            .await
            .expect("connect");
        let (theirs, _) = listener.accept().await.expect("accept");
        (UpstreamStream::Plain(Box::new(ours)), theirs)
    }

    fn port(stream: &UpstreamStream) -> u16 {
        stream.tcp().local_addr().expect("bound").port()
    }

    #[tokio::test]
    async fn the_last_parked_comes_back_first_and_a_closed_one_never() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let pool = pool();
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

    #[tokio::test]
    async fn the_pool_keeps_at_most_its_budget_and_counts_idle_and_lent_connections() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let metrics = Metrics::new();
        let budget = PoolBudget {
            max_idle: 2,
            idle_timeout: TIMEOUT,
        };
        let pool = Arc::new(IdleConns::new(budget, metrics.upstream_pool("http://a:1")));
        let addr = listener.local_addr().expect("bound").to_string();
        let (mut lent, mut peers) = (Vec::new(), Vec::new());
        for _ in 0..3 {
            lent.push(
                UpstreamConn::connect(&pool, &addr, None)
                    .await
                    .expect("connect"),
            );
            peers.push(listener.accept().await.expect("accept"));
        }
        let gauges = &pool.gauges;
        assert_eq!((gauges.idle.get(), gauges.active.get()), (0, 3));
        for conn in lent {
            conn.park();
        }
        assert_eq!(pool.len(), 2, "the third is closed, not kept");
        assert_eq!((gauges.idle.get(), gauges.active.get()), (2, 0));
        let taken = pool.take().expect("an idle one");
        assert_eq!((gauges.idle.get(), gauges.active.get()), (1, 1));
        drop(taken);
        assert_eq!((gauges.idle.get(), gauges.active.get()), (1, 0));

        // A reload's budget applies to the next park: none kept.
        pool.set_budget(PoolBudget {
            max_idle: 0,
            idle_timeout: TIMEOUT,
        });
        let conn = pool.take().expect("the last idle one");
        conn.park();
        assert!(pool.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn aged_connections_are_closed_without_a_request_and_the_reaper_then_ends() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let pool = pool();
        let (conn, mut peer) = pair(&listener).await;
        pool.put(conn);
        assert!(
            pool.reaping.load(Ordering::Acquire),
            "a reaper is on its way"
        );
        // Time stands still until every task waits; then it jumps to the next timer.
        tokio::time::sleep(TIMEOUT * 2).await;
        assert!(pool.is_empty(), "reaped without any request");
        assert!(!pool.reaping.load(Ordering::Acquire), "the reaper ended");
        let mut byte = [0u8; 1];
        let read = peer.read(&mut byte).await.expect("a clean close");
        assert_eq!(read, 0, "the upstream sees the connection closed");
    }

    #[tokio::test]
    async fn connections_idle_past_the_timeout_are_neither_reused_nor_kept() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let pool = pool();
        let start = Instant::now();
        let later = start + TIMEOUT + Duration::from_secs(1);
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
