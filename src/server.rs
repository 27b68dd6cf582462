//! Accept loops: plain TCP or TLS, HTTP/1.1 and HTTP/2 on one port (hyper-util auto),
//! connection gauges, the `[server]` connection limits, and graceful drain on shutdown. A
//! plain-TCP connection, and a TLS one whose ALPN chose `http/1.1` (or nothing), starts on
//! its handler's fast lane, if it has one ([`FastLane`]), and moves to hyper, with the bytes
//! already read, as soon as a request needs hyper; a TLS connection that chose `h2` goes
//! straight to hyper's HTTP/2 server. The transport is generic over its [`Handler`]: it
//! names no gateway type.
//!
//! A connection's task is kept small while it is idle: the TLS handshake and hyper's
//! connection state are boxed (allocated only while they are needed) rather than sized
//! into every task, and the fast lane holds no buffer between requests.
//!
//! `max_connections`: each connection holds a semaphore permit, taken before `accept`, for
//! its whole life; at the limit the loop stops accepting and new connections wait in the
//! kernel's listen backlog (not refused, not served) until one ends. The same permits tell
//! the drain when every connection has finished. Head and keep-alive deadlines: the fast
//! lane keeps its own, hyper's connections get [`deadlines`].
//!
//! The limits are [`SharedLimits`], which a reload (SIGHUP) may change: deadlines read
//! the current ones, and a new `max_connections` resizes the permits ([`limits::Slots`]; a
//! smaller one retires permits as connections end, without closing any).

pub mod client_io;
pub mod conn;
pub mod deadlines;
pub mod limits;
pub mod prefixed;
pub mod tls;
mod write_through;

use crate::body::Body;
use crate::metrics::Metrics;
use bytes::Bytes;
pub use client_io::ClientIo;
pub use conn::{ConnInfo, Exit, FastLane, NoFastLane, PROTO_HTTP, PROTO_HTTPS};
use deadlines::{Activity, Expiry, TrackedBody, Watched};
use http::{HeaderValue, Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
pub use limits::SharedLimits;
use limits::Slots;
use prefixed::Prefixed;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit};
use tokio_rustls::TlsAcceptor;

/// The largest request head hyper reads, and the most its read buffer grows to.
pub const MAX_REQUEST_HEAD: usize = 64 * 1024;

/// How long in-flight requests get to finish after a shutdown signal.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Something that answers requests on a listener.
pub trait Handler: Send + Sync + 'static {
    fn call(
        &self,
        req: Request<Incoming>,
        conn: &ConnInfo,
    ) -> impl Future<Output = Response<Body>> + Send;

    /// What serves this handler's plain-TCP connections before hyper ([`NoFastLane`]: nothing).
    type Fast: FastLane;

    /// The fast lane, if this handler's plain-TCP connections start on one.
    fn fast_lane(&self) -> Option<&Self::Fast>;
}

/// How hyper-util reports a connection that ended with an error.
type ConnError = Box<dyn std::error::Error + Send + Sync>;

/// A bound listener waiting to be served.
pub struct Listener {
    /// `public`, `tls` or `internal`: the metrics label.
    pub name: &'static str,
    pub tcp: TcpListener,
    pub tls: Option<TlsAcceptor>,
    /// HTTP/1.1 connections start on the fast lane (when the handler has one). Always true
    /// in the application; tests turn it off on a TLS listener to reach hyper's HTTP/1.1
    /// engine there.
    pub http1_fast_lane: bool,
}

impl Listener {
    pub async fn bind(
        name: &'static str,
        addr: SocketAddr,
        tls: Option<TlsAcceptor>,
    ) -> std::io::Result<Self> {
        let tcp = TcpListener::bind(addr).await?;
        Ok(Self {
            name,
            tcp,
            tls,
            http1_fast_lane: true,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.tcp.local_addr()
    }
}

/// Accepts connections (at most `max_connections` of the current `limits` at once) until
/// `shutdown` turns true, then waits (bounded) for the connections it started to finish
/// their in-flight requests.
pub async fn serve<H: Handler>(
    listener: Listener,
    handler: Arc<H>,
    metrics: Arc<Metrics>,
    limits: Arc<SharedLimits>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        // Head and keep-alive deadlines are `deadlines`' job: hyper's head timer would also
        // end idle keep-alive connections at the head timeout.
        .header_read_timeout(None)
        .keep_alive(true)
        // Response bodies are queued as they are, not copied into hyper's write buffer
        // (which would keep the largest chunk's size for the connection's life).
        .writev(true)
        // hyper's read buffer grows with a fast upload and keeps its size while the
        // connection idles: capped at 64 KiB (the default is ~400 KiB). It also bounds a
        // request head, which gets 431 beyond it (as an upstream's response head does).
        .max_buf_size(MAX_REQUEST_HEAD);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(256);
    let builders = Arc::new(Builders {
        // ALPN said h2: no need to sniff the first bytes for the preface.
        h2: builder.clone().http2_only(),
        any: builder,
    });
    let mut changed = limits.subscribe();
    let mut slots = Slots::new(limits.get().max_connections);
    // Set when the drain deadline passes, for upgraded connections still open then.
    let (closing_tx, closing) = watch::channel(false);
    let proto = if listener.tls.is_some() {
        &PROTO_HTTPS
    } else {
        &PROTO_HTTP
    };
    loop {
        // At the limit nothing is accepted: new connections wait in the listen backlog.
        let slot = tokio::select! {
            // A new limit is applied before the next slot is handed out.
            biased;
            _ = shutdown.changed() => break,
            Ok(()) = changed.changed() => {
                slots.resize(limits.get().max_connections);
                continue;
            }
            slot = slots.semaphore.clone().acquire_owned() => match slot {
                Ok(slot) => match slots.keep(slot) {
                    Some(slot) => slot,
                    None => continue,
                },
                Err(_closed) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.tcp.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // EMFILE and friends: back off briefly instead of spinning.
                    tracing::warn!(listener = listener.name, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        let accepted = Instant::now();
        let _ = stream.set_nodelay(true);
        let hold = Hold {
            _gauge: metrics.connection_opened(listener.name),
            _slot: slot,
        };
        let conn = Arc::new(ConnInfo {
            peer: peer.ip(),
            client_ip: HeaderValue::from_str(&peer.ip().to_string())
                .unwrap_or(HeaderValue::from_static("unknown")),
            proto,
            hold: Arc::new(hold),
            closing: closing.clone(),
        });
        let task = Connection {
            builders: builders.clone(),
            fast_lane: listener.http1_fast_lane,
            handler: handler.clone(),
            conn,
            tls: listener.tls.clone(),
            shutdown: shutdown.clone(),
            limits: limits.clone(),
        };
        tokio::spawn(async move { task.run(stream, accepted).await });
    }
    drop(listener);
    // Every connection (upgraded ones included) holds a slot until it ends: all slots
    // back means all drained.
    let all = slots.semaphore.acquire_many(slots.total + slots.owed);
    if tokio::time::timeout(DRAIN_TIMEOUT, all).await.is_err() {
        tracing::warn!("drain timed out; closing remaining connections");
        let _ = closing_tx.send(true);
    }
}

/// What an open connection holds until it ends, upgraded or not (see [`ConnInfo::hold`]).
struct Hold {
    /// Counts the connection in `tollgate_open_connections`.
    _gauge: crate::metrics::ConnectionGuard,
    /// Its place under `max_connections`, given back when the connection ends.
    _slot: OwnedSemaphorePermit,
}

/// hyper's servers: `any` finds out HTTP/1.1 or HTTP/2 from the bytes, `h2` is for TLS
/// connections whose ALPN chose `h2`.
struct Builders {
    any: auto::Builder<TokioExecutor>,
    h2: auto::Builder<TokioExecutor>,
}

/// One accepted connection and what it needs to be served.
struct Connection<H> {
    builders: Arc<Builders>,
    /// HTTP/1.1 starts on the fast lane.
    fast_lane: bool,
    handler: Arc<H>,
    /// Holds the connection's [`Hold`], which an upgraded connection keeps past this task.
    conn: Arc<ConnInfo>,
    tls: Option<TlsAcceptor>,
    shutdown: watch::Receiver<bool>,
    limits: Arc<SharedLimits>,
}

impl<H: Handler> Connection<H> {
    async fn run(mut self, stream: TcpStream, accepted: Instant) {
        let result = match self.tls.take() {
            None => self.serve_http1(stream, accepted).await,
            // Boxed: a TLS connection's state (over a kilobyte of rustls) is not sized into
            // every plain connection's task.
            Some(acceptor) => Box::pin(self.serve_tls(acceptor, stream)).await,
        };
        if let Err(e) = result {
            tracing::debug!(error = %e, "connection ended with an error");
        }
    }

    /// The TLS handshake, then HTTP/2 or HTTP/1.1 as ALPN chose.
    async fn serve_tls(
        &mut self,
        acceptor: TlsAcceptor,
        stream: TcpStream,
    ) -> Result<(), ConnError> {
        // Boxed: the handshake's state is large and over once it is done.
        let handshake = tokio::select! {
            done = Box::pin(tls::handshake(&acceptor, stream)) => done,
            // A client still in its handshake has no request in flight: the drain does not
            // wait for it.
            _ = self.shutdown.wait_for(|stop| *stop) => return Ok(()),
        };
        match handshake {
            Ok(stream) if tls::chose_h2(&stream) => {
                let builders = self.builders.clone();
                Box::pin(self.serve_hyper(&builders.h2, stream, Instant::now())).await
            }
            // Boxed once, so the futures that move it along hold a pointer, not its bytes.
            Ok(stream) => self.serve_http1(Box::new(stream), Instant::now()).await,
            Err(e) => {
                tracing::debug!(error = %e, "TLS handshake failed");
                Ok(())
            }
        }
    }

    /// An HTTP/1.1 connection (or, on plain TCP, maybe HTTP/2 with prior knowledge, which
    /// the fast lane declines): the fast lane while it suits the requests, then hyper with
    /// the bytes read so far. `started`: when the first request head became due.
    async fn serve_http1<S>(&mut self, mut stream: S, started: Instant) -> Result<(), ConnError>
    where
        S: ClientIo + 'static,
    {
        // The slot is held while on the fast lane, so the drain waits for it.
        let handler = self.handler.clone();
        let lane = handler.fast_lane().filter(|_| self.fast_lane);
        let (read_ahead, head_since) = match lane {
            Some(lane) => {
                let served = lane.serve(
                    &mut stream,
                    &self.conn,
                    &mut self.shutdown,
                    &self.limits,
                    started,
                );
                match served.await {
                    Exit::Closed => return Ok(()),
                    Exit::HandOff { read, head_since } => (read, head_since),
                }
            }
            None => (Bytes::new(), started),
        };
        let builders = self.builders.clone();
        // Boxed: hyper's connection state is allocated on hand-over, not in every task.
        let io = Prefixed::new(read_ahead, stream);
        Box::pin(self.serve_hyper(&builders.any, io, head_since)).await
    }

    /// Serves the connection with hyper, closing it when a [`deadlines`] deadline passes
    /// and shutting it down gracefully when the drain begins.
    async fn serve_hyper<S>(
        &mut self,
        builder: &auto::Builder<TokioExecutor>,
        io: S,
        head_since: Instant,
    ) -> Result<(), ConnError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let activity = Activity::new(self.limits.clone(), head_since.into());
        let io = TokioIo::new(Watched::new(io, activity.clone()));
        let service = service(self.handler.clone(), self.conn.clone(), activity.clone());
        let served = builder.serve_connection_with_upgrades(io, service);
        tokio::pin!(served);
        let mut draining = false;
        loop {
            tokio::select! {
                done = served.as_mut() => return done,
                _ = self.shutdown.wait_for(|stop| *stop), if !draining => {
                    draining = true;
                    served.as_mut().graceful_shutdown();
                }
                expiry = activity.expired() => match expiry {
                    // Dropping the connection closes it.
                    Expiry::Close => return Ok(()),
                    Expiry::GoAway => {
                        activity.going_away();
                        served.as_mut().graceful_shutdown();
                    }
                },
            }
        }
    }
}

/// hyper's view of a handler on one connection. The request's future is boxed: hyper's
/// HTTP/1.1 server keeps a slot of the service future's size for the connection's whole
/// life, so an unboxed one (the whole proxy's state) would cost every idle connection
/// kilobytes.
fn service<H: Handler>(
    handler: Arc<H>,
    conn: Arc<ConnInfo>,
    activity: Arc<Activity>,
) -> impl hyper::service::Service<
    Request<Incoming>,
    Response = Response<TrackedBody<Body>>,
    Error = Infallible,
    Future = impl Future<Output = Result<Response<TrackedBody<Body>>, Infallible>> + Send,
> + Clone {
    service_fn(move |req| {
        // The head is in: the request is in flight until hyper drops its response body.
        let in_flight = activity.begin();
        let handler = handler.clone();
        let conn = conn.clone();
        Box::pin(async move {
            let response = handler.call(req, &conn).await;
            Ok::<_, Infallible>(response.map(|body| TrackedBody::new(body, in_flight)))
        })
    })
}
