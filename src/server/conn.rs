//! What the transport tells a handler about a connection ([`ConnInfo`]), and the contract
//! between the transport and a handler's fast lane ([`FastLane`], [`Exit`]): a handler may
//! serve a plain-TCP connection's first requests itself and hand it to hyper, with the bytes
//! it read, as soon as one needs hyper. The transport knows no handler's types.

use super::ClientIo;
use bytes::Bytes;
use http::HeaderValue;
use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::watch;

use super::SharedLimits;

/// `X-Forwarded-Proto` of a plain-TCP connection.
pub static PROTO_HTTP: HeaderValue = HeaderValue::from_static("http");
/// `X-Forwarded-Proto` of a TLS connection.
pub static PROTO_HTTPS: HeaderValue = HeaderValue::from_static("https");

/// What a handler knows of the client connection a request came on.
pub struct ConnInfo {
    /// The TCP peer's address.
    pub peer: IpAddr,
    /// The peer IP as an `X-Forwarded-For` element, rendered once per connection.
    pub client_ip: HeaderValue,
    /// `http` or `https` ([`PROTO_HTTP`], [`PROTO_HTTPS`]), for `X-Forwarded-Proto`.
    pub proto: &'static HeaderValue,
    /// What the connection holds while it is open (its place under `max_connections`, in
    /// `tollgate_open_connections` and in the drain). An upgraded WebSocket outlives the
    /// HTTP exchange it began in, so its splice keeps a clone until it ends.
    pub hold: Arc<dyn std::any::Any + Send + Sync>,
    /// Turns true when the drain's deadline has passed: upgraded connections still open
    /// are closed then.
    pub closing: watch::Receiver<bool>,
}

/// How a connection left a fast lane.
pub enum Exit {
    /// The connection is finished: the client left, shutdown began while it was idle, a
    /// response ended it, or I/O failed.
    Closed,
    /// hyper serves the rest: `read` holds bytes read from the client and not yet
    /// answered, the start of a request head that has been due since `head_since`.
    HandOff { read: Bytes, head_since: Instant },
}

/// Serves an HTTP/1.1 connection's requests (plain TCP, or TLS without `h2`) before hyper
/// does, while they suit it. It keeps
/// the connection's head and keep-alive deadlines itself (from `limits`, counted from
/// `accepted`), and leaves an idle connection when `shutdown` turns true.
pub trait FastLane: Send + Sync + 'static {
    fn serve(
        &self,
        client: &mut dyn ClientIo,
        conn: &ConnInfo,
        shutdown: &mut watch::Receiver<bool>,
        limits: &SharedLimits,
        accepted: Instant,
    ) -> impl Future<Output = Exit> + Send;
}

/// The fast lane of a handler that has none: its connections go straight to hyper.
pub enum NoFastLane {}

impl FastLane for NoFastLane {
    async fn serve(
        &self,
        _client: &mut dyn ClientIo,
        _conn: &ConnInfo,
        _shutdown: &mut watch::Receiver<bool>,
        _limits: &SharedLimits,
        _accepted: Instant,
    ) -> Exit {
        match *self {}
    }
}
