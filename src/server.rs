//! Accept loops: plain TCP or TLS, HTTP/1.1 and HTTP/2 on one port (hyper-util auto),
//! connection gauges, slow-header protection, and graceful drain on shutdown. A plain-TCP
//! connection starts on the gateway's HTTP/1.1 fast lane ([`fast`]) and moves to hyper,
//! with the bytes already read, as soon as a request needs hyper.

pub mod prefixed;
pub mod tls;

use crate::body::Body;
use crate::gateway::fast;
use crate::gateway::headers::{PROTO_HTTP, PROTO_HTTPS};
use crate::gateway::{ConnInfo, Gateway};
use crate::metrics::Metrics;
use bytes::Bytes;
use http::{HeaderValue, Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use prefixed::Prefixed;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

/// How long a client may take to send a request head before the connection is closed.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// How long in-flight requests get to finish after a shutdown signal.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Something that answers requests on a listener.
pub trait Handler: Send + Sync + 'static {
    fn call(
        &self,
        req: Request<Incoming>,
        conn: &ConnInfo,
    ) -> impl Future<Output = Response<Body>> + Send;

    /// Whether this handler's plain-TCP connections start on the HTTP/1.1 fast lane
    /// ([`fast`]); listeners without a gateway go straight to hyper.
    const FAST_LANE: bool = false;

    /// The gateway, if requests with this raw path are its own and may take the fast
    /// lane; `None` keeps them on hyper.
    fn fast_gateway(&self, _raw_path: &str) -> Option<&Gateway> {
        None
    }
}

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

/// Accepts connections until `shutdown` turns true, then waits (bounded) for the
/// connections it started to finish their in-flight requests.
pub async fn serve<H: Handler>(
    listener: Listener,
    handler: Arc<H>,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(256);
    let builder = Arc::new(builder);
    let graceful = GracefulShutdown::new();
    let proto = if listener.tls.is_some() {
        &PROTO_HTTPS
    } else {
        &PROTO_HTTP
    };
    loop {
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
        let _ = stream.set_nodelay(true);
        let conn = Arc::new(ConnInfo {
            client_ip: HeaderValue::from_str(&peer.ip().to_string())
                .unwrap_or(HeaderValue::from_static("unknown")),
            proto,
        });
        let task = Connection {
            builder: builder.clone(),
            handler: handler.clone(),
            conn,
            gauge: metrics.connection_opened(listener.name),
            tls: listener.tls.clone(),
            shutdown: shutdown.clone(),
        };
        let watcher = graceful.watcher();
        tokio::spawn(async move { task.run(stream, watcher).await });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("drain timed out; closing remaining connections");
    }
}

/// One accepted connection and what it needs to be served.
struct Connection<H> {
    builder: Arc<auto::Builder<TokioExecutor>>,
    handler: Arc<H>,
    conn: Arc<ConnInfo>,
    gauge: crate::metrics::ConnectionGuard,
    tls: Option<TlsAcceptor>,
    shutdown: watch::Receiver<bool>,
}

impl<H: Handler> Connection<H> {
    async fn run(self, stream: TcpStream, watcher: hyper_util::server::graceful::Watcher) {
        let Connection {
            builder,
            handler,
            conn,
            gauge,
            tls,
            mut shutdown,
        } = self;
        let result = match tls {
            None => {
                let mut stream = stream;
                // The watcher is held while on the fast lane, so the drain waits for it.
                let read_ahead = if H::FAST_LANE {
                    match fast::serve(
                        &mut stream,
                        |path| handler.fast_gateway(path),
                        &conn,
                        &mut shutdown,
                        HEADER_READ_TIMEOUT,
                    )
                    .await
                    {
                        fast::Exit::Closed => return,
                        fast::Exit::HandOff(bytes) => bytes,
                    }
                } else {
                    Bytes::new()
                };
                let io = TokioIo::new(Prefixed::new(read_ahead, stream));
                let served =
                    builder.serve_connection_with_upgrades(io, service(handler, conn.clone()));
                watcher.watch(served).await
            }
            Some(acceptor) => {
                let handshake = tokio::select! {
                    done = tls::handshake(&acceptor, stream) => done,
                    // A client still in its handshake has no request in flight: the drain
                    // does not wait for it.
                    _ = shutdown.wait_for(|stop| *stop) => return,
                };
                match handshake {
                    Ok(stream) => {
                        let served = builder.serve_connection_with_upgrades(
                            TokioIo::new(stream),
                            service(handler, conn.clone()),
                        );
                        watcher.watch(served).await
                    }
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
        drop(gauge);
    }
}

/// hyper's view of a handler on one connection.
fn service<H: Handler>(
    handler: Arc<H>,
    conn: Arc<ConnInfo>,
) -> impl hyper::service::Service<
    Request<Incoming>,
    Response = Response<Body>,
    Error = Infallible,
    Future = impl Future<Output = Result<Response<Body>, Infallible>> + Send,
> + Clone {
    service_fn(move |req| {
        let handler = handler.clone();
        let conn = conn.clone();
        async move { Ok::<_, Infallible>(handler.call(req, &conn).await) }
    })
}
