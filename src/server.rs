//! Accept loops: plain TCP or TLS, HTTP/1.1 and HTTP/2 on one port (hyper-util auto),
//! connection gauges, the `[server]` connection limits, and graceful drain on shutdown. A
//! plain-TCP connection starts on its handler's fast lane, if it has one ([`FastLane`]),
//! and moves to hyper, with the bytes already read, as soon as a request needs hyper. The
//! transport is generic over its [`Handler`]: it names no gateway type.
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

pub mod conn;
pub mod deadlines;
pub mod limits;
pub mod prefixed;
pub mod tls;

use crate::body::Body;
use crate::metrics::Metrics;
use bytes::Bytes;
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
}

impl Listener {
    pub async fn bind(
        name: &'static str,
        addr: SocketAddr,
        tls: Option<TlsAcceptor>,
    ) -> std::io::Result<Self> {
        let tcp = TcpListener::bind(addr).await?;
        Ok(Self { name, tcp, tls })
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
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(256);
    let builder = Arc::new(builder);
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
            builder: builder.clone(),
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

/// One accepted connection and what it needs to be served.
struct Connection<H> {
    builder: Arc<auto::Builder<TokioExecutor>>,
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
            None => {
                let mut stream = stream;
                // The slot is held while on the fast lane, so the drain waits for it.
                let handler = self.handler.clone();
                let (read_ahead, head_since) = match handler.fast_lane() {
                    Some(lane) => match lane
                        .serve(
                            &mut stream,
                            &self.conn,
                            &mut self.shutdown,
                            &self.limits,
                            accepted,
                        )
                        .await
                    {
                        Exit::Closed => return,
                        Exit::HandOff { read, head_since } => (read, head_since),
                    },
                    None => (Bytes::new(), accepted),
                };
                self.serve_hyper(Prefixed::new(read_ahead, stream), head_since)
                    .await
            }
            Some(acceptor) => {
                let handshake = tokio::select! {
                    done = tls::handshake(&acceptor, stream) => done,
                    // A client still in its handshake has no request in flight: the drain
                    // does not wait for it.
                    _ = self.shutdown.wait_for(|stop| *stop) => return,
                };
                match handshake {
                    Ok(stream) => self.serve_hyper(stream, Instant::now()).await,
                    Err(e) => {
                        tracing::debug!(error = %e, "TLS handshake failed");
                        Ok(())
                    }
                }
            }
        };
        if let Err(e) = result {
            tracing::debug!(error = %e, "connection ended with an error");
        }
    }

    /// Serves the connection with hyper, closing it when a [`deadlines`] deadline passes
    /// and shutting it down gracefully when the drain begins.
    async fn serve_hyper<S>(&mut self, io: S, head_since: Instant) -> Result<(), ConnError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let activity = Activity::new(self.limits.clone(), head_since.into());
        let io = TokioIo::new(Watched::new(io, activity.clone()));
        let service = service(self.handler.clone(), self.conn.clone(), activity.clone());
        let served = self.builder.serve_connection_with_upgrades(io, service);
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

/// hyper's view of a handler on one connection.
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
        async move {
            let response = handler.call(req, &conn).await;
            Ok::<_, Infallible>(response.map(|body| TrackedBody::new(body, in_flight)))
        }
    })
}
